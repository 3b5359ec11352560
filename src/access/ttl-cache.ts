/**
 * A small read-through cache whose entries live at most `ttlMs`. A load that was
 * running while the cache was invalidated is not kept, so an invalidation is
 * never undone by a slow read.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>();
  private generation = 0;
  /** Lookups answered from the cache and loaded (GET /metrics). */
  readonly stats = { hits: 0, misses: 0 };

  constructor(private readonly ttlMs: number, private readonly maxEntries = 50_000) {}

  async get(key: string, load: () => Promise<V>): Promise<V> {
    const now = Date.now();
    const hit = this.entries.get(key);
    if (hit && hit.expiresAt > now) {
      this.stats.hits++;
      return hit.value;
    }
    this.stats.misses++;
    const generation = this.generation;
    const value = await load();
    if (generation === this.generation) {
      if (this.entries.size >= this.maxEntries) this.entries.clear();
      this.entries.set(key, { value, expiresAt: now + this.ttlMs });
    }
    return value;
  }

  /** Drops the entries whose value matches; with no predicate, everything. */
  invalidate(predicate?: (value: V) => boolean): void {
    this.generation++;
    if (!predicate) {
      this.entries.clear();
      return;
    }
    for (const [key, entry] of this.entries) if (predicate(entry.value)) this.entries.delete(key);
  }
}
