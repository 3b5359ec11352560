/**
 * Mapping between the native Bitrix24 `crm.type.*` shapes and smartproc's domain
 * (TypeRecord, TypeCard, TypeDraft, TypePatch). Pure: no I/O, no clock.
 *
 * Doc pages quoted below live in bitrix24/b24restdocs:
 * - add:    api-reference/crm/universal/user-defined-object-types/crm-type-add.md
 * - update: api-reference/crm/universal/user-defined-object-types/crm-type-update.md
 * - get:    api-reference/crm/universal/user-defined-object-types/crm-type-get.md
 * - list:   api-reference/crm/universal/user-defined-object-types/crm-type-list.md
 * - fields: api-reference/crm/universal/user-defined-object-types/crm-type-fields.md
 * - type:   api-reference/crm/data-types.md (objects `type`, `type.relations`, `relation`, `type.linkedUserFields`)
 * - basic:  api-reference/data-types.md (`boolean`: "Most often Y or N. In some methods 0 or 1, or true or false";
 *           `datetime`: `YYYY-MM-DDThh:mm:ss±hh:mm`)
 */
import { createHash } from 'node:crypto';
import { ApiError, type ErrorDetail } from '../../errors.js';
import type { TypeCard, TypeRecord } from '../../domain/smart-process-type/card.js';
import { CRM, crmTypeName, type RelationEntry, type RelationsChange, type RelationSide } from '../../domain/smart-process-type/relations.js';
import { formatTime, parseTime } from '../../domain/time.js';
import { FLAG_BIT, FLAG_NAMES, hasFlag, LINKED_USER_FIELDS, LINKED_USER_FIELD_BIT, type FlagName, type LinkedUserField } from '../../domain/smart-process-type/fields.js';
import type { TypeDraft, TypePatch } from '../../domain/smart-process-type/input.js';
import type { Relation } from '../../domain/smart-process-type/schemas.js';
import type { WriteWarning } from '../../domain/write-warning.js';

// ---------------------------------------------------------------------------------------------
// Which flags the native API takes
// ---------------------------------------------------------------------------------------------

/**
 * The flags `crm.type.add` and `crm.type.update` document as input (the same 14 are the
 * writable boolean fields of `crm.type.fields`). Only these are ever sent.
 */
export const NATIVE_WRITABLE_FLAGS = [
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
] as const satisfies readonly FlagName[];
export type NativeWritableFlag = (typeof NATIVE_WRITABLE_FLAGS)[number];

/**
 * /v1 flags the native API cannot set: `isPaymentsEnabled` and `isCountersEnabled` are
 * "system fields" of the `type` object (read back, not documented as input, absent from
 * crm.type.fields); `isRecurringEnabled` appears in no crm.type.* page at all (read as
 * false when a card does not carry it). A request that changes one of them cannot be
 * carried out on a real portal: see unwritableFlagChanges.
 */
export const NATIVE_UNWRITABLE_FLAGS: readonly FlagName[] = FLAG_NAMES.filter((name) => !(NATIVE_WRITABLE_FLAGS as readonly string[]).includes(name));

const WRITABLE_MASK = NATIVE_WRITABLE_FLAGS.reduce((mask, name) => mask | FLAG_BIT[name], 0);

// ---------------------------------------------------------------------------------------------
// Native shapes
// ---------------------------------------------------------------------------------------------

export type NativeYN = 'Y' | 'N';
/** On input, relation entries and linkedUserFields take only the strings "true"/"false" (crm.type.add: "Values Y and N do not work"). */
export type NativeTrueFalse = 'true' | 'false';

export interface NativeRelationInput {
  entityTypeId: number;
  isChildrenListEnabled: NativeTrueFalse;
}

export type NativeLinkedUserFieldsInput = Record<LinkedUserField, NativeTrueFalse>;

/** The `fields` parameter of crm.type.add / crm.type.update as smartproc sends it. */
export type NativeTypeFields = {
  title?: string;
  entityTypeId?: number;
  code?: string;
  customSectionId?: number;
  linkedUserFields?: NativeLinkedUserFieldsInput;
  relations?: { parent?: NativeRelationInput[]; child?: NativeRelationInput[] };
} & { [K in NativeWritableFlag]?: NativeYN };

/** A native card or list item as received: checked at run time by fromNativeCard / fromNativeListItem. */
export type NativeType = Record<string, unknown>;

