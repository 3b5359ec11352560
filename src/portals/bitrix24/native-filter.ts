/**
 * /v1 list queries (ListQuery) → crm.type.list `order` and `filter`, plus what smartproc
 * must still do itself (residual filter, in-memory sort, paging). Pure: no I/O.
 *
 * What the native list takes, from crm-type-list.md
 * (api-reference/crm/universal/user-defined-object-types/crm-type-list.md):
 * - `filter`: keys are fields of the `type` object, optionally prefixed: `>=`, `>`, `<=`,
 *   `<`, `@` (IN, array value), `!@`, `%` (LIKE substring), `=%`, `%=`, `!%`, `!=%`,
 *   `!%=`, `=` ("equal, exact match (used by default)"), `!=` and `!` (not equal); AND by
 *   default. Used here: the bare key (equal), `!=`, `>`, `>=`, `<`, `<=`, `@`.
 * - `order`: `{field: "ASC" | "DESC"}` over fields of the `type` object.
 * - `start`: pages are always 50 records; `start = (N-1) * 50`; the answer has `total`
 *   and, when more remain, `next` (settings/how-to-call-rest-api/list-methods-pecularities.md).
 *
 * Conservative choices (what the docs do not say, smartproc does itself):
 * - Fields: only those both in the `type` object (api-reference/crm/data-types.md) and in
 *   crm.type.fields: id, entityTypeId, createdBy, updatedBy, customSectionId, title, code,
 *   createdTime, updatedTime and the 14 documented flags. isPaymentsEnabled and
 *   isCountersEnabled ("system fields", not in crm.type.fields), isRecurringEnabled (not
 *   native) and isInitialized (not native, always true) are never sent.
 * - Booleans: the docs' own filter example sends "Y"; $ne is sent as equality with the
 *   opposite value (a flag is never null).
 * - Integers: exact natively, with SQL semantics for null (customSectionId > 5 excludes
 *   null on both sides). Null tests and $ne on the nullable customSectionId (/v1 includes
 *   the nulls) stay residual.
 * - Text (title, code): the docs do not say whether comparisons follow a case-insensitive
 *   collation (Bitrix24 runs on MySQL, where they usually do) nor whether `%` escapes `%`
 *   and `_`. So `$contains` (case-insensitive in /v1), $ne and ordered comparisons are
 *   residual only; equality and $in are sent as a *prefilter* (a case- or
 *   accent-insensitive `=` can only match more, never less) and checked again in memory.
 * - Times: the docs do not say how a filter value's offset is read against times stored in
 *   the server's zone, so time conditions are residual; time sorting too (wall-clock times
 *   of a DST fall-back hour do not sort as instants).
 * - Sorting: natively only when every key is an integer field without nulls (id,
 *   entityTypeId, createdBy, updatedBy) or a documented flag ("N" < "Y", as false < true);
 *   `id ASC` is appended as the local store does. Otherwise everything is sorted in memory.
 */
import type { Condition, FilterValue, ListQuery, SortKey } from '../../domain/list-query.js';
import type { TypeRecord } from '../../domain/smart-process-type/card.js';
import { FLAG_BIT, type FlagName } from '../../domain/smart-process-type/fields.js';
import { NATIVE_WRITABLE_FLAGS } from './native-mapping.js';

/** crm.type.list pages: "The page size of results is always static — 50 records." */
export const NATIVE_PAGE_SIZE = 50;

export type NativeFilterValue = string | number | (string | number)[];
export type NativeOrder = Record<string, 'ASC' | 'DESC'>;

export interface Residual {
  /** Conditions smartproc applies to the records it reads (AND-ed), with the local store's semantics. */
  conditions: Condition[];
  /** True when the native `order` already gives the requested order; false: sort in memory by `sort`. */
  sortApplied: boolean;
  sort: SortKey[];
}

export interface NativeListPlan {
  order: NativeOrder;
  filter: Record<string, NativeFilterValue>;
  residual: Residual;
  /**
   * True when the answer cannot be read as a window of native pages: a residual condition
   * may drop records of any page, or the sort is done in memory. Then every page must be
   * read (start = 0, then `next` until absent), applyResidual run, and offset/limit taken
   * from the result, whose length is the total. False: read the pages of planPages(offset,
   * limit) and take `total` from the portal.
   */
  readAll: boolean;
  /** A condition no record can meet ($in with no values, isInitialized=false): answer an empty list without calling the portal. */
  matchesNothing: boolean;
}

