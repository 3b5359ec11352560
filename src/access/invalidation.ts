import type { Redis } from 'ioredis';
import { LogThrottle, stderrLog, type WarnLog } from '../log-throttle.js';
import { REDIS_START_WAIT_MS, REDIS_TIMEOUT_MS, withTimeout } from './redis.js';

export type Invalidation = { type: 'key'; id: string } | { type: 'portal'; id: number } | { type: 'session'; id: string } | { type: 'all' };

/** The channel of a deployment: `<prefix>:invalidate` (app.ts: REDIS_PREFIX, else derived from the store). */
export const invalidationChannel = (prefix: string) => `${prefix}:invalidate`;

/**
 * Tells every server instance that a key or portal changed, so that caches drop it
 * at once. Without Redis only this instance hears it; caches still expire within 1 s.
 *
 * Publishing is best effort and comes after the change is committed: a write never
 * fails, nor waits more than REDIS_TIMEOUT_MS, because Redis is away; the 1-second
 * key cache is the bound on what other instances may miss.
 */
export class InvalidationBus {
  private readonly handlers: ((message: Invalidation) => void)[] = [];
  private subscriber: Redis | null = null;
  private readonly unpublished = new LogThrottle(10_000);

  /**
   * `channel` is per deployment: deployments sharing one Redis must not hear each other
   * (their portal ids overlap), while every instance of one deployment must use the same.
   */
  constructor(
    private readonly redis: Redis | null,
    private readonly log: WarnLog = stderrLog,
    private readonly channel = invalidationChannel('smartproc'),
  ) {}

  /**
   * Subscribes on a connection of its own, which queues the subscription until Redis is
   * there and subscribes again after every reconnect. Waits for it at most
   * `waitMs`, and not at all when Redis refuses the connection.
   */
  async start(waitMs = REDIS_START_WAIT_MS): Promise<void> {
    if (!this.redis) return;
    const subscriber = this.redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined, autoResendUnfulfilledCommands: true });
    this.subscriber = subscriber;
    // The connection's state is logged by the main client (RedisConnection); this one only must not go unheard.
    subscriber.on('error', () => {});
    subscriber.on('message', (_channel: string, raw: string) => {
      try {
        this.deliver(JSON.parse(raw) as Invalidation);
      } catch {
        /* a malformed message is ignored: caches expire on their own */
      }
    });
    const subscribed = subscriber.subscribe(this.channel).then(
      () => true,
      (error: unknown) => {
        if (this.subscriber === subscriber) this.log.warn({ err: error }, `Could not subscribe to ${this.channel} on Redis; other instances' key changes reach this one within 1 s (key cache)`);
        return false;
      },
    );
    let timer: NodeJS.Timeout | undefined;
    let onError = () => {};
    await Promise.race([
      subscribed,
      new Promise((resolve) => {
        timer = setTimeout(resolve, waitMs);
        onError = () => resolve(false);
        subscriber.once('error', onError);
      }),
    ]);
    clearTimeout(timer);
    subscriber.off('error', onError);
  }

  onMessage(handler: (message: Invalidation) => void): void {
    this.handlers.push(handler);
  }

  /** Delivers here at once, then to the other instances through Redis if it answers; never throws. */
  async publish(message: Invalidation): Promise<void> {
    this.deliver(message);
    if (!this.redis) return;
    try {
      if (this.redis.status !== 'ready') throw new Error(`Redis connection is ${this.redis.status}`);
      await withTimeout(this.redis.publish(this.channel, JSON.stringify(message)), REDIS_TIMEOUT_MS, 'publish');
    } catch (error) {
      const held = this.unpublished.pass();
      if (held !== null) {
        this.log.warn({ err: error, invalidation: message, ...(held ? { alsoUnpublished: held } : {}) }, `Could not publish a ${message.type} change on Redis (${error instanceof Error ? error.message : String(error)}); other instances drop it within 1 s (key cache)`);
      }
    }
  }

  private deliver(message: Invalidation): void {
    for (const handler of this.handlers) handler(message);
  }

  async stop(): Promise<void> {
    if (this.subscriber) {
      this.subscriber.disconnect();
      this.subscriber = null;
    }
  }
}
