import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../tables.js';

/**
 * The audit trail (issue 11 item 2): one row per change of a type, key, portal or
 * session, written in the change's own transaction. No foreign keys (an entry outlives
 * the record it describes). One index beside the primary key, for the history of one
 * resource of a portal (newest first), and the portal filter of GET /v1/audit; the
 * retention prune walks the primary key from the oldest entry (ids grow with time),
 * and the other filters of GET /v1/audit (key, action, time) scan: an operator's
 * occasional read, while every write pays for each index.
 *
 * The new scope `vibe:mgmt:audit` (GET /v1/audit) is given to the management keys that
 * held every management scope there was (the first-start key among them): they were
 * made to manage everything, and they could read every change through the other routes
 * already. Other management keys get it only when an operator adds it.
 */
export function auditLog(dialect: Dialect) {
  const serial = dialect === 'postgres' ? 'bigserial' : 'integer';
  return {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('audit_log')
        .addColumn('id', serial, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('portal_id', 'integer')
        .addColumn('resource', 'text', (c) => c.notNull())
        .addColumn('resource_id', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text')
        .addColumn('key_kind', 'text')
        .addColumn('user_id', 'integer')
        .addColumn('request_id', 'text')
        .addColumn('client_ip', 'text')
        .addColumn('changes', 'text', (c) => c.notNull())
        .execute();
      // One index beside the primary key: every index costs each write (about 2-3 µs per PATCH on SQLite).
      await db.schema.createIndex('audit_log_resource').on('audit_log').columns(['portal_id', 'resource', 'resource_id', 'id']).execute();
      await grantAuditScope(db);
    },
  };
}

/** Gives `vibe:mgmt:audit` to the management keys that hold both earlier management scopes (exported for its specification). */
export async function grantAuditScope(db: Kysely<any>): Promise<void> {
  await sql`update api_keys set scopes = ${'["vibe:mgmt:keys","vibe:mgmt:portals","vibe:mgmt:audit"]'}
    where kind = 'management' and scopes like ${'%"vibe:mgmt:keys"%'} and scopes like ${'%"vibe:mgmt:portals"%'} and scopes not like ${'%"vibe:mgmt:audit"%'}`.execute(db);
}
