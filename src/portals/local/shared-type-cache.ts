import crypto from 'node:crypto';
import type { Redis } from 'ioredis';
import type { TypeCard } from '../../domain/smart-process-type/card.js';
import { withTimeout } from '../../access/redis.js';
import { PageStore, type CacheTicket, type TypeCache, type TypePage } from './type-card-cache.js';

/**
 * Cards and list pages of local portals on a store that several instances share
 * (PostgreSQL), kept per instance and checked against a token per portal in Redis.
 *
 * The rule: a read that starts after a write was answered (by any instance) never gets
 * what the write changed from a cache. How:
 *
 * - Every write of a portal, once committed and before it is answered, sets the
 *   portal's token in Redis to a value never used before (`bump`).
 * - A read takes the token from Redis with a command sent after the read started
 *   (`PortalTokens.read`; reads waiting at the same time share one command), and uses
 *   a cached card or page only if it was kept under that same token. It keeps what it
 *   reads from the store under the token it took before reading. A write answered before
 *   the read started has set a new token before the read's command, so entries kept
 *   before that write do not match: the read goes to the store, after the COMMIT.
 * - Tokens never repeat (an instance id and a counter): a Redis that lost its keys
 *   (restart, eviction, expiry) gives a new token on the next read, never an old one.
 * - Redis away: a read that gets no token reads the store and keeps nothing. A write that
 *   cannot set the token waits, before it answers, until everything any instance kept
 *   before its COMMIT has expired (entries live at most `ttlMs`), so it is never served
 *   after the answer. Changes made without this code (the CLI without REDIS_URL, SQL by
 *   hand) are also seen within `ttlMs`.
 */
export class SharedTypeCache implements TypeCache {
  private readonly cards = new Map<string, { token: string; at: number; card: TypeCard }>();
  private readonly pages = new PageStore<{ token: string; at: number; page: TypePage }>();

  constructor(private readonly tokens: PortalTokens, readonly ttlMs = 1000, private readonly maxCards = 10_000) {}

  async ticket(portalId: number): Promise<CacheTicket | null> {
    const at = performance.now();
    const token = await this.tokens.read(portalId);
    return token === null ? null : { generation: 0, token, at };
  }

  private fresh(entry: { token: string; at: number } | undefined, ticket: CacheTicket): boolean {
    return entry !== undefined && entry.token === ticket.token && ticket.at! - entry.at < this.ttlMs;
  }

  card(ticket: CacheTicket, portalId: number, entityTypeId: number): TypeCard | undefined {
    const entry = this.cards.get(`${portalId}:${entityTypeId}`);
    return this.fresh(entry, ticket) ? entry!.card : undefined;
  }

  keepCard(ticket: CacheTicket, portalId: number, entityTypeId: number, card: TypeCard): void {
    if (this.cards.size >= this.maxCards) this.cards.clear();
    this.cards.set(`${portalId}:${entityTypeId}`, { token: ticket.token!, at: ticket.at!, card });
  }

  page(ticket: CacheTicket, portalId: number, key: string): TypePage | undefined {
    const entry = this.pages.get(`${portalId}:${key}`);
    return this.fresh(entry, ticket) ? entry!.page : undefined;
  }

  keepPage(ticket: CacheTicket, portalId: number, key: string, page: TypePage): void {
    this.pages.set(`${portalId}:${key}`, { token: ticket.token!, at: ticket.at!, page });
  }

  async settle(portalId: number, committedAt: number): Promise<void> {
    // This instance's entries go at once (other instances' through the token).
    this.clear();
    if (await this.tokens.bump(portalId)) return;
    this.tokens.unsettled++;
    const wait = committedAt + this.ttlMs - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }

  clear(): void {
    if (this.cards.size) this.cards.clear();
    this.pages.clear();
  }
}

/** A Redis command slower than this counts as failed (a read then goes to the store, a write waits out the TTL). */
export const TOKEN_TIMEOUT_MS = 100;
/** Tokens expire after a day unused; a missing token is made anew (a new value). */
const TOKEN_TTL_SECONDS = 86_400;

/**
 * The token of each portal in Redis (`<prefix><portalId>`). Reads are batched: a read
 * joins the next command, which is sent after it was asked for (never one already on its
 * way): one MGET per turn of the event loop answers every read that arrived in it.
 */
export class PortalTokens {
  private readonly instance = crypto.randomBytes(9).toString('base64url');
  private counter = 0;
  private waiting = new Map<number, ((token: string | null) => void)[]>();
  private scheduled = false;
  /** Commands sent (reads, token creations), writes whose token could not be set: for tests and the bench. */
  readonly stats = { reads: 0, batches: 0, bumps: 0 };
  unsettled = 0;

  constructor(private readonly redis: Redis, private readonly prefix = 'smartproc:types-token:') {}

  private next(): string {
    return `${this.instance}.${(++this.counter).toString(36)}`;
  }

  read(portalId: number): Promise<string | null> {
    if (this.redis.status !== 'ready') return Promise.resolve(null);
    this.stats.reads++;
    return new Promise((resolve) => {
      const list = this.waiting.get(portalId);
      if (list) list.push(resolve);
      else this.waiting.set(portalId, [resolve]);
      if (!this.scheduled) {
        this.scheduled = true;
        // After the current I/O phase: the reads that arrived in it share the command.
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    if (this.waiting.size === 0) return;
    // Commands are pipelined on the connection: one per turn of the event loop, not one per round trip.
    const batch = this.waiting;
    this.waiting = new Map();
    const ids = [...batch.keys()];
    let tokens: (string | null)[];
    try {
      this.stats.batches++;
      tokens = await withTimeout(this.fetch(ids), TOKEN_TIMEOUT_MS, 'cache token');
    } catch {
      tokens = ids.map(() => null);
    }
    ids.forEach((id, i) => {
      for (const resolve of batch.get(id)!) resolve(tokens[i]);
    });
  }

  private async fetch(ids: number[]): Promise<(string | null)[]> {
    const keys = ids.map((id) => this.prefix + id);
    const tokens = await this.redis.mget(...keys);
    const missing = tokens.flatMap((token, i) => (token === null ? [i] : []));
    if (missing.length) {
      // A portal without a token gets one: SET NX GET gives the one that is there if another instance was first.
      const pipeline = this.redis.pipeline();
      const made = missing.map((i) => {
        const token = this.next();
        pipeline.call('SET', keys[i], token, 'NX', 'GET', 'EX', String(TOKEN_TTL_SECONDS));
        return token;
      });
      const results = (await pipeline.exec()) ?? [];
      missing.forEach((i, j) => {
        const [error, previous] = results[j] ?? [new Error('no answer'), null];
        tokens[i] = error ? null : ((previous as string | null) ?? made[j]);
      });
    }
    return tokens;
  }

  /** Sets a new token for the portal; false when Redis did not take it. */
  async bump(portalId: number): Promise<boolean> {
    if (this.redis.status !== 'ready') return false;
    try {
      this.stats.bumps++;
      await withTimeout(this.redis.set(this.prefix + portalId, this.next(), 'EX', TOKEN_TTL_SECONDS), TOKEN_TIMEOUT_MS, 'cache token');
      return true;
    } catch {
      return false;
    }
  }
}
