// The native smart process types of one fake portal: storage, the crm.type.*
// methods and their documented quirks. Written from the Bitrix24 REST docs
// (api-reference/crm/universal/user-defined-object-types/*.md and
// api-reference/crm/data-types.md#type), not from any adapter.
import { formatDateTime, isPhpArray, phpEntries, toInt, type Params } from './php.js';

export type YN = 'Y' | 'N';

/** Flags the docs list as parameters of crm.type.add / crm.type.update. */
export const WRITABLE_FLAGS = [
  'isCategoriesEnabled',
  'isStagesEnabled',
  'isBeginCloseDatesEnabled',
  'isClientEnabled',
  'isUseInUserfieldEnabled',
  'isLinkWithProductsEnabled',
  'isMycompanyEnabled',
  'isDocumentsEnabled',
  'isSourceEnabled',
  'isObserversEnabled',
  'isRecyclebinEnabled',
  'isAutomationEnabled',
  'isBizProcEnabled',
  'isSetOpenPermissions',
] as const;
/** "System fields" of data-types.md#type: returned, not among the add/update parameters. */
export const SYSTEM_FLAGS = ['isPaymentsEnabled', 'isCountersEnabled'] as const;
export const ALL_FLAGS = [...WRITABLE_FLAGS, ...SYSTEM_FLAGS] as const;
export type FlagName = (typeof ALL_FLAGS)[number];

export const LINKED_USER_FIELD_KEYS = ['CALENDAR_EVENT|UF_CRM_CAL_EVENT', 'TASKS_TASK|UF_CRM_TASK', 'TASKS_TASK_TEMPLATE|UF_CRM_TASK'] as const;
export type LinkedKey = (typeof LINKED_USER_FIELD_KEYS)[number];

/** Read-only fields of the card that the portal ignores on input. */
export const READ_ONLY_INPUT = ['id', 'createdTime', 'createdBy', 'updatedTime', 'updatedBy'] as const;

export interface StoredType {
  id: number;
  title: string;
  code: string;
  createdBy: number;
  entityTypeId: number;
  customSectionId: number | null;
  flags: Record<FlagName, YN>;
  createdTime: number;
  updatedTime: number;
  updatedBy: number;
  linkedUserFields: Record<LinkedKey, YN>;
  /** Items of the type (crm.type.delete refuses a type that has some). */
  itemCount: number;
}

/** One directed edge parent → child, stored once and seen from both ends. */
export interface Edge {
  parent: number;
  child: number;
  isChildrenListEnabled: YN;
}

export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | number,
    readonly description: string,
  ) {
    super(`${code}: ${description}`);
  }
}

export interface TypeRules {
  /** 'YN' (default): only "Y"/"N" set a flag, other spellings are ignored. 'lenient': also true/false, 1/0, "true"/"false". */
  flagSpellings: 'YN' | 'lenient';
  /** 'string-true' (default): only the string "true" enables isChildrenListEnabled / a linkedUserFields key. 'php-bool': PHP's FILTER_VALIDATE_BOOLEAN (true, 1, "1", "true", "on", "yes"). */
  truthy: 'string-true' | 'php-bool';
  /** 'whole' (default, crm-type-update.md "passed in full; completely overwritten"): a relations object replaces both sides, an absent side is emptied. 'per-side': an absent side is kept. */
  relationsUpdate: 'whole' | 'per-side';
  /** 'resulting-flag' (default): linkedUserFields input applies when isUseInUserfieldEnabled is Y after the request. 'flag-in-request': only when the same request passes isUseInUserfieldEnabled = "Y". */
  linkedUserFieldsNeed: 'resulting-flag' | 'flag-in-request';
  /** Upper bound of the low entityTypeId range: 191 (default; "from 128 to 192" read as 128 ≤ x < 192) or 192 (inclusive reading). */
  lowRangeEnd: 191 | 192;
  /** Automatic entityTypeId: 'counter-1030' (default: 1032, 1034, … never reused) or 'low-range-first' (128, 129, … then 1030+ even). */
  autoEntityTypeId: 'counter-1030' | 'low-range-first';
  /** Which entries the portal keeps; everything else is dropped silently. */
  relationEligible: (side: 'parent' | 'child', entityTypeId: number, self: StoredType, portalEntityTypeIds: number[]) => boolean;
  /** Portal time zone offset in minutes (createdTime, time.date_start…). */
  offsetMinutes: number;
  /** Plan limit on the number of types (CREATE_DYNAMIC_TYPE_RESTRICTED), null = none. */
  maxTypes: number | null;
  /**
   * The relations in the answer of crm.type.add / crm.type.update: 'after' (default) as stored after the call;
   * 'before' as they were before it (nothing for add): the reading where the write's answer does not reflect
   * relations (bitrix24.md: read the card back with a separate call).
   */
  writeAnswerRelations: 'after' | 'before';
  /** Digital workplaces of the portal: a customSectionId on add that is not one of them is ignored (stored null). null (default): any id is kept. */
  customSectionIds: number[] | null;
}

