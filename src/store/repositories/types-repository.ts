import type { AuditEntryInput } from '../../domain/audit.js';
import { sql, type CompiledQuery, type Compilable, type Expression, type ExpressionBuilder, type SqlBool } from 'kysely';
import type { Edge, TypeRecord } from '../../domain/smart-process-type/card.js';
import type { Condition, ListQuery } from '../../domain/list-query.js';
import { FLAG_BIT, type FlagName } from '../../domain/smart-process-type/fields.js';
import { Repository, type Runner } from '../repository.js';
import type { Database, Db, SmartProcessTypesTable } from '../tables.js';

type TypesEb = ExpressionBuilder<Database, 'smart_process_types'>;
/** The columns a TypeRecord is read from (not portal_id nor title_lower: each column read costs on every row). */
const RECORD_COLUMNS = [
  'id',
  'entity_type_id',
  'title',
  'code',
  'created_by',
  'created_time',
  'updated_by',
  'updated_time',
  'custom_section_id',
  'flags',
  'linked_user_fields',
  'item_count',
  'version',
] as const satisfies readonly (keyof SmartProcessTypesTable)[];
type Row = Pick<SmartProcessTypesTable, (typeof RECORD_COLUMNS)[number]>;

const COLUMN: Record<string, keyof SmartProcessTypesTable> = {
  id: 'id',
  entityTypeId: 'entity_type_id',
  title: 'title',
  code: 'code',
  createdBy: 'created_by',
  createdTime: 'created_time',
  updatedBy: 'updated_by',
  updatedTime: 'updated_time',
  customSectionId: 'custom_section_id',
};

function toRecord(row: Row): TypeRecord {
  return {
    id: row.id,
    entityTypeId: row.entity_type_id,
    title: row.title,
    code: row.code,
    createdBy: row.created_by,
    createdTime: Number(row.created_time),
    updatedBy: row.updated_by,
    updatedTime: Number(row.updated_time),
    customSectionId: row.custom_section_id,
    flags: row.flags,
    linkedUserFields: row.linked_user_fields,
    itemCount: row.item_count,
    version: row.version,
  };
}

function toRow(portalId: number, r: TypeRecord): SmartProcessTypesTable {
  return {
    portal_id: portalId,
    id: r.id,
    entity_type_id: r.entityTypeId,
    title: r.title,
    title_lower: r.title.toLowerCase(),
    code: r.code,
    created_by: r.createdBy,
    created_time: r.createdTime,
    updated_by: r.updatedBy,
    updated_time: r.updatedTime,
    custom_section_id: r.customSectionId,
    flags: r.flags,
    linked_user_fields: r.linkedUserFields,
    item_count: r.itemCount,
    version: r.version,
  };
}

function flagExpression(name: FlagName) {
  return sql<number>`(${sql.ref('flags')} & ${sql.lit(FLAG_BIT[name])})`;
}

function conditionExpression(eb: TypesEb, c: Condition): Expression<SqlBool> {
  const name = c.field.name;
  if (c.field.type === 'boolean') {
    const wanted = (Array.isArray(c.value) ? c.value : [c.value]) as boolean[];
    const matches = (v: boolean) => (name === 'isInitialized' ? sql<SqlBool>`${sql.lit(v ? 1 : 0)} = 1` : sql<SqlBool>`${flagExpression(name as FlagName)} ${sql.raw(v ? '<>' : '=')} 0`);
    if (c.op === 'in') return wanted.length ? eb.or(wanted.map(matches)) : sql<SqlBool>`1 = 0`;
    return matches(c.op === 'ne' ? !wanted[0] : wanted[0]);
  }
  const column = COLUMN[name];
  if (c.op === 'contains') return sql<SqlBool>`${name === 'title' ? sql.ref('title_lower') : sql`lower(${sql.ref(column)})`} like ${'%' + escapeLike(String(c.value).toLowerCase()) + '%'} escape '\\'`;
  if (c.value === null) return c.op === 'eq' ? eb(column, 'is', null) : eb(column, 'is not', null);
  if (c.op === 'in') {
    const values = (c.value as (string | number | null)[]).filter((v) => v !== null);
    const hasNull = (c.value as unknown[]).includes(null);
    const parts: Expression<SqlBool>[] = [];
    if (values.length) parts.push(eb(column, 'in', values as never[]));
    if (hasNull) parts.push(eb(column, 'is', null));
    return parts.length ? eb.or(parts) : sql<SqlBool>`1 = 0`;
  }
  const operator = { eq: '=', ne: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' }[c.op] as '=';
  const comparison = eb(column, operator, c.value as never);
  return c.op === 'ne' && c.field.isNullable ? eb.or([comparison, eb(column, 'is', null)]) : comparison;
}

function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (ch) => `\\${ch}`);
}

