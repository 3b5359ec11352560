import { Redis } from 'ioredis';
import type { WarnLog } from '../log-throttle.js';

/**
 * Redis is an aid, not a dependency: it shares rate limits and key changes between
 * instances. When it is away, each instance counts limits in memory and other
 * instances see key changes through the 1-second key cache. So no request waits for
 * it: a command not answered within REDIS_TIMEOUT_MS counts as failed, and while
 * the connection is down commands are not even tried (enableOfflineQueue: false).
 */
export const REDIS_TIMEOUT_MS = 100;

/** How long a starting server (or the CLI) waits for the first connection before going on without Redis. */
export const REDIS_START_WAIT_MS = 2000;

/** REDIS_URL as it may be shown: the password masked. */
export function maskRedisUrl(url: string): string {
  try {
    const shown = new URL(url);
    if (shown.password) shown.password = '***';
    return shown.toString();
  } catch {
    return 'REDIS_URL (not a valid URL)';
  }
}

/** Rejects when `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The Redis client of a process: fails fast instead of queueing while disconnected,
 * reconnects in the background for ever, and logs when Redis goes away and when it
 * comes back: one line per change, not one per retry.
 */
export class RedisConnection {
  readonly client: Redis;
  readonly shown: string;
  private state: 'starting' | 'up' | 'down' = 'starting';

  /** What serving without Redis means, for the warning; the CLI says it its own way. */
  private readonly consequence: string;

  constructor(url: string, private readonly log: WarnLog, options: { consequence?: string } = {}) {
    this.consequence = options.consequence ?? 'Serving without it: rate limits are counted in memory by each instance, and other instances see key changes within 1 s (key cache); reconnecting in the background';
    this.shown = maskRedisUrl(url);
    this.client = new Redis(url, {
      enableOfflineQueue: false,
      commandTimeout: REDIS_TIMEOUT_MS,
      maxRetriesPerRequest: 1,
      // A command given up on (timed out, connection lost) is not sent again after a reconnect.
      autoResendUnfulfilledCommands: false,
      connectTimeout: REDIS_START_WAIT_MS,
      retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
    });
    this.client.on('ready', () => {
      if (this.state === 'down') this.log.info({ redis: this.shown }, `Redis at ${this.shown} is reachable again: rate limits are counted in Redis and key changes are published again`);
      this.state = 'up';
    });
    this.client.on('error', (error: Error) => this.down(error.message));
    this.client.on('close', () => {
      if (this.state === 'up') this.down('connection closed');
    });
  }

  private down(reason: string): void {
    if (this.state === 'down') return;
    this.state = 'down';
    this.log.warn(
      { redis: this.shown, reason },
      `Redis at ${this.shown} (REDIS_URL) is unreachable: ${reason}. ${this.consequence}`,
    );
  }

  /** Waits for the first connection, at most `waitMs`; false (after one warning) if Redis is not there. */
  async connected(waitMs = REDIS_START_WAIT_MS): Promise<boolean> {
    if (this.client.status === 'ready') return true;
    const ready = await new Promise<boolean>((resolve) => {
      const done = (value: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        this.client.off('error', onError);
        resolve(value);
      };
      const onReady = () => done(true);
      const onError = () => done(false);
      const timer = setTimeout(() => done(false), waitMs);
      this.client.once('ready', onReady);
      this.client.once('error', onError);
    });
    if (!ready) this.down(`no connection within ${waitMs} ms`);
    return ready;
  }

  disconnect(): void {
    this.client.disconnect();
  }
}