/** Base set of system types a smart process can relate to (api-contract §3.1; the Bitrix24 docs do not list it). */
const BASE_RELATABLE = [1, 2, 3, 4, 7, 14, 31];

export function defaultRelationEligible(side: 'parent' | 'child', entityTypeId: number, self: StoredType, portal: number[]): boolean {
  if (entityTypeId === self.entityTypeId) return false;
  const base = side === 'parent' ? BASE_RELATABLE.filter((x) => x !== 3 && x !== 4) : BASE_RELATABLE.filter((x) => x !== 14);
  return base.includes(entityTypeId) || portal.includes(entityTypeId);
}

export interface Warning {
  method: string;
  what: string;
  value?: unknown;
}

export interface WriteContext {
  method: string;
  userId: number;
  now: number;
  warn: (what: string, value?: unknown) => void;
}

const LIGHT_FIELD_TYPES: Record<string, 'integer' | 'string' | 'boolean' | 'datetime'> = {
  id: 'integer',
  title: 'string',
  code: 'string',
  createdBy: 'integer',
  entityTypeId: 'integer',
  customSectionId: 'integer',
  ...Object.fromEntries(ALL_FLAGS.map((f) => [f, 'boolean' as const])),
  createdTime: 'datetime',
  updatedTime: 'datetime',
  updatedBy: 'integer',
};

export class TypeStore {
  readonly types = new Map<number, StoredType>();
  edges: Edge[] = [];
  private nextId = 1;
  private counter = 1030;
  /** Every value of `customSections` that reached the portal (deprecated; can create or delete workplaces). */
  readonly customSectionsSent: Array<{ method: string; value: unknown }> = [];

  constructor(private readonly rules: TypeRules) {}

  // ---------- reading ----------

  byId(id: number): StoredType | undefined {
    return this.types.get(id);
  }

  byEntityTypeId(entityTypeId: number): StoredType | undefined {
    for (const t of this.types.values()) if (t.entityTypeId === entityTypeId) return t;
    return undefined;
  }

  /** The list shape of crm.type.list (no relations, linkedUserFields, customSections). */
  light(t: StoredType): Record<string, unknown> {
    const o = this.rules.offsetMinutes;
    return {
      id: t.id,
      title: t.title,
      code: t.code,
      createdBy: t.createdBy,
      entityTypeId: t.entityTypeId,
      customSectionId: t.customSectionId,
      ...Object.fromEntries(ALL_FLAGS.map((f) => [f, t.flags[f]])),
      createdTime: formatDateTime(t.createdTime, o),
      updatedTime: formatDateTime(t.updatedTime, o),
      updatedBy: t.updatedBy,
    };
  }

  /** The card of crm.type.get / getByEntityTypeId / add / update. */
  card(t: StoredType): Record<string, unknown> {
    return {
      ...this.light(t),
      relations: this.relationsOf(t),
      linkedUserFields: { ...t.linkedUserFields },
      customSections: [],
    };
  }

  relationsOf(t: StoredType) {
    const entry = (entityTypeId: number, isChildrenListEnabled: YN, isPredefined: YN) => ({ entityTypeId, isChildrenListEnabled, isPredefined });
    const parent = [];
    const child = [];
    if (t.flags.isClientEnabled === 'Y') parent.push(entry(3, 'Y', 'Y'), entry(4, 'Y', 'Y'));
    if (t.flags.isPaymentsEnabled === 'Y') child.push(entry(14, 'Y', 'Y'));
    for (const e of this.edges) {
      if (e.child === t.entityTypeId && !this.isPredefined('parent', e.parent, t)) parent.push(entry(e.parent, e.isChildrenListEnabled, 'N'));
      if (e.parent === t.entityTypeId && !this.isPredefined('child', e.child, t)) child.push(entry(e.child, e.isChildrenListEnabled, 'N'));
    }
    return { parent, child };
  }

