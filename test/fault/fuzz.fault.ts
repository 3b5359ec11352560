import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import pg from 'pg';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { LIST_FIELD_NAMES } from '../../src/domain/smart-process-type/fields.js';
import { ERROR_TABLE } from '../../src/errors.js';
import { openStore, type Store } from '../../src/store/store.js';
import { postgresProblem } from '../helpers/services.js';

/**
 * The fuzzer of the fault suite (issue 7): at least 10,000 random requests per store
 * (SQLite in memory; PostgreSQL when reachable) over every route of the API, with a
 * personal key and a management key. Bodies: random JSON, mutations of valid bodies,
 * deep nesting, 1e309 and -0 written in the raw text, NUL, lone surrogates, prototype
 * names, long arrays, wrong types, unknown fields, broken JSON. Query strings: filter,
 * sort, order, select, limit, offset with random operators and encodings. Path ids:
 * anything. Asserted for every answer: no 5xx; the body parses as JSON and is the
 * envelope (success with data, or failure with a code of ERROR_TABLE, its status and the
 * request id); after every 4xx to a write route, the store holds exactly what it held
 * before. A seeded PRNG: FUZZ_SEED=<n> replays a run; FUZZ_REQUESTS=<n> sets the count.
 */

const REQUESTS = Number(process.env.FUZZ_REQUESTS || 10_000);
const SEED = Number(process.env.FUZZ_SEED || crypto.randomInt(1, 2 ** 31));
/** A bound on each store's run; exceeding it fails the run (it must stop by itself). */
const TIME_LIMIT_MS = Number(process.env.FUZZ_TIME_LIMIT_MS || 150_000);
const PG_URL = process.env.SMARTPROC_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

// --- seeded randomness ---------------------------------------------------------------------------

class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** mulberry32 */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    let r = this.next() * items.reduce((a, [w]) => a + w, 0);
    for (const [w, v] of items) if ((r -= w) < 0) return v;
    return items[items.length - 1][1];
  }
}

// --- a JSON model that can hold what JSON.stringify cannot write --------------------------------

/** Written into the JSON text verbatim: 1e309, -0, 1.0, 123456789012345678901234567890. */
class Raw {
  constructor(readonly text: string) {}
}
type JVal = null | boolean | number | string | Raw | JVal[] | { [key: string]: JVal };

/** Objects without a prototype: a key "__proto__" is a key like any other. */
function obj(entries: [string, JVal][] = []): { [key: string]: JVal } {
  const o = Object.create(null) as { [key: string]: JVal };
  for (const [k, v] of entries) o[k] = v;
  return o;
}

function fromPlain(value: unknown): JVal {
  if (Array.isArray(value)) return value.map(fromPlain);
  if (value !== null && typeof value === 'object' && !(value instanceof Raw)) return obj(Object.entries(value).map(([k, v]) => [k, fromPlain(v)]));
  return value as JVal;
}

