import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { LogThrottle, stderrLog, type WarnLog } from '../log-throttle.js';
import { REDIS_TIMEOUT_MS, withTimeout } from './redis.js';

export interface RateLimitState {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Epoch seconds at which the window resets. */
  resetAt: number;
  /** Seconds to wait when refused. */
  retryAfter: number;
}

/** The window of one key in memory. */
interface Window {
  points: number;
  consumed: number;
  endsAt: number;
}

export interface KeyRateLimiterOptions {
  /** Most windows held in memory. */
  maxWindows?: number;
  /** The longest a request waits for Redis before it is counted in memory. */
  redisTimeoutMs?: number;
  log?: WarnLog;
}

/** After Redis failed to count a request, it is not asked again for this long (each request would wait the timeout). */
const REDIS_PAUSE_MS = 1000;

/**
 * Per-key requests-per-second limits: a fixed 1-second window that starts with a key's
 * first request in it.
 *
 * - One instance: counted in memory, synchronously. This is the same window as
 *   rate-limiter-flexible's RateLimiterMemory, without its promise, timer and result
 *   object per request: the limiter sits on the path of every request of a limited key,
 *   and the bench measured its cost against the 0.9 target (d/a).
 * - With REDIS_URL: rate-limiter-flexible's RateLimiterRedis, so that every instance
 *   counts against the same window. While Redis is not connected, or when it has not
 *   answered within `redisTimeoutMs` (100 ms; then it is left alone for a second), the
 *   request is counted in the same in-memory window: each instance then enforces the
 *   limit on its own. Once Redis is back, requests are counted there again.
 */
export class KeyRateLimiter {
  private readonly limiters = new Map<number, RateLimiterRedis>();
  private readonly windows = new Map<string, Window>();
  private readonly maxWindows: number;
  private readonly redisTimeoutMs: number;
  private readonly log: WarnLog;
  private readonly failures = new LogThrottle(10_000);
  private redisPausedUntil = 0;

  constructor(private readonly redis: Redis | null, options: KeyRateLimiterOptions = {}) {
    this.maxWindows = options.maxWindows ?? 100_000;
    this.redisTimeoutMs = options.redisTimeoutMs ?? REDIS_TIMEOUT_MS;
    this.log = options.log ?? stderrLog;
  }

  get backend(): 'memory' | 'redis' {
    return this.redis ? 'redis' : 'memory';
  }

  consume(keyId: string, requestsPerSecond: number): RateLimitState | Promise<RateLimitState> {
    if (!this.redis || this.redis.status !== 'ready' || this.redisPausedUntil > Date.now()) return this.consumeInMemory(keyId, requestsPerSecond);
    return this.consumeInRedis(keyId, requestsPerSecond);
  }

  private consumeInMemory(keyId: string, points: number): RateLimitState {
    const now = Date.now();
    let window = this.windows.get(keyId);
    // A new limit for the key starts a new window, as a new limiter would.
    if (!window || window.endsAt <= now || window.points !== points) {
      if (!window && this.windows.size >= this.maxWindows) this.dropEndedWindows(now);
      window = { points, consumed: 0, endsAt: now + 1000 };
      this.windows.set(keyId, window);
    }
    window.consumed++;
    return state(window.consumed <= points, points, points - window.consumed, window.endsAt - now, now);
  }

  private dropEndedWindows(now: number): void {
    for (const [keyId, window] of this.windows) if (window.endsAt <= now) this.windows.delete(keyId);
    if (this.windows.size >= this.maxWindows) this.windows.clear();
  }

  private async consumeInRedis(keyId: string, requestsPerSecond: number): Promise<RateLimitState> {
    let limiter = this.limiters.get(requestsPerSecond);
    if (!limiter) {
      limiter = new RateLimiterRedis({ points: requestsPerSecond, duration: 1, keyPrefix: `smartproc:rl:${requestsPerSecond}`, storeClient: this.redis!, rejectIfRedisNotReady: true });
      this.limiters.set(requestsPerSecond, limiter);
    }
    let result: RateLimiterRes;
    let allowed = true;
    try {
      result = await withTimeout(limiter.consume(keyId, 1), this.redisTimeoutMs, 'rate limit');
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) return this.redisFailed(refusal, keyId, requestsPerSecond);
      result = refusal;
      allowed = false;
    }
    return state(allowed, requestsPerSecond, result.remainingPoints, result.msBeforeNext, Date.now());
  }

  private redisFailed(error: unknown, keyId: string, requestsPerSecond: number): RateLimitState {
    this.redisPausedUntil = Date.now() + REDIS_PAUSE_MS;
    const held = this.failures.pass();
    if (held !== null) this.log.warn({ err: error, ...(held ? { alsoFailed: held } : {}) }, `Redis could not count a rate-limited request (${error instanceof Error ? error.message : String(error)}); counting in memory for ${REDIS_PAUSE_MS} ms before asking it again`);
    return this.consumeInMemory(keyId, requestsPerSecond);
  }
}

function state(allowed: boolean, limit: number, remaining: number, msBeforeNext: number, now: number): RateLimitState {
  const ms = Math.max(0, msBeforeNext);
  return { allowed, limit, remaining: Math.max(0, remaining), resetAt: Math.ceil((now + ms) / 1000), retryAfter: Math.max(1, Math.ceil(ms / 1000)) };
}
