import type { AccessService, Principal } from '../access/access-service.js';
import {
  callEntityId, itemEntityTypeId, itemObject, refuseEntityId, refuseItemFields, refuseParams, relocated, routeOfCall,
  type BatchCall, type ItemAction,
} from '../domain/batch.js';
import { MAX_ERROR_DETAILS } from '../domain/input-rules.js';
import type { ListQuery } from '../domain/list-query.js';
import { cardJson, type TypeCard, type TypeRecord } from '../domain/smart-process-type/card.js';
import { CreateTypeBodySchema, PatchTypeBodySchema, type CreateTypeBody, type PatchTypeBody } from '../domain/smart-process-type/schemas.js';
import { ApiError, ERROR_TABLE, typeNotFound } from '../errors.js';
import type { Settled, SmartProcessTypes } from '../portals/portal.js';
import { checkBody } from './body-validator.js';
import { createType, deleteType, TYPE_READ as READ, TYPE_WRITE as WRITE, parseTypeListQuery, renderTypeList, getType, typeFieldsData, updateType, type TypeCall } from './smart-process-types.js';

/**
 * Runs the calls of `POST /v1/batch` and the items of `POST /v1/smart-processes/batch`
 * (docs/api.md, "Batches"):
 *
 * - one after another, in the order sent: a later call sees what an earlier one wrote;
 * - each exactly as its direct route (src/operations/smart-process-types.ts), with the
 *   same checks in the same order, each write atomic on its own; a failed call or item
 *   does not stop the others and undoes nothing (a batch is not one transaction, on any
 *   portal kind: a bitrix24 portal cannot offer one, and a client should not learn on a
 *   sandbox a promise the real portal cannot keep);
 * - each call of /v1/batch is checked against the key's scopes and access mode as its
 *   route would be (AccessService.refusal), without counting against the rate limit again:
 *   the batch request itself took one unit;
 * - reads that stand next to each other (no write between them) are asked of the portal
 *   together: a bitrix24 portal answers them from its cache and combines the rest into
 *   native `batch` calls (SmartProcessTypes.getMany / listMany).
 */

export interface BatchDeps {
  principal: Principal;
  access: AccessService;
  /** The caller's portal as it is now (a write to a bitrix24 portal makes a new Portal object). */
  typeCall(): TypeCall;
  /** A failure that is not an ApiError but has a meaning (the store is unavailable: 503), else null. */
  known(error: unknown): ApiError | null;
  /** Logs a failure that is not an ApiError (a bug) with the request id. */
  logBug(error: unknown): void;
  requestId: string;
}


/** `warnings`: the JSON text of what a write that happened did not do as asked (bitrix24 portals; its route answers them beside `data`). */
type Outcome = { ok: true; json: string; total?: number; warnings?: string } | { ok: false; error: ApiError };
type Written = { json: string; warnings?: string };

/** A call or item made ready to run: a read (asked together with its neighbours) or a write (run alone). */
type Step =
  | { kind: 'done'; outcome: Outcome }
  | { kind: 'get'; entityTypeId: number; relocate: (e: ApiError) => ApiError }
  | { kind: 'list'; query: ListQuery; relocate: (e: ApiError) => ApiError }
  | { kind: 'write'; run: (call: TypeCall) => Promise<Written>; relocate: (e: ApiError) => ApiError };

const identity = (e: ApiError) => e;

function failed(error: unknown, deps: BatchDeps, relocate: (e: ApiError) => ApiError = identity): Outcome {
  if (error instanceof ApiError) return { ok: false, error: relocate(error) };
  const known = deps.known(error);
  if (known) return { ok: false, error: known };
  deps.logBug(error);
  return { ok: false, error: new ApiError('INTERNAL_ERROR', `Internal error; quote requestId ${deps.requestId} when reporting it`) };
}

/** The error of a call or item: the envelope's error object without requestId (the batch's answer has it in X-Request-Id), plus the status its route would have answered. */
export function errorJson(error: ApiError): string {
  const details = error.details && error.details.length > MAX_ERROR_DETAILS
    ? [...error.details.slice(0, MAX_ERROR_DETAILS), { location: 'request', message: `and ${error.details.length - MAX_ERROR_DETAILS} more problems (an answer lists at most ${MAX_ERROR_DETAILS})` }]
    : error.details;
  return JSON.stringify({
    code: error.code,
    message: error.message,
    status: ERROR_TABLE[error.code].status,
    ...(error.hint ? { hint: error.hint } : {}),
    ...(details ? { details } : {}),
    ...(error.retryAfter !== undefined ? { retryAfter: error.retryAfter } : {}),
  });
}

