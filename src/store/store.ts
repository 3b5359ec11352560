import path from 'node:path';
import type { Kysely } from 'kysely';
import type { WarnLog } from '../log-throttle.js';
import type { StoreFailure } from './driver-errors.js';
import { openPostgres } from './postgres.js';
import { openSqlite } from './sqlite.js';
import type { Runner } from './repository.js';
import { AuditRepository } from './repositories/audit-repository.js';
import { Bitrix24PortalsRepository } from './repositories/bitrix24-portals-repository.js';
import { KeysRepository } from './repositories/keys-repository.js';
import { OAuthFlowsRepository } from './repositories/oauth-flows-repository.js';
import { PortalsRepository } from './repositories/portals-repository.js';
import { SettingsRepository } from './repositories/settings-repository.js';
import { TypesRepository } from './repositories/types-repository.js';
import type { Database, Db, Dialect } from './tables.js';
import type { WriteBatch } from './write-batch.js';

export type { StoreFailure } from './driver-errors.js';
export type { AuditRepository, Bitrix24PortalsRepository, KeysRepository, OAuthFlowsRepository, PortalsRepository, SettingsRepository, TypesRepository };
export type { OAuthFlowRecord, OAuthFlowStatus } from './repositories/oauth-flows-repository.js';
export type { Bitrix24PortalRow, Bitrix24PortalValues } from './repositories/bitrix24-portals-repository.js';
/** Secrets at rest (AES-256-GCM): part of the store's public interface, for the layers that seal credentials. */
export { loadSecretBox, SecretBox } from './secret-box.js';
export { migrate } from './migrations/index.js';

/** The repositories of the store, bound to a connection or to one write's transaction. */
export interface Repositories {
  types: TypesRepository;
  portals: PortalsRepository;
  keys: KeysRepository;
  settings: SettingsRepository;
  bitrix24: Bitrix24PortalsRepository;
  /** The audit trail: `record` inside a write puts the entry in the change's own transaction. */
  audit: AuditRepository;
  oauth: OAuthFlowsRepository;
}

/** One write, as `work` sees it: repositories bound to its transaction. */
export interface StoreTransaction {
  readonly repos: Repositories;
  /** SQLite: writes that see the same number share one transaction (and its write lock); null on PostgreSQL. */
  readonly transactionNumber: number | null;
}

export interface WriteOptions {
  /**
   * `work` runs exactly one statement. PostgreSQL runs it without BEGIN/COMMIT (one
   * statement is atomic on its own): one round trip, and a row lock held only while the
   * statement runs. A second statement fails the write (SingleStatementError) before it
   * is sent. SQLite ignores it (its writes share the group-commit transaction).
   */
  singleStatement?: boolean;
}

/** A write declared `singleStatement` tried to run a second statement: it must run in a transaction (store.write without the option). */
export class SingleStatementError extends Error {
  constructor() {
    super('A write declared singleStatement ran a second statement; run it in a transaction (store.write without singleStatement)');
    this.name = 'SingleStatementError';
  }
}

/** What the store can do, for the layers above it (they never ask which database it is). */
export interface StoreCapabilities {
  /** Row locks (SELECT ... FOR UPDATE) order concurrent writes: PostgreSQL. SQLite has one writer at a time. */
  rowLocks: boolean;
  /** This process is the store's one writer, so its caches can be kept current (SQLite); changes by another process show in `dataVersion`. */
  dataVersion: (() => number) | null;
}

export interface Store {
  /** Kysely over the store, for the migrations and for tests that look at rows; services go through `read` and `write`. */
  readonly db: Kysely<Database>;
  /** The database's name, for display (/health, logs); no code decides by it. */
  readonly dialect: Dialect;
  readonly describe: string;
  readonly capabilities: StoreCapabilities;
  /** Repositories outside any transaction: reads, and statements that need none. */
  readonly read: Repositories;
  /**
   * Runs `work` as one atomic write: on SQLite in the group-commit batch (write-batch.ts;
   * a write's own savepoint, answered after the COMMIT), on PostgreSQL in a transaction
   * of its own, run again when PostgreSQL aborts it for a deadlock or serialization
   * conflict. `work` must use only the repositories it is given. `committed` runs right
   * after the COMMIT, before any other request (cache upkeep); its failure is ignored.
   */
  write<T>(work: (tx: StoreTransaction) => Promise<T>, committed?: (value: T) => void, options?: WriteOptions): Promise<T>;
  /** What a failure of the store means, or null when it is not the store's (driver-errors.ts). */
  failureOf(error: unknown): StoreFailure | null;
  /** Counters for tests and the fault suite: writes run again after a conflict (deadlock / serialization). */
  readonly stats: { conflictRetries: number };
  /** SQLite only: the group-commit batch behind `write` (tests look at its statements). */
  readonly writes?: WriteBatch;
  /** PostgreSQL only: the schema chosen with `?schema=` (created by the migrations). */
  readonly schema?: string | null;
  /** Where the store reports connections it lost (PostgreSQL); buildApp points it at the server's log. */
  log: WarnLog;
  close(): Promise<void>;
}

/** Repositories bound to a connection or a write's runner, each made when first used (a PATCH needs two of six). */
class BoundRepositories implements Repositories {
  private typesRepository?: TypesRepository;
  private portalsRepository?: PortalsRepository;
  private keysRepository?: KeysRepository;
  private settingsRepository?: SettingsRepository;
  private bitrix24Repository?: Bitrix24PortalsRepository;
  private auditRepository?: AuditRepository;
  private oauthRepository?: OAuthFlowsRepository;

  constructor(private readonly db: Db, private readonly dialect: Dialect, private readonly runner?: Runner) {}

  get types() {
    return (this.typesRepository ??= new TypesRepository(this.db, this.dialect, this.runner));
  }
  get portals() {
    return (this.portalsRepository ??= new PortalsRepository(this.db, this.runner));
  }
  get keys() {
    return (this.keysRepository ??= new KeysRepository(this.db, this.dialect, this.runner));
  }
  get settings() {
    return (this.settingsRepository ??= new SettingsRepository(this.db, this.runner));
  }
  get bitrix24() {
    return (this.bitrix24Repository ??= new Bitrix24PortalsRepository(this.db, this.runner, this.dialect));
  }
  get audit() {
    return (this.auditRepository ??= new AuditRepository(this.db, this.dialect, this.runner));
  }
  get oauth() {
    return (this.oauthRepository ??= new OAuthFlowsRepository(this.db, this.dialect, this.runner));
  }
}

export function repositoriesOn(db: Db, dialect: Dialect, runner?: Runner): Repositories {
  return new BoundRepositories(db, dialect, runner);
}

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
