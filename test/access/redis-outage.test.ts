import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { freePort, PrivateRedis } from '../helpers/redis-server.js';
import { createKeyViaApi, mgmt, send, sleep } from './access-helpers.js';

/**
 * Redis is an aid, not a dependency (docs/operations.md, "When Redis is down"): without
 * it each instance counts rate limits in memory and key changes reach the other
 * instances through the 1-second key cache. No request waits more than about 100 ms
 * for Redis, and no write fails because its invalidation could not be published.
 */

/** The bound on what a request may wait for Redis, with room for a slow test machine. */
const REDIS_WAIT_MS = 100;

function logCapture() {
  const lines: any[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logger: { level: 'info', stream } };
}

/** console.error lines of ioredis ("[ioredis] Unhandled error event"): a client without an 'error' listener. */
function consoleErrorCapture() {
  const original = console.error;
  const lines: string[] = [];
  console.error = (...args: unknown[]) => {
    lines.push(args.map(String).join(' '));
  };
  return { lines, restore: () => (console.error = original) };
}

async function timed(work: () => Promise<LightMyRequestResponse>): Promise<{ res: LightMyRequestResponse; ms: number }> {
  const started = performance.now();
  const res = await work();
  return { res, ms: performance.now() - started };
}

/** Key PATCH, rotate and DELETE, portal PATCH and DELETE: each succeeds, within `boundMs`. */
async function writesSucceedQuickly(t: TestApp, boundMs: number): Promise<void> {
  const key = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['crm'] });
  const portal = await t.createPortal();
  const steps: [string, () => Promise<LightMyRequestResponse>, number][] = [
    ['PATCH /v1/keys/:id', () => mgmt(t, 'PATCH', `/v1/keys/${key.id}`, { name: 'renamed while Redis is down' }), 200],
    ['POST /v1/keys/:id/rotate', () => mgmt(t, 'POST', `/v1/keys/${key.id}/rotate`, {}), 200],
    ['DELETE /v1/keys/:id', () => mgmt(t, 'DELETE', `/v1/keys/${key.id}`), 204],
    ['PATCH /v1/portals/:id', () => mgmt(t, 'PATCH', `/v1/portals/${portal.id}`, { name: 'renamed while Redis is down' }), 200],
    ['DELETE /v1/portals/:id', () => mgmt(t, 'DELETE', `/v1/portals/${portal.id}`), 204],
  ];
  for (const [name, step, status] of steps) {
    const { res, ms } = await timed(step);
    assert.equal(res.statusCode, status, `${name}: ${res.body}`);
    assert.ok(ms < boundMs, `${name} took ${ms.toFixed(0)} ms`);
  }
  assert.equal((await mgmt(t, 'GET', `/v1/keys/${key.id}`)).statusCode, 404, 'the key is deleted');
  assert.equal((await mgmt(t, 'GET', `/v1/portals/${portal.id}`)).statusCode, 404, 'the portal is deleted');
  const refused = await send(t, 'GET', '/v1/smart-processes', { headers: { 'x-api-key': key.secret } });
  assert.equal(refused.statusCode, 401, 'this instance dropped the deleted key at once');
}

/** Requests of a key limited to `limit` per second, one after another: the statuses, and the longest wait. */
async function burst(t: TestApp, secret: string, count: number): Promise<{ statuses: number[]; slowest: number }> {
  const statuses: number[] = [];
  let slowest = 0;
  for (let i = 0; i < count; i++) {
    const { res, ms } = await timed(() => send(t, 'GET', '/v1/smart-processes/fields', { headers: { 'x-api-key': secret } }));
    statuses.push(res.statusCode);
    slowest = Math.max(slowest, ms);
  }
  return { statuses, slowest };
}

describe('Redis unreachable when the server starts', () => {
  let deadUrl = '';
  before(async () => {
    deadUrl = `redis://:s3cret-redis-pass@127.0.0.1:${await freePort()}/0`; // nothing listens there
  });

  it('the server starts degraded and logs one clear warning naming REDIS_URL (password masked), not one per retry', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-redis-down-'));
    const { lines, logger } = logCapture();
    const stderr = consoleErrorCapture();
    let server: Awaited<ReturnType<typeof startServer>> | null = null;
    try {
      server = await startServer({ ...loadConfig({ DATA_DIR: dataDir, PORT: '0' }), redisUrl: deadUrl }, { logger });
      const health = await fetch(`${server.url}/health`);
      assert.equal(health.status, 200);
      await sleep(1200); // ioredis retries several times meanwhile
      const redisLines = lines.filter((l) => /redis/i.test(l.msg));
      assert.equal(redisLines.length, 1, `one line about Redis; got ${JSON.stringify(redisLines)}`);
      const [line] = redisLines;
      assert.equal(line.level, 40, 'a warning');
      const shown = deadUrl.replace('s3cret-redis-pass', '***');
      assert.ok(line.msg.includes(shown), `names ${shown}: ${line.msg}`);
      assert.match(line.msg, /ECONNREFUSED|unreachable/);
      assert.match(line.msg, /memory/, 'says what it means: rate limits counted in memory');
      assert.doesNotMatch(JSON.stringify(lines), /s3cret-redis-pass/, 'the Redis password is never logged');
      assert.deepEqual(stderr.lines.filter((l) => /ioredis/i.test(l)), [], 'every Redis client has an error listener');
    } finally {
      stderr.restore();
      await server?.app.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  describe('then serving', () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp({ config: { redisUrl: deadUrl } });
      await t.call('GET', '/v1/smart-processes/fields'); // warm: the first answer of a route is slow for reasons of its own
    });
    after(() => t?.close());

    it('a rate-limited key answers within 100 ms per request, its limit counted in memory', async () => {
      const key = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['crm'], requestsPerSecond: 3 });
      const { statuses, slowest } = await burst(t, key.secret, 5);
      assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
      assert.ok(slowest < REDIS_WAIT_MS, `the slowest answer took ${slowest.toFixed(0)} ms`);
    });

    it('key PATCH, rotate, DELETE and portal PATCH, DELETE succeed at once: the invalidation is published best effort', async () => {
      await writesSucceedQuickly(t, 250);
    });
  });
});