/** The hot queries are built and compiled once per dialect, then run with fresh parameters. */
const compiled = new Map<string, CompiledQuery>();

export class TypesRepository extends Repository {
  constructor(db: Db, private readonly dialect: 'sqlite' | 'postgres', runner?: Runner) {
    super(db, runner);
  }

  private run<R>(name: string, build: () => Compilable, parameters: unknown[]): Promise<R[]> | R[] {
    const key = `${this.dialect}:${name}`;
    let query = compiled.get(key);
    if (!query) {
      query = build().compile();
      compiled.set(key, query);
    }
    return this.runner<R>(query, parameters);
  }

  async get(portalId: number, entityTypeId: number, options: { forUpdate?: boolean } = {}): Promise<TypeRecord | null> {
    const forUpdate = Boolean(options.forUpdate && this.dialect === 'postgres');
    const rows = await this.run<Row>(forUpdate ? 'get-for-update' : 'get', () => {
      const query = this.db.selectFrom('smart_process_types').select(RECORD_COLUMNS).where('portal_id', '=', 0).where('entity_type_id', '=', 0);
      return forUpdate ? query.forUpdate() : query;
    }, [portalId, entityTypeId]);
    return rows.length ? toRecord(rows[0]) : null;
  }

  /**
   * The rows of these types that exist, in ascending entityTypeId. On PostgreSQL the one
   * statement also locks them (FOR UPDATE) in that order: every write that locks more
   * than its own row goes through here, so two writes wait for each other in one order
   * and never deadlock (see docs/architecture.md, "Locking"). `noWait`: a row another
   * transaction holds fails the statement (55P03) instead of being waited for. On SQLite
   * the caller already holds the single write lock.
   */
  async lockInOrder(portalId: number, entityTypeIds: Iterable<number>, options: { noWait?: boolean } = {}): Promise<TypeRecord[]> {
    const wanted = [...new Set(entityTypeIds)].sort((a, b) => a - b);
    if (!wanted.length) return [];
    const query = this.db.selectFrom('smart_process_types').select(RECORD_COLUMNS).where('portal_id', '=', portalId).where('entity_type_id', 'in', wanted).orderBy('entity_type_id');
    const rows = await this.rows<Row>(this.dialect !== 'postgres' ? query : options.noWait ? query.forUpdate().noWait() : query.forUpdate());
    return rows.map(toRecord);
  }

  /** Every type of a portal, in ascending entityTypeId; on PostgreSQL locked in that order (before the portal is deleted). */
  async lockAllInOrder(portalId: number): Promise<number[]> {
    const query = this.db.selectFrom('smart_process_types').select('entity_type_id').where('portal_id', '=', portalId).orderBy('entity_type_id');
    const rows = await this.rows<{ entity_type_id: number }>(this.dialect === 'postgres' ? query.forUpdate() : query);
    return rows.map((row) => row.entity_type_id);
  }

  /** The row's version alone (cheaper than the row): null when there is no such type. */
  async versionOf(portalId: number, entityTypeId: number): Promise<number | null> {
    const rows = await this.run<{ version: number }>('version-of', () => this.db.selectFrom('smart_process_types').select('version').where('portal_id', '=', 0).where('entity_type_id', '=', 0), [portalId, entityTypeId]);
    return rows.length ? rows[0].version : null;
  }

  async entityTypeIds(portalId: number): Promise<Set<number>> {
    const rows = await this.rows<{ entity_type_id: number }>(this.db.selectFrom('smart_process_types').select('entity_type_id').where('portal_id', '=', portalId));
    return new Set(rows.map((r) => r.entity_type_id));
  }

  async isEntityTypeIdUsed(portalId: number, entityTypeId: number): Promise<boolean> {
    return (await this.versionOf(portalId, entityTypeId)) !== null;
  }

  async findByCode(portalId: number, code: string): Promise<TypeRecord | null> {
    const [row] = await this.rows<Row>(this.db.selectFrom('smart_process_types').select(RECORD_COLUMNS).where('portal_id', '=', portalId).where('code', '=', code));
    return row ? toRecord(row) : null;
  }

