import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { openTestStore, type TestStore } from '../helpers/test-store.js';
import { sleep } from './access-helpers.js';
import { redisProblem } from '../helpers/services.js';

/**
 * Two real server processes on one PostgreSQL store and one Redis: the rate limit is
 * counted across both, and a key deleted or changed on one is refused by the other
 * within a second (contract §5; the key cache lives at most 1 s, Redis tells the rest).
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DATABASE_URL = process.env.SMARTPROC_TEST_DATABASE_URL || null;
const REDIS_URL = process.env.SMARTPROC_TEST_REDIS_URL || 'redis://127.0.0.1:6379';


const SKIP: string | false = !DATABASE_URL
  ? 'needs PostgreSQL: runs in the PostgreSQL pass of npm test (SMARTPROC_TEST_DATABASE_URL is not set)'
  : await (async () => {
      const problem = await redisProblem(REDIS_URL);
      return problem ? `needs Redis at ${REDIS_URL.replace(/:[^:@/]*@/, ':***@')} (set SMARTPROC_TEST_REDIS_URL): ${problem}` : false;
    })();

interface Instance {
  name: string;
  child: ChildProcess;
  base: string;
  output: string[];
  dataDir: string;
}

interface Answer {
  status: number;
  body: any;
  headers: Headers;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function call(instance: Instance, method: string, url: string, key?: string, body?: unknown): Promise<Answer> {
  const res = await fetch(instance.base + url, {
    method,
    headers: { ...(key ? { 'x-api-key': key } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

describe('Several server instances on one store and one Redis', () => {
  let testStore: TestStore | null = null;
  const instances: Instance[] = [];
  let A: Instance;
  let B: Instance;
  let managementKey = '';
  let portalId = 0;

  async function start(name: string): Promise<Instance> {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `smartproc-${name}-`));
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: testStore!.databaseUrl!,
      REDIS_URL,
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY: '',
    };
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const instance: Instance = { name, child, base: `http://127.0.0.1:${port}`, output: [], dataDir };
    instances.push(instance);
    child.stdout!.on('data', (chunk) => instance.output.push(String(chunk)));
    child.stderr!.on('data', (chunk) => instance.output.push(String(chunk)));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`instance ${name} exited with ${child.exitCode}:\n${instance.output.join('')}`);
      try {
        const health = await call(instance, 'GET', '/health');
        if (health.status === 200) return instance;
      } catch {
        /* not listening yet */
      }
      await sleep(100);
    }
    throw new Error(`instance ${name} did not answer GET /health within 60 s:\n${instance.output.join('')}`);
  }

  async function stop(instance: Instance): Promise<void> {
    const { child } = instance;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(instance.dataDir, { recursive: true, force: true });
  }

  before(async () => {
    if (SKIP) return;
    testStore = openTestStore();
    A = await start('a'); // first: migrates the store and bootstraps it
    B = await start('b');
    const bootstrap = JSON.parse(fs.readFileSync(path.join(A.dataDir, 'bootstrap-keys.json'), 'utf8'));
    managementKey = bootstrap.managementKey;
    assert.match(managementKey, /^vibe_live_/);
    assert.ok(!fs.existsSync(path.join(B.dataDir, 'bootstrap-keys.json')), 'only the first instance bootstraps');
    const portal = await call(A, 'POST', '/v1/portals', managementKey, { name: 'Shared portal' });
    assert.equal(portal.status, 201, JSON.stringify(portal.body));
    portalId = portal.body.data.id;
  });

  after(async () => {
    for (const instance of instances) await stop(instance);
    if (testStore) await testStore.drop();
  });

  const createKey = async (body: Record<string, unknown>) => {
    const res = await call(A, 'POST', '/v1/keys', managementKey, { kind: 'personal', portalId, scopes: ['crm'], ...body });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.data as { id: string; secret: string };
  };

  it('both instances serve the same store: a portal and a key made through A work through B', { skip: SKIP }, async () => {
    const key = await createKey({ requestsPerSecond: null });
    assert.equal((await call(B, 'GET', `/v1/portals/${portalId}`, managementKey)).status, 200);
    const created = await call(B, 'POST', '/v1/smart-processes', key.secret, { title: 'Made through B' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const seen = await call(A, 'GET', `/v1/smart-processes/${created.body.data.entityTypeId}`, key.secret);
    assert.equal(seen.body.data.title, 'Made through B');
  });

  it('requestsPerSecond is counted across both instances: about 10 per second in total, the rest 429 RATE_LIMITED', { skip: SKIP }, async (t) => {
    const key = await createKey({ requestsPerSecond: 10 });
    // Warm both instances up (connections, code paths) with another key, so that the measured answers come back at once.
    const warm = await createKey({ requestsPerSecond: null });
    for (let round = 0; round < 3; round++) {
      await Promise.all([A, B].flatMap((instance) => Array.from({ length: 20 }, () => call(instance, 'GET', '/v1/smart-processes/fields', warm.secret))));
    }
    const DURATION_MS = 2950;
    const RATE = 60; // requests per second, alternating A and B
    const results: { instance: string; status: number; code: string | null; at: number }[] = [];
    const pending: Promise<void>[] = [];
    const start = performance.now();
    for (let i = 0; start + (i * 1000) / RATE < start + DURATION_MS; i++) {
      const wait = start + (i * 1000) / RATE - performance.now();
      if (wait > 0) await sleep(wait);
      const instance = i % 2 === 0 ? A : B;
      pending.push(
        call(instance, 'GET', '/v1/smart-processes/fields', key.secret).then((res) => {
          results.push({ instance: instance.name, status: res.status, code: res.body?.error?.code ?? null, at: performance.now() });
        }),
      );
    }
    await Promise.all(pending);

    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    for (const r of refused) assert.deepEqual([r.status, r.code], [429, 'RATE_LIMITED']);
    assert.ok(ok.some((r) => r.instance === 'a') && ok.some((r) => r.instance === 'b'), 'both instances let some through');
    // Fixed 1-second windows, opened by the first request after the last one ended: the successes fall in
    // at most (last - first) / 1 s + 1 windows, so that is the time they are spread over.
    const times = ok.map((r) => r.at).sort((x, y) => x - y);
    const windows = (times[times.length - 1] - times[0]) / 1000 + 1;
    const perSecond = ok.length / windows;
    const timeline = () => results.map((r) => `${(r.at - start).toFixed(0)}:${r.instance}:${r.status}`).join(' ');
    t.diagnostic(`${results.length} requests in ${DURATION_MS} ms: ${ok.length} allowed (${ok.filter((r) => r.instance === 'a').length} via A), ${refused.length} refused; ${perSecond.toFixed(2)} per second over ${windows.toFixed(2)} s`);
    assert.ok(perSecond >= 8 && perSecond <= 12, `about 10 per second across both instances; got ${perSecond.toFixed(2)} (${ok.length} in ${windows.toFixed(2)} s); answers (ms:instance:status): ${timeline()}`);
    assert.ok(ok.length >= 24 && ok.length <= 40, `${ok.length} allowed in ~3 s; answers (ms:instance:status): ${timeline()}`);
    assert.ok(refused.length > 0);
  });

  it('a key deleted through A is refused by B (401 INVALID_API_KEY) within 1 second, though B had it cached', { skip: SKIP }, async (t) => {
    const key = await createKey({ requestsPerSecond: null });
    assert.equal((await call(A, 'GET', '/v1/smart-processes', key.secret)).status, 200);
    assert.equal((await call(B, 'GET', '/v1/smart-processes', key.secret)).status, 200, 'B has the key cached');
    const deleted = await call(A, 'DELETE', `/v1/keys/${key.id}`, managementKey);
    assert.equal(deleted.status, 204);
    const since = performance.now();
    let last: Answer;
    do {
      last = await call(B, 'GET', '/v1/smart-processes', key.secret);
      if (last.status === 401) break;
      assert.equal(last.status, 200);
      await sleep(50);
    } while (performance.now() - since < 1000);
    const elapsed = performance.now() - since;
    t.diagnostic(`B refused the deleted key ${elapsed.toFixed(0)} ms after the delete returned`);
    assert.equal(last.status, 401, `B still accepted the deleted key ${elapsed.toFixed(0)} ms after the delete`);
    assert.equal(last.body.error.code, 'INVALID_API_KEY');
    assert.ok(elapsed <= 1000);
    // Beyond the 1 s bound: with Redis the change is published, so B drops its cached key at once
    // instead of waiting for the cache entry to expire.
    assert.ok(elapsed < 500, `B refused only after ${elapsed.toFixed(0)} ms: the Redis invalidation did not reach it`);
  });

  it('a scope narrowed through A is refused by B within 1 second', { skip: SKIP }, async () => {
    const key = await createKey({ requestsPerSecond: null, scopes: ['crm', 'task'] });
    assert.equal((await call(B, 'GET', '/v1/smart-processes', key.secret)).status, 200, 'B has the key cached');
    const patched = await call(A, 'PATCH', `/v1/keys/${key.id}`, managementKey, { scopes: ['task'] });
    assert.equal(patched.status, 200);
    const since = performance.now();
    let last: Answer;
    do {
      last = await call(B, 'GET', '/v1/smart-processes', key.secret);
      if (last.status !== 200) break;
      await sleep(50);
    } while (performance.now() - since < 1000);
    assert.equal(last.status, 403, `B still let the key read ${(performance.now() - since).toFixed(0)} ms after the change`);
    assert.equal(last.body.error.code, 'SCOPE_DENIED');
  });
});
