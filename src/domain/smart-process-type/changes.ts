/**
 * What changed in a smart process type, for the audit trail: the fields of its card that
 * differ, each with its value before and after. Flags by name, linkedUserFields as the
 * card shows them, relations as the stored (non-predefined) edges of each side; the
 * predefined edges follow from the flags, so a flag change says it. No I/O.
 */
import type { Changes } from '../audit.js';
import { presentLinkedUserFields, type Edge, type TypeCard, type TypeRecord } from './card.js';
import { FLAG_BIT, FLAG_NAMES } from './fields.js';
import type { RelationSide } from './relations.js';

/** One stored relation as an entry shows it. */
export interface EdgeEntry {
  entityTypeId: number;
  isChildrenListEnabled: boolean;
}

const SIDES: readonly RelationSide[] = ['parent', 'child'];

/** One side of a type's stored edges, as a relations entry of its card shows it, by entityTypeId. */
export function sideOf(edges: readonly Edge[], self: number, side: RelationSide): EdgeEntry[] {
  const out: EdgeEntry[] = [];
  for (const e of edges) {
    if (side === 'parent' && e.child === self && e.parent !== self) out.push({ entityTypeId: e.parent, isChildrenListEnabled: e.isChildrenListEnabled });
    if (side === 'child' && e.parent === self && e.child !== self) out.push({ entityTypeId: e.child, isChildrenListEnabled: e.isChildrenListEnabled });
  }
  return out.sort((a, b) => a.entityTypeId - b.entityTypeId);
}

const sameEntries = (a: readonly EdgeEntry[], b: readonly EdgeEntry[]) =>
  a.length === b.length && a.every((entry, i) => entry.entityTypeId === b[i].entityTypeId && entry.isChildrenListEnabled === b[i].isChildrenListEnabled);

/** The stored edges behind a card's relations (the predefined ones come from flags). */
export function storedEdgesOf(card: TypeCard): Edge[] {
  const self = card.record.entityTypeId;
  const edges: Edge[] = [];
  for (const r of card.relations.parent) if (!r.isPredefined) edges.push({ parent: r.entityTypeId, child: self, isChildrenListEnabled: r.isChildrenListEnabled });
  for (const r of card.relations.child) if (!r.isPredefined) edges.push({ parent: self, child: r.entityTypeId, isChildrenListEnabled: r.isChildrenListEnabled });
  return edges;
}

/** The fields a PATCH can change (title, code, customSectionId, each flag, linkedUserFields) that differ; added to `changes`. */
export function recordChanges(before: TypeRecord, after: TypeRecord, changes: Changes = {}): Changes {
  if (before.title !== after.title) changes.title = { before: before.title, after: after.title };
  if (before.code !== after.code) changes.code = { before: before.code, after: after.code };
  if (before.customSectionId !== after.customSectionId) changes.customSectionId = { before: before.customSectionId, after: after.customSectionId };
  if (before.flags !== after.flags) {
    for (const name of FLAG_NAMES) {
      const bit = FLAG_BIT[name];
      if ((before.flags & bit) !== (after.flags & bit)) changes[name] = { before: (before.flags & bit) !== 0, after: (after.flags & bit) !== 0 };
    }
  }
  if (before.linkedUserFields !== after.linkedUserFields) changes.linkedUserFields = { before: presentLinkedUserFields(before.linkedUserFields), after: presentLinkedUserFields(after.linkedUserFields) };
  return changes;
}

/** `relations.parent` / `relations.child` of `self` when its stored edges on that side differ; added to `changes`. */
export function edgeChanges(self: number, before: readonly Edge[], after: readonly Edge[], changes: Changes = {}): Changes {
  for (const side of SIDES) {
    const [was, now] = [sideOf(before, self, side), sideOf(after, self, side)];
    if (!sameEntries(was, now)) changes[`relations.${side}`] = { before: was, after: now };
  }
  return changes;
}

/** Every field of a type that was created (`after`) or deleted (`before`). */
export function wholeType(record: TypeRecord, edges: readonly Edge[], side: 'before' | 'after'): Changes {
  const changes: Changes = {
    id: { [side]: record.id },
    entityTypeId: { [side]: record.entityTypeId },
    title: { [side]: record.title },
    code: { [side]: record.code },
    customSectionId: { [side]: record.customSectionId },
  };
  for (const name of FLAG_NAMES) changes[name] = { [side]: (record.flags & FLAG_BIT[name]) !== 0 };
  changes.linkedUserFields = { [side]: presentLinkedUserFields(record.linkedUserFields) };
  for (const s of SIDES) changes[`relations.${s}`] = { [side]: sideOf(edges, record.entityTypeId, s) };
  return changes;
}

/** The types at the other end of edges that differ between two edge sets of `self` (added, removed, or isChildrenListEnabled changed). */
export function otherEndsChanged(before: readonly Edge[], after: readonly Edge[], self: number): number[] {
  const state = (edges: readonly Edge[]) => new Map(edges.map((e) => [`${e.parent}>${e.child}`, e]));
  const [was, now] = [state(before), state(after)];
  const changed = new Set<number>();
  for (const [key, edge] of was) if (now.get(key)?.isChildrenListEnabled !== edge.isChildrenListEnabled) changed.add(edge.parent === self ? edge.child : edge.parent);
  for (const [key, edge] of now) if (!was.has(key)) changed.add(edge.parent === self ? edge.child : edge.parent);
  changed.delete(self);
  return [...changed];
}
