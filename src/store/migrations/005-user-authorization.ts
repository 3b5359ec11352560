import type { Kysely } from 'kysely';

/**
 * User authorization of application keys (issue 10):
 * - `api_keys.redirect_uris`: where GET /v1/oauth/authorize may send a person back (JSON array);
 * - `sessions.user_name`, `sessions.user_email`: the user the authorization named;
 *   `sessions.bitrix24_tokens`: the session carries the user's own Bitrix24 tokens;
 * - `oauth_flows`: one authorization from GET /v1/oauth/authorize to its collection (poll
 *   or code exchange), so that every step may land on another instance. The flow's own
 *   secret (the sandbox page's and Bitrix24's `state`) and the one-time code are kept as
 *   SHA-256 hashes; a bitrix24 user's tokens, between the callback and the collection,
 *   sealed with the SecretBox. The application's `state` is kept as sent: it travels in
 *   URLs by design and is echoed on the redirect.
 * - `bitrix24_user_tokens`: a session's Bitrix24 user tokens, sealed, with a version for
 *   the refresh compare-and-set; deleted with the session.
 */
export const userAuthorization = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('api_keys').addColumn('redirect_uris', 'text', (c) => c.notNull().defaultTo('[]')).execute();
    await db.schema.alterTable('sessions').addColumn('user_name', 'text').execute();
    await db.schema.alterTable('sessions').addColumn('user_email', 'text').execute();
    await db.schema.alterTable('sessions').addColumn('bitrix24_tokens', 'integer', (c) => c.notNull().defaultTo(0)).execute();

    await db.schema
      .createTable('oauth_flows')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('flow_hash', 'text', (c) => c.notNull().unique())
      .addColumn('key_id', 'text', (c) => c.notNull().references('api_keys.id').onDelete('cascade'))
      .addColumn('portal_id', 'integer', (c) => c.notNull().references('portals.id').onDelete('cascade'))
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('redirect_uri', 'text')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('error_code', 'text')
      .addColumn('user_id', 'integer')
      .addColumn('user_name', 'text')
      .addColumn('user_email', 'text')
      .addColumn('sealed_tokens', 'text')
      .addColumn('code_hash', 'text', (c) => c.unique())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addUniqueConstraint('oauth_flows_key_state', ['key_id', 'state'])
      .execute();
    await db.schema.createIndex('oauth_flows_expires').on('oauth_flows').column('expires_at').execute();

    await db.schema
      .createTable('bitrix24_user_tokens')
      .addColumn('session_id', 'text', (c) => c.primaryKey().references('sessions.id').onDelete('cascade'))
      .addColumn('portal_id', 'integer', (c) => c.notNull().references('portals.id').onDelete('cascade'))
      .addColumn('sealed', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};