const NO_REDIS = PrivateRedis.unavailable;

describe('Redis killed and started again under a running server', { skip: NO_REDIS }, () => {
  let redis: PrivateRedis;
  let t: TestApp;
  before(async () => {
    if (NO_REDIS) return;
    redis = await PrivateRedis.start();
    t = await createTestApp({ config: { redisUrl: redis.url } });
    await t.call('GET', '/v1/smart-processes/fields');
  });
  after(async () => {
    await t?.close();
    await redis?.stop();
  });

  it('limits are counted in Redis; in memory, with no request waiting over 100 ms, while it is down; and in Redis again once it is back', async () => {
    const key = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['crm'], requestsPerSecond: 3 });
    const counter = `smartproc:rl:3:${key.id}`;
    const check = redis.client();
    try {
      assert.deepEqual((await burst(t, key.secret, 2)).statuses, [200, 200]);
      assert.equal(await check.get(counter), '2', 'counted in Redis');

      await redis.kill();
      await sleep(50);
      const down = await burst(t, key.secret, 5);
      assert.ok(down.slowest < REDIS_WAIT_MS, `with Redis down the slowest answer took ${down.slowest.toFixed(0)} ms`);
      assert.deepEqual(down.statuses, [200, 200, 200, 429, 429], 'the limit still holds, counted in memory');

      await redis.restart();
      // The server reconnects in the background; until then it keeps counting in memory.
      const deadline = Date.now() + 8000;
      while ((await check.get(counter).catch(() => null)) === null && Date.now() < deadline) {
        const { slowest } = await burst(t, key.secret, 1);
        assert.ok(slowest < REDIS_WAIT_MS, `while reconnecting an answer took ${slowest.toFixed(0)} ms`);
        await sleep(100);
      }
      assert.notEqual(await check.get(counter), null, 'counted in Redis again within 8 s of its return');
      await sleep(1100); // a fresh window, in Redis
      assert.deepEqual((await burst(t, key.secret, 4)).statuses, [200, 200, 200, 429]);
      assert.equal(await check.get(counter), '4', 'every request of the window was counted in Redis');
    } finally {
      check.disconnect();
    }
  });

  it('with Redis killed, key and portal writes succeed at once', async () => {
    await redis.kill();
    try {
      await writesSucceedQuickly(t, 250);
    } finally {
      await redis.restart();
    }
  });

  it('after Redis is back, a key deleted through one instance is dropped by another at once (it subscribed again)', async () => {
    // A second app on the same store whose key cache would keep the key for a minute: only the message can drop it.
    const other = await buildApp({ config: { ...loadConfig({}), redisUrl: redis.url, maxEventLoopDelayMs: 0 }, store: t.testStore.store, logger: false, keyCacheTtlMs: 60_000 });
    try {
      await redis.kill();
      await sleep(200);
      await redis.restart();
      const key = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['crm'] });
      const probe = () => other.inject({ method: 'GET', url: '/v1/smart-processes', headers: { 'x-api-key': key.secret } });
      assert.equal((await probe()).statusCode, 200, 'the other instance has the key cached');
      // Both instances reconnect in the background: retry the delete's message until it is heard.
      const deadline = Date.now() + 8000;
      let deleted = false;
      let last = 200;
      while (Date.now() < deadline) {
        if (!deleted) {
          assert.equal((await mgmt(t, 'DELETE', `/v1/keys/${key.id}`)).statusCode, 204);
          deleted = true;
        } else {
          await t.app.services.access.bus.publish({ type: 'key', id: key.id });
        }
        await sleep(100);
        last = (await probe()).statusCode;
        if (last === 401) break;
      }
      assert.equal(last, 401, 'the other instance dropped the deleted key');
      assert.equal(json(await probe()).error.code, 'INVALID_API_KEY');
    } finally {
      await other.close();
    }
  });
});
