import { sql, type Kysely, type RawBuilder } from 'kysely';

/**
 * Removes relation edges with an end that no longer exists (issue 7, defect 4): before
 * relation writes locked the other end, a PATCH adding an edge to a type that a DELETE was
 * removing at the same moment could store the edge after the type was gone, on PostgreSQL.
 * Such an edge showed on the card of its surviving end and was inherited by a type
 * created later with the same entityTypeId. The surviving end's card changes, so its
 * version (ETag) moves.
 *
 * An end is valid when it is a type of the portal, or one of the CRM types that can be
 * linked and have no row (Lead 1, Deal 2, Contact 3, Company 4, Invoice 7, Order 14,
 * SmartInvoice 31; the list as of this migration).
 */
const CRM_TYPES = [1, 2, 3, 4, 7, 14, 31];

function missing(column: 'parent_entity_type_id' | 'child_entity_type_id'): RawBuilder<boolean> {
  const end = sql.ref(`r.${column}`);
  return sql<boolean>`(${end} not in (${sql.join(CRM_TYPES.map((n) => sql.lit(n)))}) and not exists (select 1 from smart_process_types t where t.portal_id = r.portal_id and t.entity_type_id = ${end}))`;
}

export const orphanEdges = {
  async up(db: Kysely<any>): Promise<void> {
    await sql`update smart_process_types set version = version + 1 where exists (
      select 1 from type_relations r where r.portal_id = smart_process_types.portal_id and (
        (r.parent_entity_type_id = smart_process_types.entity_type_id and ${missing('child_entity_type_id')})
        or (r.child_entity_type_id = smart_process_types.entity_type_id and ${missing('parent_entity_type_id')})))`.execute(db);
    await sql`delete from type_relations as r where ${missing('parent_entity_type_id')} or ${missing('child_entity_type_id')}`.execute(db);
  },
};
