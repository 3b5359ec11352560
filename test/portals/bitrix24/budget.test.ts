import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { ApiError } from '../../../src/errors.js';
import { PortalBudget, PortalBudgets } from '../../../src/portals/bitrix24/budget.js';
import { Bitrix24RestClient } from '../../../src/portals/bitrix24/rest-client.js';
import { reply, sleep, startStub, TIME, type Stub } from './http-stub.js';
import { client as redisClient, deleteByPrefix, freePort, redisProblem, startPrivateRedis, testPrefix } from './redis-helper.js';

const SECRET = 'budgetsecret0001';

/**
 * A portal with the documented leaky bucket: each request adds 1 to a counter that drops
 * by `perSecond` once per second (discrete) or continuously; a request that finds the
 * counter at `burst` gets 503 QUERY_LIMIT_EXCEEDED. Records the highest counter.
 */
async function leakyPortal(limits: { burst: number; perSecond: number }, drain: 'discrete' | 'continuous') {
  const state = { counter: 0, max: 0, served: 0, refused: 0, last: Date.now() };
  const timer = drain === 'discrete' ? setInterval(() => (state.counter = Math.max(0, state.counter - limits.perSecond)), 1000) : null;
  const stub = await startStub((req, res) => {
    if (drain === 'continuous') {
      const now = Date.now();
      state.counter = Math.max(0, state.counter - ((now - state.last) / 1000) * limits.perSecond);
      state.last = now;
    }
    if (state.counter >= limits.burst) {
      state.refused++;
      return reply(res, 503, { error: 'QUERY_LIMIT_EXCEEDED', error_description: 'Too many requests' });
    }
    state.counter++;
    state.max = Math.max(state.max, state.counter);
    state.served++;
    reply(res, 200, { result: { id: req.json?.id ?? null }, time: TIME });
  });
  return {
    state,
    stub,
    client: Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`),
    close: async () => {
      if (timer) clearInterval(timer);
      await stub.close();
    },
  };
}

type Outcome = { ok: true; ms: number } | { ok: false; error: unknown; ms: number };

async function crowd(n: number, run: (i: number) => Promise<unknown>): Promise<Outcome[]> {
  const started = Date.now();
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      run(i).then(
        () => ({ ok: true as const, ms: Date.now() - started }),
        (error) => ({ ok: false as const, error, ms: Date.now() - started }),
      ),
    ),
  );
}

function tally(outcomes: Outcome[]) {
  const ok = outcomes.filter((o) => o.ok);
  const timeouts = outcomes.filter((o) => !o.ok && o.error instanceof ApiError && o.error.code === 'QUEUE_TIMEOUT');
  const other = outcomes.filter((o) => !o.ok && !(o.error instanceof ApiError && o.error.code === 'QUEUE_TIMEOUT'));
  for (const o of timeouts) {
    const e = (o as { error: ApiError }).error;
    assert.ok(Number.isInteger(e.retryAfter) && e.retryAfter! >= 1, `retryAfter ${e.retryAfter}`);
    assert.equal(e.status, 504);
  }
  return { ok: ok.length, timeouts: timeouts.length, other };
}

describe('request budget in memory: a budget of 50/2 with 300 concurrent callers', () => {
  for (const drain of ['discrete', 'continuous'] as const) {
    it(`never more than the bucket at the portal (${drain} drain); callers beyond the queue get QUEUE_TIMEOUT with retryAfter`, async (t) => {
      const portal = await leakyPortal({ burst: 50, perSecond: 2 }, drain);
      try {
        const budget = new PortalBudget({ portalKey: 'p1', limits: { burst: 50, perSecond: 2 }, maxWaitMs: 2000 });
        const outcomes = await crowd(300, (i) => budget.run('crm.type.get', () => portal.client.call('crm.type.get', { id: i })));
        const { ok, timeouts, other } = tally(outcomes);
        t.diagnostic(`${drain}: ${ok} served, ${timeouts} QUEUE_TIMEOUT, 503s at the portal ${portal.state.refused}, highest counter ${portal.state.max}, longest wait ${budget.stats.maxWaitedMs} ms`);
        assert.deepEqual(other, []);
        assert.equal(portal.state.refused, 0, 'no 503 at the portal');
        assert.ok(portal.state.max <= 50, `counter reached ${portal.state.max}`);
        assert.equal(ok + timeouts, 300);
        // 48 at once (50 less one second of drain), then 2 per second for the 2 s the queue allows.
        assert.ok(ok >= 51 && ok <= 53, `${ok} served`);
        assert.equal(portal.state.served, ok);
        assert.ok(budget.stats.maxWaitedMs <= 2100, `waited ${budget.stats.maxWaitedMs} ms`);
        // Callers that cannot get a slot within the queue's wait are told at once.
        const refusedLate = outcomes.filter((o) => !o.ok && o.ms > 500);
        assert.equal(refusedLate.length, 0);
      } finally {
        await portal.close();
      }
    });
  }

  it('the sustained rate is the drain rate: slots after the burst are 1/perSecond apart', async () => {
    const budget = new PortalBudget({ portalKey: 'p2', limits: { burst: 5, perSecond: 20 }, headroom: 0, maxWaitMs: 5000 });
    const times: number[] = [];
    const started = Date.now();
    await Promise.all(Array.from({ length: 15 }, () => budget.acquire('m').then(() => times.push(Date.now() - started))));
    times.sort((a, b) => a - b);
    assert.ok(times[4] < 100, `burst of 5 at once: ${times}`);
    assert.ok(times[14] >= 10 * 50 - 5 && times[14] < 10 * 50 + 400, `10 more at 20/s: ${times}`);
    for (let k = 0; k < 10; k++) assert.ok(times[5 + k] >= 50 * (k + 1) - 5, `never before its slot: ${times}`);
  });

  it('PortalBudgets: one budget per portal, shared by every caller; new limits apply', () => {
    const budgets = new PortalBudgets({ maxWaitMs: 1000 });
    const a = budgets.get('7', { burst: 50, perSecond: 2 });
    assert.equal(budgets.get('7', { burst: 50, perSecond: 2 }), a);
    assert.equal(a.capacity, 48);
    budgets.get('7', { burst: 250, perSecond: 5 });
    assert.equal(a.capacity, 245);
    assert.notEqual(budgets.get('8'), a);
    assert.throws(() => budgets.get('9', { burst: 0, perSecond: 2 }), RangeError);
    assert.throws(() => budgets.get('9', { burst: 5, perSecond: 0 }), RangeError);
  });
});

describe('request budget: QUERY_LIMIT_EXCEEDED and OPERATION_TIME_LIMIT from the portal', () => {
  it('QUERY_LIMIT_EXCEEDED: backs off and sends again within the wait; the bucket is marked full', async () => {
    let refuse = 2;
    const stub = await startStub((_req, res) => (refuse-- > 0 ? reply(res, 503, { error: 'QUERY_LIMIT_EXCEEDED', error_description: 'Too many requests' }) : reply(res, 200, { result: true })));
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const budget = new PortalBudget({ portalKey: 'q1', limits: { burst: 50, perSecond: 10 }, maxWaitMs: 3000, backoffBaseMs: 20 });
      const answer = await budget.run('crm.type.get', () => client.call('crm.type.get', { id: 1 }));
      assert.equal(answer.result, true);
      assert.equal(stub.requests.length, 3);
      assert.equal(budget.stats.queryLimitHits, 2);
      // Marked full: the next request waits about one interval (100 ms) instead of going at once.
      const started = Date.now();
      await budget.acquire('crm.type.get');
      assert.ok(Date.now() - started >= 50, `waited ${Date.now() - started} ms`);
    } finally {
      await stub.close();
    }
  });

  it('QUERY_LIMIT_EXCEEDED that persists: QUEUE_TIMEOUT with retryAfter, within the wait', async () => {
    const stub = await startStub((_req, res) => reply(res, 503, { error: 'QUERY_LIMIT_EXCEEDED', error_description: 'Too many requests' }));
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const budget = new PortalBudget({ portalKey: 'q2', limits: { burst: 50, perSecond: 10 }, maxWaitMs: 400, backoffBaseMs: 50 });
      const started = Date.now();
      const error = await budget.run('crm.type.get', () => client.call('crm.type.get')).catch((e) => e);
      assert.ok(error instanceof ApiError && error.code === 'QUEUE_TIMEOUT', String(error));
      assert.ok(error.retryAfter! >= 1);
      assert.ok(Date.now() - started <= 600, `took ${Date.now() - started} ms`);
      assert.ok(stub.requests.length >= 2 && stub.requests.length <= 5, `${stub.requests.length} tries`);
    } finally {
      await stub.close();
    }
  });

  it('OPERATION_TIME_LIMIT: the method is held until operating_reset_at; other methods go on; then it runs', async () => {
    const resetAt = Math.floor(Date.now() / 1000) + 1; // 0..1 s from now
    const stub = await startStub((req, res) => {
      if (req.url.endsWith('/crm.type.list.json') && Date.now() < resetAt * 1000) {
        return reply(res, 429, { error: 'OPERATION_TIME_LIMIT', error_description: 'Method is blocked due to operation time limit.', time: { ...TIME, operating: 481, operating_reset_at: resetAt } });
      }
      reply(res, 200, { result: req.url.split('/').at(-1), time: { ...TIME, operating_reset_at: resetAt } });
    });
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const budget = new PortalBudget({ portalKey: 'o1', limits: { burst: 50, perSecond: 50 }, maxWaitMs: 3000 });
      const first = budget.run('crm.type.list', () => client.call('crm.type.list'));
      while (budget.stats.holds === 0) await sleep(5);
      // During the hold: other list calls wait here instead of going to the portal; get goes on.
      const more = Array.from({ length: 5 }, () => budget.run('crm.type.list', () => client.call('crm.type.list')));
      const get = await budget.run('crm.type.get', () => client.call('crm.type.get'));
      assert.equal(get.result, 'crm.type.get.json');
      await Promise.all([first, ...more]);
      assert.ok(Date.now() >= resetAt * 1000);
      const lists = stub.requests.filter((r) => r.url.endsWith('/crm.type.list.json'));
      assert.equal(lists.length, 1 + 1 + 5, 'one refused try, then the six list calls after the reset');
      assert.equal(budget.stats.holds, 1);
    } finally {
      await stub.close();
    }
  });

  it('OPERATION_TIME_LIMIT longer than the wait: QUEUE_TIMEOUT at once with retryAfter to the reset', async () => {
    const resetAt = Math.floor(Date.now() / 1000) + 30;
    const stub = await startStub((_req, res) => reply(res, 429, { error: 'OPERATION_TIME_LIMIT', error_description: 'blocked', time: { ...TIME, operating_reset_at: resetAt } }));
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const budget = new PortalBudget({ portalKey: 'o2', limits: { burst: 50, perSecond: 50 }, maxWaitMs: 2000 });
      const started = Date.now();
      const error = await budget.run('crm.type.list', () => client.call('crm.type.list')).catch((e) => e);
      assert.ok(error instanceof ApiError && error.code === 'QUEUE_TIMEOUT');
      assert.ok(error.retryAfter! >= 28 && error.retryAfter! <= 31, `retryAfter ${error.retryAfter}`);
      assert.ok(Date.now() - started < 500);
      const again = await budget.run('crm.type.list', () => client.call('crm.type.list')).catch((e) => e);
      assert.ok(again instanceof ApiError && again.code === 'QUEUE_TIMEOUT');
      assert.equal(stub.requests.length, 1, 'held calls do not reach the portal');
    } finally {
      await stub.close();
    }
  });

  it('OPERATION_TIME_LIMIT without a time block: the last successful answer tells the reset; else 60 s', async () => {
    const resetAt = Math.floor(Date.now() / 1000) + 20;
    let blocked = false;
    const stub = await startStub((_req, res) => (blocked ? reply(res, 429, { error: 'OPERATION_TIME_LIMIT', error_description: 'blocked' }) : reply(res, 200, { result: 1, time: { ...TIME, operating_reset_at: resetAt } })));
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const budget = new PortalBudget({ portalKey: 'o3', limits: { burst: 50, perSecond: 50 }, maxWaitMs: 1000 });
      await budget.run('crm.type.list', () => client.call('crm.type.list'));
      blocked = true;
      const error = await budget.run('crm.type.list', () => client.call('crm.type.list')).catch((e) => e);
      assert.ok(error.retryAfter >= 18 && error.retryAfter <= 21, `retryAfter ${error.retryAfter}`);
      const unknown = await budget.run('crm.type.fields', () => client.call('crm.type.fields')).catch((e) => e);
      assert.ok(unknown.retryAfter >= 59 && unknown.retryAfter <= 60, `retryAfter ${unknown.retryAfter}`);
    } finally {
      await stub.close();
    }
  });

  it('other failures pass unchanged and take no second slot', async () => {
    const stub = await startStub((_req, res) => reply(res, 400, { error: 0, error_description: 'SPA not found' }));
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const budget = new PortalBudget({ portalKey: 'f1', limits: { burst: 50, perSecond: 2 } });
      const error = await budget.run('crm.type.get', () => client.call('crm.type.get', { id: 5 })).catch((e) => e);
      assert.equal(error.kind, 'not_found');
      assert.equal(stub.requests.length, 1);
      assert.equal(budget.stats.admitted, 1);
    } finally {
      await stub.close();
    }
  });
});

const redisSkip = await redisProblem();

describe('request budget in Redis: shared by instances', { skip: redisSkip ? `needs Redis: ${redisSkip}` : false }, () => {
  const prefix = testPrefix('budget');
  let a: Redis;
  let b: Redis;
  before(() => {
    a = redisClient();
    b = redisClient();
  });
  after(async () => {
    await deleteByPrefix(a, prefix);
    a.disconnect();
    b.disconnect();
  });

  it('two budget objects on one Redis, 300 concurrent callers of a 50/2 portal: never more than the bucket', async (t) => {
    const portal = await leakyPortal({ burst: 50, perSecond: 2 }, 'discrete');
    try {
      const one = new PortalBudget({ portalKey: 'r1', limits: { burst: 50, perSecond: 2 }, maxWaitMs: 2000, redis: a, keyPrefix: prefix });
      const two = new PortalBudget({ portalKey: 'r1', limits: { burst: 50, perSecond: 2 }, maxWaitMs: 2000, redis: b, keyPrefix: prefix });
      // Both instances are running (their connections up, scripts loaded) before the crowd comes.
      for (const redis of [a, b]) await new PortalBudget({ portalKey: 'warm-up', redis, keyPrefix: prefix }).acquire('m');
      const outcomes = await crowd(300, (i) => (i % 2 ? one : two).run('crm.type.get', () => portal.client.call('crm.type.get', { id: i })));
      const { ok, timeouts, other } = tally(outcomes);
      t.diagnostic(`two instances: ${ok} served (${one.stats.admitted} + ${two.stats.admitted}), ${timeouts} QUEUE_TIMEOUT, 503s ${portal.state.refused}, highest counter ${portal.state.max}, fallbacks ${one.stats.redisFallbacks + two.stats.redisFallbacks}`);
      assert.deepEqual(other, []);
      assert.equal(portal.state.refused, 0);
      assert.ok(portal.state.max <= 50, `counter reached ${portal.state.max}`);
      assert.equal(ok + timeouts, 300);
      assert.ok(ok >= 51 && ok <= 53, `${ok} served`);
      assert.ok(one.stats.admitted > 0 && two.stats.admitted > 0, 'both instances were served');
      assert.equal(one.stats.redisFallbacks + two.stats.redisFallbacks, 0);
      assert.equal(one.backend, 'redis');
    } finally {
      await portal.close();
    }
  });

  it('a hold learned by one instance keeps the other from calling the method', async () => {
    const resetAt = Math.floor(Date.now() / 1000) + 30;
    const stub = await startStub((_req, res) => reply(res, 429, { error: 'OPERATION_TIME_LIMIT', error_description: 'blocked', time: { ...TIME, operating_reset_at: resetAt } }));
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const one = new PortalBudget({ portalKey: 'r2', limits: { burst: 50, perSecond: 50 }, maxWaitMs: 1000, redis: a, keyPrefix: prefix });
      const two = new PortalBudget({ portalKey: 'r2', limits: { burst: 50, perSecond: 50 }, maxWaitMs: 1000, redis: b, keyPrefix: prefix });
      await one.run('crm.type.list', () => client.call('crm.type.list')).catch(() => {});
      const error = await two.run('crm.type.list', () => client.call('crm.type.list')).catch((e) => e);
      assert.ok(error instanceof ApiError && error.code === 'QUEUE_TIMEOUT' && error.retryAfter! >= 28);
      assert.equal(stub.requests.length, 1);
      await two.run('crm.type.get', async () => 'other methods go on');
    } finally {
      await stub.close();
    }
  });
});

describe('request budget: Redis unreachable -> memory within ~100 ms, never hanging', () => {
  it('a Redis that never answered: each call falls back at once', async () => {
    const dead = new Redis(`redis://127.0.0.1:${await freePort()}`, { maxRetriesPerRequest: 3, enableOfflineQueue: true, retryStrategy: () => 100 });
    dead.on('error', () => {});
    try {
      const budget = new PortalBudget({ portalKey: 'd1', limits: { burst: 50, perSecond: 20 }, redis: dead, keyPrefix: 'smartproc-test:dead', redisTimeoutMs: 100 });
      const started = Date.now();
      await budget.acquire('crm.type.get');
      const first = Date.now() - started;
      assert.ok(first < 400, `first call took ${first} ms`);
      // Memory starts full (the shared bucket may be): the next ones come at the drain rate (50 ms apart).
      await Promise.all(Array.from({ length: 10 }, () => budget.acquire('crm.type.get')));
      const took = Date.now() - started;
      assert.ok(took >= 450 && took < 1500, `took ${took} ms`);
      assert.equal(budget.backend, 'memory');
      assert.ok(budget.stats.redisFallbacks >= 1);
    } finally {
      dead.disconnect();
    }
  });

  it('a private Redis killed mid-way: calls go on from memory, and Redis is used again when back', async (t) => {
    const redis = await startPrivateRedis();
    if (!redis) return t.skip('redis-server is not installed');
    const conn = new Redis(redis.url, { maxRetriesPerRequest: 1, enableOfflineQueue: true, retryStrategy: () => 50 });
    let back: Awaited<ReturnType<typeof startPrivateRedis>> = null;
    conn.on('error', () => {});
    try {
      const budget = new PortalBudget({ portalKey: 'k1', limits: { burst: 50, perSecond: 50 }, redis: conn, keyPrefix: 'smartproc-test:kill', redisTimeoutMs: 100, redisRetryMs: 200 });
      await budget.acquire('m');
      assert.equal(budget.backend, 'redis');
      await redis.stop();
      const started = Date.now();
      await budget.acquire('m');
      const took = Date.now() - started;
      t.diagnostic(`first call after the kill took ${took} ms`);
      assert.ok(took < 400, `took ${took} ms`); // 100 ms Redis timeout + one interval of the full memory bucket (20 ms)
      assert.equal(budget.backend, 'memory');
      for (let i = 0; i < 5; i++) await budget.acquire('m');
      assert.ok(budget.stats.redisFallbacks >= 1);
      back = await startPrivateRedis(redis.port);
      assert.ok(back, 'redis-server restarted on its port');
      await sleep(300); // past redisRetryMs; ioredis reconnects meanwhile
      for (let i = 0; i < 20 && budget.backend === 'memory'; i++) await sleep(50);
      await budget.acquire('m');
      await budget.acquire('m');
      assert.equal(budget.backend, 'redis');
      const tat = Number(await conn.get('smartproc-test:kill:budget:{k1}:tat'));
      assert.ok(tat > Date.now() * 1000 - 1_000_000, 'the Redis bucket carries on from what memory let through');
    } finally {
      conn.disconnect();
      await redis.stop();
      await back?.stop();
    }
  });
});
