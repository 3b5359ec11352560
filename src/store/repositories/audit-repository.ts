import type { CompiledQuery } from 'kysely';
import type { AuditAction, AuditActor, AuditEntry, AuditEntryInput, AuditFilter, AuditResource } from '../../domain/audit.js';
import type { KeyKind } from '../../domain/records.js';
import { Repository, type Runner } from '../repository.js';
import type { AuditLogTable, Db, Dialect } from '../tables.js';

type Row = Omit<AuditLogTable, 'id'> & { id: number };

function toEntry(row: Row): AuditEntry {
  return {
    id: Number(row.id),
    at: Number(row.at),
    portalId: row.portal_id === null ? null : Number(row.portal_id),
    resource: row.resource as AuditResource,
    resourceId: row.resource_id,
    action: row.action as AuditAction,
    context: {
      actor: row.actor as AuditActor,
      keyId: row.key_id,
      keyKind: row.key_kind as KeyKind | null,
      userId: row.user_id === null ? null : Number(row.user_id),
      requestId: row.request_id,
      clientIp: row.client_ip,
    },
    changes: JSON.parse(row.changes),
  };
}

/** The insert of an entry, compiled once per dialect (it runs in every write: one prepared statement). */
const compiled = new Map<Dialect, CompiledQuery>();

export class AuditRepository extends Repository {
  constructor(db: Db, private readonly dialect: Dialect, runner?: Runner) {
    super(db, runner);
  }

  /** Records one entry, in the transaction of the write this repository is bound to. */
  async record(entry: AuditEntryInput): Promise<void> {
    let query = compiled.get(this.dialect);
    if (!query) {
      query = this.db
        .insertInto('audit_log')
        .values({ at: 0, portal_id: 0, resource: '', resource_id: '', action: '', actor: '', key_id: '', key_kind: '', user_id: 0, request_id: '', client_ip: '', changes: '' })
        .compile();
      compiled.set(this.dialect, query);
    }
    const c = entry.context;
    // In the order of the columns above.
    await this.runner(query, [entry.at, entry.portalId, entry.resource, entry.resourceId, entry.action, c.actor, c.keyId, c.keyKind, c.userId, c.requestId, c.clientIp, JSON.stringify(entry.changes)]);
  }

  /** A page of entries, newest first (by id: the order they were written in), and how many match. */
  async list(filter: AuditFilter, page: { limit: number; offset: number }): Promise<{ entries: AuditEntry[]; total: number }> {
    let query = this.db.selectFrom('audit_log');
    if (filter.portalId !== undefined) query = query.where('portal_id', '=', filter.portalId);
    if (filter.resource !== undefined) query = query.where('resource', '=', filter.resource);
    if (filter.resourceId !== undefined) query = query.where('resource_id', '=', filter.resourceId);
    if (filter.keyId !== undefined) query = query.where('key_id', '=', filter.keyId);
    if (filter.action !== undefined) query = query.where('action', '=', filter.action);
    if (filter.since !== undefined) query = query.where('at', '>=', filter.since);
    if (filter.until !== undefined) query = query.where('at', '<', filter.until);
    const [rows, [count]] = await Promise.all([
      this.rows<Row>(query.selectAll().orderBy('id', 'desc').limit(page.limit).offset(page.offset)),
      this.rows<{ total: number }>(query.select((eb) => eb.fn.countAll<number>().as('total'))),
    ]);
    return { entries: rows.map(toEntry), total: Number(count.total) };
  }

  /**
   * Deletes entries written before `before` (epoch ms) among the `max` oldest (by id: ids
   * grow with time, so this reads the start of the primary key and no index on `at` is
   * needed); how many it deleted, and whether there may be more (it read a full `max`
   * and deleted some: the next call reads past the ones it kept).
   */
  async prune(before: number, max: number): Promise<{ deleted: number; more: boolean }> {
    const oldest = await this.rows<{ id: number; at: number }>(this.db.selectFrom('audit_log').select(['id', 'at']).orderBy('id').limit(max));
    const old = oldest.filter((row) => Number(row.at) < before).map((row) => Number(row.id));
    if (old.length) await this.rows(this.db.deleteFrom('audit_log').where('id', 'in', old));
    return { deleted: old.length, more: oldest.length === max && old.length > 0 };
  }
}
