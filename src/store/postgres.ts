import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { LogThrottle, stderrLog } from '../log-throttle.js';
import { failureOf } from './driver-errors.js';
import { kyselyRunner, type Runner } from './repository.js';
import { repositoriesOn, SingleStatementError, type Store } from './store.js';
import type { Database } from './tables.js';

// int8 (bigint) columns hold epoch milliseconds: well inside 2^53.
pg.types.setTypeParser(20, (value) => Number.parseInt(value, 10));

/**
 * A write PostgreSQL aborted for a deadlock or a serialization conflict runs again, at
 * most this many times in all. Writes take their row locks in one order (docs/architecture.md,
 * "Locking"), so deadlocks are not expected: `stats.conflictRetries` counts any, and the
 * fault suite checks it stays 0 for relation edits.
 */
export const MAX_CONFLICT_ATTEMPTS = 3;

/** How long a request waits for a PostgreSQL connection (a new one, or a free one of the pool) before it answers 503. */
export const PG_CONNECT_TIMEOUT_MS = 5000;

/**
 * `?schema=NAME` in DATABASE_URL selects (and creates) a PostgreSQL schema,
 * so that several smartproc stores can share one database (used by the tests).
 *
 * PostgreSQL may close any connection at any time (restart, failover,
 * pg_terminate_backend, a proxy's idle timeout). pg reports that as an 'error' event
 * on the pool (an idle connection) or on the client (one checked out between two
 * statements); an 'error' event nobody listens to ends the process. Both are heard
 * here: the pool drops the dead connection and opens a new one for the next query,
 * and the statement that was running fails, which the error handler answers with 503.
 */
export function openPostgres(databaseUrl: string): Store {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema');
  url.searchParams.delete('schema');
  if (schema !== null && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error('schema in DATABASE_URL must be a lower-case identifier');
  const pool = new pg.Pool({
    connectionString: url.toString(),
    max: 10,
    options: schema ? `-c search_path=${schema}` : undefined,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    keepAlive: true,
  });
  const shown = new URL(url.toString());
  if (shown.password) shown.password = '***';
  const describe = `PostgreSQL ${shown.host}${shown.pathname}${schema ? ` schema ${schema}` : ''}`;
  const lost = new LogThrottle(10_000);
  const onLost = (error: Error) => {
    const held = lost.pass();
    if (held !== null) store.log.warn({ err: error, store: describe, ...(held ? { alsoLost: held } : {}) }, `PostgreSQL closed a connection (${error.message}); the next query opens a new one`);
  };
  pool.on('error', onLost);
  pool.on('connect', (client) => client.on('error', onLost));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const stats = { conflictRetries: 0 };
  const pooled = kyselyRunner(db);
  const store: Store = {
    db,
    dialect: 'postgres',
    schema,
    describe,
    capabilities: { rowLocks: true, dataVersion: null },
    read: repositoriesOn(db, 'postgres'),
    async write(work, committed, options) {
      if (options?.singleStatement) {
        // Autocommit on a pool connection: no BEGIN/COMMIT round trips, no lock held across round trips.
        let statements = 0;
        const run: Runner = (query, parameters) => {
          if (++statements > 1) throw new SingleStatementError();
          return pooled(query, parameters);
        };
        const value = await work({ repos: repositoriesOn(db, 'postgres', run), transactionNumber: null });
        try {
          committed?.(value);
        } catch {
          // as below
        }
        return value;
      }
      for (let attempt = 1; ; attempt++) {
        try {
          const value = await db.transaction().execute((trx) => work({ repos: repositoriesOn(trx, 'postgres'), transactionNumber: null }));
          try {
            committed?.(value);
          } catch {
            // Upkeep after the COMMIT must not turn a stored write into a failure.
          }
          return value;
        } catch (error) {
          if (attempt >= MAX_CONFLICT_ATTEMPTS || failureOf(error) !== 'conflict') throw error;
          stats.conflictRetries++;
        }
      }
    },
    failureOf,
    stats,
    log: stderrLog,
    close: () => db.destroy(),
  };
  return store;
}
