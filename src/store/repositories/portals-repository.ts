import type { Selectable, Updateable } from 'kysely';
import type { PortalKind, PortalRecord } from '../../domain/records.js';
import { Repository } from '../repository.js';
import type { PortalsTable } from '../tables.js';
import { Bitrix24PortalsRepository, infoOf } from './bitrix24-portals-repository.js';

/** The counter of automatic entityTypeId values starts here and grows by 2 before use (contract §3.2). */
export const ENTITY_TYPE_ID_COUNTER_START = 1030;

function toRecord(row: Selectable<PortalsTable>): PortalRecord {
  return {
    id: row.id,
    kind: row.kind as PortalRecord['kind'],
    name: row.name,
    domain: row.domain,
    timeZone: row.time_zone,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

export class PortalsRepository extends Repository {
  async create(input: { kind: PortalKind; name: string; domain?: string; timeZone: string }, now = Date.now()): Promise<PortalRecord> {
    const placeholder = input.domain ?? `pending-${now}-${Math.random().toString(36).slice(2)}`;
    const [row] = await this.rows<Selectable<PortalsTable>>(
      this.db
        .insertInto('portals')
        .values({ kind: input.kind, name: input.name, domain: placeholder, time_zone: input.timeZone, last_entity_type_id: ENTITY_TYPE_ID_COUNTER_START, last_type_id: 0, created_at: now, updated_at: now })
        .returningAll(),
    );
    if (input.domain) return toRecord(row);
    const domain = `local-${row.id}.smartproc.local`;
    await this.rows(this.db.updateTable('portals').set({ domain }).where('id', '=', row.id));
    return toRecord({ ...row, domain });
  }

  async get(id: number): Promise<PortalRecord | null> {
    const [row] = await this.rows<Selectable<PortalsTable>>(this.db.selectFrom('portals').selectAll().where('id', '=', id));
    return row ? (await this.withBitrix24([toRecord(row)]))[0] : null;
  }

  async list(): Promise<PortalRecord[]> {
    const rows = await this.rows<Selectable<PortalsTable>>(this.db.selectFrom('portals').selectAll().orderBy('id'));
    return this.withBitrix24(rows.map(toRecord));
  }

  /** bitrix24 portals carry what may be shown of their credential and their limits (migration 003). */
  private async withBitrix24(records: PortalRecord[]): Promise<PortalRecord[]> {
    const ids = records.filter((r) => r.kind === 'bitrix24').map((r) => r.id);
    if (!ids.length) return records;
    const rows = await new Bitrix24PortalsRepository(this.db, this.runner).getMany(ids);
    for (const record of records) {
      const row = rows.get(record.id);
      if (row) record.bitrix24 = infoOf(row);
    }
    return records;
  }

  async count(): Promise<number> {
    const [row] = await this.rows<{ n: number }>(this.db.selectFrom('portals').select((eb) => eb.fn.countAll<number>().as('n')));
    return Number(row.n);
  }

  async update(id: number, changes: { name?: string; timeZone?: string }, now = Date.now()): Promise<PortalRecord | null> {
    const set: Updateable<PortalsTable> = { updated_at: now };
    if (changes.name !== undefined) set.name = changes.name;
    if (changes.timeZone !== undefined) set.time_zone = changes.timeZone;
    await this.rows(this.db.updateTable('portals').set(set).where('id', '=', id));
    return this.get(id);
  }

  /** A bitrix24 portal whose credential now points at another domain. */
  async setDomain(id: number, domain: string, now = Date.now()): Promise<void> {
    await this.rows(this.db.updateTable('portals').set({ domain, updated_at: now }).where('id', '=', id));
  }

  async delete(id: number): Promise<void> {
    await this.rows(this.db.deleteFrom('type_relations').where('portal_id', '=', id));
    await this.rows(this.db.deleteFrom('smart_process_types').where('portal_id', '=', id));
    await this.rows(this.db.deleteFrom('sessions').where('portal_id', '=', id));
    await this.rows(this.db.deleteFrom('key_secrets').where('key_id', 'in', (eb) => eb.selectFrom('api_keys').select('id').where('portal_id', '=', id)));
    await this.rows(this.db.deleteFrom('api_keys').where('portal_id', '=', id));
    await this.rows(this.db.deleteFrom('portals').where('id', '=', id));
  }

  /** Takes the next per-portal type `id` (starts at 1, never reused); null when the portal is gone. */
  async nextTypeId(portalId: number): Promise<number | null> {
    const [row] = await this.rows<{ last_type_id: number }>(this.db.updateTable('portals').set((eb) => ({ last_type_id: eb('last_type_id', '+', 1) })).where('id', '=', portalId).returning('last_type_id'));
    return row ? row.last_type_id : null;
  }

  /** PostgreSQL only: locks the portal row for its deletion (`FOR UPDATE`); false when it is gone. */
  async lockForDelete(id: number): Promise<boolean> {
    return (await this.rows(this.db.selectFrom('portals').select('id').where('id', '=', id).forUpdate())).length > 0;
  }

  /** Advances the automatic entityTypeId counter by 2 and returns the value (callers skip values in use). */
  async advanceEntityTypeIdCounter(portalId: number): Promise<number> {
    const [row] = await this.rows<{ last_entity_type_id: number }>(
      this.db
        .updateTable('portals')
        .set((eb) => ({ last_entity_type_id: eb('last_entity_type_id', '+', 2) }))
        .where('id', '=', portalId)
        .returning('last_entity_type_id'),
    );
    return row.last_entity_type_id;
  }
}
