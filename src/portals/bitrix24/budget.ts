/**
 * The request budget of one Bitrix24 portal (issue 9 item 3): never send the portal more
 * than its leaky bucket takes, whoever sends (every key, every instance).
 *
 * The portal (settings/performance/limits.md): each request adds 1 to a counter that
 * drops by `perSecond` once per second; above `burst` requests get 503
 * QUERY_LIMIT_EXCEEDED. Separately, a method whose accumulated run time passes its
 * budget gets 429 OPERATION_TIME_LIMIT until `operating_reset_at`.
 *
 * Algorithm: GCRA (virtual scheduling), a leaky bucket kept as one number, the
 * theoretical arrival time TAT. With interval I = 1/perSecond and capacity C, a request
 * may go at s >= TAT - (C-1)*I, and then TAT = max(TAT, s) + I. Every caller *reserves*
 * the next free slot at once and learns how long to wait for it; it sleeps that long and
 * then sends. Reservations are first come, first served; one that would wait longer
 * than the queue allows (maxWaitMs, default 10 s) is refused at once, without
 * reserving, as 504 QUEUE_TIMEOUT with `retryAfter` = when a slot will be free.
 *
 * Capacity C = burst - headroom (headroom default ceil(perSecond)): the portal drains
 * once per second, not continuously, so right before its tick its counter can be up to
 * `perSecond` above a continuous model; the headroom absorbs that, so a budget with the
 * portal's own numbers never trips it.
 *
 * Where the TAT lives:
 * - no Redis: in this object (one instance);
 * - Redis: one key per portal, read and moved by one Lua script that also checks the
 *   method's OPERATION_TIME_LIMIT hold (one round trip, atomic, Redis's clock for all
 *   instances). Waits are relative, so instance clocks do not matter.
 * - Redis unreachable or slower than redisTimeoutMs (default 100 ms): the call falls back
 *   to the in-memory bucket at once, which is first marked full (as after a
 *   QUERY_LIMIT_EXCEEDED, so the fallback starts at the drain rate, not with a burst);
 *   Redis is tried again after redisRetryMs (default 1 s), and its TAT is raised to the
 *   in-memory one when it is back. While Redis is down every instance keeps its own
 *   bucket, so N instances may together send up to N times the drain rate; the portal's
 *   QUERY_LIMIT_EXCEEDED is then handled as below. Nothing waits on Redis for longer than
 *   redisTimeoutMs.
 *
 * QUERY_LIMIT_EXCEEDED (someone else uses the portal's bucket too, e.g. another app from
 * the same IP): the request was not executed; the shared bucket is marked full (every
 * caller slows to the drain rate) and the call is sent again after an exponential,
 * jittered back-off, within the same deadline; then QUEUE_TIMEOUT.
 *
 * OPERATION_TIME_LIMIT: the method is held (shared through Redis) until
 * `operating_reset_at` of the error's or else the last successful answer's `time`
 * (60 s when neither is known or it has passed), then the call is sent again; a hold
 * longer than the remaining wait answers QUEUE_TIMEOUT with `retryAfter` at once.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError } from '../../errors.js';
import { Bitrix24Error, type Bitrix24Time } from './rest-client.js';

export interface BudgetLimits {
  /** The portal's X: requests above it are refused (50; Enterprise 250). */
  burst: number;
  /** The portal's Y: how much the counter drops each second (2; Enterprise 5). */
  perSecond: number;
}

export const DEFAULT_BUDGET_LIMITS: BudgetLimits = { burst: 50, perSecond: 2 };
export const DEFAULT_MAX_WAIT_MS = 10_000;

export interface BudgetOptions {
  /** Names the portal (its Redis keys): the same on every instance, e.g. the portal id. */
  portalKey: string;
  limits?: BudgetLimits;
  /** Shared state across instances; null or absent: in memory. */
  redis?: Redis | null;
  keyPrefix?: string;
  /** How long a call may wait for a slot (the bounded queue), default 10 s. */
  maxWaitMs?: number;
  /** Requests kept free below `burst`, default ceil(perSecond). */
  headroom?: number;
  /** A Redis call slower than this falls back to memory, default 100 ms. */
  redisTimeoutMs?: number;
  /** After a Redis failure, memory is used for this long before Redis is tried again, default 1 s. */
  redisRetryMs?: number;
  /** OPERATION_TIME_LIMIT hold when no reset time is known, default 60 s. */
  defaultHoldMs?: number;
  /** Back-off after QUERY_LIMIT_EXCEEDED: first step and cap (ms), default 500 and 8000. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Told when Redis failed and memory stands in (for a log line). */
  onRedisFallback?: (error: unknown) => void;
}

