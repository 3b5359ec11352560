import { ApiError, validationError, type ErrorDetail } from '../errors.js';
import { childLocation, INT32_MAX, positiveInt32Param } from './input-rules.js';
import { closestName } from './suggest.js';

/**
 * The two batch bodies (issue 12 items 3 and 4), parsed without I/O:
 * - `POST /v1/batch`: `{"calls": [{"id", "entity", "action", "entityId"?, "params"?}]}`, at most 50;
 * - `POST /v1/smart-processes/batch`: `{"action", "items": [...]}`, at most 500.
 *
 * What fails the whole request (400): the body's own shape — keys, the list, its size
 * (BATCH_LIMIT_EXCEEDED), and of each call what the answer is keyed by (`id`, unique) and
 * its key names. Everything a direct route would judge (entity, action, entityId, params,
 * an item's fields) is judged per call or per item, by the service (src/operations/batch.ts).
 */

export const MAX_BATCH_CALLS = 50;
export const MAX_BATCH_ITEMS = 500;
export const MAX_CALL_ID_LENGTH = 100;

/** The entities /v1/batch serves, and the actions of each (the direct routes). */
export const BATCH_ENTITIES = new Map<string, readonly string[]>([['smart-processes', ['list', 'search', 'fields', 'get', 'create', 'update', 'delete']]]);
export const ITEM_ACTIONS = ['create', 'update', 'delete', 'get'] as const;
export type ItemAction = (typeof ITEM_ACTIONS)[number];

const CALL_KEYS = ['id', 'entity', 'action', 'entityId', 'params'];
const BATCH_KEYS = ['calls'];
const ITEMS_BATCH_KEYS = ['action', 'items'];

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const hasOwn = (o: object, key: string) => Object.prototype.hasOwnProperty.call(o, key);

export interface BatchCall {
  id: string;
  /** Where the call stands in `calls`: its location is `body.calls[index]`. */
  index: number;
  location: string;
  entity: unknown;
  action: unknown;
  /** undefined when the call has no `entityId` key. */
  entityId: unknown;
  params: unknown;
  hasParams: boolean;
}

function unknownKeys(input: Record<string, unknown>, known: readonly string[], location: string, problems: ErrorDetail[]): void {
  for (const key of Object.keys(input)) {
    if (known.includes(key)) continue;
    const suggestion = closestName(key, known);
    problems.push({ location: childLocation(location, key), message: 'is not a known field', fix: suggestion ? `did you mean "${suggestion}"?` : `known fields: ${known.join(', ')}` });
  }
}

function limitExceeded(what: string, count: number, max: number, location: string): ApiError {
  return new ApiError('BATCH_LIMIT_EXCEEDED', `A batch takes at most ${max} ${what}; got ${count}`, {
    hint: `Split the batch into requests of at most ${max} ${what}.`,
    details: [{ location, message: `at most ${max} ${what}; got ${count}` }],
  });
}

/** The list of a batch body (`calls` or `items`): an array of 1..max entries; more is BATCH_LIMIT_EXCEEDED. */
function listOf(body: Record<string, unknown>, key: string, what: string, max: number, problems: ErrorDetail[]): unknown[] | null {
  const location = `body.${key}`;
  const list = body[key];
  if (list === undefined) problems.push({ location, message: 'is required', fix: `send "${key}": [...] with 1 to ${max} ${what}` });
  else if (!Array.isArray(list)) problems.push({ location, message: 'must be an array' });
  else if (list.length > max) throw limitExceeded(what, list.length, max, location);
  else if (list.length === 0) problems.push({ location, message: `must hold at least one of the ${what}` });
  else return list;
  return null;
}

function bodyObject(raw: unknown): Record<string, unknown> {
  if (!isPlainObject(raw)) throw validationError([{ location: 'body', message: 'must be a JSON object' }]);
  return raw;
}

