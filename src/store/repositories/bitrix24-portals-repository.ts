import type { Selectable } from 'kysely';
import type { Bitrix24CredentialType, Bitrix24PortalInfo } from '../../domain/records.js';
import { Repository } from '../repository.js';
import type { Bitrix24PortalsTable } from '../tables.js';

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

/** Reads and writes bitrix24_portals rows. */
export class Bitrix24PortalsRepository extends Repository {
  async get(portalId: number): Promise<Bitrix24PortalRow | null> {
    const [row] = await this.rows<Bitrix24PortalRow>(this.db.selectFrom('bitrix24_portals').selectAll().where('portal_id', '=', portalId));
    return row ?? null;
  }

  async getMany(portalIds: number[]): Promise<Map<number, Bitrix24PortalRow>> {
    if (!portalIds.length) return new Map();
    const rows = await this.rows<Bitrix24PortalRow>(this.db.selectFrom('bitrix24_portals').selectAll().where('portal_id', 'in', portalIds));
    return new Map(rows.map((row) => [Number(row.portal_id), row]));
  }

  async insert(portalId: number, values: Bitrix24PortalValues, now = Date.now()): Promise<void> {
    await this.rows(
      this.db
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
      }),
    );
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
    await this.rows(this.db.updateTable('bitrix24_portals').set((eb) => ({ ...set, version: eb('version', '+', 1) })).where('portal_id', '=', portalId));
  }

  /** Compare-and-set of a refreshed credential: stored only while the row is still at `version`. */
  async replaceSealed(portalId: number, version: number, sealed: string, memberId: string | null, now = Date.now()): Promise<boolean> {
    const updated = await this.rows<{ portal_id: number }>(
      this.db
        .updateTable('bitrix24_portals')
        .set((eb) => ({ sealed, member_id: memberId, needs_authorization: 0, updated_at: now, version: eb('version', '+', 1) }))
        .where('portal_id', '=', portalId)
        .where('version', '=', version)
        .returning('portal_id'),
    );
    return updated.length === 1;
  }

  /** The refresh token died; only while the row is still at `version` (a new credential stored meanwhile wins). */
  async markNeedsAuthorization(portalId: number, version: number, now = Date.now()): Promise<boolean> {
    const updated = await this.rows<{ portal_id: number }>(
      this.db
        .updateTable('bitrix24_portals')
        .set((eb) => ({ needs_authorization: 1, updated_at: now, version: eb('version', '+', 1) }))
        .where('portal_id', '=', portalId)
        .where('version', '=', version)
        .returning('portal_id'),
    );
    return updated.length === 1;
  }
}
