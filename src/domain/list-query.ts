import { ApiError, type ErrorDetail } from '../errors.js';
import { INT32_MAX, INT32_MIN, int32RangeMessage, isInt32, MAX_FILTER_VALUES, MAX_SORT_KEYS, MAX_TEXT_FILTER_LENGTH, textProblem } from './input-rules.js';
import { closestName } from './suggest.js';
import { parseTime } from './time.js';
import type { FieldSpec, FieldTable } from './field-table.js';

/**
 * Parsing of list and search requests (contract §4 list/search, §6 filters), for any
 * resource: the caller passes the resource's field table (which fields exist, which are
 * in lists, of which type). No I/O.
 */
export type FilterOp = 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte' | 'contains' | 'in';
export type FilterValue = number | string | boolean | null;

export interface Condition {
  field: FieldSpec;
  op: FilterOp;
  value: FilterValue | FilterValue[];
}

export interface SortKey {
  field: string;
  direction: 'asc' | 'desc';
}

export interface ListQuery {
  conditions: Condition[];
  /** Fields to return; null = the whole item. */
  select: string[] | null;
  sort: SortKey[];
  limit: number;
  offset: number;
}

export type Source = 'query' | 'body';

/** A Map, not an object literal: an operator named `constructor` or `toString` is unknown, not Object.prototype's. */
const OPERATORS = new Map<string, FilterOp>([
  ['$eq', 'eq'], ['$ne', 'ne'], ['$gt', 'gt'], ['$gte', 'gte'], ['$lt', 'lt'], ['$lte', 'lte'], ['$contains', 'contains'], ['$in', 'in'],
]);
const OPERATOR_NAMES = [...OPERATORS.keys()];
const PREFIXES: [string, FilterOp][] = [
  ['>=', 'gte'], ['<=', 'lte'], ['!=', 'ne'], ['>', 'gt'], ['<', 'lt'], ['!', 'ne'], ['%', 'contains'], ['=', 'eq'],
];
const ORDERED_OPS = new Set<FilterOp>(['gt', 'gte', 'lt', 'lte']);
const TOP_LEVEL_KEYS = ['filter', 'select', 'sort', 'order', 'limit', 'offset'];

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 5000;

class Problems {
  list: ErrorDetail[] = [];
  operatorProblem = false;
  /** Filter values taken so far (MAX_FILTER_VALUES in all). */
  filterValues = 0;
  add(location: string, message: string, fix?: string) {
    this.list.push(fix ? { location, message, fix } : { location, message });
  }
  throwIfAny() {
    if (!this.list.length) return;
    const code = this.operatorProblem ? 'INVALID_FILTER_OPERATOR' : 'VALIDATION_ERROR';
    const first = this.list[0];
    throw new ApiError(code, this.list.length === 1 ? `${first.location}: ${first.message}` : `${this.list.length} problems in the request`, { details: this.list });
  }
}

