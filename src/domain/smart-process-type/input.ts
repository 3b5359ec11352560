import { ApiError, validationError, type ErrorDetail } from '../../errors.js';
import { BASE_ENTITY_TYPES, CRM, crmTypeName, hasFlag } from './card.js';
import { DEFAULT_FLAGS, FLAG_BIT, FLAG_NAMES, LINKED_USER_FIELDS, LINKED_USER_FIELD_BIT, TITLE_MAX_LENGTH } from './fields.js';
import type { CreateTypeBody, LinkedUserFieldsInput, PatchTypeBody, RelationInput, RelationsInput } from './schemas.js';

export type RelationSide = 'parent' | 'child';

export interface RelationEntry {
  entityTypeId: number;
  isChildrenListEnabled: boolean;
  /** Where the entry stood in the request, for error messages: body.relations.parent[0]. */
  location: string;
}

export interface RelationsChange {
  parent?: RelationEntry[];
  child?: RelationEntry[];
}

/** A validated create request. */
export interface TypeDraft {
  title: string;
  entityTypeId: number | null;
  code: string | null;
  customSectionId: number | null;
  flags: number;
  linkedUserFields: number;
  relations: RelationsChange;
}

/** A validated PATCH: only what the client sent. */
export interface TypePatch {
  title?: string;
  code?: string | null;
  /** Bits the client sent (mask) and their new values. */
  flags?: { mask: number; values: number };
  linkedUserFields?: number;
  relations?: RelationsChange;
}

const TRUE_STRINGS = new Set<unknown>([true, 'true', 'Y']);

function parseTitle(raw: string, problems: ErrorDetail[]): string {
  const title = raw.trim();
  // Characters, not UTF-16 units; a title no longer in units than the limit is within it in characters too.
  const length = title.length <= TITLE_MAX_LENGTH ? title.length : [...title].length;
  if (length === 0) problems.push({ location: 'body.title', message: 'must not be blank', fix: 'send a non-empty title' });
  else if (length > TITLE_MAX_LENGTH) problems.push({ location: 'body.title', message: `must be at most ${TITLE_MAX_LENGTH} characters (got ${length})`, fix: 'shorten the title' });
  return title;
}

function parseCode(raw: string | null): string | null {
  return raw === null || raw === '' ? null : raw;
}

function parseRelationsSide(side: RelationSide, entries: RelationInput[], problems: ErrorDetail[]): RelationEntry[] {
  const seen = new Map<number, number>();
  return entries.map((entry, index) => {
    const location = `body.relations.${side}[${index}]`;
    const first = seen.get(entry.entityTypeId);
    if (first !== undefined) {
      problems.push({ location: `${location}.entityTypeId`, message: `duplicates entry [${first}] (entityTypeId ${entry.entityTypeId})`, fix: 'send each entityTypeId once per side' });
    } else seen.set(entry.entityTypeId, index);
    return { entityTypeId: entry.entityTypeId, isChildrenListEnabled: TRUE_STRINGS.has(entry.isChildrenListEnabled), location };
  });
}

function parseRelations(raw: RelationsInput | undefined, problems: ErrorDetail[]): RelationsChange {
  const change: RelationsChange = {};
  if (raw?.parent) change.parent = parseRelationsSide('parent', raw.parent, problems);
  if (raw?.child) change.child = parseRelationsSide('child', raw.child, problems);
  return change;
}

function parseLinkedUserFields(raw: LinkedUserFieldsInput): number {
  let mask = 0;
  for (const key of LINKED_USER_FIELDS) if (raw[key] === true) mask |= LINKED_USER_FIELD_BIT[key];
  return mask;
}

const FLAG_BITS = new Map<string, number>(FLAG_NAMES.map((name) => [name, FLAG_BIT[name]]));

/** The flags a body sends (a body holds few keys: walk them, not the 17 flag names). */
function flagsOf(body: Record<string, unknown>): { mask: number; values: number } {
  let mask = 0;
  let values = 0;
  for (const key of Object.keys(body)) {
    const bit = FLAG_BITS.get(key);
    const value = body[key];
    if (bit === undefined || value === undefined) continue;
    mask |= bit;
    if (value === true) values |= bit;
  }
  return { mask, values };
}