/** A native answer that does not have the documented shape. The adapter answers 502 BITRIX_UNAVAILABLE with it. */
export class NativeShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NativeShapeError';
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `{"result": {"type": CARD}}` of add/update/get/getByEntityTypeId: the CARD. */
export function typeOfResult(result: unknown): NativeType {
  if (!isObject(result) || !isObject(result.type)) throw new NativeShapeError('expected result.type to be an object');
  return result.type;
}

/** `{"result": {"types": [...]}}` of crm.type.list: the items. */
export function typesOfListResult(result: unknown): NativeType[] {
  if (!isObject(result) || !Array.isArray(result.types) || !result.types.every(isObject)) throw new NativeShapeError('expected result.types to be an array of objects');
  return result.types as NativeType[];
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/**
 * Native booleans. Cards show "Y"/"N" (every example of get/list/add/update); the basic
 * data-types page allows 0/1 and true/false in some methods, so those are read too. A
 * missing or null value is false (e.g. isRecurringEnabled, which the portal does not
 * return). Anything else is a shape error rather than a silently flipped flag.
 */
const TRUE_VALUES = new Set<unknown>(['Y', 'y', true, 'true', 1, '1']);
const FALSE_VALUES = new Set<unknown>(['N', 'n', false, 'false', 0, '0', '', null, undefined]);

export function nativeBoolean(value: unknown, where: string): boolean {
  if (TRUE_VALUES.has(value)) return true;
  if (FALSE_VALUES.has(value)) return false;
  throw new NativeShapeError(`${where}: expected "Y" or "N", got ${JSON.stringify(value)}`);
}

export const yn = (value: boolean): NativeYN => (value ? 'Y' : 'N');
export const trueFalse = (value: boolean): NativeTrueFalse => (value ? 'true' : 'false');

/** Native integers: JSON numbers, or numeric strings (some portals send ids as strings). */
function nativeInteger(value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d{1,15}$/.test(value.trim())) return Number(value.trim());
  throw new NativeShapeError(`${where}: expected an integer, got ${JSON.stringify(value)}`);
}

function nativeNullableInteger(value: unknown, where: string): number | null {
  return value === null || value === undefined || value === '' ? null : nativeInteger(value, where);
}

/** createdBy/updatedBy: a user id; a missing one (never seen in the docs) reads as 0. */
function nativeUserId(value: unknown, where: string): number {
  return value === null || value === undefined || value === '' ? 0 : nativeInteger(value, where);
}

/**
 * Native `datetime` (`YYYY-MM-DDThh:mm:ss±hh:mm`, basic data-types page) → epoch seconds.
 * A value without an offset (not documented, read defensively) is taken in `timeZone`.
 */
export function parseNativeTime(value: unknown, timeZone: string, where = 'time'): number {
  const seconds = typeof value === 'string' ? parseTime(value.trim(), timeZone) : null;
  if (seconds === null) throw new NativeShapeError(`${where}: expected an ISO 8601 time, got ${JSON.stringify(value)}`);
  return seconds;
}

/** Epoch seconds → native `datetime` in `timeZone` (the same text /v1 answers use: ISO 8601 with the offset, second precision). */
export function formatNativeTime(epochSeconds: number, timeZone: string): string {
  return formatTime(epochSeconds, timeZone);
}

// ---------------------------------------------------------------------------------------------
// Native → domain
// ---------------------------------------------------------------------------------------------

export interface FromNativeOptions {
  /** Only for native times without an offset (the docs always show one). Default UTC. */
  timeZone?: string;
}

function flagsOf(native: NativeType): number {
  let flags = 0;
  for (const name of FLAG_NAMES) if (nativeBoolean(native[name], name)) flags |= FLAG_BIT[name];
  return flags;
}

/**
 * A light `crm.type.list` item → TypeRecord. List items carry neither relations nor
 * linkedUserFields (crm.type.list example), so `linkedUserFields` is 0 and `version` is 0:
 * no card ETag can be computed from a list item, and list answers carry no ETag.
 * `itemCount` is 0: the native type has no item count; the portal itself refuses to delete
 * a type with items (crm.type.delete, BX_ERROR), which the adapter maps.
 */