  private isPredefined(side: 'parent' | 'child', entityTypeId: number, t: StoredType): boolean {
    if (side === 'parent') return t.flags.isClientEnabled === 'Y' && (entityTypeId === 3 || entityTypeId === 4);
    return t.flags.isPaymentsEnabled === 'Y' && entityTypeId === 14;
  }

  // ---------- writing ----------

  isEntityTypeIdInRange(x: number): boolean {
    return (x >= 128 && x <= this.rules.lowRangeEnd) || (x >= 1030 && x % 2 === 0);
  }

  private allocateEntityTypeId(): number {
    const used = (x: number) => !!this.byEntityTypeId(x);
    if (this.rules.autoEntityTypeId === 'low-range-first') {
      for (let x = 128; x <= this.rules.lowRangeEnd; x++) if (!used(x)) return x;
      let x = 1030;
      while (used(x)) x += 2;
      return x;
    }
    do this.counter += 2;
    while (used(this.counter));
    return this.counter;
  }

  /** Direct insert for tests (seeds): no rules, relations trusted as given. */
  insert(t: Omit<StoredType, 'id'> & { id?: number }, relations?: { parent?: Array<{ entityTypeId: number; isChildrenListEnabled?: YN }>; child?: Array<{ entityTypeId: number; isChildrenListEnabled?: YN }> }): StoredType {
    const id = t.id ?? this.nextId;
    this.nextId = Math.max(this.nextId, id + 1);
    const stored: StoredType = { ...t, id };
    this.types.set(id, stored);
    for (const r of relations?.parent ?? []) this.edges.push({ parent: r.entityTypeId, child: stored.entityTypeId, isChildrenListEnabled: r.isChildrenListEnabled ?? 'N' });
    for (const r of relations?.child ?? []) this.edges.push({ parent: stored.entityTypeId, child: r.entityTypeId, isChildrenListEnabled: r.isChildrenListEnabled ?? 'N' });
    return stored;
  }

  remove(t: StoredType): void {
    this.types.delete(t.id);
    this.edges = this.edges.filter((e) => e.parent !== t.entityTypeId && e.child !== t.entityTypeId);
  }

  private flagValue(value: unknown): YN | null {
    if (value === 'Y' || value === 'N') return value;
    if (this.rules.flagSpellings === 'lenient') {
      if (value === true || value === 1 || value === 'true' || value === '1') return 'Y';
      if (value === false || value === 0 || value === 'false' || value === '0') return 'N';
    }
    return null;
  }

  /** crm-type-add.md: "Values Y and N do not work. You must pass "true" or "false"". */
  private truthy(value: unknown): boolean {
    if (this.rules.truthy === 'php-bool') {
      if (value === true || value === 1) return true;
      return typeof value === 'string' && ['1', 'true', 'on', 'yes'].includes(value.trim().toLowerCase());
    }
    return value === 'true';
  }

