import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

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

/**
 * Per-key requests-per-second limits: a fixed 1-second window that starts with a key's
 * first request in it.
 *
 * - One instance: counted in memory, synchronously. This is the same window as
 *   rate-limiter-flexible's RateLimiterMemory, without its promise, timer and result
 *   object per request: the limiter sits on the path of every request of a limited key,
 *   and the bench measured its cost against the 0.9 target (d/a).
 * - With REDIS_URL: rate-limiter-flexible's RateLimiterRedis, so that every instance
 *   counts against the same window; if Redis fails, its in-memory insurance limiter
 *   stands in.
 */
export class KeyRateLimiter {
  private readonly limiters = new Map<number, RateLimiterAbstract>();
  private readonly windows = new Map<string, Window>();

  constructor(private readonly redis: Redis | null, private readonly maxWindows = 100_000) {}

  get backend(): 'memory' | 'redis' {
    return this.redis ? 'redis' : 'memory';
  }

  consume(keyId: string, requestsPerSecond: number): RateLimitState | Promise<RateLimitState> {
    return this.redis ? this.consumeInRedis(keyId, requestsPerSecond) : this.consumeInMemory(keyId, requestsPerSecond);
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
      const options = { points: requestsPerSecond, duration: 1, keyPrefix: `smartproc:rl:${requestsPerSecond}` };
      limiter = new RateLimiterRedis({ ...options, storeClient: this.redis!, insuranceLimiter: new RateLimiterMemory(options) });
      this.limiters.set(requestsPerSecond, limiter);
    }
    let result: RateLimiterRes;
    let allowed = true;
    try {
      result = await limiter.consume(keyId, 1);
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) throw refusal;
      result = refusal;
      allowed = false;
    }
    return state(allowed, requestsPerSecond, result.remainingPoints, result.msBeforeNext, Date.now());
  }
}

function state(allowed: boolean, limit: number, remaining: number, msBeforeNext: number, now: number): RateLimitState {
  const ms = Math.max(0, msBeforeNext);
  return { allowed, limit, remaining: Math.max(0, remaining), resetAt: Math.ceil((now + ms) / 1000), retryAfter: Math.max(1, Math.ceil(ms / 1000)) };
}
