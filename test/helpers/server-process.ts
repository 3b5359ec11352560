import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort } from './redis-server.js';

/**
 * A real smartproc server process (`src/cli/bin.ts serve`) for the fault suite:
 * started with its own DATA_DIR and port, its output kept, and asked to stop at the end.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ServerProcess {
  name: string;
  child: ChildProcess;
  base: string;
  dataDir: string;
  /** stdout and stderr, line by line. */
  output: string[];
  /** The exit code or signal if the process has ended. */
  exited(): string | null;
  /** The keys written by the first start (null if this instance did not bootstrap). */
  bootstrapKeys(): { managementKey: string; personalKey: string } | null;
  stop(): Promise<void>;
}

export async function startServerProcess(name: string, env: Record<string, string>): Promise<ServerProcess> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `smartproc-${name}-`));
  const port = await freePort();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', DATA_DIR: dataDir, SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY: '', MAX_EVENT_LOOP_DELAY_MS: '0', ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'serve'], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const collect = (chunk: Buffer) => output.push(...String(chunk).split('\n').filter(Boolean));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const server: ServerProcess = {
    name,
    child,
    base: `http://127.0.0.1:${port}`,
    dataDir,
    output,
    exited: () => (child.exitCode !== null ? `exit ${child.exitCode}` : child.signalCode ? `signal ${child.signalCode}` : null),
    bootstrapKeys() {
      const file = path.join(dataDir, 'bootstrap-keys.json');
      return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null;
    },
    async stop() {
      if (!server.exited()) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (server.exited()) throw new Error(`server ${name} ended (${server.exited()}):\n${output.join('\n')}`);
    try {
      if ((await fetch(`${server.base}/health`)).status === 200) return server;
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  await server.stop();
  throw new Error(`server ${name} did not answer GET /health within 60 s:\n${output.join('\n')}`);
}

export interface Answer {
  status: number;
  body: any;
  ms: number;
  /** Set when no answer came (connection refused, reset, or the client's own timeout). */
  failure?: string;
}

/** One HTTP request; never throws. A request without an answer after `timeoutMs` is a failure ("hang"). */
export async function request(base: string, method: string, url: string, key?: string, body?: unknown, timeoutMs = 15_000): Promise<Answer> {
  const started = performance.now();
  try {
    const res = await fetch(base + url, {
      method,
      headers: { ...(key ? { 'x-api-key': key } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed, ms: performance.now() - started };
  } catch (error) {
    return { status: 0, body: null, ms: performance.now() - started, failure: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
  }
}

/** The PostgreSQL of the fault suite: SMARTPROC_TEST_DATABASE_URL, else the one npm test uses. */
export const FAULT_DATABASE_URL = process.env.SMARTPROC_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

export { postgresProblem } from './services.js';

export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

/** A fresh schema of the fault suite's database: its DATABASE_URL (optionally through another port of 127.0.0.1) and how to drop it. */
export function faultSchema(prefix: string): { name: string; url(port?: number): string; drop(): Promise<void> } {
  const name = `${prefix}_${Math.random().toString(16).slice(2, 10)}`;
  return {
    name,
    url(port?: number) {
      const url = new URL(FAULT_DATABASE_URL);
      url.searchParams.set('schema', name);
      if (port) {
        url.hostname = '127.0.0.1';
        url.port = String(port);
      }
      return url.toString();
    },
    async drop() {
      const client = new pg.Client({ connectionString: FAULT_DATABASE_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
