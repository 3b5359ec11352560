import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createTestApp, json } from '../helpers/app.js';
import { freePort } from '../helpers/redis-server.js';
import { expectError } from '../helpers/expect.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { TEST_DATABASE_URL, TEST_DIALECT } from '../helpers/test-store.js';
import type { Store } from '../../src/store/store.js';

/**
 * PostgreSQL closes connections under a running server (restart, failover,
 * pg_terminate_backend, a proxy's idle timeout). The server must neither exit nor
 * answer 500: 503 SERVICE_UNAVAILABLE with retryAfter while the store is away, and
 * it recovers by itself. Only this test's own connections are terminated.
 */

const SKIP = TEST_DIALECT !== 'postgres' ? 'PostgreSQL only: an SQLite store has no server connections to lose (runs in the PostgreSQL pass of npm test)' : false;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Errors that nobody handled while `work` ran (an unhandled 'error' event would end the process). */
async function uncaughtDuring(work: () => Promise<void>): Promise<unknown[]> {
  const errors: unknown[] = [];
  const record = (error: unknown) => errors.push(error);
  process.on('uncaughtException', record);
  try {
    await work();
  } finally {
    process.removeListener('uncaughtException', record);
  }
  return errors;
}

/** The backends of the store's pool: concurrent queries each take a pooled connection. */
async function backendPids(store: Store, connections: number): Promise<number[]> {
  const answers = await Promise.all(Array.from({ length: connections }, () => sql<{ pid: number }>`select pg_backend_pid() as pid, pg_sleep(0.05)`.execute(store.db)));
  return [...new Set(answers.map((a) => a.rows[0].pid))];
}

async function terminate(pids: number[]): Promise<number> {
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL! });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ done: boolean }>('select pg_terminate_backend(pid) as done from unnest($1::int[]) as pid', [pids]);
    return rows.filter((r) => r.done).length;
  } finally {
    await admin.end();
  }
}

describe('PostgreSQL connections lost under a running server', () => {
  it('the server keeps running when PostgreSQL terminates its idle pooled connections, and the next request succeeds', { skip: SKIP }, async () => {
    const t = await createTestApp();
    try {
      const created = await t.call('POST', '/v1/smart-processes', { title: 'Before the restart' });
      assert.equal(created.statusCode, 201);
      const errors = await uncaughtDuring(async () => {
        const pids = await backendPids(t.testStore.store, 4);
        assert.ok(pids.length >= 2, `the pool held ${pids.length} connection(s)`);
        assert.equal(await terminate(pids), pids.length, 'every backend of the pool was terminated');
        await sleep(300); // the pool hears of it while the connections sit idle
      });
      assert.deepEqual(errors.map(String), [], 'no unhandled error: the process would have exited');
      const res = await t.call('GET', `/v1/smart-processes/${json(created).data.entityTypeId}`);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(json(res).data.title, 'Before the restart');
    } finally {
      await t.close();
    }
  });

  it('a connection terminated while a transaction holds it fails that transaction only; the process keeps running and the store is usable at once', { skip: SKIP }, async () => {
    const t = await createTestApp();
    try {
      const { store } = t.testStore;
      let failure: unknown = null;
      const errors = await uncaughtDuring(async () => {
        await store.db
          .transaction()
          .execute(async (trx) => {
            const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
            await terminate([rows[0].pid]);
            await sleep(300); // the connection dies while checked out, between two statements
            await sql`select 1`.execute(trx);
          })
          .catch((error: unknown) => {
            failure = error;
          });
      });
      assert.deepEqual(errors.map(String), [], 'no unhandled error: the process would have exited');
      assert.ok(failure, 'the transaction on the lost connection failed');
      const res = await t.call('GET', '/v1/smart-processes');
      assert.equal(res.statusCode, 200, res.body);
    } finally {
      await t.close();
    }
  });

  it('while PostgreSQL cannot be reached every request answers 503 SERVICE_UNAVAILABLE with retryAfter within a few seconds, and succeeds again once it can', { skip: SKIP }, async () => {
    const target = new URL(TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432');
    const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    const t = await createTestApp({ storePort: proxy.port });
    try {
      const created = await t.call('POST', '/v1/smart-processes', { title: 'Through the proxy' });
      assert.equal(created.statusCode, 201, created.body);
      const id = json(created).data.entityTypeId;
      await backendPids(t.testStore.store, 4); // several pooled connections to lose
      let answers: Awaited<ReturnType<typeof t.call>>[] = [];
      const errors = await uncaughtDuring(async () => {
        await proxy.cut();
        await sleep(200);
        const started = performance.now();
        answers = await Promise.all([t.call('GET', `/v1/smart-processes/${id}`), t.call('PATCH', `/v1/smart-processes/${id}`, { title: 'During the outage' }), t.call('GET', '/v1/smart-processes')]);
        assert.ok(performance.now() - started < 6000, `answered after ${(performance.now() - started).toFixed(0)} ms`);
      });
      assert.deepEqual(errors.map(String), [], 'no unhandled error: the process would have exited');
      for (const res of answers) {
        const error = expectError(res, 503, 'SERVICE_UNAVAILABLE');
        assert.equal(error.retryAfter, 1);
        assert.equal(res.headers['retry-after'], '1');
      }
      await proxy.restore();
      const after = await t.call('GET', `/v1/smart-processes/${id}`);
      assert.equal(after.statusCode, 200, after.body);
      assert.equal(json(after).data.title, 'Through the proxy', 'the PATCH answered 503 changed nothing');
    } finally {
      await proxy.restore();
      await t.close();
      await proxy.close();
    }
  });
});

describe('PostgreSQL unreachable when the server starts', () => {
  it('the start fails with a message that names the store (password masked) and the cause', async () => {
    const databaseUrl = `postgres://smartproc:s3cret-pg-pass@127.0.0.1:${await freePort()}/nowhere`; // nothing listens there
    await assert.rejects(buildApp({ config: { ...loadConfig({}), databaseUrl, redisUrl: null }, logger: false }), (error: Error) => {
      assert.match(error.message, /^Cannot open the store \(PostgreSQL 127\.0\.0\.1:\d+\/nowhere\): connect ECONNREFUSED/);
      assert.doesNotMatch(error.message, /s3cret-pg-pass/);
      return true;
    });
  });
});
