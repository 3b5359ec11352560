/**
 * The one place that knows the error codes of the database drivers (PostgreSQL's
 * SQLSTATEs through `pg`, SQLite's through better-sqlite3). Everything above the store
 * asks `store.failureOf(error)` and gets one of these meanings.
 */
export type StoreFailure =
  /** The store cannot be reached or is overloaded; a retry may cure it (503). */
  | 'unavailable'
  /** A unique constraint refused the write (a code or an entityTypeId was taken meanwhile). */
  | 'unique'
  /** A foreign key refused the write (the portal or key it belongs to was deleted meanwhile). */
  | 'foreign_key'
  /** PostgreSQL aborted the transaction for a deadlock or a serialization conflict: running it again is safe. */
  | 'conflict'
  /** A row lock asked for without waiting (NOWAIT) is held by another transaction. */
  | 'lock_not_available';

const BY_CODE = new Map<string, StoreFailure>([
  // PostgreSQL (SQLSTATE)
  ['23505', 'unique'],
  ['23503', 'foreign_key'],
  ['40P01', 'conflict'],
  ['40001', 'conflict'],
  ['55P03', 'lock_not_available'],
  ['57P01', 'unavailable'],
  ['57P02', 'unavailable'],
  ['57P03', 'unavailable'],
  ['08000', 'unavailable'],
  ['08001', 'unavailable'],
  ['08003', 'unavailable'],
  ['08006', 'unavailable'],
  ['53300', 'unavailable'],
  // SQLite (better-sqlite3)
  ['SQLITE_CONSTRAINT_UNIQUE', 'unique'],
  ['SQLITE_CONSTRAINT_PRIMARYKEY', 'unique'],
  ['SQLITE_CONSTRAINT_FOREIGNKEY', 'foreign_key'],
  ['SQLITE_BUSY', 'unavailable'],
  ['SQLITE_LOCKED', 'unavailable'],
  ['SQLITE_IOERR', 'unavailable'],
  ['SQLITE_FULL', 'unavailable'],
  // The network under the PostgreSQL client
  ['ECONNREFUSED', 'unavailable'],
  ['ECONNRESET', 'unavailable'],
  ['ETIMEDOUT', 'unavailable'],
  ['ENOTFOUND', 'unavailable'],
  ['EPIPE', 'unavailable'],
]);

/** pg reports a lost or unusable connection by message only. */
const UNAVAILABLE_MESSAGE = /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|is not queryable/i;

/** better-sqlite3 reports SQLite's extended codes (SQLITE_IOERR_WRITE, SQLITE_BUSY_SNAPSHOT, ...): the primary code decides. */
const SQLITE_UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|IOERR|FULL)(_|$)/;

export function failureOf(error: unknown): StoreFailure | null {
  if (typeof error !== 'object' || error === null) return null;
  const { code, message } = error as { code?: unknown; message?: unknown };
  const known = typeof code === 'string' ? BY_CODE.get(code) : undefined;
  if (known) return known;
  if (typeof code === 'string' && SQLITE_UNAVAILABLE.test(code)) return 'unavailable';
  return typeof message === 'string' && UNAVAILABLE_MESSAGE.test(message) ? 'unavailable' : null;
}
