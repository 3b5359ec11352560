/**
 * The shape of a resource's field table: each resource (smart process types today, items
 * later) writes its table once, and the list/search parser (list-query.ts) takes it as a
 * parameter. No I/O.
 */
export const FIELD_TYPES = ['integer', 'string', 'boolean', 'datetime', 'user', 'object'] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

export interface FieldSpec {
  name: string;
  type: FieldType;
  title: string;
  isRequired: boolean;
  isReadOnly: boolean;
  isImmutable: boolean;
  isMultiple: boolean;
  isNullable: boolean;
  /** Present in list and search answers (and so selectable, filterable and sortable). */
  inList: boolean;
}

/** A field spec with the usual defaults: optional, writable, single, not null, in lists. */
export function field(name: string, type: FieldType, title: string, extra: Partial<FieldSpec> = {}): FieldSpec {
  return { name, type, title, isRequired: false, isReadOnly: false, isImmutable: false, isMultiple: false, isNullable: false, inList: true, ...extra };
}

/** A field table with the look-ups the list/search parser needs, built once per resource. */
export interface FieldTable {
  fields: readonly FieldSpec[];
  byName: ReadonlyMap<string, FieldSpec>;
  /** Fields present in list and search answers. */
  listFields: readonly FieldSpec[];
  listFieldNames: readonly string[];
}

export function fieldTable(fields: readonly FieldSpec[]): FieldTable {
  const listFields = fields.filter((f) => f.inList);
  return { fields, byName: new Map(fields.map((f) => [f.name, f])), listFields, listFieldNames: listFields.map((f) => f.name) };
}