/** POST /v1/batch: the calls, each with its id; throws 400 for the body's own shape. */
export function parseBatchCalls(raw: unknown): BatchCall[] {
  const body = bodyObject(raw);
  const problems: ErrorDetail[] = [];
  unknownKeys(body, BATCH_KEYS, 'body', problems);
  const list = listOf(body, 'calls', 'calls', MAX_BATCH_CALLS, problems);
  const calls: BatchCall[] = [];
  const seen = new Map<string, number>();
  list?.forEach((entry, index) => {
    const location = `body.calls[${index}]`;
    if (!isPlainObject(entry)) {
      problems.push({ location, message: 'must be a JSON object {"id", "entity", "action", "entityId"?, "params"?}' });
      return;
    }
    unknownKeys(entry, CALL_KEYS, location, problems);
    const id = entry.id;
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_CALL_ID_LENGTH) {
      problems.push({ location: `${location}.id`, message: id === undefined ? 'is required' : `must be a string of 1 to ${MAX_CALL_ID_LENGTH} characters`, fix: 'name each call, e.g. "id": "types"; the answer is keyed by it' });
      return;
    }
    const first = seen.get(id);
    if (first !== undefined) {
      problems.push({ location: `${location}.id`, message: `duplicates the id of calls[${first}] (${JSON.stringify(id)})`, fix: 'give each call its own id' });
      return;
    }
    seen.set(id, index);
    calls.push({ id, index, location, entity: entry.entity, action: entry.action, entityId: entry.entityId, params: entry.params, hasParams: hasOwn(entry, 'params') && entry.params !== undefined });
  });
  if (problems.length) throw validationError(problems);
  return calls;
}

/** A call's entity and action, as its direct route would be found: ENTITY_NOT_SUPPORTED, or 400 for an action the entity does not have. */
export function routeOfCall(call: BatchCall): { entity: string; action: string } {
  const { entity, action, location } = call;
  const served = [...BATCH_ENTITIES.keys()];
  if (entity === undefined) throw validationError([{ location: `${location}.entity`, message: 'is required', fix: `one of ${served.join(', ')}` }]);
  const actions = typeof entity === 'string' ? BATCH_ENTITIES.get(entity) : undefined;
  if (!actions) {
    const shown = typeof entity === 'string' ? JSON.stringify(entity.length > 60 ? `${entity.slice(0, 57)}...` : entity) : JSON.stringify(entity)?.slice(0, 60);
    const suggestion = typeof entity === 'string' ? closestName(entity, served) : null;
    throw new ApiError('ENTITY_NOT_SUPPORTED', `The entity ${shown} is not served by smartproc; served entities: ${served.join(', ')}`, {
      hint: suggestion ? `Did you mean "${suggestion}"?` : `Use one of: ${served.join(', ')}.`,
      details: [{ location: `${location}.entity`, message: `not served; served: ${served.join(', ')}` }],
    });
  }
  if (typeof action !== 'string' || !actions.includes(action)) {
    const suggestion = typeof action === 'string' ? closestName(action, actions) : null;
    throw validationError([{ location: `${location}.action`, message: action === undefined ? 'is required' : `must be one of ${actions.join(', ')}; got ${JSON.stringify(action)?.slice(0, 60)}`, fix: suggestion ? `did you mean "${suggestion}"?` : `one of ${actions.join(', ')}` }]);
  }
  return { entity: entity as string, action };
}

/** The id of a call's entity (`entityId`): what its route has in the path, so a positive integer or its digits as a string. */
export function callEntityId(call: BatchCall, action: string): number {
  const location = `${call.location}.entityId`;
  const raw = call.entityId;
  const fix = 'list the types: {"entity": "smart-processes", "action": "list"}';
  if (raw === undefined || raw === null) throw validationError([{ location, message: `is required for ${action}`, fix: 'send the entityTypeId of the type, e.g. "entityId": 1050' }]);
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 1 && raw <= INT32_MAX) return raw;
  if (typeof raw !== 'string' && typeof raw !== 'number') throw validationError([{ location, message: `must be a positive integer from 1 to ${INT32_MAX}; got ${JSON.stringify(raw).slice(0, 60)}`, fix }]);
  return positiveInt32Param(String(raw), location, fix);
}

/** A call whose route has no id in its path (list, search, fields, create) must not name one. */
export function refuseEntityId(call: BatchCall, action: string): void {
  if (call.entityId === undefined) return;
  const fix = action === 'create' ? 'leave entityId out; an explicit entityTypeId goes into params' : 'leave entityId out';
  throw validationError([{ location: `${call.location}.entityId`, message: `${action} takes no entityId`, fix }]);
}

/** A call whose route takes no body and no query (get, delete, fields): params absent, null or {}. */
export function refuseParams(call: BatchCall, action: string): void {
  const { params } = call;
  if (!call.hasParams || params === null || (isPlainObject(params) && Object.keys(params).length === 0)) return;
  throw validationError([{ location: `${call.location}.params`, message: `${action} takes no params`, fix: 'leave params out' }]);
}