export function fromNativeListItem(native: NativeType, options: FromNativeOptions = {}): TypeRecord {
  if (!isObject(native)) throw new NativeShapeError('expected a type object');
  const timeZone = options.timeZone ?? 'UTC';
  const title = native.title;
  if (typeof title !== 'string') throw new NativeShapeError(`title: expected a string, got ${JSON.stringify(title)}`);
  const code = native.code;
  if (code !== undefined && code !== null && typeof code !== 'string') throw new NativeShapeError(`code: expected a string, got ${JSON.stringify(code)}`);
  return {
    id: nativeInteger(native.id, 'id'),
    entityTypeId: nativeInteger(native.entityTypeId, 'entityTypeId'),
    title,
    // The portal answers "" for a type without a code (get/list/update examples); /v1 answers null.
    code: code === undefined || code === null || code === '' ? null : code,
    createdBy: nativeUserId(native.createdBy, 'createdBy'),
    createdTime: parseNativeTime(native.createdTime, timeZone, 'createdTime'),
    updatedBy: nativeUserId(native.updatedBy, 'updatedBy'),
    updatedTime: parseNativeTime(native.updatedTime, timeZone, 'updatedTime'),
    customSectionId: nativeNullableInteger(native.customSectionId, 'customSectionId'),
    flags: flagsOf(native),
    linkedUserFields: 0,
    itemCount: 0,
    version: 0,
  };
}

function linkedUserFieldsOf(value: unknown): number {
  // PHP encodes an empty map as []; a card without the key has none set.
  if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) return 0;
  if (!isObject(value)) throw new NativeShapeError(`linkedUserFields: expected an object, got ${JSON.stringify(value)}`);
  let mask = 0;
  for (const key of LINKED_USER_FIELDS) if (nativeBoolean(value[key], `linkedUserFields.${key}`)) mask |= LINKED_USER_FIELD_BIT[key];
  return mask;
}

/** Predefined entries first, then the others by entityTypeId: the order a local portal answers in (relationsOf). */
function byCardOrder(a: Relation, b: Relation): number {
  if (a.isPredefined !== b.isPredefined) return a.isPredefined ? -1 : 1;
  return a.entityTypeId - b.entityTypeId;
}

function relationSideOf(value: unknown, side: RelationSide): Relation[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new NativeShapeError(`relations.${side}: expected an array, got ${JSON.stringify(value)}`);
  const seen = new Set<number>();
  const relations: Relation[] = [];
  value.forEach((entry, i) => {
    const where = `relations.${side}[${i}]`;
    if (!isObject(entry)) throw new NativeShapeError(`${where}: expected an object`);
    const entityTypeId = nativeInteger(entry.entityTypeId, `${where}.entityTypeId`);
    if (seen.has(entityTypeId)) return;
    seen.add(entityTypeId);
    relations.push({
      entityTypeId,
      isChildrenListEnabled: nativeBoolean(entry.isChildrenListEnabled, `${where}.isChildrenListEnabled`),
      isPredefined: nativeBoolean(entry.isPredefined, `${where}.isPredefined`),
    });
  });
  return relations.sort(byCardOrder);
}

/** Canonical relations: each side in card order (predefined first, then by entityTypeId). */
export function normalizeRelations(relations: TypeCard['relations']): TypeCard['relations'] {
  return { parent: [...relations.parent].sort(byCardOrder), child: [...relations.child].sort(byCardOrder) };
}

/**
 * A native card (`result.type` of add/update/get/getByEntityTypeId) → TypeCard.
 * Relations are taken as the portal reports them (its predefined entries included, with
 * their own isChildrenListEnabled) and put in the local portal's order. `customSections`
 * and any key smartproc does not know are ignored. `record.version` is cardVersion(card).
 */
export function fromNativeCard(native: NativeType, options: FromNativeOptions = {}): TypeCard {
  const record = fromNativeListItem(native, options);
  record.linkedUserFields = linkedUserFieldsOf(native.linkedUserFields);
  const relations = native.relations;
  if (relations !== undefined && relations !== null && !isObject(relations) && !(Array.isArray(relations) && relations.length === 0)) {
    throw new NativeShapeError(`relations: expected an object, got ${JSON.stringify(relations)}`);
  }
  const sides = isObject(relations) ? relations : {};
  const card: TypeCard = { record, relations: { parent: relationSideOf(sides.parent, 'parent'), child: relationSideOf(sides.child, 'child') } };
  record.version = cardVersion(card);
  return card;
}

// ---------------------------------------------------------------------------------------------
// ETag
// ---------------------------------------------------------------------------------------------

