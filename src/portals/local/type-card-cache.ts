import type { TypeCard } from '../../domain/smart-process-type/card.js';

/**
 * Cards of local portals kept in memory, for a SQLite store. Every write of this
 * process clears it (before and after the transaction), so this process never reads
 * its own writes stale. A write by another process on the same file (the CLI) is
 * noticed through SQLite's data_version, read at most every EXTERNAL_CHECK_MS (reading
 * it costs as much as a query): such a change is seen within that time. A read that
 * overlapped a write is not kept.
 */
export const EXTERNAL_CHECK_MS = 50;

export class TypeCardCache {
  private readonly cards = new Map<string, TypeCard>();
  /** Cards produced by writes of the transaction now running (not yet committed): seen only by later writes of it. */
  private readonly written = new Map<string, TypeCard>();
  private generation = 0;
  private seenExternalVersion: number | null = null;
  private externalCheckedAt = 0;
  private checkedInTransaction = -1;

  constructor(private readonly externalVersion: () => number, private readonly maxEntries = 10_000) {}

  /** The cached card, or the generation to pass to `set` after reading it from the store. */
  lookup(portalId: number, entityTypeId: number): { card?: TypeCard; generation: number } {
    const now = Date.now();
    if (now - this.externalCheckedAt >= EXTERNAL_CHECK_MS) this.checkExternal(now);
    return { card: this.cards.get(`${portalId}:${entityTypeId}`), generation: this.generation };
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
   * the cached one, the others stay. Reads that started before the write do not keep
   * what they read.
   */
  committed(portalId: number, card: TypeCard): void {
    this.generation++;
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
  }
}