const NATIVE_FLAGS: ReadonlySet<string> = new Set(NATIVE_WRITABLE_FLAGS);
/** Integer fields without nulls: exact natively for every operator. */
const NATIVE_INTEGERS: ReadonlySet<string> = new Set(['id', 'entityTypeId', 'createdBy', 'updatedBy']);
const NATIVE_ORDER_FIELDS: ReadonlySet<string> = new Set([...NATIVE_INTEGERS, ...NATIVE_FLAGS]);
const PREFIX = { eq: '', ne: '!=', gt: '>', gte: '>=', lt: '<', lte: '<=', in: '@' } as const;

type Translation =
  /** The condition holds for every record: drop it. */
  | { kind: 'always' }
  /** No record meets it. */
  | { kind: 'never' }
  /** Send `key: value`; with `recheck` the native result is a superset and the condition stays residual too. */
  | { kind: 'native'; key: string; value: NativeFilterValue; recheck: boolean }
  | { kind: 'residual' };

const RESIDUAL: Translation = { kind: 'residual' };

function translate(c: Condition): Translation {
  const name = c.field.name;
  if (c.field.type === 'boolean') {
    const wanted = new Set((c.op === 'in' ? (c.value as boolean[]) : [c.op === 'ne' ? !c.value : (c.value as boolean)]));
    if (wanted.size === 0) return { kind: 'never' };
    if (wanted.size === 2) return { kind: 'always' };
    const [value] = wanted;
    if (name === 'isInitialized') return { kind: value ? 'always' : 'never' };
    return NATIVE_FLAGS.has(name) ? { kind: 'native', key: name, value: value ? 'Y' : 'N', recheck: false } : RESIDUAL;
  }
  if (c.op === 'in' && (c.value as FilterValue[]).length === 0) return { kind: 'never' };
  const hasNull = c.value === null || (Array.isArray(c.value) && c.value.includes(null));
  if (hasNull || c.op === 'contains') return RESIDUAL;
  const value = c.value as NativeFilterValue;
  if (NATIVE_INTEGERS.has(name)) return { kind: 'native', key: PREFIX[c.op] + name, value, recheck: false };
  if (name === 'customSectionId') return c.op === 'ne' ? RESIDUAL : { kind: 'native', key: PREFIX[c.op] + name, value, recheck: false };
  if (name === 'title' || name === 'code') return c.op === 'eq' || c.op === 'in' ? { kind: 'native', key: PREFIX[c.op] + name, value, recheck: true } : RESIDUAL;
  return RESIDUAL; // createdTime, updatedTime
}

/** Splits a list query into the native crm.type.list parameters and what smartproc does itself. */
export function toNativeList(query: ListQuery): NativeListPlan {
  const filter: Record<string, NativeFilterValue> = {};
  const conditions: Condition[] = [];
  let matchesNothing = false;
  for (const c of query.conditions) {
    const t = translate(c);
    if (t.kind === 'always') continue;
    if (t.kind === 'never') {
      matchesNothing = true;
      continue;
    }
    // One key per condition: a second condition on the same key (a JSON object holds one) stays residual.
    if (t.kind === 'native' && !(t.key in filter)) {
      filter[t.key] = t.value;
      if (t.recheck) conditions.push(c);
    } else conditions.push(c);
  }

  const keys = query.sort.filter((k) => k.field !== 'isInitialized'); // a constant: orders nothing
  const sortApplied = keys.every((k) => NATIVE_ORDER_FIELDS.has(k.field));
  const order: NativeOrder = {};
  if (sortApplied) for (const k of keys) if (!(k.field in order)) order[k.field] = k.direction === 'asc' ? 'ASC' : 'DESC';
  if (!('id' in order)) order.id = 'ASC';

  return {
    order,
    filter,
    residual: { conditions, sortApplied, sort: sortApplied ? [] : keys },
    readAll: conditions.length > 0 || !sortApplied,
    matchesNothing,
  };
}

/**
 * The native pages holding records offset .. offset+limit-1 of the native order (when
 * !readAll): read them in order (stop early when an answer has no `next`), concatenate,
 * and take `limit` records from index `skip`. The first page's `total` is the total.
 */
export function planPages(offset: number, limit: number): { starts: number[]; skip: number } {
  const first = Math.floor(offset / NATIVE_PAGE_SIZE);
  const last = Math.floor((offset + Math.max(limit, 1) - 1) / NATIVE_PAGE_SIZE);
  const starts: number[] = [];
  for (let page = first; page <= last; page++) starts.push(page * NATIVE_PAGE_SIZE);
  return { starts, skip: offset - first * NATIVE_PAGE_SIZE };
}