  /** Applies the input that add and update share; returns whether anything changed. */
  private applyFields(t: StoredType, fields: Params, ctx: WriteContext, isAdd: boolean): boolean {
    let changed = false;
    for (const key of READ_ONLY_INPUT) if (key in fields) ctx.warn(`read-only field ${key} ignored`, fields[key]);
    for (const key of SYSTEM_FLAGS) if (key in fields) ctx.warn(`system field ${key} ignored`, fields[key]);
    if ('customSections' in fields) {
      this.customSectionsSent.push({ method: ctx.method, value: fields.customSections });
      ctx.warn('customSections received (recorded, not applied)', fields.customSections);
    }
    if ('title' in fields) {
      const title = String(fields.title ?? '');
      if (title !== t.title) {
        t.title = title;
        changed = true;
      }
    }
    if ('code' in fields) {
      const code = fields.code === null || fields.code === undefined ? '' : String(fields.code);
      if (code !== t.code) {
        t.code = code;
        changed = true;
      }
    }
    for (const flag of WRITABLE_FLAGS) {
      if (!(flag in fields)) continue;
      const v = this.flagValue(fields[flag]);
      if (v === null) {
        ctx.warn(`flag ${flag}: value not accepted, ignored`, fields[flag]);
        continue;
      }
      if (t.flags[flag] !== v) {
        t.flags[flag] = v;
        changed = true;
      }
    }
    for (const key of Object.keys(fields)) {
      const known = ['title', 'code', 'entityTypeId', 'customSectionId', 'customSections', 'isExternal', 'relations', 'linkedUserFields', ...READ_ONLY_INPUT, ...ALL_FLAGS] as string[];
      if (!known.includes(key)) ctx.warn(`unknown field ${key} ignored`, fields[key]);
    }
    if ('linkedUserFields' in fields) {
      const enabledNow = t.flags.isUseInUserfieldEnabled === 'Y';
      const passed = this.flagValue(fields.isUseInUserfieldEnabled) === 'Y';
      const applies = this.rules.linkedUserFieldsNeed === 'resulting-flag' ? enabledNow : passed;
      if (!applies) ctx.warn('linkedUserFields ignored: isUseInUserfieldEnabled is not Y', fields.linkedUserFields);
      else
        for (const [key, value] of phpEntries(fields.linkedUserFields)) {
          if (!(LINKED_USER_FIELD_KEYS as readonly string[]).includes(key)) {
            ctx.warn(`linkedUserFields key ${key} ignored`, value);
            continue;
          }
          const v: YN = this.truthy(value) ? 'Y' : 'N';
          if (t.linkedUserFields[key as LinkedKey] !== v) {
            t.linkedUserFields[key as LinkedKey] = v;
            changed = true;
          }
        }
    }
    if ('relations' in fields) changed = this.applyRelations(t, fields.relations, ctx, isAdd) || changed;
    return changed;
  }

  private applyRelations(t: StoredType, relations: unknown, ctx: WriteContext, isAdd: boolean): boolean {
    if (!isPhpArray(relations)) {
      ctx.warn('relations is not an object, ignored', relations);
      return false;
    }
    const rel = relations as Record<string, unknown>;
    const portal = [...this.types.values()].map((x) => x.entityTypeId);
    const before = JSON.stringify(this.relationsOf(t));
    for (const side of ['parent', 'child'] as const) {
      const present = side in rel;
      if (!present && (isAdd || this.rules.relationsUpdate === 'per-side')) continue;
      const wanted = new Map<number, YN>();
      for (const [, entry] of phpEntries(present ? rel[side] : [])) {
        const entityTypeId = isPhpArray(entry) ? toInt((entry as Record<string, unknown>).entityTypeId) : null;
        if (entityTypeId === null) {
          ctx.warn(`relations.${side}: entry without entityTypeId dropped`, entry);
          continue;
        }
        if (this.isPredefined(side, entityTypeId, t)) {
          // crm-type-update.md: "You cannot change the settings of predefined links … These settings can be omitted"
          ctx.warn(`relations.${side}: entry for predefined ${entityTypeId} ignored`, entry);
          continue;
        }
        if (!this.rules.relationEligible(side, entityTypeId, t, portal)) {
          ctx.warn(`relations.${side}: entityTypeId ${entityTypeId} cannot be linked, dropped silently`, entry);
          continue;
        }
        wanted.set(entityTypeId, this.truthy((entry as Record<string, unknown>).isChildrenListEnabled) ? 'Y' : 'N');
      }
      // The side is replaced: remove its non-predefined edges, then add the wanted ones.
      const mine = (e: Edge) => (side === 'parent' ? e.child === t.entityTypeId : e.parent === t.entityTypeId);
      const other = (e: Edge) => (side === 'parent' ? e.parent : e.child);
      this.edges = this.edges.filter((e) => !mine(e) || this.isPredefined(side, other(e), t));
      for (const [x, flag] of wanted)
        this.edges.push(side === 'parent' ? { parent: x, child: t.entityTypeId, isChildrenListEnabled: flag } : { parent: t.entityTypeId, child: x, isChildrenListEnabled: flag });
    }
    return JSON.stringify(this.relationsOf(t)) !== before;
  }

