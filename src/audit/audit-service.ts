import type { AuditEntry, AuditFilter } from '../domain/audit.js';
import type { Store } from '../store/store.js';
import type { WarnLog } from '../log-throttle.js';

/** Entries deleted per statement by the retention prune: one prune never holds the store's writes for long. */
export const PRUNE_BATCH = 1000;
/** How often the retention prune runs (and a first time this long after start, at most a minute). */
export const PRUNE_INTERVAL_MS = 3600_000;

const DAY_MS = 86_400_000;

/**
 * Reading the audit trail (GET /v1/audit, a type's history) and keeping it within its
 * retention (AUDIT_RETENTION_DAYS). Entries are written by the services that make the
 * changes, inside their own writes (src/domain/audit.ts says what an entry holds).
 */
export class AuditService {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly store: Store, private readonly retentionDays: number) {}

  list(filter: AuditFilter, page: { limit: number; offset: number }): Promise<{ entries: AuditEntry[]; total: number }> {
    return this.store.read.audit.list(filter, page);
  }

  /**
   * Deletes the entries older than the retention, in writes of at most PRUNE_BATCH rows
   * each (on SQLite each one shares a group-commit batch with requests' writes instead of
   * holding the store's one writer for the whole prune). Retention 0 keeps every entry.
   * Several instances may prune at once: each deletes what is still there.
   */
  async prune(now = Date.now()): Promise<number> {
    if (this.retentionDays <= 0) return 0;
    const before = now - this.retentionDays * DAY_MS;
    let total = 0;
    for (;;) {
      const { deleted, more } = await this.store.write(({ repos }) => repos.audit.prune(before, PRUNE_BATCH));
      total += deleted;
      if (!more) return total;
    }
  }

  /** Prunes every PRUNE_INTERVAL_MS (the first time soon after start); the timers never keep the process alive. */
  start(log: WarnLog, firstInMs = Math.min(60_000, PRUNE_INTERVAL_MS)): void {
    if (this.retentionDays <= 0 || this.timer) return;
    const run = () => {
      this.prune().then(
        (deleted) => {
          if (deleted) log.info({ deleted, retentionDays: this.retentionDays }, 'audit: entries past the retention deleted');
        },
        (err: unknown) => log.warn({ err }, 'audit: the retention prune failed; it runs again later'),
      );
      this.timer = setTimeout(run, PRUNE_INTERVAL_MS).unref();
    };
    this.timer = setTimeout(run, firstInMs).unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