// ---------------------------------------------------------------------------------------------
// Residual semantics: those of the local store (TypesRepository conditionExpression, SQLite)
// ---------------------------------------------------------------------------------------------

type Value = number | string | boolean | null;

function valueOf(record: TypeRecord, field: string): Value {
  switch (field) {
    case 'id':
    case 'entityTypeId':
    case 'title':
    case 'code':
    case 'createdBy':
    case 'createdTime':
    case 'updatedBy':
    case 'updatedTime':
    case 'customSectionId':
      return record[field];
    case 'isInitialized':
      return true;
    default:
      return (record.flags & FLAG_BIT[field as FlagName]) !== 0;
  }
}

/** Text by code point, as SQLite's BINARY collation compares UTF-8 bytes (JS `<` compares UTF-16 units). */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.length < b.length ? -1 : 1;
}

function compareValues(a: Value, b: Value): number {
  if (typeof a === 'string' && typeof b === 'string') return compareCodePoints(a, b);
  return a === b ? 0 : (a as number) < (b as number) ? -1 : 1;
}

/**
 * One condition on one record, as the local store's SQL answers it: booleans by bit;
 * `contains` ignores case (lower-cased on both sides, % and _ literal) and never matches
 * null; null compares only with equality / $ne; `in` matches its values and null when
 * listed; a comparison with a null field is false, except $ne on a nullable field, which
 * includes the nulls.
 */
export function matchesCondition(record: TypeRecord, c: Condition): boolean {
  const actual = valueOf(record, c.field.name);
  if (c.field.type === 'boolean') {
    const wanted = (Array.isArray(c.value) ? c.value : [c.value]) as boolean[];
    if (c.op === 'in') return wanted.includes(actual as boolean);
    return c.op === 'ne' ? actual !== wanted[0] : actual === wanted[0];
  }
  if (c.op === 'contains') return actual !== null && String(actual).toLowerCase().includes(String(c.value).toLowerCase());
  if (c.value === null) return c.op === 'eq' ? actual === null : actual !== null;
  if (c.op === 'in') return (c.value as FilterValue[]).some((v) => (v === null ? actual === null : actual !== null && compareValues(actual, v) === 0));
  if (actual === null) return c.op === 'ne' && c.field.isNullable;
  const cmp = compareValues(actual, c.value as Value);
  switch (c.op) {
    case 'eq':
      return cmp === 0;
    case 'ne':
      return cmp !== 0;
    case 'gt':
      return cmp > 0;
    case 'gte':
      return cmp >= 0;
    case 'lt':
      return cmp < 0;
    default:
      return cmp <= 0;
  }
}

/**
 * The local store's order: the sort keys, then id ascending. Null sorts first ascending
 * and last descending (SQLite's and MySQL's rule; PostgreSQL puts nulls the other way, so
 * the two local stores differ there already); false before true.
 */
export function compareRecords(sort: readonly SortKey[]): (a: TypeRecord, b: TypeRecord) => number {
  return (a, b) => {
    for (const key of sort) {
      const [x, y] = [valueOf(a, key.field), valueOf(b, key.field)];
      let cmp: number;
      if (x === y) cmp = 0;
      else if (x === null) cmp = -1;
      else if (y === null) cmp = 1;
      else if (typeof x === 'boolean') cmp = x ? 1 : -1;
      else cmp = compareValues(x, y);
      if (cmp !== 0) return key.direction === 'asc' ? cmp : -cmp;
    }
    return a.id - b.id;
  };
}

/** Applies the residual conditions and, when the native order did not, the sort. Returns a new array. */
export function applyResidual(records: readonly TypeRecord[], residual: Residual): TypeRecord[] {
  const kept = residual.conditions.length ? records.filter((r) => residual.conditions.every((c) => matchesCondition(r, c))) : [...records];
  if (!residual.sortApplied) kept.sort(compareRecords(residual.sort));
  return kept;
}

/**
 * The /v1 answer from every record of a readAll plan (all pages, in native order):
 * residual applied, then offset and limit. `total` counts what the residual kept.
 */
export function finishReadAll(all: readonly TypeRecord[], plan: NativeListPlan, query: Pick<ListQuery, 'offset' | 'limit'>): { records: TypeRecord[]; total: number } {
  const kept = applyResidual(all, plan.residual);
  return { records: kept.slice(query.offset, query.offset + query.limit), total: kept.length };
}