function write(v: JVal): string {
  if (v instanceof Raw) return v.text;
  if (Array.isArray(v)) return `[${v.map(write).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.keys(v).map((k) => `${JSON.stringify(k)}:${write(v[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/** encodeURIComponent that writes a lone surrogate as the bytes a careless client would send (ED A0 80), instead of throwing. */
const enc = (text: string) => text.replace(/[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]|[^]/g, (c) => (c.length === 1 && c >= '\ud800' && c <= '\udfff' ? '%ED%A0%80' : encodeURIComponent(c)));

const isObj = (v: JVal): v is { [key: string]: JVal } => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Raw);

// --- pools of hostile values ----------------------------------------------------------------------

const PROTO_NAMES = ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__', '__defineGetter__', 'isPrototypeOf', 'prototype', 'propertyIsEnumerable', 'toLocaleString'];
const OPERATORS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$contains', '$in', '$nin', '$like', '$regex', '$', 'in', 'eq', '$IN', ...PROTO_NAMES];
const PREFIXES = ['', '', '', '>=', '<=', '>', '<', '!', '!=', '%', '=', '>>', '!%', '=='];
const FIELD_NAMES = [...LIST_FIELD_NAMES, 'relations', 'linkedUserFields', 'name', 'Title', 'stageId', 'isStageEnabled', ''];
const CREATE_FIELDS = ['title', 'entityTypeId', 'code', 'customSectionId', 'relations', 'linkedUserFields', 'isStagesEnabled', 'isClientEnabled', 'isPaymentsEnabled', 'id', 'createdBy', 'createdTime', 'updatedBy', 'updatedTime', 'isInitialized'];
const KEY_FIELDS = ['kind', 'portalId', 'name', 'scopes', 'accessMode', 'expiresAt', 'requestsPerSecond', 'allowedIps', 'userId', 'gracePeriodSeconds', 'keyId'];

const HOSTILE_NUMBERS: JVal[] = [
  new Raw('1e309'), new Raw('-1e309'), new Raw('-0'), new Raw('1e-400'), new Raw('1.0'), new Raw('1E3'), new Raw('123456789012345678901234567890'), new Raw('9007199254740993'),
  new Raw('2.5e9'), 0, 1, -1, 2, 3, 4, 7, 14, 31, 128, 191, 192, 1029, 1030, 1031, 1032, 1050, 2147483646, 2147483647, 2147483648, -2147483648, -2147483649, 4294967296,
  Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1e20, 0.5, -0.5, 5000, 5001, 100000, 100001, 604800, 604801,
];
const HOSTILE_STRINGS: string[] = [
  '', ' ', '   x   ', 'a\u0000b', '\u0000', '\ud800', '\udfff x', 'x\ud83d', '\ude9a\ud83d', 'Trucks 🚚', '\u202e', '\ufeff', '\u2028', 'Поставки', '<script>alert(1)</script>',
  "'; DROP TABLE smart_process_types; --", '%', '%00', '%_\\', '\\', '"', '\n', '\t', 'null', 'true', 'false', '1050', '-0', '1e309', 'NaN', 'Infinity', 'Y', 'N', 'asc', 'desc', 'ASC',
  '2026-04-21T13:46:45+03:00', '2026-04-21', '9999-99-99', '2099-01-01T00:00:00Z', '1999-01-01T00:00:00Z', '+275760-09-13T00:00:00Z', 'crm', 'task', 'CRM', 'vibe:mgmt:keys', 'vibe:mgmt:portals',
  '10.0.0.0/8', '::1', '2001:db8::/32', '1.2.3.4/33', '999.1.1.1', 'UTC', 'Europe/Moscow', 'Not/AZone', 'utc', 'personal', 'application', 'management', 'local', 'bitrix24', 'READONLY', 'READWRITE',
  'vibe_api_x', 'key_00000000000000', ...PROTO_NAMES, ...OPERATORS.slice(0, 8),
];

// --- the state of a run: what exists, to aim some requests at real things -------------------------

interface RunState {
  portalId: number;
  personalKey: string;
  managementKey: string;
  /** entityTypeIds that exist (from answers). */
  types: number[];
  /** keys and portals the fuzzer created itself: the only ones it may change or delete. */
  spareKeyIds: string[];
  appKeyIds: string[];
  sparePortalIds: number[];
}

interface FuzzRequest {
  method: InjectOptions['method'];
  url: string;
  headers: Record<string, string>;
  payload?: string;
  /** The name of the route, for the figures. */
  route: string;
  write: boolean;
}

class Generator {
  constructor(private readonly r: Rng, private readonly s: RunState) {}

  // values

  number(): JVal {
    return this.r.chance(0.7) ? this.r.pick(HOSTILE_NUMBERS) : this.r.int(3_000_000_000) - 500_000_000;
  }

  string(): string {
    const r = this.r;
    if (r.chance(0.08)) return 'x'.repeat(r.pick([254, 255, 256, 1000, 70_000]));
    if (r.chance(0.05)) return String.fromCharCode(...Array.from({ length: 1 + r.int(12) }, () => r.int(0x10000)));
    return r.pick(HOSTILE_STRINGS);
  }

  value(depth = 0): JVal {
    const r = this.r;
    const kind = r.weighted([[4, 'num'], [5, 'str'], [2, 'bool'], [1, 'null'], [depth < 4 ? 2 : 0, 'arr'], [depth < 4 ? 2 : 0, 'obj'], [0.3, 'deep'], [0.3, 'long']] as const);
    switch (kind) {
      case 'num':
        return this.number();
      case 'str':
        return this.string();
      case 'bool':
        return r.chance(0.5);
      case 'null':
        return null;
      case 'arr':
        return Array.from({ length: r.int(5) }, () => this.value(depth + 1));
      case 'obj':
        return obj(Array.from({ length: r.int(4) }, () => [this.key(), this.value(depth + 1)] as [string, JVal]));
      case 'deep':
        return this.deep(r.pick([30, 31, 32, 33, 40, 200]));
      case 'long':
        return Array.from({ length: r.pick([999, 1000, 1001, 2000, 5000]) }, (_, i) => (r.chance(0.9) ? i + 1 : this.number()));
    }
  }

  deep(levels: number): JVal {
    let v: JVal = this.r.chance(0.5) ? 1 : 'x';
    for (let i = 0; i < levels; i++) v = this.r.chance(0.5) ? [v] : obj([['a', v]]);
    return v;
  }

  key(): string {
    return this.r.weighted([[3, () => this.r.pick(CREATE_FIELDS)], [2, () => this.r.pick(PROTO_NAMES)], [2, () => this.r.pick(KEY_FIELDS)], [2, () => this.string()], [1, () => this.r.pick(FIELD_NAMES)]] as const)();
  }

  existingType(): number {
    return this.s.types.length && this.r.chance(0.85) ? this.r.pick(this.s.types) : this.r.pick([1, 2, 3, 4, 7, 14, 31, 1050, 1052, 9999, 2147483646]);
  }

  pathId(): string {
    const r = this.r;
    return r.weighted([
      [6, () => String(this.existingType())],
      [1, () => r.pick(['0', '-1', '01050', '1050.0', '1e3', '0x10', '+1050', ' 1050', '1050 ', '2147483647', '2147483648', '99999999999999999999', '9'.repeat(101)])],
      [1, () => r.pick(['%00', '%', '%zz', '%E0%A4%A', '%ED%A0%80', '%F0%9F%9A%9A', '%2F', '..', '%2e%2e', 'search', 'fields', 'constructor', '__proto__', 'toString', 'x'.repeat(150)])],
      [1, () => enc(this.string()).slice(0, 300) || 'x'],
    ] as const)();
  }

  // valid bodies, then mutated

  relationEntries(): JVal {
    return Array.from({ length: this.r.int(3) }, () => obj([['entityTypeId', this.existingType()], ['isChildrenListEnabled', this.r.pick([true, false, 'Y', 'N', 'true'])]]));
  }

  createBody(): JVal {
    const r = this.r;
    const body = obj([['title', `Fuzz ${r.int(1_000_000)}`]]);
    if (r.chance(0.4)) body.entityTypeId = r.chance(0.5) ? 1030 + 2 * r.int(5000) : 128 + r.int(64);
    if (r.chance(0.4)) body.code = r.chance(0.2) ? null : `code_${r.int(100_000)}`;
    if (r.chance(0.3)) body.customSectionId = r.chance(0.2) ? null : 1 + r.int(1000);
    if (r.chance(0.5)) body[r.pick(['isStagesEnabled', 'isClientEnabled', 'isPaymentsEnabled', 'isCategoriesEnabled'])] = r.chance(0.5);
    if (r.chance(0.3)) body.relations = obj([['parent', this.relationEntries()], ['child', this.relationEntries()]]);
    if (r.chance(0.2)) body.linkedUserFields = obj([['TASKS_TASK|UF_CRM_TASK', r.chance(0.5)]]);
    return body;
  }

  patchBody(): JVal {
    const body = this.createBody() as { [key: string]: JVal };
    if (this.r.chance(0.5)) delete body.title;
    delete body.entityTypeId;
    if (this.r.chance(0.2)) Object.assign(body, obj([['id', 1], ['createdTime', '2026-04-21T13:46:45+03:00'], ['isInitialized', true]]));
    return body;
  }

  filterValue(): JVal {
    const r = this.r;
    return r.weighted([
      [3, () => this.number()],
      [3, () => this.string()],
      [1, () => r.chance(0.5)],
      [1, () => null],
      [1, () => Array.from({ length: r.pick([0, 1, 3, 999, 1000, 1001, 3000]) }, (_, i) => (r.chance(0.95) ? i : this.number()))],
      [1, () => obj([[r.pick(OPERATORS), this.number()]])],
    ] as const)();
  }

  filter(): JVal {
    const r = this.r;
    const f = obj();
    for (let i = r.int(4); i >= 0; i--) {
      const field = r.pick(FIELD_NAMES);
      if (r.chance(0.5)) f[r.pick(PREFIXES) + field] = this.filterValue();
      else f[field] = obj(Array.from({ length: 1 + r.int(2) }, () => [r.pick(OPERATORS), this.filterValue()] as [string, JVal]));
    }
    return f;
  }

  sortText(): string {
    const r = this.r;
    const n = r.pick([1, 1, 2, 3, 9, 10, 11, 50, 5000]);
    return Array.from({ length: n }, () => (r.chance(0.3) ? '-' : '') + (r.chance(0.9) ? r.pick(FIELD_NAMES) : r.pick(PROTO_NAMES))).join(',');
  }

  searchBody(): JVal {
    const r = this.r;
    const body = obj();
    if (r.chance(0.7)) body.filter = this.filter();
    if (r.chance(0.3)) body.select = Array.from({ length: r.int(5) }, () => r.pick(FIELD_NAMES));
    if (r.chance(0.3)) body.sort = this.sortText();
    if (r.chance(0.2)) body.order = obj([[r.pick(FIELD_NAMES), r.pick(['asc', 'desc', 'ASC', 'up'])]]);
    if (r.chance(0.3)) body.limit = r.chance(0.7) ? 1 + r.int(5000) : this.number();
    if (r.chance(0.3)) body.offset = r.chance(0.7) ? r.int(100) : this.number();
    return body;
  }

  keyBody(): JVal {
    const r = this.r;
    const kind = r.pick(['personal', 'personal', 'application', 'management']);
    const body = obj([['kind', kind]]);
    if (kind !== 'management' || r.chance(0.1)) body.portalId = r.chance(0.8) ? this.s.portalId : this.number();
    if (r.chance(0.5)) body.name = `fuzz key ${r.int(1000)}`;
    if (r.chance(0.5)) body.scopes = kind === 'management' ? [r.pick(['vibe:mgmt:keys', 'vibe:mgmt:portals'])] : ['crm', r.pick(['task', 'user', 'CRM', 'x'])];
    if (r.chance(0.3)) body.accessMode = r.pick(['READWRITE', 'READONLY']);
    if (r.chance(0.3)) body.expiresAt = r.pick(['2099-01-01T00:00:00Z', '2000-01-01T00:00:00Z', null, 'tomorrow']);
    if (r.chance(0.3)) body.requestsPerSecond = r.pick([1, 10, 100000, 100001, null, 0]);
    if (r.chance(0.3)) body.allowedIps = [r.pick(['10.0.0.0/8', '::1', '127.0.0.1', '300.1.1.1'])];
    if (r.chance(0.3) && kind === 'personal') body.userId = r.pick([1, 7, 2147483647, 2147483648]);
    return body;
  }

  keyPatchBody(): JVal {
    const body = this.keyBody() as { [key: string]: JVal };
    delete body.kind;
    delete body.portalId;
    return body;
  }

  portalBody(): JVal {
    const r = this.r;
    const body = obj();
    if (r.chance(0.3)) body.kind = r.pick(['local', 'bitrix24', 'LOCAL']);
    if (r.chance(0.7)) body.name = `fuzz portal ${r.int(1000)}`;
    if (r.chance(0.6)) body.timeZone = r.pick(['UTC', 'Europe/Moscow', 'America/St_Johns', 'Not/AZone', 'utc', '']);
    return body;
  }

  sessionBody(): JVal {
    const r = this.r;
    const keyId = this.s.appKeyIds.length && r.chance(0.7) ? r.pick(this.s.appKeyIds) : r.pick([...this.s.spareKeyIds, 'key_nope', '']);
    return obj([['keyId', keyId ?? 'key_nope'], ['userId', r.chance(0.7) ? 1 + r.int(100) : this.number()]]);
  }

  /** A few random changes to a body: values swapped for hostile ones, fields added or removed, the shape broken. */
  mutate(body: JVal): JVal {
    const r = this.r;
    if (r.chance(0.05)) return this.value();
    let root = body;
    for (let n = r.int(3); n >= 0; n--) {
      if (!isObj(root)) break;
      const target = this.randomObjectIn(root);
      const keys = Object.keys(target);
      const op = r.int(6);
      if (op <= 1 && keys.length) target[r.pick(keys)] = this.value();
      else if (op === 2) target[this.key()] = this.value();
      else if (op === 3 && keys.length) delete target[r.pick(keys)];
      else if (op === 4 && keys.length) {
        const k = r.pick(keys);
        target[k] = r.chance(0.5) ? [target[k]] : obj([[r.pick(PROTO_NAMES), target[k]]]);
      } else if (op === 5) root = r.chance(0.5) ? [root] : root;
    }
    return root;
  }

  private randomObjectIn(v: { [key: string]: JVal }): { [key: string]: JVal } {
    let current = v;
    for (let i = 0; i < 4; i++) {
      const children = Object.values(current).flatMap((c) => (isObj(c) ? [c] : Array.isArray(c) ? c.filter(isObj) : []));
      if (!children.length || this.r.chance(0.5)) break;
      current = this.r.pick(children);
    }
    return current;
  }

  /** The text of a body: usually the written JSON, sometimes broken or framed oddly. */
  bodyText(body: JVal): string {
    const r = this.r;
    let text = write(body);
    const op = r.int(40);
    if (op === 0) text = text.slice(0, r.int(text.length));
    else if (op === 1) text = `\ufeff${text}`;
    else if (op === 2) text = `${text} trailing`;
    else if (op === 3 && text.endsWith('}') && text.length > 2) text = `${text.slice(0, -1)},"title":"dup"}`;
    else if (op === 4) text = r.pick(['', ' ', 'null', '[]', '"x"', '1', 'true', '{', '}', '{"a":}', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', '{"title":"x","title":"y"}']);
    else if (op === 5) text = '['.repeat(r.pick([33, 1000, 100_000])) + ']'.repeat(r.pick([33, 1000, 100_000]));
    else if (op === 6) {
      const n = r.pick([32, 33, 5000, 100_000]);
      text = '{"title":'.repeat(n) + '"x"' + '}'.repeat(n);
    }
    return text;
  }

  // query strings

  queryValue(): string {
    const r = this.r;
    const raw = r.weighted([
      [3, () => String(r.pick(HOSTILE_NUMBERS.map((n) => (n instanceof Raw ? n.text : String(n)))))],
      [3, () => this.string().slice(0, 200)],
      [1, () => Array.from({ length: r.pick([2, 10, 999, 1001, 3000]) }, (_, i) => i).join(',')],
      [1, () => this.sortText()],
    ] as const)();
    // Encoded as a client would, or not at all, or with broken escapes.
    return r.weighted([
      [6, () => enc(raw)],
      [1, () => raw.replace(/[^\x21-\x7e]/g, (c) => enc(c))],
      [1, () => r.pick(['%00', '%', '%zz', '%ED%A0%80', '%uD800', '%C0%80', '+', '%2C', 'a%00b', '%F0%9F%9A%9A'])],
    ] as const)();
  }

  listQuery(): string {
    const r = this.r;
    const params: string[] = [];
    for (let i = r.int(5); i > 0; i--) {
      const kind = r.weighted([[5, 'filter'], [1, 'sort'], [1, 'order'], [1, 'select'], [1, 'limit'], [1, 'offset'], [0.5, 'other']] as const);
      if (kind === 'filter') {
        const field = r.pick(PREFIXES) + r.pick(FIELD_NAMES);
        const op = r.chance(0.5) ? `[${r.pick(OPERATORS)}]` : r.chance(0.1) ? '[a][b][c][d]' : r.chance(0.05) ? '[]' : '';
        params.push(`filter[${enc(field)}]${op}=${this.queryValue()}`);
      } else if (kind === 'order') params.push(`order[${r.pick([...FIELD_NAMES, ...PROTO_NAMES])}]=${r.pick(['asc', 'desc', 'x', ''])}`);
      else if (kind === 'other') params.push(`${r.pick([...PROTO_NAMES, 'fliter', 'pageSize', 'filter', 'sort[]'])}=${this.queryValue()}`);
      else params.push(`${kind}=${kind === 'sort' ? enc(this.sortText()) : this.queryValue()}`);
    }
    return params.length ? `?${params.join('&')}` : '';
  }

  // requests

  request(): FuzzRequest {
    const r = this.r;
    const s = this.s;
    const route = r.weighted([
      [12, 'list'], [12, 'search'], [2, 'fields'], [8, 'get'], [14, 'create'], [16, 'patch'], [5, 'delete'],
      [3, 'keys.list'], [6, 'keys.create'], [2, 'keys.get'], [4, 'keys.patch'], [2, 'keys.delete'], [2, 'keys.rotate'],
      [1, 'portals.list'], [3, 'portals.create'], [2, 'portals.get'], [3, 'portals.patch'], [2, 'portals.delete'],
      [3, 'sessions'], [2, 'me'], [1, 'wrong method'],
    ] as const);
    const management = route.startsWith('keys') || route.startsWith('portals') || route === 'sessions';
    const body = (valid: () => JVal) => this.bodyText(r.weighted([[50, () => this.mutate(valid())], [38, valid], [12, () => this.value()]] as const)());
    const spareKey = () => (s.spareKeyIds.length && r.chance(0.7) ? r.pick(s.spareKeyIds) : r.pick(['key_nope', '%00', 'key_%ED%A0%80', 'x'.repeat(120), 'constructor', '']));
    const sparePortal = () => (s.sparePortalIds.length && r.chance(0.6) ? String(r.pick(s.sparePortalIds)) : r.pick(['0', '2147483647', '2147483648', '99999999999', '-1', 'abc', '%00', '1e3', 'constructor']));
    let req: Omit<FuzzRequest, 'headers' | 'route' | 'write'>;
    switch (route) {
      case 'list': req = { method: 'GET', url: `/v1/smart-processes${this.listQuery()}` }; break;
      case 'search': req = { method: 'POST', url: '/v1/smart-processes/search', payload: body(() => this.searchBody()) }; break;
      case 'fields': req = { method: 'GET', url: `/v1/smart-processes/fields${r.chance(0.2) ? this.listQuery() : ''}` }; break;
      case 'get': req = { method: 'GET', url: `/v1/smart-processes/${this.pathId()}` }; break;
      case 'create': req = { method: 'POST', url: '/v1/smart-processes', payload: body(() => this.createBody()) }; break;
      case 'patch': req = { method: 'PATCH', url: `/v1/smart-processes/${this.pathId()}`, payload: r.chance(0.05) ? undefined : body(() => this.patchBody()) }; break;
      case 'delete': req = { method: 'DELETE', url: `/v1/smart-processes/${r.chance(0.3) ? this.pathId() : r.pick(['0', '2147483648', '%00', '9999', 'constructor', '1e3', '%'])}` }; break;
      case 'keys.list': req = { method: 'GET', url: `/v1/keys${r.chance(0.5) ? `?portalId=${r.chance(0.5) ? s.portalId : this.queryValue()}` : ''}${r.chance(0.3) ? `${r.chance(0.5) ? '&' : '?'}kind=${this.queryValue()}` : ''}` }; break;
      case 'keys.create': req = { method: 'POST', url: '/v1/keys', payload: body(() => this.keyBody()) }; break;
      case 'keys.get': req = { method: 'GET', url: `/v1/keys/${spareKey()}` }; break;
      case 'keys.patch': req = { method: 'PATCH', url: `/v1/keys/${spareKey()}`, payload: body(() => this.keyPatchBody()) }; break;
      case 'keys.delete': req = { method: 'DELETE', url: `/v1/keys/${spareKey()}` }; break;
      case 'keys.rotate': req = { method: 'POST', url: `/v1/keys/${spareKey()}/rotate`, payload: r.chance(0.3) ? undefined : body(() => obj([['gracePeriodSeconds', r.pick([0, 60, 604800, 604801, -1])]])) }; break;
      case 'portals.list': req = { method: 'GET', url: '/v1/portals' }; break;
      case 'portals.create': req = { method: 'POST', url: '/v1/portals', payload: r.chance(0.1) ? undefined : body(() => this.portalBody()) }; break;
      case 'portals.get': req = { method: 'GET', url: `/v1/portals/${r.chance(0.3) ? s.portalId : sparePortal()}` }; break;
      case 'portals.patch': req = { method: 'PATCH', url: `/v1/portals/${r.chance(0.3) ? s.portalId : sparePortal()}`, payload: body(() => this.portalBody()) }; break;
      case 'portals.delete': req = { method: 'DELETE', url: `/v1/portals/${sparePortal()}${r.chance(0.5) ? `?force=${r.pick(['true', 'false', 'yes', '%00'])}` : ''}` }; break;
      case 'sessions': req = { method: 'POST', url: '/v1/sessions', payload: body(() => this.sessionBody()) }; break;
      case 'me': req = { method: 'GET', url: `/v1/me${r.chance(0.2) ? this.listQuery() : ''}` }; break;
      default: req = { method: r.pick(['PUT', 'OPTIONS', 'TRACE'] as const), url: r.pick(['/v1/smart-processes', `/v1/smart-processes/${this.pathId()}`, '/v1/keys', '/v1/me', '/v2/x', '/']), payload: r.chance(0.5) ? body(() => this.createBody()) : undefined };
    }
    const headers: Record<string, string> = {};
    const keyChoice = r.weighted([[93, 'right'], [4, 'other'], [2, 'none'], [1, 'junk']] as const);
    if (keyChoice === 'right') headers['x-api-key'] = management ? s.managementKey : s.personalKey;
    else if (keyChoice === 'other') headers['x-api-key'] = management ? s.personalKey : s.managementKey;
    else if (keyChoice === 'junk') headers['x-api-key'] = r.pick(['vibe_api_', 'vibe_live_xxx', 'x'.repeat(300), 'vibe_app_' + 'a'.repeat(40)]);
    if (req.payload !== undefined) headers['content-type'] = r.weighted([[120, 'application/json'], [1, 'text/plain'], [1, 'application/json; charset=utf-16'], [1, 'application/x-www-form-urlencoded'], [1, 'application/jsonx']] as const);
    if (r.chance(0.05)) headers['if-match'] = r.pick(['"1"', '"999999999999999999999999"', '*', 'W/"2"', 'garbage', '"-1"']);
    if (r.chance(0.03)) headers['x-request-id'] = r.pick(['ok-id', 'bad id', 'x'.repeat(200)]);
    return { ...req, headers, route, write: req.method !== 'GET' };
  }
}

// --- one store ----------------------------------------------------------------------------------

/** Everything a 4xx must leave as it was: every row of every table. */
async function snapshot(store: Store): Promise<string> {
  if (store.dialect === 'postgres') {
    const agg = (table: string, order: string) => sql.raw(`(select coalesce(json_agg(t order by ${order})::text, '[]') from ${table} t)`);
    const { rows } = await sql<{ s: string }>`select concat_ws('|', ${agg('portals', 'id')}, ${agg('smart_process_types', 'portal_id, id')}, ${agg('type_relations', 'portal_id, parent_entity_type_id, child_entity_type_id')}, ${agg('api_keys', 'id')}, ${agg('key_secrets', 'hash')}, ${agg('sessions', 'hash')}, ${agg('settings', '1')}) as s`.execute(store.db);
    return rows[0].s;
  }
  const db = store.db;
  const parts = await Promise.all([
    db.selectFrom('portals').selectAll().orderBy('id').execute(),
    db.selectFrom('smart_process_types').selectAll().orderBy('portal_id').orderBy('id').execute(),
    db.selectFrom('type_relations').selectAll().orderBy('portal_id').orderBy('parent_entity_type_id').orderBy('child_entity_type_id').execute(),
    db.selectFrom('api_keys').selectAll().orderBy('id').execute(),
    db.selectFrom('key_secrets').selectAll().orderBy('hash').execute(),
    db.selectFrom('sessions').selectAll().orderBy('hash').execute(),
    db.selectFrom('settings' as never).selectAll().execute(),
  ]);
  return JSON.stringify(parts);
}

const CODES = new Set(Object.keys(ERROR_TABLE));

/** What is wrong with an answer, or null. */
function answerProblem(req: FuzzRequest, res: LightMyRequestResponse): string | null {
  if (res.statusCode >= 500) return `status ${res.statusCode}`;
  if (res.statusCode === 204 || req.method === 'HEAD') return res.body === '' ? null : '204 with a body';
  let body: { success?: unknown; data?: unknown; error?: { code?: string; message?: unknown; requestId?: unknown } };
  try {
    body = JSON.parse(res.body);
  } catch {
    return 'the body is not JSON';
  }
  if (res.statusCode < 400) return body.success === true && 'data' in body ? null : 'a success without the envelope';
  const error = body.error;
  if (body.success !== false || !error) return 'an error without the envelope';
  if (!error.code || !CODES.has(error.code)) return `code ${error.code} is not in ERROR_TABLE`;
  if (ERROR_TABLE[error.code as keyof typeof ERROR_TABLE].status !== res.statusCode) return `code ${error.code} with status ${res.statusCode}`;
  if (typeof error.message !== 'string' || !error.message) return 'an error without a message';
  if (typeof error.requestId !== 'string' || error.requestId !== res.headers['x-request-id']) return 'requestId missing or not the X-Request-Id header';
  return null;
}

interface Figures {
  requests: number;
  seconds: number;
  statuses: Map<number, number>;
  codes: Map<string, number>;
  routes: Map<string, number>;
  writes4xx: number;
  /** status and code of every answer, in order: the two stores must agree. */
  answers: string[];
}

async function fuzzStore(store: Store, seed: number, label: string): Promise<Figures> {
  const app: FastifyInstance = await buildApp({ config: { ...loadConfig({}), redisUrl: null }, store, logger: false });
  try {
    const { keys, portals } = app.services;
    const portal = await portals.create({ name: 'Fuzz portal', timeZone: 'Europe/Moscow' });
    const personal = await keys.create({ kind: 'personal', portalId: portal.id, scopes: ['crm'], userId: 7, requestsPerSecond: null }, null);
    const management = await keys.create({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'], requestsPerSecond: null }, null);
    const state: RunState = { portalId: portal.id, personalKey: personal.secret, managementKey: management.secret, types: [], spareKeyIds: [], appKeyIds: [], sparePortalIds: [] };
    const inject = (method: InjectOptions['method'], url: string, key: string, payload?: unknown) =>
      app.inject({ method, url, headers: { 'x-api-key': key, ...(payload ? { 'content-type': 'application/json' } : {}) }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });
    // Something to aim at: types with relations, spare keys (one of each kind), a spare portal.
    for (const [i, body] of [{ entityTypeId: 1050 }, { entityTypeId: 1052, isClientEnabled: true }, { code: 'seed' }, { relations: { child: [{ entityTypeId: 1050 }], parent: [{ entityTypeId: 2 }] } }].entries()) {
      const res = await inject('POST', '/v1/smart-processes', personal.secret, { title: `Seed ${i}`, ...body });
      assert.equal(res.statusCode, 201, res.body);
      state.types.push(res.json().data.entityTypeId);
    }
    for (const kind of ['personal', 'application', 'management'] as const) {
      const res = await inject('POST', '/v1/keys', management.secret, { kind, ...(kind === 'management' ? { scopes: ['vibe:mgmt:portals'] } : { portalId: portal.id }) });
      assert.equal(res.statusCode, 201, res.body);
      state.spareKeyIds.push(res.json().data.id);
      if (kind === 'application') state.appKeyIds.push(res.json().data.id);
    }
    const sparePortal = await inject('POST', '/v1/portals', management.secret, { name: 'Spare' });
    state.sparePortalIds.push(sparePortal.json().data.id);

    const rng = new Rng(seed);
    const gen = new Generator(rng, state);
    const figures: Figures = { requests: 0, seconds: 0, statuses: new Map(), codes: new Map(), routes: new Map(), writes4xx: 0, answers: [] };
    const count = <K>(m: Map<K, number>, k: K) => m.set(k, (m.get(k) ?? 0) + 1);
    const started = Date.now();
    for (let i = 0; i < REQUESTS; i++) {
      if (Date.now() - started > TIME_LIMIT_MS) assert.fail(`${label}: the run took longer than ${TIME_LIMIT_MS} ms after ${i} requests (seed ${seed})`);
      const req = gen.request();
      const before = req.write ? await snapshot(store) : null;
      const res = await app.inject({ method: req.method, url: req.url, headers: req.headers, ...(req.payload !== undefined ? { payload: req.payload } : {}) });
      figures.requests++;
      count(figures.statuses, res.statusCode);
      count(figures.routes, req.route);
      const report = (problem: string) => {
        const shown = { ...req, headers: { ...req.headers, ...(req.headers['x-api-key'] ? { 'x-api-key': req.headers['x-api-key'] === state.personalKey ? '<personal key>' : req.headers['x-api-key'] === state.managementKey ? '<management key>' : '<other>' } : {}) } };
        const payload = shown.payload && shown.payload.length > 2000 ? `${shown.payload.slice(0, 2000)}... (${shown.payload.length} characters)` : shown.payload;
        return `${label}, seed ${seed} (replay: FUZZ_SEED=${seed}), request #${i}: ${problem}\n  ${req.method} ${req.url.slice(0, 2000)}\n  headers ${JSON.stringify(shown.headers)}\n  payload ${JSON.stringify(payload)}\n  answer ${res.statusCode} ${res.body.slice(0, 2000)}`;
      };
      const problem = answerProblem(req, res);
      if (problem) assert.fail(report(problem));
      // Key ids are random: the route, not the URL, names the request.
      figures.answers.push(`${req.route} (${req.method}) -> ${res.statusCode}`);
      if (res.statusCode >= 400) {
        const code = (JSON.parse(res.body) as { error: { code: string } }).error.code;
        figures.answers[i] += ` ${code}`;
        count(figures.codes, code);
        if (before !== null) {
          figures.writes4xx++;
          if ((await snapshot(store)) !== before) assert.fail(report('the store changed after a 4xx'));
        }
        continue;
      }
      // Keep the state in step with what exists.
      if (req.route === 'create' && res.statusCode === 201) state.types.push(res.json().data.entityTypeId);
      if (req.route === 'delete' && res.statusCode === 204) state.types = state.types.filter((t) => String(t) !== req.url.split('/').pop());
      if (req.route === 'keys.create' && res.statusCode === 201 && state.spareKeyIds.length < 60) {
        const key = res.json().data as { id: string; kind: string };
        state.spareKeyIds.push(key.id);
        if (key.kind === 'application') state.appKeyIds.push(key.id);
      }
      if (req.route === 'keys.delete' && res.statusCode === 204) {
        const id = decodeURIComponent(req.url.split('/').pop() ?? '');
        state.spareKeyIds = state.spareKeyIds.filter((k) => k !== id);
        state.appKeyIds = state.appKeyIds.filter((k) => k !== id);
      }
      if (req.route === 'portals.create' && res.statusCode === 201 && state.sparePortalIds.length < 30) state.sparePortalIds.push(res.json().data.id);
      if (req.route === 'portals.delete' && res.statusCode === 204) state.sparePortalIds = state.sparePortalIds.filter((p) => String(p) !== req.url.split('/').pop()?.split('?')[0]);
      // Types deleted now and then, so that creates keep succeeding and the portal does not grow without end.
      if (state.types.length > 150) {
        const victim = state.types.splice(rng.int(state.types.length), 1)[0];
        await inject('DELETE', `/v1/smart-processes/${victim}`, personal.secret);
      }
    }
    figures.seconds = (Date.now() - started) / 1000;
    return figures;
  } finally {
    await app.close();
  }
}

function print(label: string, f: Figures): void {
  const sorted = <K>(m: Map<K, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join(', ');
  console.log(`fuzz ${label}: ${f.requests} requests in ${f.seconds.toFixed(1)} s (${Math.round(f.requests / f.seconds)}/s), seed ${SEED}; 5xx: 0; non-envelope answers: 0; store unchanged after all ${f.writes4xx} 4xx answers to writes`);
  console.log(`  statuses: ${sorted(f.statuses)}`);
  console.log(`  error codes: ${sorted(f.codes)}`);
  console.log(`  routes: ${sorted(f.routes)}`);
}

const pgProblem = await postgresProblem(PG_URL);
const PG_SKIP: string | false = pgProblem ? `${pgProblem}` : false;

describe(`fuzzer: ${REQUESTS} random requests per store over every route (seed ${SEED})`, () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups) await cleanup();
  });

  let sqliteAnswers: string[] | null = null;

  it('SQLite in memory: no 5xx, every answer in the envelope, nothing stored after a 4xx', { timeout: TIME_LIMIT_MS + 30_000 }, async () => {
    const store = openStore({ databaseUrl: null, dataDir: '.', sqliteFile: ':memory:' });
    cleanups.push(() => store.close());
    const figures = await fuzzStore(store, SEED, 'SQLite');
    print('SQLite', figures);
    sqliteAnswers = figures.answers;
  });

  it('PostgreSQL: no 5xx, every answer in the envelope, nothing stored after a 4xx', { skip: PG_SKIP, timeout: TIME_LIMIT_MS + 30_000 }, async () => {
    const schema = `fuzz_${crypto.randomBytes(6).toString('hex')}`;
    const url = new URL(PG_URL);
    url.searchParams.set('schema', schema);
    const store = openStore({ databaseUrl: url.toString(), dataDir: '.' });
    cleanups.push(async () => {
      await store.close();
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
    });
    const figures = await fuzzStore(store, SEED, 'PostgreSQL');
    print('PostgreSQL', figures);
    // The same requests in the same order: the same statuses and codes as SQLite.
    if (sqliteAnswers) {
      const differ = figures.answers.findIndex((a, i) => a !== sqliteAnswers![i]);
      assert.equal(differ, -1, `request #${differ} (seed ${SEED}): SQLite answered ${sqliteAnswers[differ]}, PostgreSQL ${figures.answers[differ]}`);
      console.log(`  PostgreSQL gave the same status and code as SQLite to all ${figures.answers.length} requests`);
    }
  });
});
