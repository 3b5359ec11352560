import type { Kysely } from 'kysely';
import type { Dialect } from '../tables.js';

/**
 * What a `bitrix24` portal needs beside its `portals` row (issue 9 item 1): one row per
 * portal with its credential, sealed with the server's SecretBox (AES-256-GCM; never plain
 * text at rest), what may be shown of it (type, user id, domain, member id), the
 * portal's request limits, whether its refresh token died, and a version for the
 * compare-and-set of OAuth refreshes. Deleted with its portal.
 */
export function bitrix24Portals(dialect: Dialect) {
  const real = dialect === 'postgres' ? 'double precision' : 'real';
  return {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('bitrix24_portals')
        .addColumn('portal_id', 'integer', (c) => c.primaryKey().references('portals.id').onDelete('cascade'))
        .addColumn('credential_type', 'text', (c) => c.notNull())
        .addColumn('sealed', 'text', (c) => c.notNull())
        .addColumn('user_id', 'integer')
        .addColumn('domain', 'text', (c) => c.notNull())
        .addColumn('member_id', 'text')
        .addColumn('burst', 'integer', (c) => c.notNull())
        .addColumn('per_second', real, (c) => c.notNull())
        .addColumn('needs_authorization', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  };
}
