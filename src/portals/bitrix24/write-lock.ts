/**
 * The write lock of one smart process type across server instances (docs/bitrix24.md
 * "Writes and If-Match"). Bitrix24 has no conditional update, so an If-Match check (and
 * the code and relation pre-checks) hold only if no other write of the same type runs
 * between the fresh read and the write. Inside one instance the portal's writes queue
 * (bitrix24-portal.ts); across instances this lock in Redis serialises check + write per
 * (Bitrix24 portal, entityTypeId).
 *
 * - Taken with `SET key token NX PX ttl` (a random token per holder); kept alive while the
 *   work runs by renewing the TTL every ttl/3 with a script that extends it only while it
 *   still holds our token; released with a script that deletes it only while it holds our
 *   token (a lock that expired and was taken over is never released by the old holder).
 *   A holder that dies frees it within the TTL.
 * - A taken lock is polled (jittered) until the request's deadline, then 504 QUEUE_TIMEOUT
 *   with retryAfter (the same bound as the portal's budget: one deadline per request).
 * - Redis not connected (or not answering within opTimeoutMs): the write goes on with the
 *   instance's own queue only, and a warning is logged (at most one per 10 s): availability
 *   over the cross-instance guarantee, which then holds only per instance.
 *
 * Named by the Bitrix24 portal (its domain) and the type, not by smartproc's portal id, and
 * not namespaced per deployment: two deployments writing the same real type must queue too.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError } from '../../errors.js';
import { LogThrottle, type WarnLog } from '../../log-throttle.js';
import { withTimeout } from '../../access/redis.js';

const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
const RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

export interface WriteLockOptions {
  /** Key prefix, default `smartproc:b24`. */
  prefix?: string;
  /** How long a lock lives without renewal (ms), default 5000. */
  ttlMs?: number;
  /** A Redis call slower than this counts as Redis away (ms), default 200. */
  opTimeoutMs?: number;
  /** How often a taken lock is tried again (ms, jittered), default 40. */
  pollMs?: number;
  log?: WarnLog;
}

/** ioredis states in which the connection is known to be lost (a connection still being made is waited for, within opTimeoutMs). */
const DOWN_STATES = new Set(['reconnecting', 'close', 'end']);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class RedisWriteLock {
  private readonly unlocked = new LogThrottle(10_000);
  readonly stats = { acquired: 0, waited: 0, timedOut: 0, withoutRedis: 0, lost: 0 };

  constructor(
    private readonly redis: Redis,
    private readonly options: WriteLockOptions = {},
  ) {}

  private keyOf(name: string): string {
    return `${this.options.prefix ?? 'smartproc:b24'}:write-lock:{${name}}`;
  }

  /**
   * Runs `work` holding the lock `name`; waits for another holder until `deadline` (epoch
   * ms), then throws 504 QUEUE_TIMEOUT. Without a reachable Redis, runs `work` as it is.
   */
  async run<T>(name: string, deadline: number, work: () => Promise<T>): Promise<T> {
    const key = this.keyOf(name);
    const token = randomUUID();
    const ttlMs = this.options.ttlMs ?? 5000;
    const opTimeoutMs = this.options.opTimeoutMs ?? 200;
    let waited = false;
    for (;;) {
      let answer: string | null;
      try {
        if (DOWN_STATES.has(this.redis.status)) throw new Error(`Redis connection is ${this.redis.status}`);
        answer = await withTimeout(this.redis.set(key, token, 'PX', ttlMs, 'NX'), opTimeoutMs, 'write lock');
      } catch (error) {
        this.stats.withoutRedis++;
        const held = this.unlocked.pass();
        if (held !== null) this.options.log?.warn({ err: error, lock: name, ...(held ? { alsoWithoutLock: held } : {}) }, 'bitrix24 write lock: Redis unavailable; writes of one type are serialised per instance only');
        return work();
      }
      if (answer === 'OK') break;
      if (!waited) {
        waited = true;
        this.stats.waited++;
      }
      const pause = (this.options.pollMs ?? 40) * (0.5 + Math.random());
      if (Date.now() + pause >= deadline) {
        this.stats.timedOut++;
        const pttl = await withTimeout(this.redis.pttl(key), opTimeoutMs, 'write lock').catch(() => ttlMs);
        const retryAfter = Math.max(1, Math.ceil((pttl > 0 ? pttl : 1000) / 1000));
        throw new ApiError('QUEUE_TIMEOUT', "Another write of this smart process type (on another server instance) did not finish within the request's wait limit", {
          retryAfter,
          hint: `Retry after ${retryAfter} s; writes of one type run one at a time, so that If-Match and the portal rules hold.`,
        });
      }
      await sleep(pause);
    }
    this.stats.acquired++;
    const renewal = setInterval(() => {
      withTimeout(this.redis.eval(RENEW, 1, key, token, String(ttlMs)) as Promise<number>, opTimeoutMs * 5, 'write lock').then(
        (kept) => {
          if (Number(kept) !== 1) {
            this.stats.lost++;
            this.options.log?.warn({ lock: name }, 'bitrix24 write lock: lost while the write ran (Redis did not keep it); another instance may write the same type meanwhile');
          }
        },
        () => {},
      );
    }, Math.max(50, Math.floor(ttlMs / 3)));
    renewal.unref();
    try {
      return await work();
    } finally {
      clearInterval(renewal);
      await withTimeout(this.redis.eval(RELEASE, 1, key, token) as Promise<number>, opTimeoutMs * 5, 'write lock').catch(() => {}); // else the TTL ends it
    }
  }
}