export interface RunOptions {
  /** Overrides maxWaitMs for this call. */
  maxWaitMs?: number;
  /**
   * The client request's deadline (epoch ms): one bound for every native call of one client
   * request (startedAt + maxWaitMs), so that a request making several calls never waits
   * longer in total than the queue allows. The earlier of this and now + maxWaitMs holds.
   */
  deadline?: number;
}

/** What a reservation answered: a slot after waitMs; the method held for waitMs; or no slot within the queue (refused). */
type Reservation = { kind: 'slot' | 'held' | 'refused'; waitMs: number };

interface Bucket {
  /** interval (µs per request), tolerance ((C-1) * interval, µs) */
  intervalUs: number;
  toleranceUs: number;
  capacity: number;
}

interface Backend {
  reserve(method: string, bucket: Bucket, maxWaitMs: number): Promise<Reservation> | Reservation;
  /** The bucket is full now (after QUERY_LIMIT_EXCEEDED): TAT >= now + C * I. */
  markFull(bucket: Bucket): Promise<void> | void;
  /** Raises TAT to at least this epoch (µs). */
  raiseTo(tatUs: number): Promise<void> | void;
  hold(method: string, untilMs: number): Promise<void> | void;
  /** The TAT as epoch µs (0 when unknown). */
  tat(): Promise<number> | number;
}

const nowUs = () => Date.now() * 1000;

class MemoryBackend implements Backend {
  private tatUs = 0;
  private readonly holds = new Map<string, number>();

  reserve(method: string, bucket: Bucket, maxWaitMs: number): Reservation {
    const now = nowUs();
    const hold = this.holds.get(method) ?? 0;
    if (hold > now) return { kind: 'held', waitMs: Math.ceil((hold - now) / 1000) };
    if (hold) this.holds.delete(method);
    const tat = Math.max(this.tatUs, now);
    const waitUs = Math.max(0, tat - bucket.toleranceUs - now);
    if (waitUs > maxWaitMs * 1000) return { kind: 'refused', waitMs: Math.ceil(waitUs / 1000) };
    this.tatUs = tat + bucket.intervalUs;
    return { kind: 'slot', waitMs: Math.ceil(waitUs / 1000) };
  }

  markFull(bucket: Bucket): void {
    this.tatUs = Math.max(this.tatUs, nowUs() + bucket.capacity * bucket.intervalUs);
  }

  raiseTo(tatUs: number): void {
    this.tatUs = Math.max(this.tatUs, tatUs);
  }

  hold(method: string, untilMs: number): void {
    this.holds.set(method, Math.max(this.holds.get(method) ?? 0, untilMs * 1000));
  }

  tat(): number {
    return this.tatUs;
  }
}

// KEYS[1] the TAT (epoch µs), KEYS[2] the method's hold (epoch µs).
// ARGV: interval µs, tolerance µs, max wait µs. Returns {kind, wait ms}: 1 slot, 2 held, 0 refused.
const RESERVE = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > now then return {2, math.ceil((hold - now) / 1000)} end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local maxWait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > maxWait then return {0, math.ceil(wait / 1000)} end
local nextTat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', nextTat), 'PX', math.ceil((nextTat - now) / 1000) + 1000)
return {1, math.ceil(wait / 1000)}
`;

// KEYS[1] the TAT. ARGV[1]: 'full' with ARGV[2] = capacity * interval µs, or 'abs' with ARGV[2] = epoch µs.
const RAISE = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local target = tonumber(ARGV[2])
if ARGV[1] == 'full' then target = now + target end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if target > tat and target > now then
  redis.call('SET', KEYS[1], string.format('%.0f', target), 'PX', math.ceil((target - now) / 1000) + 1000)
end
return 1
`;

// KEYS[1] the hold. ARGV[1] until (epoch µs). Keeps the later of two holds.
const HOLD = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untilUs = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilUs > current and untilUs > now then
  redis.call('SET', KEYS[1], string.format('%.0f', untilUs), 'PX', math.ceil((untilUs - now) / 1000) + 1000)