  async edgesOf(portalId: number, entityTypeId: number): Promise<Edge[]> {
    const rows = await this.run<{ parent_entity_type_id: number; child_entity_type_id: number; is_children_list_enabled: number }>(
      'edges-of',
      () =>
        this.db
          .selectFrom('type_relations')
          .select(['parent_entity_type_id', 'child_entity_type_id', 'is_children_list_enabled'])
          .where('portal_id', '=', 0)
          .where((eb) => eb.or([eb('parent_entity_type_id', '=', 0), eb('child_entity_type_id', '=', 0)])),
      [portalId, entityTypeId, entityTypeId],
    );
    return rows.map((r) => ({ parent: r.parent_entity_type_id, child: r.child_entity_type_id, isChildrenListEnabled: r.is_children_list_enabled !== 0 }));
  }

  /**
   * A page of a list, and the total. The page is read with one row more than asked: when
   * it does not come back, the page is the last one and the total follows from it, without
   * a count query (a list of one page, the common case, is one statement). A list without
   * filter or sort runs a statement compiled once.
   */
  async list(portalId: number, query: ListQuery): Promise<{ records: TypeRecord[]; total: number }> {
    const filtered = () =>
      this.db
        .selectFrom('smart_process_types')
        .where('portal_id', '=', portalId)
        .where((eb) => eb.and(query.conditions.map((c) => conditionExpression(eb, c))));
    let rows: Row[];
    if (!query.conditions.length && !query.sort.length) {
      rows = await this.run<Row>('list-plain', () => this.db.selectFrom('smart_process_types').select(RECORD_COLUMNS).where('portal_id', '=', 0).orderBy('id', 'asc').limit(0).offset(0), [portalId, query.limit + 1, query.offset]);
    } else {
      let page = filtered().select(RECORD_COLUMNS);
      for (const key of query.sort) {
        const expression = key.field in COLUMN ? sql.ref(COLUMN[key.field]) : key.field === 'isInitialized' ? sql.lit(1) : flagExpression(key.field as FlagName);
        page = page.orderBy(expression, key.direction);
      }
      rows = await this.rows<Row>(page.orderBy('id', 'asc').limit(query.limit + 1).offset(query.offset));
    }
    const more = rows.length > query.limit;
    if (more) rows.length = query.limit;
    let total = query.offset + rows.length;
    // More rows after the page, or a page past the end (the total may be below the offset): count them.
    if (more || (rows.length === 0 && query.offset > 0)) {
      const [count] = await this.rows<{ total: number }>(filtered().select((eb) => eb.fn.countAll<number>().as('total')));
      total = Number(count.total);
    }
    return { records: rows.map(toRecord), total };
  }

  async insert(portalId: number, record: TypeRecord): Promise<void> {
    await this.rows(this.db.insertInto('smart_process_types').values(toRow(portalId, record)));
  }

  /** Writes what a PATCH may change (item_count follows the items, not the PATCH). */
  async update(portalId: number, r: TypeRecord): Promise<void> {
    await this.run(
      'update',
      () =>
        this.db
          .updateTable('smart_process_types')
          .set({ title: '', title_lower: '', code: null, updated_by: 0, updated_time: 0, custom_section_id: null, flags: 0, linked_user_fields: 0, version: 0 })
          .where('portal_id', '=', 0)
          .where('entity_type_id', '=', 0),
      // In the order of the columns above.
      [r.title, r.title.toLowerCase(), r.code, r.updatedBy, r.updatedTime, r.customSectionId, r.flags, r.linkedUserFields, r.version, portalId, r.entityTypeId],
    );
  }

