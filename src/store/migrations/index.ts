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

export async function migrate(store: Store): Promise<void> {
  if (store.dialect === 'postgres' && store.schema) {
    await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(store.schema)}`.execute(store.db).catch((error: unknown) => {
      throw new Error(`Cannot open the store (${store.describe}): ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    });
  }
  const migrator = new Migrator({
    db: store.db,
    provider: { getMigrations: async () => migrations(store) },
    // With ?schema=, keep Kysely's own tables there too (another installation may use the default schema).
    ...(store.dialect === 'postgres' && store.schema ? { migrationTableSchema: store.schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    const message = error instanceof Error ? error.message : String(error);
    // No migration ran: the store could not be reached (or its migration table read).
    throw new Error(failed ? `Migration ${failed.migrationName} failed: ${message}` : `Cannot open the store (${store.describe}): ${message}`, { cause: error });
  }
}
