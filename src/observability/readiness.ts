/**
 * GET /ready (issue 11 item 1): whether this instance can serve requests now: the store
 * answers, its migrations are all applied, and Redis (when REDIS_URL is set) answers.
 *
 * Each check is bounded (READY_CHECK_TIMEOUT_MS), so a store that hangs makes /ready
 * answer 503 in time rather than hang the load balancer's probe. Concurrent probes share
 * one check, so a flood of /ready costs one query at a time. What a failing component
 * said (a driver's message, an address) goes to the log, not to the answer: /ready is
 * public.
 */
import { sql } from 'kysely';
import type { Redis } from 'ioredis';
import { pendingMigrations, type Store } from '../store/store.js';

export const READY_CHECK_TIMEOUT_MS = 2000;

export type ComponentName = 'store' | 'migrations' | 'redis';

export interface ComponentState {
  ok: boolean;
  /** 'ok', 'not configured', or what failed (for the answer). */
  status: string;
  /** Why it failed, for the log only. */
  cause?: unknown;
}

export interface ReadinessReport {
  ready: boolean;
  components: Record<ComponentName, ComponentState>;
}

class CheckTimeout extends Error {}

function bounded<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  work.catch(() => {}); // a late failure after the timeout must not be unhandled
  return Promise.race([work, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new CheckTimeout()), ms)))]).finally(() => clearTimeout(timer));
}

const failed = (status: string, cause?: unknown): ComponentState => ({ ok: false, status, cause });
const OK: ComponentState = { ok: true, status: 'ok' };

export class Readiness {
  private running: Promise<ReadinessReport> | null = null;

  constructor(
    private readonly store: Store,
    private readonly redis: Redis | null,
    private readonly timeoutMs = READY_CHECK_TIMEOUT_MS,
  ) {}

  /** One check of every component; callers arriving while one runs share it. */
  check(): Promise<ReadinessReport> {
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(): Promise<ReadinessReport> {
    const [storeAndMigrations, redis] = await Promise.all([this.checkStore(), this.checkRedis()]);
    const components = { ...storeAndMigrations, redis };
    return { ready: Object.values(components).every((c) => c.ok), components };
  }

  private async checkStore(): Promise<{ store: ComponentState; migrations: ComponentState }> {
    try {
      await bounded(sql`select 1`.execute(this.store.db), this.timeoutMs);
    } catch (error) {
      const status = error instanceof CheckTimeout ? `does not answer within ${this.timeoutMs} ms` : 'does not answer';
      return { store: failed(status, error), migrations: failed('not checked: the store does not answer') };
    }
    try {
      const pending = await bounded(pendingMigrations(this.store), this.timeoutMs);
      return { store: OK, migrations: pending.length ? failed(`pending: ${pending.join(', ')}`) : OK };
    } catch (error) {
      return { store: OK, migrations: failed('cannot be read', error) };
    }
  }

  private async checkRedis(): Promise<ComponentState> {
    if (!this.redis) return { ok: true, status: 'not configured' };
    if (this.redis.status !== 'ready') return failed(`not connected (${this.redis.status})`);
    try {
      const pong = await bounded(this.redis.ping(), this.timeoutMs);
      return pong === 'PONG' ? OK : failed('answered PING wrongly');
    } catch (error) {
      return failed(error instanceof CheckTimeout ? `does not answer within ${this.timeoutMs} ms` : 'does not answer PING', error);
    }
  }
}
