import { validationError, type ErrorDetail } from '../../errors.js';
import { DEFAULT_FLAGS, FLAG_BIT, FLAG_NAMES, LINKED_USER_FIELDS, LINKED_USER_FIELD_BIT, TITLE_MAX_LENGTH } from './fields.js';
import type { RelationEntry, RelationsChange, RelationSide } from './relations.js';
import type { CreateTypeBody, LinkedUserFieldsInput, PatchTypeBody, RelationInput, RelationsInput } from './schemas.js';

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

/** entityTypeId rule of contract §3.2. */
export function isAllowedEntityTypeId(etid: number): boolean {
  return (etid >= 128 && etid <= 191) || (etid >= 1030 && etid % 2 === 0 && etid <= 2_147_483_646);
}