/** A value as an error message shows it: JSON, at most 60 characters. */
function sample(raw: unknown): string {
  const text = JSON.stringify(raw) ?? String(raw);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseListQuery(fields: FieldTable, raw: unknown, source: Source, timeZone: string): ListQuery {
  const problems = new Problems();
  const root = source === 'query' ? 'query' : 'body';
  const input: Record<string, unknown> = raw === undefined || raw === null ? {} : (raw as Record<string, unknown>);
  if (!isPlainObject(input)) {
    problems.add(root, 'must be a JSON object');
    problems.throwIfAny();
  }
  for (const key of Object.keys(input)) {
    if (!TOP_LEVEL_KEYS.includes(key)) {
      const suggestion = closestName(key, TOP_LEVEL_KEYS);
      problems.add(`${root}.${key}`, 'is not a known parameter', suggestion ? `did you mean "${suggestion}"?` : `use one of ${TOP_LEVEL_KEYS.join(', ')}`);
    }
  }
  const query: ListQuery = {
    conditions: parseFilter(fields, input.filter, source, `${root}.filter`, timeZone, problems),
    select: parseSelect(fields, input.select, `${root}.select`, problems),
    sort: parseSort(fields, input.sort, input.order, source, root, problems),
    limit: parseInteger(input.limit, source, `${root}.limit`, DEFAULT_LIMIT, 1, MAX_LIMIT, problems),
    offset: parseInteger(input.offset, source, `${root}.offset`, 0, 0, Number.MAX_SAFE_INTEGER, problems),
  };
  problems.throwIfAny();
  return query;
}

function parseInteger(raw: unknown, source: Source, location: string, fallback: number, min: number, max: number, problems: Problems): number {
  if (raw === undefined) return fallback;
  let value: number | null = null;
  if (typeof raw === 'number' && Number.isInteger(raw)) value = raw;
  else if (source === 'query' && typeof raw === 'string' && /^-?\d{1,16}$/.test(raw)) value = Number(raw);
  if (value === null) {
    problems.add(location, 'must be an integer');
    return fallback;
  }
  if (value < min || value > max) {
    problems.add(location, max === Number.MAX_SAFE_INTEGER ? `must be ≥ ${min}` : `must be between ${min} and ${max}`);
    return fallback;
  }
  return value;
}

function parseSelect(fields: FieldTable, raw: unknown, location: string, problems: Problems): string[] | null {
  if (raw === undefined) return null;
  let names: string[];
  if (typeof raw === 'string') names = raw.split(',');
  else if (Array.isArray(raw) && raw.every((n) => typeof n === 'string')) names = (raw as string[]).flatMap((n) => n.split(','));
  else {
    problems.add(location, 'must be a comma-separated string or an array of field names');
    return null;
  }
  // Names that are not list fields are ignored, as the hosted API does.
  const known = [...new Set(names.map((n) => n.trim()).filter((n) => fields.listFieldNames.includes(n)))];
  return known.length ? known : null;
}

function sortField(fields: FieldTable, name: string, location: string, problems: Problems): string | null {
  const names = fields.listFieldNames;
  if (names.includes(name)) return name;
  const suggestion = closestName(name, names);
  problems.add(location, `"${name}" is not a sortable field`, suggestion ? `did you mean "${suggestion}"?` : `sort by one of ${names.join(', ')}`);
  return null;
}

function parseSort(fields: FieldTable, sort: unknown, order: unknown, source: Source, root: string, problems: Problems): SortKey[] {
  const keys: SortKey[] = [];
  const parts = typeof sort === 'string' ? sort.split(',', MAX_SORT_KEYS + 1) : [];
  const orderNames = isPlainObject(order) ? Object.keys(order) : [];
  if (parts.length + orderNames.length > MAX_SORT_KEYS) {
    problems.add(order === undefined ? `${root}.sort` : `${root}.order`, `takes at most ${MAX_SORT_KEYS} sort keys (sort and order together)`, 'sort by fewer fields; ties end by id anyway');
    return keys;
  }
  if (sort !== undefined) {
    if (typeof sort !== 'string' || sort.trim() === '') problems.add(`${root}.sort`, 'must be a field name, optionally with a leading "-" for descending (sort=-createdTime)');
    else {
      for (const part of parts) {
        const trimmed = part.trim();
        const descending = trimmed.startsWith('-');
        const name = descending || trimmed.startsWith('+') ? trimmed.slice(1) : trimmed;
        const field = sortField(fields, name, `${root}.sort`, problems);
        if (field) keys.push({ field, direction: descending ? 'desc' : 'asc' });
      }
    }
  }
  if (order !== undefined) {
    if (!isPlainObject(order)) problems.add(`${root}.order`, source === 'query' ? 'must be given as order[field]=asc|desc' : 'must be an object {"field": "asc"|"desc"}');
    else {
      for (const [name, direction] of Object.entries(order)) {
        const field = sortField(fields, name, `${root}.order.${name}`, problems);
        const dir = typeof direction === 'string' ? direction.toLowerCase() : '';
        if (dir !== 'asc' && dir !== 'desc') problems.add(`${root}.order.${name}`, 'must be "asc" or "desc"');
        else if (field) keys.push({ field, direction: dir });
      }
    }
  }
  return keys;
}

function parseFilter(fields: FieldTable, raw: unknown, source: Source, location: string, timeZone: string, problems: Problems): Condition[] {
  if (raw === undefined) return [];
  if (!isPlainObject(raw)) {
    problems.add(location, source === 'query' ? 'must be given as filter[field]=value or filter[field][$op]=value' : 'must be an object {"field": value | {"$op": value}}');
    return [];
  }
  const conditions: Condition[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const keyLocation = `${location}.${key}`;
    const prefix = PREFIXES.find(([p]) => key.startsWith(p));
    const name = prefix ? key.slice(prefix[0].length) : key;
    const field = fields.byName.get(name);
    if (!field || !field.inList) {
      const suggestion = closestName(name, fields.listFieldNames);
      problems.add(keyLocation, field ? `"${name}" cannot be filtered` : `"${name}" is not a known field`, suggestion ? `did you mean "${suggestion}"?` : undefined);
      continue;
    }
    if (isPlainObject(value)) {
      if (prefix) {
        problems.add(keyLocation, 'use either a key prefix or an operator object, not both');
        continue;
      }
      for (const [opName, opValue] of Object.entries(value)) {
        const op = OPERATORS.get(opName);
        if (!op) {
          problems.operatorProblem = true;
          const suggestion = closestName(opName.replace(/^\$?/, '$'), OPERATOR_NAMES);
          problems.add(`${keyLocation}.${opName}`, `unknown filter operator "${opName}"`, suggestion ? `did you mean "${suggestion}"?` : `use one of ${OPERATOR_NAMES.join(' ')}`);
          continue;
        }
        const condition = makeCondition(field, op, opValue, source, `${keyLocation}.${opName}`, timeZone, problems);
        if (condition) conditions.push(condition);
      }
    } else {
      const condition = makeCondition(field, prefix ? prefix[1] : 'eq', value, source, keyLocation, timeZone, problems);
      if (condition) conditions.push(condition);
    }
  }
  return conditions;
}

function makeCondition(field: FieldSpec, op: FilterOp, raw: unknown, source: Source, location: string, timeZone: string, problems: Problems): Condition | null {
  if (op === 'contains' && field.type !== 'string') {
    problems.add(location, `$contains works on text fields; ${field.name} is ${field.type}`);
    return null;
  }
  if (ORDERED_OPS.has(op) && field.type === 'boolean') {
    problems.add(location, `${field.name} is boolean: use equality, $ne or $in`);
    return null;
  }
  if (op === 'in') {
    let items: unknown[];
    if (Array.isArray(raw)) items = raw;
    else if (source === 'query' && typeof raw === 'string') items = raw === '' ? [] : raw.split(',', MAX_FILTER_VALUES + 1);
    else {
      problems.add(location, source === 'query' ? '$in takes a comma-separated list' : '$in takes an array');
      return null;
    }
    if (!takeFilterValues(items.length, location, problems)) return null;
    const values: FilterValue[] = [];
    let ok = true;
    items.forEach((item, i) => {
      const v = convertValue(field, item, source, `${location}[${i}]`, timeZone, problems);
      if (v === undefined) ok = false;
      else values.push(v);
    });
    return ok ? { field, op, value: values } : null;
  }
  if (!takeFilterValues(1, location, problems)) return null;
  const value = convertValue(field, raw, source, location, timeZone, problems);
  if (value === undefined) return null;
  if (value === null && op !== 'eq' && op !== 'ne') {
    problems.add(location, 'null can only be compared with equality or $ne');
    return null;
  }
  return { field, op, value };
}

/** Counts filter values against MAX_FILTER_VALUES (a bound on the statement's parameters, on both stores). */
function takeFilterValues(count: number, location: string, problems: Problems): boolean {
  if (problems.filterValues > MAX_FILTER_VALUES) return false;
  problems.filterValues += count;
  if (problems.filterValues <= MAX_FILTER_VALUES) return true;
  problems.add(location, `a filter takes at most ${MAX_FILTER_VALUES} values in all, the items of every $in counted one by one`, 'split the request, or filter by a range ($gte/$lte) instead of a list');
  return false;
}

/** Converts one filter value by the field's type; undefined means a problem was recorded. */
function convertValue(field: FieldSpec, raw: unknown, source: Source, location: string, timeZone: string, problems: Problems): FilterValue | undefined {
  if (raw === null) {
    if (field.isNullable) return null;
    problems.add(location, `${field.name} is never null`);
    return undefined;
  }
  switch (field.type) {
    case 'integer':
    case 'user': {
      let value: number | undefined;
      if (typeof raw === 'number' && Number.isInteger(raw)) value = raw;
      else if (source === 'query' && typeof raw === 'string' && /^-?\d{1,20}$/.test(raw.trim())) value = Number(raw.trim());
      if (value === undefined) {
        problems.add(location, `${field.name} is an integer; got ${sample(raw)}`);
        return undefined;
      }
      // The column is a 32-bit integer: a value outside it is a mistake, not merely absent (the same answer on both stores).
      if (!isInt32(value)) {
        problems.add(location, `${field.name} ${int32RangeMessage(INT32_MIN, INT32_MAX)}; got ${sample(raw)}`);
        return undefined;
      }
      return value === 0 ? 0 : value;
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return raw;
      if (source === 'query' && (raw === 'true' || raw === 'Y')) return true;
      if (source === 'query' && (raw === 'false' || raw === 'N')) return false;
      problems.add(location, `${field.name} is boolean: use true or false; got ${sample(raw)}`);
      return undefined;
    }
    case 'datetime': {
      const seconds = typeof raw === 'string' ? parseTime(raw.trim(), timeZone) : null;
      if (seconds === null) {
        problems.add(location, `${field.name} is a time: use ISO 8601, e.g. 2026-04-21T13:46:45+03:00; got ${sample(raw)}`);
        return undefined;
      }
      return seconds;
    }
    default: {
      if (typeof raw === 'string') {
        if (raw.length > MAX_TEXT_FILTER_LENGTH) {
          problems.add(location, `${field.name}: a text filter value takes at most ${MAX_TEXT_FILTER_LENGTH} characters (got ${raw.length})`, 'titles and codes are at most 255 characters: a longer value cannot match');
          return undefined;
        }
        const problem = textProblem(raw);
        if (!problem) return raw;
        problems.add(location, `${field.name} ${problem}`);
        return undefined;
      }
      if (source === 'body' || Array.isArray(raw) || isPlainObject(raw)) {
        problems.add(location, `${field.name} is text; got ${sample(raw)}`);
        return undefined;
      }
      return String(raw);
    }
  }
}
