import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { KeyRateLimiter, type RateLimitState } from '../../src/access/rate-limiter.js';

/** The in-memory limiter (one instance, no REDIS_URL); the Redis one is exercised by test/access/multi-instance.test.ts. */
describe('per-key rate limit in memory: a fixed 1-second window from the first request', () => {
  beforeEach(() => mock.timers.enable({ apis: ['Date'], now: 1_790_000_000_250 }));
  afterEach(() => mock.timers.reset());

  /** In memory the answer is there at once (no promise). */
  const consume = (limiter: KeyRateLimiter, key: string, limit: number): RateLimitState => {
    const answer = limiter.consume(key, limit);
    assert.ok(!(answer instanceof Promise));
    return answer;
  };

  it('allows `limit` requests in the window, counts remaining down and refuses the next with retryAfter', () => {
    const limiter = new KeyRateLimiter(null);
    const answers = [1, 2, 3, 4].map(() => consume(limiter, 'k1', 3));
    assert.deepEqual(answers.map((a) => [a.allowed, a.remaining]), [[true, 2], [true, 1], [true, 0], [false, 0]]);
    assert.deepEqual(answers.map((a) => [a.limit, a.resetAt, a.retryAfter]), Array(4).fill([3, 1_790_000_002, 1]));
  });

  it('the window ends one second after its first request; the next request starts a new one', () => {
    const limiter = new KeyRateLimiter(null);
    assert.equal(consume(limiter, 'k1', 1).allowed, true);
    mock.timers.tick(999);
    assert.equal(consume(limiter, 'k1', 1).allowed, false);
    mock.timers.tick(1);
    const fresh = consume(limiter, 'k1', 1);
    assert.deepEqual([fresh.allowed, fresh.remaining, fresh.resetAt], [true, 0, 1_790_000_003]);
  });

  it('keys are counted apart, and a changed limit starts a new window', () => {
    const limiter = new KeyRateLimiter(null);
    consume(limiter, 'k1', 1);
    assert.equal(consume(limiter, 'k2', 1).allowed, true);
    assert.equal(consume(limiter, 'k1', 1).allowed, false);
    assert.equal(consume(limiter, 'k1', 5).remaining, 4);
  });

  it('holds a bounded number of windows: ended ones are dropped first', () => {
    const limiter = new KeyRateLimiter(null, { maxWindows: 3 });
    for (const key of ['a', 'b', 'c']) consume(limiter, key, 1);
    mock.timers.tick(1000);
    consume(limiter, 'd', 1);
    const windows = (limiter as unknown as { windows: Map<string, unknown> }).windows;
    assert.deepEqual([...windows.keys()], ['d']);
  });
});
