import type { ListQuery } from '../../domain/list-query.js';
import type { TypeCard, TypeRecord } from '../../domain/smart-process-type/card.js';

/** A page of a list as the store gave it. */
export interface TypePage {
  records: TypeRecord[];
  total: number;
}

/**
 * What a read may use from a cache: taken before the read starts; a card or page kept
 * with it is served to a later read only while nothing has changed since.
 */
export interface CacheTicket {
  /** SQLite: the cache's generation (bumped by every write of this process). */
  readonly generation: number;
  /** PostgreSQL: the portal's token in Redis and when the ticket was taken (performance.now()). */
  readonly token?: string;
  readonly at?: number;
}

/**
 * Cards and list pages of local portals kept in memory (docs/architecture.md, "Caches"):
 * on SQLite `TypeCardCache` (this process is the one writer), on PostgreSQL with Redis
 * `SharedTypeCache` (shared-type-cache.ts: a token per portal in Redis). A read takes a
 * ticket first; null means: read the store and keep nothing.
 */
export interface TypeCache {
  ticket(portalId: number): CacheTicket | null | Promise<CacheTicket | null>;
  card(ticket: CacheTicket, portalId: number, entityTypeId: number): TypeCard | undefined;
  keepCard(ticket: CacheTicket, portalId: number, entityTypeId: number, card: TypeCard): void;
  page(ticket: CacheTicket, portalId: number, key: string): TypePage | undefined;
  keepPage(ticket: CacheTicket, portalId: number, key: string, page: TypePage): void;
  /**
   * A write of this portal committed (at `committedAt`, performance.now()) and is about to
   * be answered: resolves once no instance can serve what it changed (PostgreSQL).
   */
  settle?(portalId: number, committedAt: number): Promise<void>;
  /** PostgreSQL: how long after its ticket an entry may be served (a write that cannot set the token waits this out). */
  readonly ttlMs?: number;
  clear(): void;
}

/** Pages kept at most (SQLite and PostgreSQL), and rows in all of them: a bound on memory with pages of up to 5000 rows. */
export const MAX_PAGES = 256;
export const MAX_PAGE_ROWS = 20_000;

/**
 * The key of a list query's page: the filter (a field by name), the order, limit and offset.
 * Not `select`: the page holds whole records whatever the select, and the answer applies it
 * (one page object serves queries that differ only in select). Built by hand: a
 * JSON.stringify replacer cost more than the rest of a cached list's lookup.
 */
export function pageKey(query: ListQuery): string {
  let key = `${query.limit}|${query.offset}|`;
  for (const sort of query.sort) key += `${sort.field} ${sort.direction},`;
  if (query.conditions.length) key += `|${JSON.stringify(query.conditions.map((c) => [c.field.name, c.op, c.value]))}`;
  return key;
}

/** Pages by key, bounded by MAX_PAGES and MAX_PAGE_ROWS (over either, all are dropped: a cheap, rare reset). */
export class PageStore<E extends { page: TypePage }> {
  private readonly pages = new Map<string, E>();
  private rows = 0;

  get(key: string): E | undefined {
    return this.pages.get(key);
  }

  set(key: string, entry: E): void {
    const size = entry.page.records.length;
    if (size > MAX_PAGE_ROWS) return;
    const old = this.pages.get(key);
    if (old) this.rows -= old.page.records.length;
    if (this.pages.size >= MAX_PAGES || this.rows + size > MAX_PAGE_ROWS) this.clear();
    this.pages.set(key, entry);
    this.rows += size;
  }

  clear(): void {
    if (this.pages.size) this.pages.clear();
    this.rows = 0;
  }
}

/**
 * Cards and list pages of local portals kept in memory, for a SQLite store. Every write
 * of this process clears it (before and after the transaction), so this process never
 * reads its own writes stale. A write by another process on the same file (the CLI) is
 * noticed through SQLite's data_version, read at most every EXTERNAL_CHECK_MS (reading
 * it costs as much as a query): such a change is seen within that time. A read that
 * overlapped a write is not kept.
 */
