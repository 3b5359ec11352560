import { BASE_ENTITY_TYPES } from '../../src/domain/smart-process-type/relations.js';
import type { Store } from '../../src/store/store.js';

export interface StoredEdge {
  portalId: number;
  parent: number;
  child: number;
}

/**
 * Edges in type_relations with an end that is neither a base CRM type nor a type of
 * that portal: read straight from the store, not through any cache.
 */
export async function orphanEdges(store: Store, portalId?: number): Promise<StoredEdge[]> {
  let edgesQuery = store.db.selectFrom('type_relations').select(['portal_id', 'parent_entity_type_id', 'child_entity_type_id']);
  let typesQuery = store.db.selectFrom('smart_process_types').select(['portal_id', 'entity_type_id']);
  if (portalId !== undefined) {
    edgesQuery = edgesQuery.where('portal_id', '=', portalId);
    typesQuery = typesQuery.where('portal_id', '=', portalId);
  }
  const [edges, types] = await Promise.all([edgesQuery.execute(), typesQuery.execute()]);
  const exists = new Set(types.map((t) => `${t.portal_id}:${t.entity_type_id}`));
  const valid = (portal: number, etid: number) => BASE_ENTITY_TYPES.has(etid) || exists.has(`${portal}:${etid}`);
  return edges
    .filter((e) => !valid(e.portal_id, e.parent_entity_type_id) || !valid(e.portal_id, e.child_entity_type_id))
    .map((e) => ({ portalId: e.portal_id, parent: e.parent_entity_type_id, child: e.child_entity_type_id }));
}

type Relation = { entityTypeId: number; isChildrenListEnabled: boolean; isPredefined: boolean };
export interface CardRelations {
  entityTypeId: number;
  relations: { parent: Relation[]; child: Relation[] };
}

/**
 * Compares what the cards say from both ends: A lists child B (with a flag) exactly when
 * B lists parent A (with the same flag). Only edges between the given cards are compared.
 * Returns the disagreements (empty when both ends agree).
 */
export function endsDisagree(cards: readonly CardRelations[]): string[] {
  const known = new Set(cards.map((c) => c.entityTypeId));
  const fromParents = new Map<string, boolean>();
  const fromChildren = new Map<string, boolean>();
  for (const card of cards) {
    for (const r of card.relations.child) if (known.has(r.entityTypeId)) fromParents.set(`${card.entityTypeId}>${r.entityTypeId}`, r.isChildrenListEnabled);
    for (const r of card.relations.parent) if (known.has(r.entityTypeId)) fromChildren.set(`${r.entityTypeId}>${card.entityTypeId}`, r.isChildrenListEnabled);
  }
  const problems: string[] = [];
  for (const [edge, flag] of fromParents) if (fromChildren.get(edge) !== flag) problems.push(`${edge}: parent says ${flag}, child says ${fromChildren.get(edge)}`);
  for (const [edge, flag] of fromChildren) if (!fromParents.has(edge)) problems.push(`${edge}: child says ${flag}, parent does not list it`);
  return problems;
}

/** A small deterministic PRNG (mulberry32), so that a failing run can be repeated. */
export function randomFrom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