export interface ItemsBatch {
  action: ItemAction;
  items: unknown[];
}

/** POST /v1/smart-processes/batch: the action, one of ITEM_ACTIONS. */
function parseItemsAction(raw: unknown): ItemAction {
  const body = bodyObject(raw);
  const action = body.action;
  if (typeof action === 'string' && (ITEM_ACTIONS as readonly string[]).includes(action)) return action as ItemAction;
  const suggestion = typeof action === 'string' ? closestName(action, ITEM_ACTIONS) : null;
  throw validationError([{ location: 'body.action', message: action === undefined ? 'is required' : `must be one of ${ITEM_ACTIONS.join(', ')}; got ${JSON.stringify(action)?.slice(0, 60)}`, fix: suggestion ? `did you mean "${suggestion}"?` : `one of ${ITEM_ACTIONS.join(', ')}` }]);
}

/** Whether a POST /v1/smart-processes/batch body writes (its action is create, update or delete); anything else is judged later. */
export function itemsBatchWrites(raw: unknown): boolean {
  return isPlainObject(raw) && (raw.action === 'create' || raw.action === 'update' || raw.action === 'delete');
}

/** POST /v1/smart-processes/batch: the rest of the body's own shape (keys, `items`: 1..500). */
export function parseItemsBatch(raw: unknown): ItemsBatch {
  const action = parseItemsAction(raw);
  const body = raw as Record<string, unknown>;
  const problems: ErrorDetail[] = [];
  unknownKeys(body, ITEMS_BATCH_KEYS, 'body', problems);
  const items = listOf(body, 'items', 'items', MAX_BATCH_ITEMS, problems);
  if (problems.length || !items) throw validationError(problems);
  return { action, items };
}

/** An item's entityTypeId (update, delete, get): a JSON integer, as in a PATCH body. */
export function itemEntityTypeId(item: Record<string, unknown>, location: string): number {
  const raw = item.entityTypeId;
  const at = `${location}.entityTypeId`;
  if (raw === undefined) throw validationError([{ location: at, message: 'is required', fix: 'name the type by its entityTypeId' }]);
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1 || raw > INT32_MAX) {
    throw validationError([{ location: at, message: `must be a positive integer from 1 to ${INT32_MAX}; got ${JSON.stringify(raw).slice(0, 60)}`, fix: 'list the types: GET /v1/smart-processes' }]);
  }
  return raw;
}

/** An item of a batch: a JSON object. */
export function itemObject(item: unknown, location: string): Record<string, unknown> {
  if (!isPlainObject(item)) throw validationError([{ location, message: 'must be a JSON object' }]);
  return item;
}

/** get and delete items carry the entityTypeId alone (their routes take no body). */
export function refuseItemFields(item: Record<string, unknown>, location: string, action: string): void {
  const problems: ErrorDetail[] = [];
  for (const key of Object.keys(item)) {
    if (key !== 'entityTypeId') problems.push({ location: childLocation(location, key), message: `is not a field of a ${action} item`, fix: `${action} items carry only entityTypeId` });
  }
  if (problems.length) throw validationError(problems);
}

/**
 * An error of an operation, as a batch reports it: the locations its route gives
 * (`body...`, `query...`, `params.entityTypeId`) moved to where the call or item stands
 * in the batch body (`body.calls[2].params...`, `body.items[7]...`). Locations already
 * within `at` (the call's or item's own, from the checks above) stay.
 */
export function relocated(error: ApiError, at: string, moves: ReadonlyArray<readonly [from: string, to: string]>): ApiError {
  if (!error.details?.length) return error;
  const within = (text: string, prefix: string) => text === prefix || (text.startsWith(prefix) && (text[prefix.length] === '.' || text[prefix.length] === '[' || text[prefix.length] === ':'));
  const move = (text: string) => {
    if (within(text, at)) return text;
    for (const [from, to] of moves) {
      if (text === from) return to;
      if (text.startsWith(from) && (text[from.length] === '.' || text[from.length] === '[' || text[from.length] === ':')) return to + text.slice(from.length);
    }
    return text;
  };
  return new ApiError(error.code, move(error.message), { hint: error.hint, details: error.details.map((d) => ({ ...d, location: move(d.location) })), retryAfter: error.retryAfter, headers: error.headers });
}
