import type { Selectable } from 'kysely';
import type { Bitrix24CredentialType, Bitrix24PortalInfo } from '../../domain/records.js';
import { Repository, type Runner } from '../repository.js';
import type { Bitrix24PortalsTable, Db, Dialect } from '../tables.js';

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
  constructor(db: Db, runner?: Runner, private readonly dialect: Dialect = 'sqlite') {
    super(db, runner);
  }

  /** `forUpdate`: locked for the rest of the write on PostgreSQL (SQLite's writes run one at a time already). */
  async get(portalId: number, options: { forUpdate?: boolean } = {}): Promise<Bitrix24PortalRow | null> {
    const query = this.db.selectFrom('bitrix24_portals').selectAll().where('portal_id', '=', portalId);
    const [row] = await this.rows<Bitrix24PortalRow>(options.forUpdate && this.dialect === 'postgres' ? query.forUpdate() : query);
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

  /** Stores a refreshed credential; the caller checked, on the row read with `forUpdate` in the same write, that it replaces the right one. */
  async replaceSealed(portalId: number, sealed: string, memberId: string | null, now = Date.now()): Promise<void> {
    await this.rows(
      this.db
        .updateTable('bitrix24_portals')
        .set((eb) => ({ sealed, member_id: memberId, needs_authorization: 0, updated_at: now, version: eb('version', '+', 1) }))
        .where('portal_id', '=', portalId),
    );
  }

  /** Every stored credential (portal id and sealed text), locked for the rest of the write on PostgreSQL: `smartproc secrets rotate`. */
  async allSealed(): Promise<{ portalId: number; sealed: string }[]> {
    const query = this.db.selectFrom('bitrix24_portals').select(['portal_id', 'sealed']).orderBy('portal_id');
    const rows = await this.rows<{ portal_id: number; sealed: string }>(this.dialect === 'postgres' ? query.forUpdate() : query);
    return rows.map((row) => ({ portalId: Number(row.portal_id), sealed: row.sealed }));
  }

  /** The same credential sealed again (with another key): only the sealed text changes, not the version. */
  async reseal(portalId: number, sealed: string): Promise<void> {
    await this.rows(this.db.updateTable('bitrix24_portals').set({ sealed }).where('portal_id', '=', portalId));
  }

  /** The refresh token died; the caller checked, on the row read with `forUpdate` in the same write, that it is still the stored one. */
  async markNeedsAuthorization(portalId: number, now = Date.now()): Promise<void> {
    await this.rows(
      this.db
        .updateTable('bitrix24_portals')
        .set((eb) => ({ needs_authorization: 1, updated_at: now, version: eb('version', '+', 1) }))
        .where('portal_id', '=', portalId),
    );
  }
}
