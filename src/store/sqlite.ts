import fs from 'node:fs';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { stderrLog } from '../log-throttle.js';
import { failureOf } from './driver-errors.js';
import { repositoriesOn, type Store } from './store.js';
import type { Database } from './tables.js';
import { WriteBatch } from './write-batch.js';

/**
 * The embedded default: one better-sqlite3 connection (WAL), writes through the
 * group-commit batch (write-batch.ts), prepared statements reused by SQL text.
 */
export function openSqlite(file: string): Store {
  if (file !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const database = new Sqlite(file);
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = NORMAL');
  database.pragma('foreign_keys = ON');
  database.pragma('busy_timeout = 5000');
  const cached = withStatementCache(database);
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cached }) });
  const dataVersion = database.prepare('PRAGMA data_version').pluck();
  const writes = new WriteBatch(db, {
    run<R>(query: { sql: string; parameters: readonly unknown[] }, parameters = query.parameters): R[] {
      const statement = cached.prepare(query.sql);
      if (statement.reader) return statement.all(...parameters) as R[];
      statement.run(...parameters);
      return [];
    },
    inTransaction: () => database.inTransaction,
  });
  const stats = { conflictRetries: 0 };
  return {
    db,
    dialect: 'sqlite',
    describe: file === ':memory:' ? 'SQLite (in memory)' : `SQLite ${path.resolve(file)}`,
    capabilities: { rowLocks: false, dataVersion: () => dataVersion.get() as number },
    read: repositoriesOn(db, 'sqlite'),
    write: (work, committed) => writes.submit((run) => work({ repos: repositoriesOn(db, 'sqlite', run), transactionNumber: writes.transactionNumber }), committed),
    failureOf,
    stats,
    writes,
    log: stderrLog,
    close: () => db.destroy(),
  };
}

/**
 * Kysely prepares every query afresh; preparing is a large share of a small query's
 * cost. Statements are reused by SQL text (Kysely and the write batch run one query at
 * a time on the single SQLite connection, so a statement is never in use twice at once).
 */
function withStatementCache(database: Sqlite.Database) {
  const statements = new Map<string, Sqlite.Statement>();
  return {
    close: () => database.close(),
    prepare(sqlText: string) {
      let statement = statements.get(sqlText);
      if (!statement) {
        statement = database.prepare(sqlText);
        if (statements.size >= 1000) statements.clear();
        statements.set(sqlText, statement);
      }
      return statement;
    },
  };
}