  add(fields: Params, ctx: WriteContext): StoredType {
    if (this.rules.maxTypes !== null && this.types.size >= this.rules.maxTypes)
      throw new RestError(400, 'CREATE_DYNAMIC_TYPE_RESTRICTED', 'Maximum number of SPAs exceeded');
    const title = typeof fields.title === 'string' || typeof fields.title === 'number' ? String(fields.title) : '';
    if (title.trim() === '') throw new RestError(400, 'BX_EMPTY_REQUIRED', 'Field "Title" is required');
    const external = fields.isExternal === 'true' || fields.isExternal === 'Y' || fields.isExternal === true;
    const customSectionId = toInt(fields.customSectionId);
    if (external && !customSectionId) throw new RestError(400, 0, 'Select a workplace where the SPA will be located');
    const keptSectionId = customSectionId !== null && this.rules.customSectionIds && !this.rules.customSectionIds.includes(customSectionId) ? null : customSectionId;
    if (customSectionId !== null && keptSectionId === null) ctx.warn('customSectionId: no such workplace, ignored', customSectionId);
    let entityTypeId: number;
    if (fields.entityTypeId !== undefined && fields.entityTypeId !== null && fields.entityTypeId !== '') {
      const wanted = toInt(fields.entityTypeId);
      if (wanted === null || !this.isEntityTypeIdInRange(wanted)) throw new RestError(400, 'INVALID_ARG_VALUE', 'entityTypeId is out of allowed range');
      if (this.byEntityTypeId(wanted)) throw new RestError(400, 'INVALID_ARG_VALUE', `Smart process with entityTypeId ${wanted} already exists`);
      entityTypeId = wanted;
    } else entityTypeId = this.allocateEntityTypeId();
    const t: StoredType = {
      id: this.nextId++,
      title,
      code: '',
      createdBy: ctx.userId,
      entityTypeId,
      customSectionId: keptSectionId ?? null,
      flags: Object.fromEntries(ALL_FLAGS.map((f) => [f, f === 'isSetOpenPermissions' ? 'Y' : 'N'])) as Record<FlagName, YN>,
      createdTime: ctx.now,
      updatedTime: ctx.now,
      updatedBy: ctx.userId,
      linkedUserFields: Object.fromEntries(LINKED_USER_FIELD_KEYS.map((k) => [k, 'N'])) as Record<LinkedKey, YN>,
      itemCount: 0,
    };
    this.types.set(t.id, t);
    const { entityTypeId: _e, customSectionId: _c, ...rest } = fields;
    this.applyFields(t, rest, ctx, true);
    return t;
  }

  update(t: StoredType, fields: Params, ctx: WriteContext): StoredType {
    if ('title' in fields && String(fields.title ?? '').trim() === '') throw new RestError(400, 'BX_EMPTY_REQUIRED', 'Field "Title" is required');
    // crm-type-update.md lists error 0 for isExternal = 'true' with an empty customSectionId (the same code as "not found").
    const external = fields.isExternal === 'true' || fields.isExternal === 'Y' || fields.isExternal === true;
    if (external && !toInt(fields.customSectionId)) throw new RestError(400, 0, 'Select a workplace where the SPA will be located');
    const rest = { ...fields };
    for (const key of ['entityTypeId', 'customSectionId', 'isExternal'] as const)
      if (key in rest) {
        ctx.warn(`${key} ignored on update`, rest[key]);
        delete rest[key];
      }
    if (this.applyFields(t, rest, ctx, false)) {
      t.updatedTime = ctx.now;
      t.updatedBy = ctx.userId;
    }
    return t;
  }

  // ---------- crm.type.list ----------

  list(order: unknown, filter: unknown): StoredType[] {
    const match = compileFilter(filter);
    const sorters = compileOrder(order);
    const rows = [...this.types.values()].filter((t) => match(this.rowOf(t)));
    rows.sort((a, b) => {
      const ra = this.rowOf(a);
      const rb = this.rowOf(b);
      for (const { field, dir } of sorters) {
        const c = compareValues(ra[field], rb[field]);
        if (c !== 0) return dir * c;
      }
      return a.id - b.id;
    });
    return rows;
  }

  /** Comparable values of a type for filter and order. */
  private rowOf(t: StoredType): Record<string, string | number | null> {
    return {
      id: t.id,
      title: t.title,
      code: t.code,
      createdBy: t.createdBy,
      entityTypeId: t.entityTypeId,
      customSectionId: t.customSectionId,
      ...Object.fromEntries(ALL_FLAGS.map((f) => [f, t.flags[f]])),
      createdTime: Math.floor(t.createdTime / 1000) * 1000,
      updatedTime: Math.floor(t.updatedTime / 1000) * 1000,
      updatedBy: t.updatedBy,
    };
  }
}

