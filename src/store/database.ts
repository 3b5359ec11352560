import fs from 'node:fs';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect, type Compilable, type CompiledQuery, type Generated, type Transaction } from 'kysely';
import { LogThrottle, stderrLog, type WarnLog } from '../log-throttle.js';
import { guardAgainstSelfWait, WriteBatch } from './write-batch.js';

export interface PortalsTable {
  id: Generated<number>;
  kind: string;
  name: string;
  domain: string;
  time_zone: string;
  last_entity_type_id: number;
  last_type_id: number;
  created_at: number;
  updated_at: number;
}

export interface SmartProcessTypesTable {
  portal_id: number;
  id: number;
  entity_type_id: number;
  title: string;
  title_lower: string;
  code: string | null;
  created_by: number;
  created_time: number;
  updated_by: number;
  updated_time: number;
  custom_section_id: number | null;
  flags: number;
  linked_user_fields: number;
  item_count: number;
  version: number;
}

export interface TypeRelationsTable {
  portal_id: number;
  parent_entity_type_id: number;
  child_entity_type_id: number;
  is_children_list_enabled: number;
}

export interface ApiKeysTable {
  id: string;
  kind: string;
  portal_id: number | null;
  name: string;
  key_prefix: string;
  key_suffix: string;
  scopes: string;
  access_mode: string;
  expires_at: number | null;
  requests_per_second: number | null;
  allowed_ips: string;
  user_id: number | null;
  created_by_key_id: string | null;
  created_at: number;
  updated_at: number;
}

export interface KeySecretsTable {
  hash: string;
  key_id: string;
  expires_at: number | null;
  created_at: number;
}

export interface SessionsTable {
  hash: string;
  id: string;
  key_id: string;
  portal_id: number;
  user_id: number;
  token_prefix: string;
  token_suffix: string;
  expires_at: number;
  created_at: number;
}

export interface SettingsTable {
  name: string;
  value: string;
}

export interface Database {
  portals: PortalsTable;
  smart_process_types: SmartProcessTypesTable;
  type_relations: TypeRelationsTable;
  api_keys: ApiKeysTable;
  key_secrets: KeySecretsTable;
  sessions: SessionsTable;
  settings: SettingsTable;
}

export type Dialect = 'sqlite' | 'postgres';
export type Db = Kysely<Database> | Transaction<Database>;

/**
 * Runs one compiled statement and gives its rows. Repositories build statements with
 * Kysely and run them through a Runner: Kysely's own executor (a pool or a
 * transaction), or, inside a SQLite write batch, the SQLite connection directly.
 */
export type Runner = <R>(query: CompiledQuery, parameters?: readonly unknown[]) => Promise<R[]> | R[];

export function kyselyRunner(db: Db): Runner {
  return async <R>(query: CompiledQuery, parameters?: readonly unknown[]) => (await db.executeQuery<R>(parameters ? { ...query, parameters } : query)).rows;
}

/** A repository builds its statements with `db` and runs them through `runner` (Kysely's executor unless a write batch gives another). */
export abstract class Repository {
  constructor(protected readonly db: Db, protected readonly runner: Runner = kyselyRunner(db)) {}

  protected rows<R>(query: Compilable): Promise<R[]> | R[] {
    return this.runner<R>(query.compile());
  }
}

export interface Store {
  db: Kysely<Database>;
  dialect: Dialect;
  /** SQLite only: PRAGMA data_version, which changes when another connection commits. */
  dataVersion?: () => number;
  /** SQLite only: group commit of writes (see write-batch.ts). */
  writes?: WriteBatch;
  /** PostgreSQL only: the schema chosen with `?schema=` (created by the migrations). */
  schema?: string | null;
  describe: string;
  /** Where the store reports connections it lost (PostgreSQL); buildApp points it at the server's log. */
  log: WarnLog;
  close(): Promise<void>;
}

// int8 (bigint) columns hold epoch milliseconds: well inside 2^53.
pg.types.setTypeParser(20, (value) => Number.parseInt(value, 10));

export interface StoreOptions {
  databaseUrl: string | null;
  dataDir: string;
  /** SQLite only: a file path or ':memory:'; defaults to DATA_DIR/smartproc.db. */
  sqliteFile?: string;
}

export function openStore(options: StoreOptions): Store {
  if (options.databaseUrl && /^postgres(ql)?:\/\//.test(options.databaseUrl)) return openPostgres(options.databaseUrl);
  if (options.databaseUrl && !options.databaseUrl.startsWith('sqlite:')) {
    throw new Error(`DATABASE_URL must start with postgres:// or sqlite: (got "${options.databaseUrl.split(':')[0]}:...")`);
  }
  const file = options.sqliteFile ?? (options.databaseUrl ? options.databaseUrl.slice('sqlite:'.length) : path.join(options.dataDir, 'smartproc.db'));
  return openSqlite(file);
}

function openSqlite(file: string): Store {
  if (file !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const database = new Sqlite(file);
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = NORMAL');
  database.pragma('foreign_keys = ON');
  database.pragma('busy_timeout = 5000');
  const cached = withStatementCache(database);
  const db = new Kysely<Database>({ dialect: new GuardedSqliteDialect({ database: cached }) });
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
  return { db, dialect: 'sqlite', dataVersion: () => dataVersion.get() as number, writes, describe: file === ':memory:' ? 'SQLite (in memory)' : `SQLite ${path.resolve(file)}`, log: stderrLog, close: () => db.destroy() };
}

/** Kysely's SQLite dialect whose driver fails loudly where a batched write would wait for itself. */
class GuardedSqliteDialect extends SqliteDialect {
  override createDriver() {
    return guardAgainstSelfWait(super.createDriver());
  }
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
function openPostgres(databaseUrl: string): Store {
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
  const store: Store = { db, dialect: 'postgres', schema, describe, log: stderrLog, close: () => db.destroy() };
  return store;
}