/**
 * The ETag of a card read from a real portal: the first 48 bits of the SHA-256 of the
 * canonical card, as a positive integer (1 .. 2^48-1).
 *
 * An integer, because If-Match travels as `"<digits>"` and the versions in `WriteOptions.ifMatch` are
 * numbers: the routes and the 412 check work unchanged for both portal kinds. 48 bits stay
 * exact in a JS number (and in Number("...") of the header), and a collision between two
 * states of the same card is 2^-48-unlikely.
 *
 * A hash, not a counter, because the portal has no version: `updatedTime` has second
 * precision and does not move when an edge is added from the other end (the card's
 * relations change, its row does not). The canonical card is everything a /v1 card answer
 * shows, time-zone free: id, entityTypeId, title, code, createdBy, createdTime,
 * updatedBy, updatedTime (epoch seconds), customSectionId, flags, linkedUserFields, and
 * the relations in card order. Fields the /v1 card does not show (customSections, native
 * extras) are left out, so that they cannot cause a 412 the client cannot understand.
 * itemCount and version are not content.
 */
export function cardVersion(card: TypeCard): number {
  const r = card.record;
  const { parent, child } = normalizeRelations(card.relations);
  const edge = (x: Relation) => [x.entityTypeId, x.isChildrenListEnabled ? 1 : 0, x.isPredefined ? 1 : 0];
  const canonical = JSON.stringify([
    1, // layout of this array; bump it if the array changes
    r.id,
    r.entityTypeId,
    r.title,
    r.code,
    r.createdBy,
    r.createdTime,
    r.updatedBy,
    r.updatedTime,
    r.customSectionId,
    FLAG_NAMES.filter((name) => hasFlag(r.flags, name)),
    LINKED_USER_FIELDS.filter((key) => (r.linkedUserFields & LINKED_USER_FIELD_BIT[key]) !== 0),
    parent.map(edge),
    child.map(edge),
  ]);
  const value = createHash('sha256').update(canonical).digest().readUIntBE(0, 6);
  return value === 0 ? 1 : value;
}

// ---------------------------------------------------------------------------------------------
// Domain → native (writes)
// ---------------------------------------------------------------------------------------------

/** The flags a type has after a PATCH. */
export function flagsAfterPatch(patch: TypePatch, currentFlags: number): number {
  return patch.flags ? (currentFlags & ~patch.flags.mask) | patch.flags.values : currentFlags;
}

/**
 * Whether an entry is a predefined edge under `flags` (contract §3.1, the rule of
 * checkRelations): Contact 3 / Company 4 on the parent side while isClientEnabled, Order 14
 * on the child side while isPaymentsEnabled. Such entries are accepted and ignored; they
 * are never sent (crm.type.update: "You cannot change the settings of predefined links.
 * These settings can be omitted in the request").
 */
export function isPredefinedEntry(side: RelationSide, entityTypeId: number, flags: number): boolean {
  return side === 'parent'
    ? hasFlag(flags, 'isClientEnabled') && (entityTypeId === CRM.Contact || entityTypeId === CRM.Company)
    : hasFlag(flags, 'isPaymentsEnabled') && entityTypeId === CRM.Order;
}

/** The request's relations without the predefined entries, as checkRelations keeps them (without its eligibility check). */
export function withoutPredefined(change: RelationsChange, flags: number): RelationsChange {
  const result: RelationsChange = {};
  for (const side of ['parent', 'child'] as const) {
    const entries = change[side];
    if (entries) result[side] = entries.filter((e) => !isPredefinedEntry(side, e.entityTypeId, flags));
  }
  return result;
}

/**
 * `relations` input: each side present is sent (the portal overwrites a side that is
 * present and leaves an absent one alone), predefined entries left out, and
 * isChildrenListEnabled as the string "true" or "false" — crm.type.add: "Values Y and N do
 * not work. You must pass "true" or "false"" (a JSON boolean is not documented either).
 * Undefined when no side is present.
 */
export function toNativeRelations(change: RelationsChange, flags: number): NativeTypeFields['relations'] {
  const kept = withoutPredefined(change, flags);
  if (!kept.parent && !kept.child) return undefined;
  const side = (entries: RelationEntry[]) => entries.map((e) => ({ entityTypeId: e.entityTypeId, isChildrenListEnabled: trueFalse(e.isChildrenListEnabled) }));
  const relations: NonNullable<NativeTypeFields['relations']> = {};
  if (kept.parent) relations.parent = side(kept.parent);
  if (kept.child) relations.child = side(kept.child);
  return relations;
}

