/**
 * GET /health (alive) and GET /ready (issue 11 item 1): /ready answers 200 only when the
 * store answers, every migration is applied and Redis (when configured) answers; else 503
 * in the error envelope, naming each component that failed. One spec per component.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { TEST_REDIS_URL, redisProblem } from '../helpers/services.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { TEST_DATABASE_URL } from '../helpers/test-store.js';

/** Load shedding off: on a busy test machine it would answer 503 where these specs expect 200. */
const NOT_SHED = { config: { maxEventLoopDelayMs: 0 } };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ready = (t: TestApp) => t.app.inject({ method: 'GET', url: '/ready' });

/** Asks /ready until `done` holds (the state of a connection changes in the background), at most `ms`. */
async function readyUntil(t: TestApp, done: (res: LightMyRequestResponse) => boolean, ms = 5000): Promise<LightMyRequestResponse> {
  const until = Date.now() + ms;
  for (;;) {
    const res = await ready(t);
    if (done(res) || Date.now() > until) return res;
    await sleep(50);
  }
}

/** The failing components of a 503 from /ready, by name. */
function failing(res: LightMyRequestResponse): Record<string, string> {
  assert.equal(res.statusCode, 503, res.body);
  const { error } = json(res);
  assert.equal(error.code, 'SERVICE_UNAVAILABLE');
  assert.match(error.requestId, /\S/);
  assert.match(error.message, /^Not ready: /);
  return Object.fromEntries(error.details.map((d: { location: string; message: string }) => [d.location, d.message]));
}

describe('GET /health and GET /ready', () => {
  it('a healthy server without Redis: /health 200 alive, /ready 200 with store, migrations ok and redis "not configured"; no key needed', async () => {
    const t = await createTestApp(NOT_SHED);
    try {
      const health = await t.app.inject({ method: 'GET', url: '/health' });
      assert.equal(health.statusCode, 200, health.body);
      assert.equal(json(health).data.status, 'ok');
      const res = await ready(t);
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(json(res), { success: true, data: { status: 'ready', checks: { store: 'ok', migrations: 'ok', redis: 'not configured' } } });
    } finally {
      await t.close();
    }
  });

  it('migrations pending (the store lacks the newest migration this version knows): 503 naming the migration; 200 again once it is recorded', async () => {
    const t = await createTestApp(NOT_SHED);
    const { store } = t.app.services;
    const table = store.dialect === 'postgres' ? sql.table(`${store.schema}.kysely_migration`) : sql.table('kysely_migration');
    try {
      const { rows } = await sql<{ name: string; timestamp: string }>`select name, timestamp from ${table} order by name desc limit 1`.execute(store.db);
      const newest = rows[0];
      assert.ok(newest, 'the store has a migration row');
      await sql`delete from ${table} where name = ${newest.name}`.execute(store.db);
      const res = await ready(t);
      assert.deepEqual(failing(res), { migrations: `pending: ${newest.name}` }, 'only the migrations fail: the store answers');
      await sql`insert into ${table} (name, timestamp) values (${newest.name}, ${newest.timestamp})`.execute(store.db);
      assert.equal((await ready(t)).statusCode, 200);
    } finally {
      await t.close();
    }
  });

  it('store does not answer: 503 naming the store (and migrations not checked), without the driver\'s message or any address', { timeout: 20_000 }, async () => {
    if (TEST_DATABASE_URL) {
      // PostgreSQL: a real outage, the connections to it cut and new ones refused.
      const url = new URL(TEST_DATABASE_URL);
      const proxy = await TcpProxy.start({ host: url.hostname, port: Number(url.port || 5432) });
      const t = await createTestApp({ ...NOT_SHED, storePort: proxy.port });
      try {
        assert.equal((await ready(t)).statusCode, 200);
        await proxy.cut();
        const res = await ready(t);
        const failed = failing(res);
        assert.match(failed.store, /^does not answer/);
        assert.equal(failed.migrations, 'not checked: the store does not answer');
        assert.equal(failed.redis, undefined, 'Redis is not configured: not a failure');
        assert.doesNotMatch(res.body, /127\.0\.0\.1|ECONNREFUSED|postgres/i);
        await proxy.restore();
        assert.equal((await readyUntil(t, (r) => r.statusCode === 200)).statusCode, 200, 'ready again once the store answers');
      } finally {
        await proxy.restore();
        await t.close();
        await proxy.close();
      }
    } else {
      // SQLite: its one connection held by something that does not finish: the check gives up after its timeout.
      const t = await createTestApp(NOT_SHED);
      let release!: () => void;
      const held = t.app.services.store.db.connection().execute(() => new Promise<void>((resolve) => (release = resolve)));
      try {
        await sleep(20);
        const started = Date.now();
        const failed = failing(await ready(t));
        assert.match(failed.store, /^does not answer within \d+ ms$/);
        assert.equal(failed.migrations, 'not checked: the store does not answer');
        assert.ok(Date.now() - started < 5000, 'answered within the check timeout');
        release();
        await held;
        assert.equal((await ready(t)).statusCode, 200, 'ready again once the store answers');
      } finally {
        release?.();
        await t.close();
      }
    }
  });

  it('Redis configured but unreachable from the start: 503 naming redis only (the server itself still serves requests)', async () => {
    const closed = await TcpProxy.start({ host: '127.0.0.1', port: 9 });
    await closed.cut(); // a port of 127.0.0.1 that refuses connections
    const t = await createTestApp({ config: { maxEventLoopDelayMs: 0, redisUrl: `redis://127.0.0.1:${closed.port}` } });
    try {
      const failed = failing(await ready(t));
      assert.deepEqual(Object.keys(failed), ['redis']);
      assert.match(failed.redis, /^not connected/);
      assert.equal((await t.call('GET', '/v1/smart-processes')).statusCode, 200, 'requests are served without Redis');
    } finally {
      await t.close();
    }
  });

  it('Redis goes away while running: /ready turns 503 (redis) and back to 200 when it returns', async (ctx) => {
    const problem = await redisProblem();
    if (problem) return ctx.skip(`needs Redis at ${TEST_REDIS_URL}: ${problem}`);
    const target = new URL(TEST_REDIS_URL);
    const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 6379) });
    const t = await createTestApp({ config: { maxEventLoopDelayMs: 0, redisUrl: `redis://127.0.0.1:${proxy.port}` } });
    try {
      const up = await ready(t);
      assert.equal(up.statusCode, 200, up.body);
      assert.equal(json(up).data.checks.redis, 'ok');
      await proxy.cut();
      const down = await readyUntil(t, (r) => r.statusCode === 503);
      assert.deepEqual(Object.keys(failing(down)), ['redis']);
      await proxy.restore();
      const back = await readyUntil(t, (r) => r.statusCode === 200, 8000);
      assert.equal(back.statusCode, 200, back.body);
    } finally {
      await proxy.restore();
      await t.close();
      await proxy.close();
    }
  });
});
