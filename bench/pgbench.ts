/**
 * The physical limit of this machine's PostgreSQL, measured in the same run as smartproc:
 * `pgbench` select-only (-S) and its built-in write transaction (TPC-B like), on a scratch
 * database the bench creates (`pgbench -i`) and drops.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';

/** pgbench on PATH, else the newest under /usr/lib/postgresql/<version>/bin; null when there is none. */
export function findPgbench(): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'pgbench');
    if (dir && fs.existsSync(candidate)) return candidate;
  }
  try {
    const versions = fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
    for (const version of versions) {
      const candidate = `/usr/lib/postgresql/${version}/bin/pgbench`;
      if (fs.existsSync(candidate)) return candidate;
    }
  } catch {
    /* no such directory */
  }
  return null;
}

export interface PgbenchResult {
  tps: number;
  latencyMs: number;
  transactions: number;
  failed: number;
}

function run(binary: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(binary)} ${args.join(' ')} exited with ${code}: ${out.slice(-600)}`));
    });
  });
}

/** A scratch database for pgbench on the server of `databaseUrl`: created now, dropped by `drop()`. */
export async function scratchDatabase(databaseUrl: string): Promise<{ name: string; args: string[]; env: Record<string, string>; drop(): Promise<void> }> {
  const url = new URL(databaseUrl);
  url.search = '';
  const name = `smartproc_pgbench_${crypto.randomBytes(4).toString('hex')}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5000 });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const args = ['-h', url.hostname || '127.0.0.1', '-p', url.port || '5432', '-U', decodeURIComponent(url.username || 'postgres')];
  const env: Record<string, string> = url.password ? { PGPASSWORD: decodeURIComponent(url.password) } : {};
  return { name, args, env, drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/** `pgbench -i` (scale 1, quiet) on the scratch database. */
export async function pgbenchInit(binary: string, db: { name: string; args: string[]; env: Record<string, string> }): Promise<void> {
  await run(binary, [...db.args, '-i', '-s', '1', '-q', db.name], db.env, 120_000);
}

/** One pgbench run: select-only (-S) or the built-in TPC-B like write transaction. */
export async function pgbenchRun(binary: string, db: { name: string; args: string[]; env: Record<string, string> }, options: { selectOnly: boolean; clients: number; threads: number; seconds: number }): Promise<PgbenchResult> {
  const args = [...db.args, '-c', String(options.clients), '-j', String(options.threads), '-T', String(Math.max(1, Math.round(options.seconds))), ...(options.selectOnly ? ['-S'] : []), db.name];
  const out = await run(binary, args, db.env, (options.seconds + 60) * 1000);
  const number = (pattern: RegExp) => Number(pattern.exec(out)?.[1] ?? Number.NaN);
  return {
    tps: number(/tps = ([\d.]+) \(without initial connection time\)/),
    latencyMs: number(/latency average = ([\d.]+) ms/),
    transactions: number(/number of transactions actually processed: (\d+)/),
    failed: number(/number of failed transactions: (\d+)/) || 0,
  };
}
