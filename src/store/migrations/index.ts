import { Migrator, sql, type Migration } from 'kysely';
import type { Store } from '../store.js';
import { initial } from './001-initial.js';
import { orphanEdges } from './002-orphan-edges.js';
import { bitrix24Portals } from './003-bitrix24-portals.js';
import { auditLog } from './004-audit-log.js';
import { userAuthorization } from './005-user-authorization.js';

/** Numbered migrations, applied in order on start. Never edit one that has shipped: add the next. */
function migrations(store: Store): Record<string, Migration> {
  return {
    '001-initial': initial(store.dialect),
    '002-orphan-edges': orphanEdges,
    '003-bitrix24-portals': bitrix24Portals(store.dialect),
    '004-audit-log': auditLog(store.dialect),
    '005-user-authorization': userAuthorization,
  };
}

function migratorOf(store: Store): Migrator {
  return new Migrator({
    db: store.db,
    provider: { getMigrations: async () => migrations(store) },
    // With ?schema=, keep Kysely's own tables there too (another installation may use the default schema).
    ...(store.dialect === 'postgres' && store.schema ? { migrationTableSchema: store.schema } : {}),
  });
}

/**
 * The names of the migrations the store has run, read from Kysely's own table; null when
 * that table does not exist yet. Not through Kysely's Migrator: to find its table it reads
 * the catalog of every table of the whole database (on PostgreSQL, every schema), which
 * cost each GET /ready that much and failed outright when another schema of the database
 * was dropped at the same moment.
 */
async function executedMigrations(store: Store): Promise<Set<string> | null> {
  try {
    const { rows } = await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)}`.execute(store.db);
    return new Set(rows.map((row) => row.name));
  } catch (error) {
    if (isMissingTable(error)) return null;
    throw error;
  }
}

/** Kysely's default: the same table whatever reads it. */
const MIGRATION_TABLE = 'kysely_migration';

function isMissingTable(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === '42P01' || (typeof message === 'string' && message.includes(`no such table: ${MIGRATION_TABLE}`));
}

/** The migrations of this version that the store has not run (GET /ready): none once `migrate` has succeeded. */
export async function pendingMigrations(store: Store): Promise<string[]> {
  const executed = await executedMigrations(store);
  return Object.keys(migrations(store)).filter((name) => !executed?.has(name));
}

/**
 * A catalog object that vanished while Kysely's Migrator read the catalog (another schema
 * of the database dropped meanwhile): the migration had not started; it runs again.
 */
const MIGRATE_ATTEMPTS = 3;
const vanished = (error: unknown) => ['3F000', '42P01', '42704'].includes(String((error as { code?: unknown })?.code));

export async function migrate(store: Store): Promise<void> {
  const opening = (error: unknown) => new Error(`Cannot open the store (${store.describe}): ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  if (store.dialect === 'postgres' && store.schema) {
    await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(store.schema)}`.execute(store.db).catch((error: unknown) => {
      throw opening(error);
    });
  }
  // Up to date (every start but the first after an upgrade): nothing for the Migrator to do.
  const pending = await pendingMigrations(store).catch((error: unknown) => {
    throw opening(error);
  });
  if (!pending.length) return;
  for (let attempt = 1; ; attempt++) {
    const { error, results } = await migratorOf(store).migrateToLatest();
    if (!error) return;
    const failed = results?.find((r) => r.status === 'Error');
    if (!failed && attempt < MIGRATE_ATTEMPTS && vanished(error)) continue;
    const message = error instanceof Error ? error.message : String(error);
    // No migration ran: the store could not be reached (or its migration table read).
    throw new Error(failed ? `Migration ${failed.migrationName} failed: ${message}` : `Cannot open the store (${store.describe}): ${message}`, { cause: error });
  }
}