async function settle<T>(work: () => Promise<T>): Promise<Settled<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Reads asked together: cards by entityTypeId and list pages, through the portal's combined reads when it has them. */
async function readTogether(types: SmartProcessTypes, ids: number[], queries: ListQuery[]): Promise<{ cards: Map<number, Settled<TypeCard | null>>; pages: Settled<{ records: TypeRecord[]; total: number }>[] }> {
  const unique = [...new Set(ids)];
  const [cards, pages] = await Promise.all([
    unique.length === 0
      ? new Map<number, Settled<TypeCard | null>>()
      : types.getMany
        ? types.getMany(unique)
        : new Map(await Promise.all(unique.map(async (id) => [id, await settle(() => types.get(id))] as const))),
    queries.length === 0 ? [] : types.listMany ? types.listMany(queries) : Promise.all(queries.map((q) => settle(() => types.list(q)))),
  ]);
  return { cards, pages };
}

/** Runs prepared steps in order; neighbouring reads together. */
async function runSteps(steps: Step[], deps: BatchDeps): Promise<Outcome[]> {
  const outcomes: Outcome[] = new Array(steps.length);
  let i = 0;
  while (i < steps.length) {
    const step = steps[i];
    if (step.kind === 'done') {
      outcomes[i++] = step.outcome;
      continue;
    }
    const call = deps.typeCall();
    if (step.kind === 'write') {
      try {
        outcomes[i] = { ok: true, ...(await step.run(call)) };
      } catch (error) {
        outcomes[i] = failed(error, deps, step.relocate);
      }
      i++;
      continue;
    }
    // A run of reads: everything up to the next write.
    let end = i;
    while (end < steps.length && steps[end].kind !== 'write') end++;
    const run = steps.slice(i, end).map((s, k) => [i + k, s] as const);
    const gets = run.filter(([, s]) => s.kind === 'get') as [number, Extract<Step, { kind: 'get' }>][];
    const lists = run.filter(([, s]) => s.kind === 'list') as [number, Extract<Step, { kind: 'list' }>][];
    const { cards, pages } = await readTogether(call.portal.types, gets.map(([, s]) => s.entityTypeId), lists.map(([, s]) => s.query));
    for (const [at, s] of run) if (s.kind === 'done') outcomes[at] = s.outcome;
    for (const [at, s] of gets) {
      const found = cards.get(s.entityTypeId);
      if (!found) outcomes[at] = failed(new Error(`no answer for entityTypeId ${s.entityTypeId}`), deps);
      else if (!found.ok) outcomes[at] = failed(found.error, deps, s.relocate);
      else if (!found.value) outcomes[at] = { ok: false, error: s.relocate(typeNotFound(s.entityTypeId)) };
      else outcomes[at] = { ok: true, json: cardJson(found.value, call.timeZone) };
    }
    lists.forEach(([at, s], k) => {
      const page = pages[k];
      if (!page.ok) outcomes[at] = failed(page.error, deps, s.relocate);
      else {
        const { itemsJson, meta } = renderTypeList(s.query, page.value, call.timeZone);
        outcomes[at] = { ok: true, json: itemsJson, total: meta.total };
      }
    });
    i = end;
  }
  return outcomes;
}

/** A written card as its route answers it: the card, and its warnings when there are any. */
function written(card: TypeCard, timeZone: string): Written {
  return { json: cardJson(card, timeZone), warnings: card.warnings?.length ? JSON.stringify(card.warnings) : undefined };
}

/** The write steps: the route's checks that need the portal (existence, then the body for update) run in order with the other writes. */
function createStep(body: unknown, relocate: (e: ApiError) => ApiError): Step {
  checkBody(CreateTypeBodySchema, body, 'body');
  return { kind: 'write', relocate, run: async (c) => written(await createType(c, body as CreateTypeBody), c.timeZone) };
}

function updateStep(entityTypeId: number, body: unknown, relocate: (e: ApiError) => ApiError): Step {
  return {
    kind: 'write',
    relocate,
    run: async (c) => {
      const seen = await getType(c, entityTypeId);
      checkBody(PatchTypeBodySchema, body, 'body');
      return written(await updateType(c, entityTypeId, body as PatchTypeBody, undefined, seen), c.timeZone);
    },
  };
}

function deleteStep(entityTypeId: number, relocate: (e: ApiError) => ApiError): Step {
  return { kind: 'write', relocate, run: async (c) => (await deleteType(c, entityTypeId), { json: 'null' }) };
}

function prepare(make: () => Step, deps: BatchDeps, relocate: (e: ApiError) => ApiError): Step {
  try {
    return make();
  } catch (error) {
    return { kind: 'done', outcome: failed(error, deps, relocate) };
  }
}

// ---------------------------------------------------------------- POST /v1/batch

/** The route locations of a call's errors moved to where the call stands. */
function callRelocation(call: BatchCall) {
  const moves = [['params.entityTypeId', `${call.location}.entityId`], ['query', `${call.location}.params`], ['body', `${call.location}.params`]] as const;
  return (error: ApiError) => relocated(error, call.location, moves);
}

