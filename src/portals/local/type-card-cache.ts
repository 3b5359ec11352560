import type { TypeCard } from '../../domain/smart-process-type.js';

/**
 * Cards of local portals kept in memory, for a store that only this process writes
 * through (SQLite). Every write of this process clears it (before and after the
 * transaction), and `externalVersion` (SQLite's data_version, which moves when
 * another connection commits, e.g. the CLI) clears it too, so a read never returns
 * what the store no longer holds. A read that overlapped a write is not kept.
 */
export class TypeCardCache {
  private readonly cards = new Map<string, TypeCard>();
  private generation = 0;
  private seenExternalVersion: number | null = null;

  constructor(private readonly externalVersion: () => number, private readonly maxEntries = 10_000) {}

  /** The cached card, or the generation to pass to `set` after reading it from the store. */
  lookup(portalId: number, entityTypeId: number): { card?: TypeCard; generation: number } {
    const version = this.externalVersion();
    if (version !== this.seenExternalVersion) {
      this.seenExternalVersion = version;
      this.clear();
    }
    return { card: this.cards.get(`${portalId}:${entityTypeId}`), generation: this.generation };
  }

  /** The generation now (after a write's final clear), for keeping the card that write produced. */
  current(): number {
    return this.generation;
  }

  set(portalId: number, entityTypeId: number, card: TypeCard, generation: number): void {
    if (generation !== this.generation) return;
    if (this.cards.size >= this.maxEntries) this.cards.clear();
    this.cards.set(`${portalId}:${entityTypeId}`, card);
  }

  clear(): void {
    this.generation++;
    this.cards.clear();
  }
}