export function parseCreateBody(body: CreateTypeBody): TypeDraft {
  const problems: ErrorDetail[] = [];
  const title = parseTitle(body.title, problems);
  const relations = parseRelations(body.relations, problems);
  if (problems.length) throw validationError(problems);
  const { mask, values } = flagsOf(body as Record<string, unknown>);
  return {
    title,
    entityTypeId: body.entityTypeId ?? null,
    code: parseCode(body.code ?? null),
    customSectionId: body.customSectionId ?? null,
    flags: (DEFAULT_FLAGS & ~mask) | values,
    linkedUserFields: body.linkedUserFields ? parseLinkedUserFields(body.linkedUserFields) : 0,
    relations,
  };
}

export function parsePatchBody(body: PatchTypeBody | undefined | null, pathEntityTypeId: number): TypePatch {
  const problems: ErrorDetail[] = [];
  const patch: TypePatch = {};
  if (!body) return patch;
  if (body.entityTypeId !== undefined && body.entityTypeId !== pathEntityTypeId) {
    problems.push({
      location: 'body.entityTypeId',
      message: `entityTypeId is immutable (this type is ${pathEntityTypeId})`,
      fix: `remove entityTypeId from the body, or send ${pathEntityTypeId}`,
    });
  }
  if (body.title !== undefined) patch.title = parseTitle(body.title, problems);
  if (body.code !== undefined) patch.code = parseCode(body.code);
  const flags = flagsOf(body as Record<string, unknown>);
  if (flags.mask) patch.flags = flags;
  if (body.linkedUserFields !== undefined) patch.linkedUserFields = parseLinkedUserFields(body.linkedUserFields);
  if (body.relations !== undefined) patch.relations = parseRelations(body.relations, problems);
  if (problems.length) throw validationError(problems);
  return patch;
}

/**
 * The eligibility and predefined rules of contract §3.1, checked against the flags
 * the type has after the request. Returns the entries to store (predefined ones
 * removed) or throws 422 BITRIX_ERROR naming every ineligible entry.
 */
export function checkRelations(change: RelationsChange, flags: number, selfEntityTypeId: number, portalTypes: ReadonlySet<number>): RelationsChange {
  const problems: ErrorDetail[] = [];
  const result: RelationsChange = {};
  for (const side of ['parent', 'child'] as const) {
    const entries = change[side];
    if (!entries) continue;
    const kept: RelationEntry[] = [];
    for (const entry of entries) {
      const etid = entry.entityTypeId;
      const predefined =
        side === 'parent' ? hasFlag(flags, 'isClientEnabled') && (etid === CRM.Contact || etid === CRM.Company) : hasFlag(flags, 'isPaymentsEnabled') && etid === CRM.Order;
      if (predefined) continue;
      const problem = ineligibility(side, etid, selfEntityTypeId, portalTypes);
      if (problem) problems.push({ location: `${entry.location}.entityTypeId`, message: problem.message, fix: problem.fix });
      else kept.push(entry);
    }
    result[side] = kept;
  }
  if (problems.length) {
    throw new ApiError('BITRIX_ERROR', problems.length === 1 ? `${problems[0].location}: ${problems[0].message}` : `${problems.length} relation entries cannot be linked`, {
      details: problems,
      hint: 'Bitrix24 would drop these entries silently; smartproc refuses them so that no relation is lost without notice.',
    });
  }
  return result;
}

function ineligibility(side: RelationSide, etid: number, self: number, portalTypes: ReadonlySet<number>): { message: string; fix: string } | null {
  if (etid === self) return { message: 'a type cannot be related to itself', fix: 'remove this entry' };
  if (side === 'parent' && (etid === CRM.Contact || etid === CRM.Company)) {
    return { message: `${crmTypeName(etid)} (${etid}) can be a parent only through isClientEnabled`, fix: 'set isClientEnabled to true instead' };
  }
  if (side === 'child' && etid === CRM.Order) {
    return { message: 'Order (14) can be a child only through isPaymentsEnabled', fix: 'set isPaymentsEnabled to true instead' };
  }
  if (!BASE_ENTITY_TYPES.has(etid) && !portalTypes.has(etid)) {
    return { message: `entityTypeId ${etid} is neither a CRM type that can be linked (1, 2, 3, 4, 7, 14, 31) nor a smart process type of this portal`, fix: 'list the types: GET /v1/smart-processes' };
  }
  return null;
}

/** entityTypeId rule of contract §3.2. */
export function isAllowedEntityTypeId(etid: number): boolean {
  return (etid >= 128 && etid <= 191) || (etid >= 1030 && etid % 2 === 0 && etid <= 2_147_483_646);
}