function prepareCall(call: BatchCall, deps: BatchDeps): Step {
  const relocate = callRelocation(call);
  return prepare(() => {
    const { action } = routeOfCall(call);
    const access = action === 'create' || action === 'update' || action === 'delete' ? WRITE : READ;
    const refusal = deps.access.refusal(deps.principal, access);
    if (refusal) throw refusal;
    const timeZoneCall = deps.typeCall();
    switch (action) {
      case 'fields':
        refuseEntityId(call, action);
        refuseParams(call, action);
        return { kind: 'done', outcome: { ok: true, json: JSON.stringify(typeFieldsData(timeZoneCall.portal)) } };
      case 'list':
      case 'search':
        refuseEntityId(call, action);
        // list: its params are the route's query parameters; search: its body.
        return { kind: 'list', query: parseTypeListQuery(timeZoneCall, call.hasParams ? call.params : {}, action === 'list' ? 'query' : 'body'), relocate };
      case 'get':
        refuseParams(call, action);
        return { kind: 'get', entityTypeId: callEntityId(call, action), relocate };
      case 'create':
        refuseEntityId(call, action);
        return createStep(call.params, relocate);
      case 'update':
        // No params: PATCH without a body, the same as {}.
        return updateStep(callEntityId(call, action), call.hasParams ? call.params : {}, relocate);
      case 'delete':
        refuseParams(call, action);
        return deleteStep(callEntityId(call, action), relocate);
      default:
        throw new ApiError('INTERNAL_ERROR', `batch action ${action} has no operation`);
    }
  }, deps, relocate);
}

/** POST /v1/batch: the `data` of the answer as JSON text. */
export async function runBatchCalls(calls: BatchCall[], deps: BatchDeps): Promise<string> {
  const outcomes = await runSteps(calls.map((call) => prepareCall(call, deps)), deps);
  const results: string[] = [];
  const totals: string[] = [];
  const errors: string[] = [];
  const warnings: string[] = [];
  outcomes.forEach((outcome, i) => {
    const key = JSON.stringify(calls[i].id);
    if (!outcome.ok) errors.push(`${key}:${errorJson(outcome.error)}`);
    else {
      results.push(`${key}:${outcome.json}`);
      if (outcome.total !== undefined) totals.push(`${key}:${outcome.total}`);
      if (outcome.warnings) warnings.push(`${key}:${outcome.warnings}`);
    }
  });
  const summary = { total: calls.length, succeeded: results.length, failed: errors.length };
  const warned = warnings.length ? `,"warnings":{${warnings.join(',')}}` : '';
  return `{"results":{${results.join(',')}},"totals":{${totals.join(',')}},"errors":{${errors.join(',')}}${warned},"summary":${JSON.stringify(summary)}}`;
}

// ---------------------------------------------------------------- POST /v1/smart-processes/batch

function prepareItem(action: ItemAction, raw: unknown, index: number, deps: BatchDeps): Step {
  const location = `body.items[${index}]`;
  const relocate = (error: ApiError) => relocated(error, location, [['params.entityTypeId', `${location}.entityTypeId`], ['body', location]]);
  return prepare(() => {
    const item = itemObject(raw, location);
    switch (action) {
      case 'get':
        refuseItemFields(item, location, action);
        return { kind: 'get', entityTypeId: itemEntityTypeId(item, location), relocate };
      case 'delete':
        refuseItemFields(item, location, action);
        return deleteStep(itemEntityTypeId(item, location), relocate);
      case 'create':
        return createStep(item, relocate);
      case 'update':
        // The item is the PATCH body with the path's entityTypeId in it (equal, so PATCH ignores it).
        return updateStep(itemEntityTypeId(item, location), item, relocate);
    }
  }, deps, relocate);
}

/** POST /v1/smart-processes/batch: the `data` of the answer as JSON text (each item as its route's envelope, in order, and a summary). */
export async function runItemsBatch(action: ItemAction, items: unknown[], deps: BatchDeps): Promise<string> {
  const outcomes = await runSteps(items.map((item, index) => prepareItem(action, item, index, deps)), deps);
  let succeeded = 0;
  const results = outcomes.map((outcome) => {
    if (!outcome.ok) return `{"success":false,"error":${errorJson(outcome.error)}}`;
    succeeded++;
    return outcome.warnings ? `{"success":true,"data":${outcome.json},"warnings":${outcome.warnings}}` : `{"success":true,"data":${outcome.json}}`;
  });
  const summary = { total: items.length, succeeded, failed: items.length - succeeded };
  return `{"action":${JSON.stringify(action)},"results":[${results.join(',')}],"summary":${JSON.stringify(summary)}}`;
}