/**
 * `linkedUserFields` input: always all three keys, "true" or "false" (crm.type.add: "These
 * parameters do not support passing values Y and N. Use "true" or "false""). The native
 * input merges key by key while /v1 overwrites, so a key not sent must go as "false".
 */
export function toNativeLinkedUserFields(mask: number): NativeLinkedUserFieldsInput {
  const out = {} as NativeLinkedUserFieldsInput;
  for (const key of LINKED_USER_FIELDS) out[key] = trueFalse((mask & LINKED_USER_FIELD_BIT[key]) !== 0);
  return out;
}

/**
 * `fields` of crm.type.add for a validated create. Sent: title; entityTypeId only when the
 * client chose one; code only when set (an unset code is the portal's default ""); the
 * deprecated customSectionId only when the client gave one (crm.type.fields: writable,
 * immutable); every one of the 14 writable flags as "Y"/"N" (so no portal default is
 * relied on); linkedUserFields in full; relations per side present. Never sent:
 * customSections (it can create or delete digital workplaces portal-wide), isExternal, the
 * read-only fields, and the flags the native API cannot set (NATIVE_UNWRITABLE_FLAGS: check
 * unwritableFlagChanges first).
 */
export function toNativeAddFields(draft: TypeDraft): NativeTypeFields {
  const fields: NativeTypeFields = { title: draft.title };
  if (draft.entityTypeId !== null) fields.entityTypeId = draft.entityTypeId;
  if (draft.code !== null) fields.code = draft.code;
  if (draft.customSectionId !== null) fields.customSectionId = draft.customSectionId;
  for (const name of NATIVE_WRITABLE_FLAGS) fields[name] = yn(hasFlag(draft.flags, name));
  // crm.type.add: linkedUserFields "will only be considered if isUseInUserfieldEnabled = 'Y' is passed" — it always is, above.
  fields.linkedUserFields = toNativeLinkedUserFields(draft.linkedUserFields);
  const relations = toNativeRelations(draft.relations, draft.flags);
  if (relations) fields.relations = relations;
  return fields;
}

/**
 * `fields` of crm.type.update for a validated PATCH, given the card before it. Sent: what
 * the client sent — title; code (null → "": the docs document no way to clear a code, and
 * "" is what the portal itself answers for "no code"); each writable flag the client sent
 * ("Changes ... occur only when the modifiable field values are passed", crm.type.update);
 * linkedUserFields in full when the client sent it, together with isUseInUserfieldEnabled
 * "Y" when the type has it after the PATCH (crm.type.add says the map is only considered
 * when isUseInUserfieldEnabled = 'Y' "is passed": passing it again covers the reading where
 * it must be in the same request); relations when the client sent a side: both sides (see
 * relationsToSend), predefined entries (under the flags after the PATCH) left out. Never
 * sent: entityTypeId (the portal drops it on update), customSectionId (write-once),
 * customSections, isExternal, read-only fields, NATIVE_UNWRITABLE_FLAGS.
 *
 * The result may be {}: do not call the portal then (see patchChangesCard).
 */
export function toNativeUpdateFields(patch: TypePatch, current: TypeCard): NativeTypeFields {
  const fields: NativeTypeFields = {};
  if (patch.title !== undefined) fields.title = patch.title;
  if (patch.code !== undefined) fields.code = patch.code ?? '';
  const nextFlags = flagsAfterPatch(patch, current.record.flags);
  if (patch.flags) for (const name of NATIVE_WRITABLE_FLAGS) if ((patch.flags.mask & FLAG_BIT[name]) !== 0) fields[name] = yn(hasFlag(nextFlags, name));
  if (patch.linkedUserFields !== undefined) {
    fields.linkedUserFields = toNativeLinkedUserFields(patch.linkedUserFields);
    if (hasFlag(nextFlags, 'isUseInUserfieldEnabled')) fields.isUseInUserfieldEnabled = 'Y';
  }
  const relations = relationsToSend(patch, current);
  if (relations) fields.relations = toNativeRelations(relations, nextFlags);
  return fields;
}

/**
 * The relations a PATCH sends: the sides the client sent, and the other side as the card
 * holds it (non-predefined edges), or undefined when the PATCH has no side. crm.type.update
 * says relation settings "must be passed in full; they are completely overwritten", while
 * the reference (bitrix24.md) reads it per side (an absent side is left alone). Sending the
 * untouched side unchanged gives the same result under both readings. Pass the result to
 * compareRelations after the write: the untouched side is then checked as well (its entries
 * carry the location current.relations.<side>[i]).
 */
