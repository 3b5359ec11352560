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

/**
 * The three filter styles of the hosted API, mixable in one filter (contract §6, issue #12):
 * MongoDB-like operator objects (`{"id": {"$gte": 5}}`), Bitrix24 key prefixes
 * (`{">=id": 5}`) and Bitrix24 operators as object keys (`{"id": {">=": 5}}`); a plain
 * array value means "in". Maps, not object literals: an operator named `constructor` or
 * `toString` is unknown, not Object.prototype's. `nin` (not in) becomes one `ne` per value.
 */
type ParsedOp = FilterOp | 'nin';
const OPERATORS = new Map<string, ParsedOp>([
  ['$eq', 'eq'], ['$ne', 'ne'], ['$gt', 'gt'], ['$gte', 'gte'], ['$lt', 'lt'], ['$lte', 'lte'], ['$contains', 'contains'], ['$in', 'in'], ['$nin', 'nin'],
]);
const OPERATOR_NAMES = [...OPERATORS.keys()];
/** Bitrix24 operators: as a key prefix (`">=id"`) or as a key of a field's operator object (`{"id": {">=": 5}}`). */
const BITRIX_OPERATORS = new Map<string, ParsedOp>([
  ['>=', 'gte'], ['<=', 'lte'], ['!=', 'ne'], ['>', 'gt'], ['<', 'lt'], ['!', 'ne'], ['%', 'contains'], ['=', 'eq'], ['@', 'in'], ['!@', 'nin'],
]);
const BITRIX_NAMES = [...BITRIX_OPERATORS.keys()];
/** What a prefix or an operator key of the Bitrix24 style is made of. */
const SYMBOLS = /^[<>=!%@~?&|^*+#-]+/;
/** Likely meanings of operators that do not exist, in each style: the "did you mean" follows the client's style. */
const MONGO_SYNONYMS = new Map<string, string>([
  ['$like', '$contains'], ['$ilike', '$contains'], ['$regex', '$contains'], ['$includes', '$contains'], ['$substring', '$contains'], ['$search', '$contains'], ['$text', '$contains'],
  ['$equals', '$eq'], ['$equal', '$eq'], ['$is', '$eq'], ['$neq', '$ne'], ['$not', '$ne'], ['$notin', '$nin'], ['$ge', '$gte'], ['$le', '$lte'], ['$notequal', '$ne'],
]);
const BITRIX_SYNONYMS = new Map<string, string>([['=>', '>='], ['=<', '<='], ['==', '='], ['<>', '!='], ['!==', '!='], ['=!', '!='], ['!<', '>='], ['!>', '<='], ['!@=', '!@'], ['=@', '@']]);
/** Bitrix24 operators smartproc does not take, and what to send instead. */
const BITRIX_UNSUPPORTED = new Map<string, string>([
  ['=%', 'LIKE patterns are not supported: use "%" (contains, case-insensitive)'],
  ['%=', 'LIKE patterns are not supported: use "%" (contains, case-insensitive)'],
  ['!%', '"not contains" is not supported: filter with "%" and leave out what you do not need'],
  ['!=%', '"not contains" is not supported: filter with "%" and leave out what you do not need'],
  ['!%=', '"not contains" is not supported: filter with "%" and leave out what you do not need'],
  ['><', 'between: send ">=" and "<=" on the same field'],
  ['!><', '"not between" is not supported'],
]);
const ORDERED_OPS = new Set<FilterOp>(['gt', 'gte', 'lt', 'lte']);
/** Parameters of list (query string) and search (body), the hosted API's names (issue #12). */
const TOP_LEVEL_KEYS = ['filter', 'select', 'sort', 'order', 'limit', 'pageSize', 'offset', 'autoWindow'];
/** Known names smartproc does not take, with what to do instead (rather than a "did you mean"). */
const NOT_TAKEN = new Map<string, string>([
  ['windowFrom', 'not needed: smartproc answers any page of a list without date windows; to limit by time, filter createdTime with $gte / $lte'],
  ['windowTo', 'not needed: smartproc answers any page of a list without date windows; to limit by time, filter createdTime with $gte / $lte'],
  ['start', 'use offset (start is the paging parameter of Bitrix24 REST; smartproc pages with offset and limit/pageSize)'],
]);

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
    if (this.list.length) this.fail();
  }
  fail(): never {
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

/**
 * The parameters of a list (`source` 'query': the parsed query string) or a search
 * (`source` 'body': the JSON body; also a /v1/batch call's `params`), as one plain
 * object → a ListQuery, or an ApiError (400) listing every problem. `undefined` is "no
 * parameters"; anything else that is not an object (`null` included) is a 400.
 */
export function parseListQuery(fields: FieldTable, raw: unknown, source: Source, timeZone: string): ListQuery {
  const problems = new Problems();
  const root = source === 'query' ? 'query' : 'body';
  const input = raw === undefined ? {} : raw;
  if (!isPlainObject(input)) {
    problems.add(root, `must be a JSON object; got ${sample(input)}`, 'send {} (or no body) to list everything, or {"filter": {...}, "pageSize": 50}');
    return problems.fail();
  }
  for (const key of Object.keys(input)) {
    if (TOP_LEVEL_KEYS.includes(key)) continue;
    const instead = NOT_TAKEN.get(key);
    if (instead) {
      problems.add(`${root}.${key}`, 'is not taken by smartproc', instead);
      continue;
    }
    const suggestion = closestName(key, TOP_LEVEL_KEYS);
    problems.add(`${root}.${key}`, 'is not a known parameter', suggestion ? `did you mean "${suggestion}"?` : `use one of ${TOP_LEVEL_KEYS.join(', ')}`);
  }
  const limit = parseInteger(input.limit, source, `${root}.limit`, DEFAULT_LIMIT, 1, MAX_LIMIT, problems);
  const pageSize = parseInteger(input.pageSize, source, `${root}.pageSize`, DEFAULT_LIMIT, 1, MAX_LIMIT, problems);
  if (input.limit !== undefined && input.pageSize !== undefined && limit !== pageSize) {
    problems.add(`${root}.pageSize`, `is ${pageSize} but limit is ${limit}: they are one parameter under two names`, 'send one of them (or the same value in both)');
  }
  parseBoolean(input.autoWindow, source, `${root}.autoWindow`, problems);
  const query: ListQuery = {
    conditions: parseFilter(fields, input.filter, source, `${root}.filter`, timeZone, problems),
    select: parseSelect(fields, input.select, `${root}.select`, problems),
    sort: parseSort(fields, input.sort, input.order, source, root, problems),
    limit: input.pageSize !== undefined ? pageSize : limit,
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
    problems.add(location, max === Number.MAX_SAFE_INTEGER ? `must be ≥ ${min}` : `must be between ${min} and ${max}`, max === MAX_LIMIT && value > max ? `page through the rest with offset (meta.hasMore tells whether more remain)` : undefined);
    return fallback;
  }
  return value;
}

/** `autoWindow`: accepted (a boolean) and not needed — docs/api.md, "Lists and search". */
function parseBoolean(raw: unknown, source: Source, location: string, problems: Problems): boolean | undefined {
  if (raw === undefined || typeof raw === 'boolean') return raw;
  if (source === 'query' && (raw === 'true' || raw === 'false')) return raw === 'true';
  problems.add(location, `must be true or false; got ${sample(raw)}`);
  return undefined;
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

/** "asc"/"desc" in any case; 1 / -1 as MongoDB writes them ("1" / "-1" in a query string). */
function direction(raw: unknown): 'asc' | 'desc' | null {
  const text = typeof raw === 'string' ? raw.trim().toLowerCase() : raw;
  if (text === 'asc' || text === 1 || text === '1') return 'asc';
  if (text === 'desc' || text === -1 || text === '-1') return 'desc';
  return null;
}

/**
 * `sort`: "title", "-createdTime", "title,-id", an array of those, or an object
 * {"createdTime": "desc"} (the hosted API's form; `sort[createdTime]=desc` in a query
 * string); `order`: an object of the same kind. Both may be sent: `sort`'s keys come first.
 */
function parseSort(fields: FieldTable, sort: unknown, order: unknown, source: Source, root: string, problems: Problems): SortKey[] {
  const keys: SortKey[] = [];
  const parts = typeof sort === 'string' ? sort.split(',', MAX_SORT_KEYS + 1) : Array.isArray(sort) ? sort.slice(0, MAX_SORT_KEYS + 1) : [];
  const objectKeys = (isPlainObject(sort) ? Object.keys(sort).length : 0) + (isPlainObject(order) ? Object.keys(order).length : 0);
  if (parts.length + objectKeys > MAX_SORT_KEYS) {
    problems.add(order === undefined ? `${root}.sort` : `${root}.order`, `takes at most ${MAX_SORT_KEYS} sort keys (sort and order together)`, 'sort by fewer fields; ties end by id anyway');
    return keys;
  }
  const byObject = (value: unknown, location: string) => {
    for (const [name, dir] of Object.entries(value as Record<string, unknown>)) {
      const field = sortField(fields, name, `${location}.${name}`, problems);
      const d = direction(dir);
      if (!d) problems.add(`${location}.${name}`, `must be "asc" or "desc"; got ${sample(dir)}`);
      else if (field) keys.push({ field, direction: d });
    }
  };
  if (sort !== undefined) {
    if (isPlainObject(sort)) byObject(sort, `${root}.sort`);
    else if ((typeof sort === 'string' && sort.trim() !== '') || (Array.isArray(sort) && parts.every((p) => typeof p === 'string' && p.trim() !== ''))) {
      for (const part of parts as string[]) {
        const trimmed = part.trim();
        const descending = trimmed.startsWith('-');
        const name = descending || trimmed.startsWith('+') ? trimmed.slice(1) : trimmed;
        const field = sortField(fields, name, `${root}.sort`, problems);
        if (field) keys.push({ field, direction: descending ? 'desc' : 'asc' });
      }
    } else {
      problems.add(`${root}.sort`, source === 'query'
        ? 'must be a field name, optionally with a leading "-" for descending (sort=-createdTime), or sort[field]=asc|desc'
        : 'must be {"field": "asc"|"desc"}, or a field name with an optional leading "-" for descending ("-createdTime")');
    }
  }
  if (order !== undefined) {
    if (!isPlainObject(order)) problems.add(`${root}.order`, source === 'query' ? 'must be given as order[field]=asc|desc' : 'must be an object {"field": "asc"|"desc"}');
    else byObject(order, `${root}.order`);
  }
  return keys;
}

/** Where an operator's name came from: the style a "did you mean" must answer in. */
type Style = 'mongo' | 'bitrix' | 'word';

function styleOf(name: string): Style {
  if (name.startsWith('$')) return 'mongo';
  return SYMBOLS.test(name) ? 'bitrix' : 'word';
}

/** The fix for an unknown operator, in the style the client wrote it in. */
function operatorFix(name: string, style: Style, asPrefixOf?: string): string {
  const show = (op: string) => (asPrefixOf === undefined ? `"${op}"` : `"${op}${asPrefixOf}"`);
  if (style === 'bitrix') {
    const unsupported = BITRIX_UNSUPPORTED.get(name);
    if (unsupported) return unsupported;
    const suggestion = BITRIX_SYNONYMS.get(name) ?? (name.length > 1 ? BITRIX_NAMES.find((op) => op.length === name.length && [...op].sort().join('') === [...name].sort().join('')) : undefined);
    return suggestion ? `did you mean ${show(suggestion)}?` : `use one of ${BITRIX_NAMES.map(show).join(' ')}`;
  }
  const dollar = style === 'mongo' ? name.toLowerCase() : `$${name.toLowerCase()}`;
  if (dollar === '$between') return 'send "$gte" and "$lte" on the same field';
  const suggestion = MONGO_SYNONYMS.get(dollar) ?? (OPERATORS.has(dollar) ? dollar : closestName(dollar, OPERATOR_NAMES));
  return suggestion ? `did you mean "${suggestion}"?` : `use one of ${OPERATOR_NAMES.join(' ')}`;
}

/**
 * The filter object, in any mix of the three styles. A key is a field name, optionally
 * with a Bitrix24 prefix; its value is a plain value (equal), an array (in), or an
 * operator object whose keys are `$` operators or Bitrix24 operators.
 */
function parseFilter(fields: FieldTable, raw: unknown, source: Source, location: string, timeZone: string, problems: Problems): Condition[] {
  if (raw === undefined) return [];
  if (!isPlainObject(raw)) {
    problems.add(location, source === 'query'
      ? 'must be given as filter[field]=value, filter[field][$op]=value, filter[>=field]=value or filter[field][>=]=value'
      : 'must be an object {"field": value | [values] | {"$op": value} | {">=": value}, ">=field": value}');
    return [];
  }
  const conditions: Condition[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const keyLocation = `${location}.${key}`;
    const symbols = SYMBOLS.exec(key)?.[0] ?? '';
    const name = key.slice(symbols.length);
    if (symbols && !BITRIX_OPERATORS.has(symbols)) {
      problems.operatorProblem = true;
      problems.add(keyLocation, `unknown filter prefix "${symbols}"`, operatorFix(symbols, 'bitrix', name));
      continue;
    }
    const field = fields.byName.get(name);
    if (!field || !field.inList) {
      if (!symbols && OPERATORS.has(key)) {
        problems.add(keyLocation, `"${key}" is an operator, not a field`, `put it inside a field: {"field": {"${key}": value}}`);
        continue;
      }
      const suggestion = closestName(name, fields.listFieldNames);
      problems.add(keyLocation, field ? `"${name}" cannot be filtered` : `"${name}" is not a known field`, suggestion ? `did you mean "${symbols}${suggestion}"?` : `filter by one of ${fields.listFieldNames.join(', ')}`);
      continue;
    }
    if (isPlainObject(value)) {
      if (symbols) {
        problems.add(keyLocation, 'use either a key prefix or an operator object, not both', `{"${symbols}${name}": value} or {"${name}": {"${symbols}": value}}`);
        continue;
      }
      const entries = Object.entries(value);
      if (!entries.length) problems.add(keyLocation, 'is an empty operator object', `give a value, or an operator: {"${name}": {"$gte": value}} or {"${name}": {">=": value}}`);
      for (const [opName, opValue] of entries) {
        const style = styleOf(opName);
        const op = style === 'mongo' ? OPERATORS.get(opName) : style === 'bitrix' ? BITRIX_OPERATORS.get(opName) : undefined;
        if (!op) {
          problems.operatorProblem = true;
          problems.add(`${keyLocation}.${opName}`, `unknown filter operator "${opName}"`, operatorFix(opName, style));
          continue;
        }
        conditions.push(...makeConditions(field, op, opValue, source, `${keyLocation}.${opName}`, timeZone, problems));
      }
    } else {
      const op = symbols ? BITRIX_OPERATORS.get(symbols)! : 'eq';
      conditions.push(...makeConditions(field, op, value, source, keyLocation, timeZone, problems));
    }
  }
  return conditions;
}

/**
 * The conditions of one operator and its value: an array value of equality is "in" and of
 * "not equal" is "not in"; "not in" is one `ne` per value (AND-ed), so the stores and the
 * native translation see only the operators they know.
 */
function makeConditions(field: FieldSpec, op: ParsedOp, raw: unknown, source: Source, location: string, timeZone: string, problems: Problems): Condition[] {
  const listed = Array.isArray(raw);
  const parsed: ParsedOp = listed && op === 'eq' ? 'in' : listed && op === 'ne' ? 'nin' : op;
  if (parsed !== 'nin') {
    const condition = makeCondition(field, parsed, raw, source, location, timeZone, problems);
    return condition ? [condition] : [];
  }
  const condition = makeCondition(field, 'in', raw, source, location, timeZone, problems);
  return condition ? (condition.value as FilterValue[]).map((value) => ({ field, op: 'ne' as const, value })) : [];
}

function makeCondition(field: FieldSpec, op: FilterOp, raw: unknown, source: Source, location: string, timeZone: string, problems: Problems): Condition | null {
  if (op === 'contains' && field.type !== 'string') {
    problems.add(location, `contains ($contains, %) works on text fields; ${field.name} is ${field.type}`);
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
      problems.add(location, source === 'query' ? 'takes a comma-separated list (in / not in)' : 'takes an array (in / not in)');
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
  if (Array.isArray(raw)) {
    problems.add(location, `takes one value, not a list; got ${sample(raw)}`, 'a list goes with equality, $in or "@" (in), and with $nin, "!" or "!@" (not in)');
    return null;
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
