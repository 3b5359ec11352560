import type { Generated, Kysely, Transaction } from 'kysely';

/** The tables of the store, as Kysely sees them (the migrations create them). */

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
  redirect_uris: string;
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
  user_name: string | null;
  user_email: string | null;
  bitrix24_tokens: number;
  token_prefix: string;
  token_suffix: string;
  expires_at: number;
  created_at: number;
}

export interface SettingsTable {
  name: string;
  value: string;
}

/** The `bitrix24_portals` table (migration 003): one row per bitrix24 portal; `sealed` is SecretBox output. */
export interface Bitrix24PortalsTable {
  portal_id: number;
  credential_type: string;
  sealed: string;
  user_id: number | null;
  domain: string;
  member_id: string | null;
  burst: number;
  per_second: number;
  needs_authorization: number;
  version: number;
  updated_at: number;
}

/** The `audit_log` table (migration 004): one row per change; `changes` is JSON (src/domain/audit.ts). No foreign keys: entries outlive what they describe. */
export interface AuditLogTable {
  id: Generated<number>;
  at: number;
  portal_id: number | null;
  resource: string;
  resource_id: string;
  action: string;
  actor: string;
  key_id: string | null;
  key_kind: string | null;
  user_id: number | null;
  request_id: string | null;
  client_ip: string | null;
  changes: string;
}

/** One user authorization (migration 005): hashes of its secrets, never the secrets. */
export interface OAuthFlowsTable {
  id: string;
  flow_hash: string;
  key_id: string;
  portal_id: number;
  state: string;
  redirect_uri: string | null;
  status: string;
  error_code: string | null;
  user_id: number | null;
  user_name: string | null;
  user_email: string | null;
  sealed_tokens: string | null;
  code_hash: string | null;
  expires_at: number;
  created_at: number;
}

/** A session's Bitrix24 user tokens (migration 005), sealed with the SecretBox. */
export interface Bitrix24UserTokensTable {
  session_id: string;
  portal_id: number;
  sealed: string;
  version: number;
  updated_at: number;
}

export interface Database {
  portals: PortalsTable;
  smart_process_types: SmartProcessTypesTable;
  type_relations: TypeRelationsTable;
  api_keys: ApiKeysTable;
  key_secrets: KeySecretsTable;
  sessions: SessionsTable;
  settings: SettingsTable;
  bitrix24_portals: Bitrix24PortalsTable;
  audit_log: AuditLogTable;
  oauth_flows: OAuthFlowsTable;
  bitrix24_user_tokens: Bitrix24UserTokensTable;
}

export type Dialect = 'sqlite' | 'postgres';
export type Db = Kysely<Database> | Transaction<Database>;
