import type { Kysely, Selectable, Transaction } from 'kysely';
import type { Bitrix24CredentialType, Bitrix24PortalInfo } from '../../domain/records.js';
import type { Database, Db } from '../database.js';

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

type WithBitrix24 = Database & { bitrix24_portals: Bitrix24PortalsTable };
export type Bitrix24PortalRow = Selectable<Bitrix24PortalsTable>;

export interface Bitrix24PortalValues {
  credentialType: Bitrix24CredentialType;
  sealed: string;
  userId: number | null;
  domain: string;
  memberId: string | null;
  burst: number;
  perSecond: number;
}

export function infoOf(row: Bitrix24PortalRow): Bitrix24PortalInfo {
  const type = row.credential_type as Bitrix24CredentialType;
  return {
    credentials: { type, ...(row.user_id !== null ? { userId: Number(row.user_id) } : {}), domain: row.domain },
    limits: { burst: Number(row.burst), perSecond: Number(row.per_second) },
    memberId: row.member_id,
    needsAuthorization: Number(row.needs_authorization) !== 0,
  };
}

/** Reads and writes bitrix24_portals rows (kept out of database.ts's table list on purpose: Kysely's withTables). */
export class Bitrix24PortalsRepository {
  private readonly db: Kysely<WithBitrix24> | Transaction<WithBitrix24>;

  constructor(db: Db) {
    this.db = (db as Kysely<Database>).withTables<{ bitrix24_portals: Bitrix24PortalsTable }>();
  }

  async get(portalId: number): Promise<Bitrix24PortalRow | null> {
    return (await this.db.selectFrom('bitrix24_portals').selectAll().where('portal_id', '=', portalId).executeTakeFirst()) ?? null;
  }

  async getMany(portalIds: number[]): Promise<Map<number, Bitrix24PortalRow>> {
    if (!portalIds.length) return new Map();
    const rows = await this.db.selectFrom('bitrix24_portals').selectAll().where('portal_id', 'in', portalIds).execute();
    return new Map(rows.map((row) => [Number(row.portal_id), row]));
  }

  async insert(portalId: number, values: Bitrix24PortalValues, now = Date.now()): Promise<void> {
    await this.db
      .insertInto('bitrix24_portals')
      .values({
        portal_id: portalId,
        credential_type: values.credentialType,
        sealed: values.sealed,
        user_id: values.userId,
        domain: values.domain,
        member_id: values.memberId,
        burst: values.burst,
        per_second: values.perSecond,
        needs_authorization: 0,
        version: 1,
        updated_at: now,
      })
      .execute();
  }

  /** Replaces the credential and/or the limits; a new credential clears the needs-authorization mark. */
  async update(portalId: number, changes: Partial<Bitrix24PortalValues>, now = Date.now()): Promise<void> {
    const set: Partial<Bitrix24PortalsTable> = { updated_at: now };
    if (changes.sealed !== undefined) {
      set.sealed = changes.sealed;
      set.credential_type = changes.credentialType!;
      set.user_id = changes.userId ?? null;
      set.domain = changes.domain!;
      set.member_id = changes.memberId ?? null;
      set.needs_authorization = 0;
    }
    if (changes.burst !== undefined) set.burst = changes.burst;
    if (changes.perSecond !== undefined) set.per_second = changes.perSecond;
    await this.db
      .updateTable('bitrix24_portals')
      .set((eb) => ({ ...set, version: eb('version', '+', 1) }))
      .where('portal_id', '=', portalId)
      .execute();
  }

  /** Compare-and-set of a refreshed credential: stored only while the row is still at `version`. */
  async replaceSealed(portalId: number, version: number, sealed: string, memberId: string | null, now = Date.now()): Promise<boolean> {
    const result = await this.db
      .updateTable('bitrix24_portals')
      .set((eb) => ({ sealed, member_id: memberId, needs_authorization: 0, updated_at: now, version: eb('version', '+', 1) }))
      .where('portal_id', '=', portalId)
      .where('version', '=', version)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** The refresh token died; only while the row is still at `version` (a new credential stored meanwhile wins). */
  async markNeedsAuthorization(portalId: number, version: number, now = Date.now()): Promise<boolean> {
    const result = await this.db
      .updateTable('bitrix24_portals')
      .set((eb) => ({ needs_authorization: 1, updated_at: now, version: eb('version', '+', 1) }))
      .where('portal_id', '=', portalId)
      .where('version', '=', version)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }
}