export function relationsToSend(patch: TypePatch, current: TypeCard): RelationsChange | undefined {
  const sent = patch.relations;
  if (!sent || (!sent.parent && !sent.child)) return undefined;
  const unchanged = (side: RelationSide): RelationEntry[] =>
    current.relations[side]
      .filter((r) => !r.isPredefined)
      .map((r, i) => ({ entityTypeId: r.entityTypeId, isChildrenListEnabled: r.isChildrenListEnabled, location: `current.relations.${side}[${i}]` }));
  return { parent: sent.parent ?? unchanged('parent'), child: sent.child ?? unchanged('child') };
}

/**
 * The /v1 flags a create or PATCH would change that the native API cannot set
 * (NATIVE_UNWRITABLE_FLAGS): the adapter answers 422 BITRIX_ERROR naming them before any
 * call. For a create, `current` is null and a flag counts when it is on (they all default
 * to off); for a PATCH, when the client sent it with a value other than the card's.
 */
export function unwritableFlagChanges(request: TypeDraft | TypePatch, current: TypeCard | null): FlagName[] {
  let changed: number;
  if (current === null) changed = typeof request.flags === 'number' ? request.flags & ~WRITABLE_MASK : 0;
  else {
    const patch = request as TypePatch;
    changed = patch.flags ? (patch.flags.values ^ current.record.flags) & patch.flags.mask & ~WRITABLE_MASK : 0;
  }
  return FLAG_NAMES.filter((name) => (changed & FLAG_BIT[name]) !== 0);
}

export function unwritableFlagsError(names: readonly FlagName[]): ApiError {
  const details: ErrorDetail[] = names.map((name) => ({
    location: `body.${name}`,
    message: `${name} cannot be set on a Bitrix24 portal through crm.type.add/crm.type.update`,
    fix: `remove ${name} from the request, or change it in Bitrix24 itself`,
  }));
  return new ApiError('BITRIX_ERROR', names.length === 1 ? details[0].message : `${names.join(', ')} cannot be set on a Bitrix24 portal through crm.type.add/crm.type.update`, {
    details,
    hint: 'Nothing was changed. The Bitrix24 REST API reports these settings but does not take them as input.',
  });
}

/** The non-predefined edges of one side of a card: entityTypeId → isChildrenListEnabled. */
function storedSide(card: TypeCard, side: RelationSide): Map<number, boolean> {
  return new Map(card.relations[side].filter((r) => !r.isPredefined).map((r) => [r.entityTypeId, r.isChildrenListEnabled]));
}

function sameSide(current: Map<number, boolean>, wanted: RelationEntry[]): boolean {
  return current.size === wanted.length && wanted.every((w) => current.get(w.entityTypeId) === w.isChildrenListEnabled);
}

/**
 * Whether a PATCH changes anything on the card, decided as the local portal decides it
 * (title, code, flags, linkedUserFields, or a relations side whose non-predefined edges
 * differ). When false the adapter answers the current card without calling the portal, so
 * that updatedTime/updatedBy move only when a stored value really changes (contract §4).
 */
