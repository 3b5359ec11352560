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

/**
 * Per-key requests-per-second limits (rate-limiter-flexible). In memory for one
 * instance; in Redis when REDIS_URL is set, so that every instance counts against
 * the same window. If Redis fails, an in-memory limiter stands in (insurance).
 */
export class KeyRateLimiter {
  private readonly limiters = new Map<number, RateLimiterAbstract>();

  constructor(private readonly redis: Redis | null) {}

  get backend(): 'memory' | 'redis' {
    return this.redis ? 'redis' : 'memory';
  }

  private limiterFor(points: number): RateLimiterAbstract {
    let limiter = this.limiters.get(points);
    if (!limiter) {
      const options = { points, duration: 1, keyPrefix: `smartproc:rl:${points}` };
      limiter = this.redis
        ? new RateLimiterRedis({ ...options, storeClient: this.redis, insuranceLimiter: new RateLimiterMemory(options) })
        : new RateLimiterMemory(options);
      this.limiters.set(points, limiter);
    }
    return limiter;
  }

  async consume(keyId: string, requestsPerSecond: number): Promise<RateLimitState> {
    const limiter = this.limiterFor(requestsPerSecond);
    let result: RateLimiterRes;
    let allowed = true;
    try {
      result = await limiter.consume(keyId, 1);
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) throw refusal;
      result = refusal;
      allowed = false;
    }
    const msBeforeNext = Math.max(0, result.msBeforeNext);
    return {
      allowed,
      limit: requestsPerSecond,
      remaining: Math.max(0, result.remainingPoints),
      resetAt: Math.ceil((Date.now() + msBeforeNext) / 1000),
      retryAfter: Math.max(1, Math.ceil(msBeforeNext / 1000)),
    };
  }
}
