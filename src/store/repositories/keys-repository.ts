import type { AccessMode, KeyKind, KeyRecord, SessionRecord } from '../../domain/records.js';
import { Repository, type Runner } from '../repository.js';
import type { ApiKeysTable, Db, Dialect, SessionsTable } from '../tables.js';

function toKey(row: ApiKeysTable): KeyRecord {
  return {
    id: row.id,
    kind: row.kind as KeyKind,
    portalId: row.portal_id,
    name: row.name,
    keyPrefix: row.key_prefix,
    keySuffix: row.key_suffix,
    scopes: JSON.parse(row.scopes),
    accessMode: row.access_mode as AccessMode,
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    requestsPerSecond: row.requests_per_second,
    allowedIps: JSON.parse(row.allowed_ips),
    redirectUris: JSON.parse(row.redirect_uris ?? '[]'),
    userId: row.user_id,
    createdByKeyId: row.created_by_key_id,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function toRow(key: KeyRecord): ApiKeysTable {
  return {
    id: key.id,
    kind: key.kind,
    portal_id: key.portalId,
    name: key.name,
    key_prefix: key.keyPrefix,
    key_suffix: key.keySuffix,
    scopes: JSON.stringify(key.scopes),
    access_mode: key.accessMode,
    expires_at: key.expiresAt,
    requests_per_second: key.requestsPerSecond,
    allowed_ips: JSON.stringify(key.allowedIps),
    redirect_uris: JSON.stringify(key.redirectUris),
    user_id: key.userId,
    created_by_key_id: key.createdByKeyId,
    created_at: key.createdAt,
    updated_at: key.updatedAt,
  };
}

export class KeysRepository extends Repository {
  constructor(db: Db, private readonly dialect: Dialect, runner?: Runner) {
    super(db, runner);
  }

  async insert(key: KeyRecord, secretHash: string): Promise<void> {
    await this.rows(this.db.insertInto('api_keys').values(toRow(key)));
    await this.addSecret(key.id, secretHash, null, key.createdAt);
  }

  async addSecret(keyId: string, hash: string, expiresAt: number | null, now = Date.now()): Promise<void> {
    await this.rows(this.db.insertInto('key_secrets').values({ hash, key_id: keyId, expires_at: expiresAt, created_at: now }));
  }

  /** Ends every secret of a key except `keep` at `at` (now, or the end of a grace period). */
  async expireOtherSecrets(keyId: string, keep: string, at: number): Promise<void> {
    await this.rows(
      this.db
        .updateTable('key_secrets')
        .set({ expires_at: at })
        .where('key_id', '=', keyId)
        .where('hash', '<>', keep)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)])),
    );
    await this.rows(this.db.deleteFrom('key_secrets').where('key_id', '=', keyId).where('expires_at', '<=', Date.now() - 86_400_000));
  }

  async findBySecretHash(hash: string): Promise<{ key: KeyRecord; secretExpiresAt: number | null } | null> {
    const [row] = await this.rows<ApiKeysTable & { secret_expires_at: number | null }>(
      this.db
        .selectFrom('key_secrets')
        .innerJoin('api_keys', 'api_keys.id', 'key_secrets.key_id')
        .selectAll('api_keys')
        .select('key_secrets.expires_at as secret_expires_at')
        .where('key_secrets.hash', '=', hash),
    );
    if (!row) return null;
    const { secret_expires_at, ...key } = row;
    return { key: toKey(key), secretExpiresAt: secret_expires_at === null ? null : Number(secret_expires_at) };
  }

  /** `forUpdate`: locked for the rest of the write on PostgreSQL (SQLite's writes run one at a time already). */
  async get(id: string, options: { forUpdate?: boolean } = {}): Promise<KeyRecord | null> {
    const query = this.db.selectFrom('api_keys').selectAll().where('id', '=', id);
    const [row] = await this.rows<ApiKeysTable>(options.forUpdate && this.dialect === 'postgres' ? query.forUpdate() : query);
    return row ? toKey(row) : null;
  }

  async list(filter: { portalId?: number; kind?: KeyKind } = {}): Promise<KeyRecord[]> {
    let query = this.db.selectFrom('api_keys').selectAll().orderBy('created_at').orderBy('id');
    if (filter.portalId !== undefined) query = query.where('portal_id', '=', filter.portalId);
    if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
    return (await this.rows<ApiKeysTable>(query)).map(toKey);
  }

  async countForPortal(portalId: number): Promise<number> {
    const [row] = await this.rows<{ n: number }>(this.db.selectFrom('api_keys').select((eb) => eb.fn.countAll<number>().as('n')).where('portal_id', '=', portalId));
    return Number(row.n);
  }

  /** false when there is no such key (deleted meanwhile). */
  async update(key: KeyRecord): Promise<boolean> {
    const { id, ...changes } = toRow(key);
    return (await this.rows<{ id: string }>(this.db.updateTable('api_keys').set(changes).where('id', '=', id).returning('id'))).length > 0;
  }

  /** Deletes a key with its secrets and sessions; false when there was no such key. */
  async delete(id: string): Promise<boolean> {
    await this.rows(this.db.deleteFrom('sessions').where('key_id', '=', id));
    await this.rows(this.db.deleteFrom('key_secrets').where('key_id', '=', id));
    const deleted = await this.rows<{ id: string }>(this.db.deleteFrom('api_keys').where('id', '=', id).returning('id'));
    return deleted.length > 0;
  }

  async insertSession(session: SessionRecord, hash: string): Promise<void> {
    await this.rows(
      this.db.insertInto('sessions').values({
        hash,
        id: session.id,
        key_id: session.keyId,
        portal_id: session.portalId,
        user_id: session.userId,
        user_name: session.userName,
        user_email: session.userEmail,
        bitrix24_tokens: session.bitrix24Tokens ? 1 : 0,
        token_prefix: session.tokenPrefix,
        token_suffix: session.tokenSuffix,
        expires_at: session.expiresAt,
        created_at: session.createdAt,
      }),
    );
    await this.rows(this.db.deleteFrom('sessions').where('expires_at', '<', session.createdAt - 86_400_000));
  }

  /** Ends a session by its token's hash at once (its Bitrix24 user tokens go with it); the session, or null when there was none. */
  async deleteSessionByHash(hash: string): Promise<SessionRecord | null> {
    const [row] = await this.rows<SessionsTable>(this.db.deleteFrom('sessions').where('hash', '=', hash).returningAll());
    return row ? toSession(row) : null;
  }

  async findSession(hash: string): Promise<SessionRecord | null> {
    const [row] = await this.rows<SessionsTable>(this.db.selectFrom('sessions').selectAll().where('hash', '=', hash));
    return row ? toSession(row) : null;
  }

  /** Deletes a session by its id; the session it was, or null when there was none. */
  async deleteSession(id: string): Promise<SessionRecord | null> {
    const [row] = await this.rows<SessionsTable>(this.db.deleteFrom('sessions').where('id', '=', id).returningAll());
    return row ? toSession(row) : null;
  }
}

function toSession(row: SessionsTable): SessionRecord {
  return {
    id: row.id,
    keyId: row.key_id,
    portalId: row.portal_id,
    userId: row.user_id,
    userName: row.user_name ?? null,
    userEmail: row.user_email ?? null,
    bitrix24Tokens: Number(row.bitrix24_tokens ?? 0) !== 0,
    tokenPrefix: row.token_prefix,
    tokenSuffix: row.token_suffix,
    expiresAt: Number(row.expires_at),
    createdAt: Number(row.created_at),
  };
}