// ---------- filter and order (crm-type-list.md) ----------

type Row = Record<string, string | number | null>;

function compareValues(a: string | number | null, b: string | number | null): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), 'en', { sensitivity: 'base' });
}

function compileOrder(order: unknown): Array<{ field: string; dir: 1 | -1 }> {
  const out: Array<{ field: string; dir: 1 | -1 }> = [];
  for (const [field, raw] of phpEntries(order)) {
    if (!(field in LIGHT_FIELD_TYPES)) throw new RestError(400, 'INVALID_ARG_VALUE', `Invalid order: field '${field}' is not allowed in order`);
    const dir = String(raw).toUpperCase();
    if (dir !== 'ASC' && dir !== 'DESC') throw new RestError(400, 'INVALID_ARG_VALUE', `Invalid order: allowed sort directions are ASC, DESC. But got '${String(raw)}' for field '${field}'`);
    out.push({ field, dir: dir === 'ASC' ? 1 : -1 });
  }
  return out;
}

const PREFIXES = ['!=%', '!%=', '>=', '<=', '!@', '=%', '%=', '!%', '!=', '>', '<', '@', '%', '=', '!'] as const;
type Op = (typeof PREFIXES)[number] | '';

function likeToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/%/g, '.*').replace(/_/g, '.');
  return new RegExp(`^${body}$`, 'is');
}

function normalizeFilterValue(field: string, value: unknown): string | number | null {
  const kind = LIGHT_FIELD_TYPES[field];
  const bad = () => new RestError(400, 'INVALID_ARG_VALUE', `Invalid filter: field '${field}' has invalid value`);
  if (value === null || value === '' || value === undefined) {
    if (kind === 'string') return '';
    return null;
  }
  if (kind === 'integer') {
    const n = toInt(value);
    if (n === null) throw bad();
    return n;
  }
  if (kind === 'boolean') {
    if (value === 'Y' || value === true || value === 'true' || value === 1 || value === '1') return 'Y';
    if (value === 'N' || value === false || value === 'false' || value === 0 || value === '0') return 'N';
    throw bad();
  }
  if (kind === 'datetime') {
    const ms = typeof value === 'number' ? value * 1000 : Date.parse(String(value));
    if (!Number.isFinite(ms)) throw bad();
    return ms;
  }
  if (typeof value === 'object') throw bad();
  return String(value);
}

function compileCondition(key: string, raw: unknown): (row: Row) => boolean {
  const prefix = (PREFIXES.find((p) => key.startsWith(p)) ?? '') as Op;
  const field = key.slice(prefix.length);
  if (!(field in LIGHT_FIELD_TYPES)) throw new RestError(400, 'INVALID_ARG_VALUE', `Invalid filter: field '${field}' is not allowed in filter`);
  const list = Array.isArray(raw) || (raw && typeof raw === 'object') ? phpEntries(raw).map(([, v]) => normalizeFilterValue(field, v)) : null;
  const one = list === null ? normalizeFilterValue(field, raw) : null;
  const eq = (a: string | number | null, b: string | number | null) => (typeof a === 'string' && typeof b === 'string' ? a.toLowerCase() === b.toLowerCase() : a === b);
  const text = (v: string | number | null) => (v === null ? '' : String(v));
  switch (prefix) {
    case '':
    case '=':
      return list ? (r) => list.some((v) => eq(r[field], v)) : (r) => eq(r[field], one);
    case '!':
    case '!=':
      return list ? (r) => !list.some((v) => eq(r[field], v)) : (r) => !eq(r[field], one);
    case '@':
      return (r) => (list ?? [one]).some((v) => eq(r[field], v));
    case '!@':
      return (r) => !(list ?? [one]).some((v) => eq(r[field], v));
    case '>':
    case '>=':
    case '<':
    case '<=': {
      return (r) => {
        const a = r[field];
        if (a === null || one === null) return false;
        const c = compareValues(a, one);
        return prefix === '>' ? c > 0 : prefix === '>=' ? c >= 0 : prefix === '<' ? c < 0 : c <= 0;
      };
    }
    case '%':
      return (r) => text(r[field]).toLowerCase().includes(text(one).toLowerCase());
    case '!%':
      return (r) => !text(r[field]).toLowerCase().includes(text(one).toLowerCase());
    case '=%':
    case '%=':
      return (r) => likeToRegExp(text(one)).test(text(r[field]));
    case '!=%':
    case '!%=':
      return (r) => !likeToRegExp(text(one)).test(text(r[field]));
  }
  return () => true;
}