export const EXTERNAL_CHECK_MS = 50;

export class TypeCardCache implements TypeCache {
  private readonly cards = new Map<string, TypeCard>();
  /** Cards produced by writes of the transaction now running (not yet committed): seen only by later writes of it. */
  private readonly written = new Map<string, TypeCard>();
  private readonly pages = new PageStore<{ page: TypePage }>();
  private generation = 0;
  /** The ticket of the current generation (one object per generation, not one per read). */
  private current: CacheTicket = { generation: 0 };
  private seenExternalVersion: number | null = null;
  private externalCheckedAt = 0;
  private checkedInTransaction = -1;

  constructor(private readonly externalVersion: () => number, private readonly maxEntries = 10_000) {}

  ticket(_portalId: number): CacheTicket {
    const now = Date.now();
    if (now - this.externalCheckedAt >= EXTERNAL_CHECK_MS) this.checkExternal(now);
    if (this.current.generation !== this.generation) this.current = { generation: this.generation };
    return this.current;
  }

  card(_ticket: CacheTicket, portalId: number, entityTypeId: number): TypeCard | undefined {
    return this.cards.get(`${portalId}:${entityTypeId}`);
  }

  keepCard(ticket: CacheTicket, portalId: number, entityTypeId: number, card: TypeCard): void {
    this.set(portalId, entityTypeId, card, ticket.generation);
  }

  page(_ticket: CacheTicket, portalId: number, key: string): TypePage | undefined {
    return this.pages.get(`${portalId}:${key}`)?.page;
  }

  keepPage(ticket: CacheTicket, portalId: number, key: string, page: TypePage): void {
    if (ticket.generation === this.generation) this.pages.set(`${portalId}:${key}`, { page });
  }

  /**
   * The cached card for a write, which runs holding SQLite's write lock: other connections
   * are checked at the start of each write transaction (not at most every
   * EXTERNAL_CHECK_MS). The writer still compares the row's version before trusting the card.
   */
  forWrite(portalId: number, entityTypeId: number, transaction: number): TypeCard | undefined {
    // Once per transaction: while it runs, no other connection can commit.
    if (transaction !== this.checkedInTransaction) {
      this.checkedInTransaction = transaction;
      this.checkExternal(Date.now());
    }
    const key = `${portalId}:${entityTypeId}`;
    return this.written.get(key) ?? this.cards.get(key);
  }

  /** A write produced this card inside the running transaction; later writes of the same transaction may use it. */
  noteWritten(portalId: number, card: TypeCard): void {
    this.written.set(`${portalId}:${card.record.entityTypeId}`, card);
  }

  private checkExternal(now: number): void {
    this.externalCheckedAt = now;
    const version = this.externalVersion();
    if (version !== this.seenExternalVersion) {
      this.seenExternalVersion = version;
      this.clear();
    }
  }

  /**
   * A committed write changed only this card (a PATCH without relations): it replaces
   * the cached one, the other cards stay (list pages go). Reads that started before the write do not keep
   * what they read.
   */
  committed(portalId: number, card: TypeCard): void {
    this.generation++;
    // Every list may show the changed type.
    this.pages.clear();
    const key = `${portalId}:${card.record.entityTypeId}`;
    this.written.delete(key);
    if (this.cards.size >= this.maxEntries) this.cards.clear();
    this.cards.set(key, card);
  }

  set(portalId: number, entityTypeId: number, card: TypeCard, generation: number): void {
    if (generation !== this.generation) return;
    if (this.cards.size >= this.maxEntries) this.cards.clear();
    this.cards.set(`${portalId}:${entityTypeId}`, card);
  }

  clear(): void {
    this.generation++;
    // Map#clear allocates a new table: skip it when there is nothing to drop.
    if (this.cards.size) this.cards.clear();
    if (this.written.size) this.written.clear();
    this.pages.clear();
  }
}