end
return 1
`;

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');
const SCRIPTS = { reserve: { text: RESERVE, sha: sha1(RESERVE) }, raise: { text: RAISE, sha: sha1(RAISE) }, hold: { text: HOLD, sha: sha1(HOLD) } };

/** Script loads per Redis connection (shared by the budgets of every portal on it). */
const scriptLoads = new WeakMap<Redis, Promise<unknown>>();

class RedisBackend implements Backend {
  constructor(
    readonly redis: Redis,
    private readonly base: string,
  ) {}

  /** Loads the scripts once per connection (a burst of first calls must not all meet NOSCRIPT and resend them). */
  private load(): Promise<unknown> {
    let loading = scriptLoads.get(this.redis);
    if (!loading) {
      loading = Promise.all(Object.values(SCRIPTS).map((script) => this.redis.script('LOAD', script.text)));
      loading.catch(() => scriptLoads.delete(this.redis));
      scriptLoads.set(this.redis, loading);
    }
    return loading;
  }

  private async script(name: keyof typeof SCRIPTS, keys: string[], args: (string | number)[]): Promise<unknown> {
    const { text, sha } = SCRIPTS[name];
    await this.load();
    try {
      return await this.redis.evalsha(sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!String((error as Error)?.message).includes('NOSCRIPT')) throw error;
      scriptLoads.delete(this.redis); // Redis restarted and lost its script cache
      return this.redis.eval(text, keys.length, ...keys, ...args);
    }
  }

  private holdKey(method: string): string {
    return `${this.base}:hold:${method}`;
  }

  async reserve(method: string, bucket: Bucket, maxWaitMs: number): Promise<Reservation> {
    const answer = (await this.script('reserve', [`${this.base}:tat`, this.holdKey(method)], [bucket.intervalUs, bucket.toleranceUs, Math.floor(maxWaitMs * 1000)])) as [number, number];
    const kind = answer[0] === 1 ? 'slot' : answer[0] === 2 ? 'held' : 'refused';
    return { kind, waitMs: Number(answer[1]) };
  }

  async markFull(bucket: Bucket): Promise<void> {
    await this.script('raise', [`${this.base}:tat`], ['full', bucket.capacity * bucket.intervalUs]);
  }

  async raiseTo(tatUs: number): Promise<void> {
    await this.script('raise', [`${this.base}:tat`], ['abs', Math.ceil(tatUs)]);
  }

  async hold(method: string, untilMs: number): Promise<void> {
    await this.script('hold', [this.holdKey(method)], [Math.ceil(untilMs * 1000)]);
  }

  async tat(): Promise<number> {
    return Number((await this.redis.get(`${this.base}:tat`)) ?? 0);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Bounds a Redis call. When the timer fires, pending I/O is given one turn first
 * (setImmediate): after the event loop was blocked, the timer phase runs before the
 * answer that already arrived is read, and that must not count as "Redis is down".
 */
function withTimeout<T>(value: Promise<T> | T, ms: number): Promise<T> {
  if (!(value instanceof Promise)) return Promise.resolve(value);
  value.catch(() => {}); // a late failure after the timeout must not be unhandled
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    value,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => setImmediate(() => reject(new Error(`Redis did not answer within ${ms} ms`))), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** ioredis states in which the connection is known to be lost: no point in waiting. */
const DOWN_STATES = new Set(['reconnecting', 'close', 'end']);

function validLimits(limits: BudgetLimits): BudgetLimits {
  if (!Number.isInteger(limits.burst) || limits.burst < 1) throw new RangeError(`burst must be a positive integer, got ${limits.burst}`);
  if (!Number.isFinite(limits.perSecond) || limits.perSecond <= 0) throw new RangeError(`perSecond must be a positive number, got ${limits.perSecond}`);
  return { burst: limits.burst, perSecond: limits.perSecond };
}

export class PortalBudget {
  private limits: BudgetLimits;
  private bucket!: Bucket;
  private readonly memory = new MemoryBackend();
  private readonly redis: RedisBackend | null;
  private redisDownUntil = 0;
  private onMemorySince = 0;
  /** Local mirror of holds this instance learned (saves a round trip while one lasts). */
  private readonly holds = new Map<string, number>();
  /** operating_reset_at (epoch ms) of each method's last successful answer. */
  private readonly resetAt = new Map<string, number>();
  readonly maxWaitMs: number;
  readonly stats = { admitted: 0, refused: 0, queryLimitHits: 0, holds: 0, redisFallbacks: 0, maxWaitedMs: 0 };

  constructor(private readonly options: BudgetOptions) {
    this.limits = validLimits(options.limits ?? DEFAULT_BUDGET_LIMITS);
    this.setLimits(this.limits);
    this.maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
    this.redis = options.redis ? new RedisBackend(options.redis, `${options.keyPrefix ?? 'smartproc:b24'}:budget:{${options.portalKey}}`) : null;
  }

  /** The portal's numbers changed (PATCH of its limits). */
  setLimits(limits: BudgetLimits): void {
    this.limits = validLimits(limits);
    const headroom = this.options.headroom ?? Math.ceil(this.limits.perSecond);
    const capacity = Math.max(1, this.limits.burst - headroom);
    const intervalUs = Math.round(1_000_000 / this.limits.perSecond);
    this.bucket = { intervalUs, toleranceUs: (capacity - 1) * intervalUs, capacity };
  }

  get capacity(): number {
    return this.bucket.capacity;
  }

  /** Where the last bucket operation was done. */
  get backend(): 'redis' | 'memory' {
    return this.redis && !this.onMemorySince ? 'redis' : 'memory';
  }

  /**
   * Runs one request to the portal inside the budget: waits for a slot (and for a hold
   * of the method), sends, and handles QUERY_LIMIT_EXCEEDED and OPERATION_TIME_LIMIT as
   * the header says. Every try takes its own slot. Throws ApiError QUEUE_TIMEOUT when
   * the wait would exceed maxWaitMs; other failures of `fn` pass unchanged.
   */
  async run<T>(method: string, fn: () => Promise<T>, options: RunOptions = {}): Promise<T> {
    const deadline = Math.min(Date.now() + (options.maxWaitMs ?? this.maxWaitMs), options.deadline ?? Number.POSITIVE_INFINITY);
    let queryLimitHits = 0;
    for (;;) {
      await this.acquire(method, deadline);
      try {
        const result = await fn();
        this.noteResult(method, result);
        return result;
      } catch (error) {
        if (!(error instanceof Bitrix24Error)) throw error;
        if (error.kind === 'query_limit') {
          queryLimitHits++;
          this.stats.queryLimitHits++;
          await this.onBackend((b) => b.markFull(this.bucket));
          const step = Math.min(this.options.backoffMaxMs ?? 8000, (this.options.backoffBaseMs ?? 500) * 2 ** (queryLimitHits - 1));
          const backoff = Math.max(step / 2 + Math.random() * (step / 2), error.retryAfterMs ?? 0);
          if (Date.now() + backoff >= deadline) {
            throw this.queueTimeout(`The portal kept answering QUERY_LIMIT_EXCEEDED (its request limit is used by others too); gave up after ${queryLimitHits} tries`, backoff + this.bucket.intervalUs / 1000);
          }
          await sleep(backoff);
          continue;
        }
        if (error.kind === 'operation_time_limit') {
          const until = this.holdUntil(method, error);
          this.stats.holds++;
          this.holds.set(method, Math.max(this.holds.get(method) ?? 0, until));
          await this.onBackend((b) => b.hold(method, until));
          continue; // acquire waits for the hold, or answers QUEUE_TIMEOUT
        }
        throw error;
      }
    }
  }

  /** Waits for a slot of the portal's bucket (and for a hold of the method to end) or throws QUEUE_TIMEOUT. */
  async acquire(method: string, deadline = Date.now() + this.maxWaitMs): Promise<void> {
    const started = Date.now();
    for (;;) {
      const localHold = this.holds.get(method) ?? 0;
      if (localHold > Date.now()) {
        await this.waitForHold(method, localHold - Date.now(), deadline);
        continue;
      }
      const remaining = Math.max(0, deadline - Date.now());
      const reservation = await this.onBackend((b) => b.reserve(method, this.bucket, remaining));
      if (reservation.kind === 'held') {
        this.holds.set(method, Date.now() + reservation.waitMs);
        await this.waitForHold(method, reservation.waitMs, deadline);
        continue;
      }
      if (reservation.kind === 'refused') {
        throw this.queueTimeout(`No request slot of the portal within the request's wait limit (${this.maxWaitMs} ms for all its calls; the portal's bucket: ${this.limits.burst} requests, draining ${this.limits.perSecond}/s)`, reservation.waitMs);
      }
      if (reservation.waitMs > 0) await sleep(reservation.waitMs);
      if ((this.holds.get(method) ?? 0) > Date.now()) continue; // held meanwhile: this slot is given up
      this.stats.admitted++;
      this.stats.maxWaitedMs = Math.max(this.stats.maxWaitedMs, Date.now() - started);
      return;
    }
  }

  /** Records `time.operating_reset_at` of a successful answer (run() does it for results that carry `time`). */
  noteTime(method: string, time: Bitrix24Time | undefined): void {
    const reset = Number(time?.operating_reset_at);
    if (Number.isFinite(reset) && reset > 0) this.resetAt.set(method, reset * 1000);
  }

  private noteResult(method: string, result: unknown): void {
    if (result && typeof result === 'object' && 'time' in result) this.noteTime(method, (result as { time?: Bitrix24Time }).time);
  }

  private holdUntil(method: string, error: Bitrix24Error): number {
    const now = Date.now();
    const fromError = Number(error.time?.operating_reset_at) * 1000;
    const candidates = [fromError, this.resetAt.get(method) ?? 0, error.retryAfterMs !== undefined ? now + error.retryAfterMs : 0].filter((t) => Number.isFinite(t) && t > now);
    return candidates.length ? Math.min(...candidates) : now + (this.options.defaultHoldMs ?? 60_000);
  }

  private async waitForHold(method: string, waitMs: number, deadline: number): Promise<void> {
    if (Date.now() + waitMs > deadline) {
      throw this.queueTimeout(`Bitrix24 holds ${method} for its accumulated run time (OPERATION_TIME_LIMIT) for another ${Math.ceil(waitMs / 1000)} s`, waitMs);
    }
    await sleep(waitMs);
  }

  private queueTimeout(message: string, waitMs: number): ApiError {
    this.stats.refused++;
    const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
    return new ApiError('QUEUE_TIMEOUT', message, { retryAfter, hint: `Retry after ${retryAfter} s; the portal's request budget is shared by every key of the portal.` });
  }

  /** Runs a bucket operation on Redis (bounded by redisTimeoutMs) or, when Redis fails, in memory. */
  private async onBackend<T>(op: (backend: Backend) => Promise<T> | T): Promise<T> {
    if (this.redis && Date.now() >= this.redisDownUntil) {
      try {
        if (DOWN_STATES.has(this.redis.redis.status)) throw new Error(`Redis connection is ${this.redis.redis.status}`);
        if (this.onMemorySince) {
          // Back from the fallback: Redis must not forget what memory let through meanwhile.
          await withTimeout(this.redis.raiseTo(this.memory.tat()), this.options.redisTimeoutMs ?? 100);
          this.onMemorySince = 0;
        }
        return await withTimeout(op(this.redis), this.options.redisTimeoutMs ?? 100);
      } catch (error) {
        this.redisDownUntil = Date.now() + (this.options.redisRetryMs ?? 1000);
        this.stats.redisFallbacks++;
        if (!this.onMemorySince) {
          this.onMemorySince = Date.now();
          this.memory.markFull(this.bucket); // start at the drain rate: the shared bucket may be full
        }
        this.options.onRedisFallback?.(error);
      }
    }
    return op(this.memory);
  }
}

/** The budgets of this instance, one per portal (every key of a portal shares it). */
export class PortalBudgets {
  private readonly budgets = new Map<string, PortalBudget>();
  constructor(private readonly defaults: Omit<BudgetOptions, 'portalKey' | 'limits'> = {}) {}

  get(portalKey: string, limits: BudgetLimits = DEFAULT_BUDGET_LIMITS): PortalBudget {
    let budget = this.budgets.get(portalKey);
    if (!budget) {
      budget = new PortalBudget({ ...this.defaults, portalKey, limits });
      this.budgets.set(portalKey, budget);
    } else {
      budget.setLimits(limits);
    }
    return budget;
  }

  delete(portalKey: string): void {
    this.budgets.delete(portalKey);
  }
}
