/**
 * Writes of one type across instances (docs/bitrix24.md "Writes and If-Match"): with Redis,
 * check + write run one at a time per (Bitrix24 portal, entityTypeId) on every instance, so
 * If-Match holds across instances; the lock is released only by its holder. And the cache
 * invalidation channel is per deployment (REDIS_PREFIX, else derived from the store).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { ApiError } from '../../../src/errors.js';
import { RedisWriteLock } from '../../../src/portals/bitrix24/write-lock.js';
import { SecretBox } from '../../../src/store/secret-box.js';
import { startFakeBitrix24 } from '../../fakes/bitrix24/fake-portal.js';
import { createTestApp } from '../../helpers/app.js';
import { openTestStore } from '../../helpers/test-store.js';
import { client as redisClient, deleteByPrefix, redisProblem, REDIS_URL, testPrefix } from './redis-helper.js';

const SKIP: string | false = await (async () => {
  const problem = await redisProblem();
  return problem ? `needs Redis at ${REDIS_URL} (set SMARTPROC_TEST_REDIS_URL): ${problem}` : false;
})();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe('If-Match across two instances (Redis write lock)', { skip: SKIP }, () => {
  it('two instances PATCH one type with the same If-Match at once: one 200, one 412; the portal sees one crm.type.update', { timeout: 60_000 }, async () => {
    const testStore = openTestStore();
    const apps: FastifyInstance[] = [];
    const fake = await startFakeBitrix24({ users: [{ id: 1, name: 'Admin' }, { id: 7, name: 'Tester' }], limits: false, utcOffset: '+00:00' });
    try {
      const box = new SecretBox(crypto.randomBytes(32));
      const config = { ...loadConfig({}), redisUrl: REDIS_URL, maxEventLoopDelayMs: 0 };
      // Two servers of one deployment on one store (the second gets the first's store object: the same data).
      for (let i = 0; i < 2; i++) apps.push(await buildApp({ config, store: testStore.store, logger: false, secretBox: box }));
      const portal = await apps[0].services.portals.create({ kind: 'bitrix24', name: 'Shared', webhookUrl: fake.webhookUrl(7), limits: { burst: 1000, perSecond: 1000 } });
      const { secret } = await apps[0].services.keys.create({ kind: 'personal', portalId: portal.id, scopes: ['crm'], userId: 7, requestsPerSecond: null }, null);
      const call = (i: number, method: 'GET' | 'PATCH' | 'DELETE', url: string, body?: object, headers: Record<string, string> = {}) =>
        apps[i].inject({ method, url, headers: { 'x-api-key': secret, ...headers }, ...(body ? { payload: body } : {}) });

      fake.state.seedType({ title: 'Shared type', entityTypeId: 1100 });
      for (const round of [1, 2, 3]) {
        const got = await call(0, 'GET', '/v1/smart-processes/1100');
        assert.equal(got.statusCode, 200, got.body);
        const etag = got.headers.etag as string;
        // Both fresh reads happen before either write lands (the update is slow), unless the lock keeps them apart.
        fake.inject.latency('crm.type.update', 400, 2);
        const updatesBefore = fake.calls.filter((c) => c.method === 'crm.type.update').length;
        const answers = await Promise.all([0, 1].map((i) => call(i, 'PATCH', '/v1/smart-processes/1100', { title: `Round ${round} by ${i}` }, { 'if-match': etag })));
        fake.inject.clear();
        assert.deepEqual(answers.map((r) => r.statusCode).sort(), [200, 412], answers.map((r) => r.body).join('\n'));
        assert.equal(fake.calls.filter((c) => c.method === 'crm.type.update').length - updatesBefore, 1, 'one write reached the portal');
        const winner = answers.find((r) => r.statusCode === 200)!;
        assert.equal(fake.state.types()[0].title, winner.json().data.title);
      }
    } finally {
      for (const app of apps) await app.close();
      await fake.close();
      await testStore.drop();
    }
  });
});

describe('RedisWriteLock', { skip: SKIP }, () => {
  let redis: Redis;
  const prefix = testPrefix('write-lock');
  before(() => {
    redis = redisClient();
  });
  after(async () => {
    await deleteByPrefix(redis, prefix);
    redis.disconnect();
  });

  it('one holder at a time; a waiter runs after the holder released', async () => {
    const lock = new RedisWriteLock(redis, { prefix });
    const order: string[] = [];
    await Promise.all([
      lock.run('a', Date.now() + 5000, async () => {
        order.push('first in');
        await sleep(150);
        order.push('first out');
      }),
      sleep(20).then(() => lock.run('a', Date.now() + 5000, async () => void order.push('second'))),
    ]);
    assert.deepEqual(order, ['first in', 'first out', 'second']);
    assert.equal(await redis.exists(`${prefix}:write-lock:{a}`), 0, 'released');
  });

  it('kept alive while the work runs longer than its TTL; a waiter past its deadline gets 504 QUEUE_TIMEOUT with retryAfter', async () => {
    const lock = new RedisWriteLock(redis, { prefix, ttlMs: 150 });
    let waiterError: unknown;
    await lock.run('b', Date.now() + 5000, async () => {
      await sleep(500); // > 3 TTLs
      assert.ok((await redis.pttl(`${prefix}:write-lock:{b}`)) > 0, 'still held');
      waiterError = await lock.run('b', Date.now() + 100, async () => 'ran').catch((e: unknown) => e);
    });
    assert.ok(waiterError instanceof ApiError && waiterError.code === 'QUEUE_TIMEOUT', String(waiterError));
    assert.ok((waiterError as ApiError).retryAfter! >= 1);
  });

  it("released only by its holder: a lock that expired and was taken over is not deleted by the old holder's release", async () => {
    const lock = new RedisWriteLock(redis, { prefix, ttlMs: 100 });
    const key = `${prefix}:write-lock:{c}`;
    const stalled = lock.run('c', Date.now() + 5000, async () => {
      // This holder stalls (its renewals cannot reach Redis): simulate by dropping the key and letting another take it.
      await redis.del(key);
      await redis.set(key, 'someone-else', 'PX', 10_000);
      await sleep(50);
    });
    await stalled;
    assert.equal(await redis.get(key), 'someone-else', 'the other holder keeps its lock');
    await redis.del(key);
  });
});

describe('the invalidation channel is per deployment', { skip: SKIP }, () => {
  it('two deployments sharing one Redis (the same portal id in both stores): a write in one does not drop the other portal cache', { timeout: 60_000 }, async () => {
    const options = { portalKind: 'bitrix24' as const, config: { redisUrl: REDIS_URL, bitrix24CacheTtlMs: 600_000, maxEventLoopDelayMs: 0 } };
    const a = await createTestApp(options);
    const b = await createTestApp(options);
    try {
      assert.equal(a.portal.id, b.portal.id);
      b.fake!.state.seedType({ title: 'B', entityTypeId: 1100 });
      assert.equal((await b.call('GET', '/v1/smart-processes/1100')).statusCode, 200); // cached in b now
      const bCalls = b.fake!.calls.length;
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'A' })).statusCode, 201); // publishes "portal 1 changed"
      await sleep(300); // time for a message to arrive
      assert.equal((await b.call('GET', '/v1/smart-processes/1100')).statusCode, 200);
      assert.deepEqual(b.fake!.calls.slice(bCalls).map((c) => c.method), [], "b's cache was not dropped by a's write");
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('REDIS_PREFIX names the channel: two instances given the same prefix hear each other', { timeout: 60_000 }, async () => {
    const prefix = testPrefix('deploy');
    const options = { portalKind: 'bitrix24' as const, config: { redisUrl: REDIS_URL, redisPrefix: prefix, bitrix24CacheTtlMs: 600_000, maxEventLoopDelayMs: 0 } };
    const a = await createTestApp(options);
    const b = await createTestApp(options);
    try {
      b.fake!.state.seedType({ title: 'B', entityTypeId: 1100 });
      assert.equal((await b.call('GET', '/v1/smart-processes/1100')).statusCode, 200);
      const bCalls = b.fake!.calls.length;
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'A' })).statusCode, 201);
      await sleep(300);
      assert.equal((await b.call('GET', '/v1/smart-processes/1100')).statusCode, 200);
      assert.ok(b.fake!.calls.slice(bCalls).length > 0, "b dropped its cache on a's message (one deployment)");
    } finally {
      await a.close();
      await b.close();
    }
  });
});