export function patchChangesCard(patch: TypePatch, current: TypeCard): boolean {
  const r = current.record;
  if (patch.title !== undefined && patch.title !== r.title) return true;
  if (patch.code !== undefined && patch.code !== r.code) return true;
  const nextFlags = flagsAfterPatch(patch, r.flags);
  if (nextFlags !== r.flags) return true;
  if (patch.linkedUserFields !== undefined && patch.linkedUserFields !== r.linkedUserFields) return true;
  if (patch.relations) {
    const wanted = withoutPredefined(patch.relations, nextFlags);
    for (const side of ['parent', 'child'] as const) if (wanted[side] && !sameSide(storedSide(current, side), wanted[side]!)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Read-back after a write
// ---------------------------------------------------------------------------------------------

export type RelationMismatchKind =
  /** requested, absent from the card (the portal drops entries it cannot link, silently) */
  | 'dropped'
  /** on the card, with another isChildrenListEnabled than requested */
  | 'childrenListNotKept'
  /** on a side the request replaced, not requested, still on the card (the side was not saved) */
  | 'notRemoved';

export interface RelationMismatch {
  side: RelationSide;
  entityTypeId: number;
  kind: RelationMismatchKind;
  /** Where the entry stood in the request (body.relations.parent[0]); the side for notRemoved. */
  location: string;
  requested?: boolean;
  actual?: boolean;
}

/**
 * Which requested edges the card read back after a write does not show as requested.
 * `requested` is what was sent: TypeDraft.relations for a create, relationsToSend(patch,
 * before) for a PATCH. Predefined entries are left out under the card's flags, as the write
 * left them out, and the card's predefined entries are not compared. Only the sides present
 * in `requested` are compared. Empty = everything stuck.
 */
export function compareRelations(requested: RelationsChange, cardAfter: TypeCard): RelationMismatch[] {
  const mismatches: RelationMismatch[] = [];
  const wanted = withoutPredefined(requested, cardAfter.record.flags);
  for (const side of ['parent', 'child'] as const) {
    const entries = wanted[side];
    if (!entries) continue;
    const actual = storedSide(cardAfter, side);
    for (const entry of entries) {
      const kept = actual.get(entry.entityTypeId);
      if (kept === undefined) mismatches.push({ side, entityTypeId: entry.entityTypeId, kind: 'dropped', location: entry.location, requested: entry.isChildrenListEnabled });
      else if (kept !== entry.isChildrenListEnabled) mismatches.push({ side, entityTypeId: entry.entityTypeId, kind: 'childrenListNotKept', location: entry.location, requested: entry.isChildrenListEnabled, actual: kept });
    }
    const requestedIds = new Set(entries.map((e) => e.entityTypeId));
    // The side's own location: body.relations.<side>, or current.relations.<side> for a side relationsToSend filled in.
    const sideLocation = entries.length ? entries[0].location.replace(/\[\d+\]$/, '') : `relations.${side}`;
    for (const [entityTypeId, isChildrenListEnabled] of actual) {
      if (!requestedIds.has(entityTypeId)) mismatches.push({ side, entityTypeId, kind: 'notRemoved', location: sideLocation, actual: isChildrenListEnabled });
    }
  }
  return mismatches;
}

/** What a create or PATCH asked the scalar fields to become; compared with the card read back by unkeptFields. */
export interface ExpectedScalars {
  title: string;
  code: string | null;
  flags: number;
  linkedUserFields: number;
  /** Only for a create that gave one. */
  customSectionId?: number | null;
  /** Only for a create that chose one. */
  entityTypeId?: number;
}

export function expectedAfterAdd(draft: TypeDraft): ExpectedScalars {
  const expected: ExpectedScalars = { title: draft.title, code: draft.code, flags: draft.flags, linkedUserFields: draft.linkedUserFields };
  if (draft.customSectionId !== null) expected.customSectionId = draft.customSectionId;
  if (draft.entityTypeId !== null) expected.entityTypeId = draft.entityTypeId;
  return expected;
}

export function expectedAfterPatch(patch: TypePatch, current: TypeCard): ExpectedScalars {
  const r = current.record;
  return {
    title: patch.title ?? r.title,
    code: patch.code !== undefined ? patch.code : r.code,
    flags: flagsAfterPatch(patch, r.flags),
    linkedUserFields: patch.linkedUserFields ?? r.linkedUserFields,
  };
}

export interface FieldMismatch {
  /** The /v1 name: title, code, a flag name, linkedUserFields.<key>, customSectionId, entityTypeId. */
  field: string;
  expected: unknown;
  actual: unknown;
}

/**
 * Scalar fields the card read back does not show as the request asked. Expected causes on
 * a real portal: a flag the portal refused or corrected, linkedUserFields while
 * isUseInUserfieldEnabled is off (crm.type.add: the map "will only be considered if
 * isUseInUserfieldEnabled = 'Y'"). Empty = everything stuck.
 */
export function unkeptFields(expected: ExpectedScalars, cardAfter: TypeCard): FieldMismatch[] {
  const r = cardAfter.record;
  const out: FieldMismatch[] = [];
  if (r.title !== expected.title) out.push({ field: 'title', expected: expected.title, actual: r.title });
  if (r.code !== expected.code) out.push({ field: 'code', expected: expected.code, actual: r.code });
  for (const name of FLAG_NAMES) {
    const [want, got] = [hasFlag(expected.flags, name), hasFlag(r.flags, name)];
    if (want !== got) out.push({ field: name, expected: want, actual: got });
  }
  for (const key of LINKED_USER_FIELDS) {
    const bit = LINKED_USER_FIELD_BIT[key];
    const [want, got] = [(expected.linkedUserFields & bit) !== 0, (r.linkedUserFields & bit) !== 0];
    if (want !== got) out.push({ field: `linkedUserFields.${key}`, expected: want, actual: got });
  }
  if (expected.customSectionId !== undefined && r.customSectionId !== expected.customSectionId) out.push({ field: 'customSectionId', expected: expected.customSectionId, actual: r.customSectionId });
  if (expected.entityTypeId !== undefined && r.entityTypeId !== expected.entityTypeId) out.push({ field: 'entityTypeId', expected: expected.entityTypeId, actual: r.entityTypeId });
  return out;
}

function describeRelationMismatch(m: RelationMismatch): string {
  const name = `${crmTypeName(m.entityTypeId)} (${m.entityTypeId})`;
  switch (m.kind) {
    case 'dropped':
      return `the portal did not keep the ${m.side} ${name}: Bitrix24 drops entries it cannot link without an error`;
    case 'childrenListNotKept':
      return `the portal kept the ${m.side} ${name} with isChildrenListEnabled=${m.actual}, not ${m.requested}`;
    case 'notRemoved':
      return `the portal did not replace the ${m.side} side: ${name} is still linked though it was not requested`;
  }
}

/**
 * The warnings of a write that happened (domain/write-warning.ts): every requested change
 * the card read back does not show, at its request location. A write that changed the
 * portal is never answered with a 4xx (the client would retry a create and make a
 * duplicate): it answers 2xx with the card as it is and these.
 */
export function notKeptWarnings(relations: readonly RelationMismatch[], fields: readonly FieldMismatch[] = []): WriteWarning[] {
  return [
    ...relations.map((m): WriteWarning => ({
      kind: 'notApplied',
      location: m.kind === 'notRemoved' ? m.location : `${m.location}.entityTypeId`,
      message: describeRelationMismatch(m),
      fix: m.kind === 'dropped' ? 'check that this type can be linked on this side (contract §3.1) and that it still exists on the portal' : 'read the card again and retry the change',
      requested: m.kind === 'notRemoved' ? null : { entityTypeId: m.entityTypeId, isChildrenListEnabled: m.requested },
      actual: m.kind === 'dropped' ? null : { entityTypeId: m.entityTypeId, isChildrenListEnabled: m.actual },
    })),
    ...fields.map((f): WriteWarning => ({
      kind: 'notApplied',
      location: `body.${f.field}`,
      message: `the portal kept ${f.field}=${JSON.stringify(f.actual)}, not ${JSON.stringify(f.expected)}`,
      fix: f.field.startsWith('linkedUserFields.') ? 'linkedUserFields only take effect while isUseInUserfieldEnabled is true' : 'the portal may not allow this setting; change it in Bitrix24 itself',
      requested: f.expected,
      actual: f.actual,
    })),
  ];
}

/**
 * linkedUserFields keys a create or PATCH sets while isUseInUserfieldEnabled is off after
 * it: crm.type.add says the map "will only be considered if isUseInUserfieldEnabled = 'Y'",
 * so the outcome is known before the call and the adapter refuses it (422 naming each key)
 * instead of writing a type that reads back different.
 */
export function ignoredLinkedUserFields(request: TypeDraft | TypePatch, current: TypeCard | null): LinkedUserField[] {
  const mask = request.linkedUserFields;
  if (mask === undefined || mask === 0) return [];
  const flags = current === null ? (request as TypeDraft).flags : flagsAfterPatch(request as TypePatch, current.record.flags);
  if (hasFlag(flags, 'isUseInUserfieldEnabled')) return [];
  return LINKED_USER_FIELDS.filter((key) => (mask & LINKED_USER_FIELD_BIT[key]) !== 0);
}

export function ignoredLinkedUserFieldsError(keys: readonly LinkedUserField[]): ApiError {
  const details: ErrorDetail[] = keys.map((key) => ({
    location: `body.linkedUserFields.${key}`,
    message: 'a Bitrix24 portal takes linkedUserFields only while isUseInUserfieldEnabled is true',
    fix: 'send isUseInUserfieldEnabled: true with it, or leave linkedUserFields out',
  }));
  return new ApiError('BITRIX_ERROR', details.length === 1 ? `${details[0].location}: ${details[0].message}` : `${details.length} linkedUserFields keys: ${details[0].message}`, {
    details,
    hint: 'Nothing was changed. The portal would ignore the map (crm.type.add: it "will only be considered if isUseInUserfieldEnabled = Y").',
  });
}
