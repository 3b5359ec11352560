import type { Redis } from 'ioredis';

export type Invalidation = { type: 'key'; id: string } | { type: 'portal'; id: number } | { type: 'all' };

const CHANNEL = 'smartproc:invalidate';

/**
 * Tells every server instance that a key or portal changed, so that caches drop it
 * at once. Without Redis only this instance hears it; caches still expire within 1 s.
 */
export class InvalidationBus {
  private readonly handlers: ((message: Invalidation) => void)[] = [];
  private subscriber: Redis | null = null;

  constructor(private readonly redis: Redis | null) {}

  async start(): Promise<void> {
    if (!this.redis) return;
    this.subscriber = this.redis.duplicate();
    this.subscriber.on('message', (_channel: string, raw: string) => {
      try {
        this.deliver(JSON.parse(raw) as Invalidation);
      } catch {
        /* a malformed message is ignored: caches expire on their own */
      }
    });
    await this.subscriber.subscribe(CHANNEL);
  }

  onMessage(handler: (message: Invalidation) => void): void {
    this.handlers.push(handler);
  }

  async publish(message: Invalidation): Promise<void> {
    this.deliver(message);
    if (this.redis) await this.redis.publish(CHANNEL, JSON.stringify(message));
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