  /**
   * PostgreSQL: writes `next` (its title, flags, linkedUserFields, updatedBy, updatedTime and
   * version) over the row only if the row is still `from` (the same id: not a type deleted
   * and made again with the same entityTypeId; the same version), and the audit entries with it,
   * in one statement (a data-modifying CTE; the entries are one JSON parameter, so the
   * statement is the same whatever their number). The PATCHes of one type that an instance
   * groups (src/portals/local/patch-group.ts) are written so: one statement, one commit.
   * True when written; false when the row was not `from` any more (changed or deleted meanwhile).
   */
  async writeIfVersion(portalId: number, from: TypeRecord, next: TypeRecord, entries: readonly AuditEntryInput[]): Promise<boolean> {
    if (this.dialect !== 'postgres') throw new Error('writeIfVersion is a PostgreSQL statement');
    const audit = entries.map((e) => ({
      at: e.at,
      portal_id: e.portalId,
      resource: e.resource,
      resource_id: e.resourceId,
      action: e.action,
      actor: e.context.actor,
      key_id: e.context.keyId,
      key_kind: e.context.keyKind,
      user_id: e.context.userId,
      request_id: e.context.requestId,
      client_ip: e.context.clientIp,
      changes: JSON.stringify(e.changes),
    }));
    const rows = await this.run<{ version: number }>(
      'write-if-version',
      () => ({
        compile: () =>
          sql`with u as (update smart_process_types set title = $1, title_lower = $2, flags = $3::integer, linked_user_fields = $4::integer, updated_by = $5::integer, updated_time = $6::bigint, version = $7::integer where portal_id = $8 and entity_type_id = $9 and id = $10 and version = $11 returning version), a as (insert into audit_log (at, portal_id, resource, resource_id, action, actor, key_id, key_kind, user_id, request_id, client_ip, changes) select e.at, e.portal_id, e.resource, e.resource_id, e.action, e.actor, e.key_id, e.key_kind, e.user_id, e.request_id, e.client_ip, e.changes from u, rows from (jsonb_to_recordset($12::jsonb) as (at bigint, portal_id integer, resource text, resource_id text, action text, actor text, key_id text, key_kind text, user_id integer, request_id text, client_ip text, changes text)) with ordinality as e(at, portal_id, resource, resource_id, action, actor, key_id, key_kind, user_id, request_id, client_ip, changes, n) order by e.n) select version from u`.compile(this.db),
      }),
      [next.title, next.title.toLowerCase(), next.flags, next.linkedUserFields, next.updatedBy, next.updatedTime, next.version, portalId, next.entityTypeId, from.id, from.version, JSON.stringify(audit)],
    );
    return rows.length === 1;
  }

  /**
   * Moves the version (the ETag) of types whose card changed without their row changing:
   * the other ends of relation edges that were added, removed or changed.
   */
  async bumpVersions(portalId: number, entityTypeIds: readonly number[]): Promise<void> {
    if (!entityTypeIds.length) return;
    await this.rows(
      this.db
        .updateTable('smart_process_types')
        .set((eb) => ({ version: eb('version', '+', 1) }))
        .where('portal_id', '=', portalId)
        .where('entity_type_id', 'in', [...entityTypeIds].sort((a, b) => a - b)),
    );
  }

  async delete(portalId: number, entityTypeId: number): Promise<void> {
    await this.rows(this.db.deleteFrom('type_relations').where('portal_id', '=', portalId).where((eb) => eb.or([eb('parent_entity_type_id', '=', entityTypeId), eb('child_entity_type_id', '=', entityTypeId)])));
    await this.rows(this.db.deleteFrom('smart_process_types').where('portal_id', '=', portalId).where('entity_type_id', '=', entityTypeId));
  }

  /** Replaces the edges on one side of a type: its parents (edges X → type) or its children (type → X). */
  async replaceEdges(portalId: number, entityTypeId: number, side: 'parent' | 'child', entries: { entityTypeId: number; isChildrenListEnabled: boolean }[]): Promise<void> {
    const ownColumn = side === 'parent' ? 'child_entity_type_id' : 'parent_entity_type_id';
    await this.rows(this.db.deleteFrom('type_relations').where('portal_id', '=', portalId).where(ownColumn, '=', entityTypeId));
    if (!entries.length) return;
    await this.rows(
      this.db
      .insertInto('type_relations')
      .values(
        entries.map((e) => ({
          portal_id: portalId,
          parent_entity_type_id: side === 'parent' ? e.entityTypeId : entityTypeId,
          child_entity_type_id: side === 'parent' ? entityTypeId : e.entityTypeId,
          is_children_list_enabled: e.isChildrenListEnabled ? 1 : 0,
        })),
      ),
    );
  }

  async setItemCount(portalId: number, entityTypeId: number, count: number): Promise<void> {
    await this.rows(this.db.updateTable('smart_process_types').set({ item_count: count }).where('portal_id', '=', portalId).where('entity_type_id', '=', entityTypeId));
  }

  async countForPortal(portalId: number): Promise<number> {
    const [row] = await this.rows<{ n: number }>(this.db.selectFrom('smart_process_types').select((eb) => eb.fn.countAll<number>().as('n')).where('portal_id', '=', portalId));
    return Number(row.n);
  }
}
