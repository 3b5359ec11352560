import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../tables.js';

export function initial(dialect: Dialect) {
  const serial = dialect === 'postgres' ? 'serial' : 'integer';
  return {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('portals')
        .addColumn('id', serial, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('domain', 'text', (c) => c.notNull().unique())
        .addColumn('time_zone', 'text', (c) => c.notNull())
        .addColumn('last_entity_type_id', 'integer', (c) => c.notNull())
        .addColumn('last_type_id', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      // flags and linked_user_fields are bit sets; the bit of each field is in src/domain/smart-process-type/fields.ts.
      await db.schema
        .createTable('smart_process_types')
        .addColumn('portal_id', 'integer', (c) => c.notNull().references('portals.id').onDelete('cascade'))
        .addColumn('id', 'integer', (c) => c.notNull())
        .addColumn('entity_type_id', 'integer', (c) => c.notNull())
        .addColumn('title', 'text', (c) => c.notNull())
        .addColumn('title_lower', 'text', (c) => c.notNull())
        .addColumn('code', 'text')
        .addColumn('created_by', 'integer', (c) => c.notNull())
        .addColumn('created_time', 'bigint', (c) => c.notNull())
        .addColumn('updated_by', 'integer', (c) => c.notNull())
        .addColumn('updated_time', 'bigint', (c) => c.notNull())
        .addColumn('custom_section_id', 'integer')
        .addColumn('flags', 'integer', (c) => c.notNull())
        .addColumn('linked_user_fields', 'integer', (c) => c.notNull())
        .addColumn('item_count', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
        .addPrimaryKeyConstraint('smart_process_types_pk', ['portal_id', 'entity_type_id'])
        .addUniqueConstraint('smart_process_types_id_unique', ['portal_id', 'id'])
        .execute();
      await db.schema
        .createIndex('smart_process_types_code_unique')
        .on('smart_process_types')
        .columns(['portal_id', 'code'])
        .unique()
        .where(sql.ref('code'), 'is not', null)
        .execute();

      await db.schema
        .createTable('type_relations')
        .addColumn('portal_id', 'integer', (c) => c.notNull().references('portals.id').onDelete('cascade'))
        .addColumn('parent_entity_type_id', 'integer', (c) => c.notNull())
        .addColumn('child_entity_type_id', 'integer', (c) => c.notNull())
        .addColumn('is_children_list_enabled', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('type_relations_pk', ['portal_id', 'parent_entity_type_id', 'child_entity_type_id'])
        .execute();
      await db.schema.createIndex('type_relations_child').on('type_relations').columns(['portal_id', 'child_entity_type_id']).execute();

      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('portal_id', 'integer', (c) => c.references('portals.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('key_prefix', 'text', (c) => c.notNull())
        .addColumn('key_suffix', 'text', (c) => c.notNull())
        .addColumn('scopes', 'text', (c) => c.notNull())
        .addColumn('access_mode', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addColumn('requests_per_second', 'integer')
        .addColumn('allowed_ips', 'text', (c) => c.notNull())
        .addColumn('user_id', 'integer')
        .addColumn('created_by_key_id', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('key_secrets')
        .addColumn('hash', 'text', (c) => c.primaryKey())
        .addColumn('key_id', 'text', (c) => c.notNull().references('api_keys.id').onDelete('cascade'))
        .addColumn('expires_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('key_secrets_key').on('key_secrets').column('key_id').execute();

      await db.schema
        .createTable('sessions')
        .addColumn('hash', 'text', (c) => c.primaryKey())
        .addColumn('id', 'text', (c) => c.notNull().unique())
        .addColumn('key_id', 'text', (c) => c.notNull().references('api_keys.id').onDelete('cascade'))
        .addColumn('portal_id', 'integer', (c) => c.notNull().references('portals.id').onDelete('cascade'))
        .addColumn('user_id', 'integer', (c) => c.notNull())
        .addColumn('token_prefix', 'text', (c) => c.notNull())
        .addColumn('token_suffix', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('sessions_key').on('sessions').column('key_id').execute();

      await db.schema
        .createTable('settings')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
    },
  };
}