/** The filter of crm-type-list.md: prefixes, nesting with numeric keys, `logic: OR`. */
export function compileFilter(filter: unknown): (row: Row) => boolean {
  if (!isPhpArray(filter)) return () => true;
  let logic: 'AND' | 'OR' = 'AND';
  const parts: Array<(row: Row) => boolean> = [];
  for (const [key, value] of phpEntries(filter)) {
    if (key.toLowerCase() === 'logic') {
      logic = String(value).toUpperCase() === 'OR' ? 'OR' : 'AND';
      continue;
    }
    if (/^\d+$/.test(key) && isPhpArray(value)) parts.push(compileFilter(value));
    else parts.push(compileCondition(key, value));
  }
  if (parts.length === 0) return () => true;
  return logic === 'OR' ? (row) => parts.some((p) => p(row)) : (row) => parts.every((p) => p(row));
}

// ---------- crm.type.fields (copied from crm-type-fields.md) ----------

const field = (type: string, title: string, upperName: string, o: { isRequired?: boolean; isReadOnly?: boolean; isImmutable?: boolean } = {}) => ({
  type,
  isRequired: o.isRequired ?? false,
  isReadOnly: o.isReadOnly ?? false,
  isImmutable: o.isImmutable ?? false,
  isMultiple: false,
  isDynamic: false,
  title,
  upperName,
});

export const TYPE_FIELDS = {
  id: field('integer', 'ID', 'ID', { isReadOnly: true }),
  title: field('string', 'Title', 'TITLE', { isRequired: true }),
  code: field('string', 'Symbolic Code', 'CODE'),
  createdBy: field('user', 'Created By', 'CREATED_BY', { isReadOnly: true }),
  entityTypeId: field('integer', 'Type Identifier', 'ENTITY_TYPE_ID', { isRequired: true, isImmutable: true }),
  customSectionId: field('integer', 'Digital Workspace', 'CUSTOM_SECTION_ID', { isImmutable: true }),
  isCategoriesEnabled: field('boolean', 'Use custom funnels and sales tunnels in the smart process', 'IS_CATEGORIES_ENABLED'),
  isStagesEnabled: field('boolean', 'Use custom stages and Kanban in the smart process', 'IS_STAGES_ENABLED'),
  isBeginCloseDatesEnabled: field('boolean', "Fields 'Start Date' and 'End Date'", 'IS_BEGIN_CLOSE_DATES_ENABLED'),
  isClientEnabled: field('boolean', "Field 'Client'", 'IS_CLIENT_ENABLED'),
  isUseInUserfieldEnabled: field('boolean', 'Use in user field', 'IS_USE_IN_USERFIELD_ENABLED'),
  isLinkWithProductsEnabled: field('boolean', 'Link with catalog products', 'IS_LINK_WITH_PRODUCTS_ENABLED'),
  isMycompanyEnabled: field('boolean', "Field 'Your Company Details'", 'IS_MYCOMPANY_ENABLED'),
  isDocumentsEnabled: field('boolean', 'Document Printing', 'IS_DOCUMENTS_ENABLED'),
  isSourceEnabled: field('boolean', "Fields 'Source' and 'Additional Information about Source'", 'IS_SOURCE_ENABLED'),
  isObserversEnabled: field('boolean', "Field 'Observers'", 'IS_OBSERVERS_ENABLED'),
  isRecyclebinEnabled: field('boolean', 'Use Recycle Bin', 'IS_RECYCLEBIN_ENABLED'),
  isAutomationEnabled: field('boolean', 'Use Automation rules and triggers in the smart process', 'IS_AUTOMATION_ENABLED'),
  isBizProcEnabled: field('boolean', 'Use business process designer in the smart process', 'IS_BIZ_PROC_ENABLED'),
  isSetOpenPermissions: field('boolean', 'Make new funnels available to everyone', 'IS_SET_OPEN_PERMISSIONS'),
  createdTime: field('datetime', 'Creation Date', 'CREATED_TIME'),
  updatedTime: field('datetime', 'Modification Date', 'UPDATED_TIME'),
  updatedBy: field('user', 'Modified By', 'UPDATED_BY', { isReadOnly: true }),
};
