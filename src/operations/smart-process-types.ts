import { parseListQuery, type ListQuery, type Source } from '../domain/list-query.js';
import { listItemsJson, type TypeCard, type TypeRecord } from '../domain/smart-process-type/card.js';
import { describeFields, TYPE_FIELD_TABLE } from '../domain/smart-process-type/fields.js';
import { parseCreateBody, parsePatchBody } from '../domain/smart-process-type/input.js';
import type { CreateTypeBody, PatchTypeBody } from '../domain/smart-process-type/schemas.js';
import type { RouteAccess } from '../access/access-service.js';
import { typeNotFound } from '../errors.js';
import type { Actor, Portal, RequestContext } from '../portals/portal.js';

/**
 * What each /v1/smart-processes operation does once access is granted, whoever asks: its
 * route (src/http/routes/smart-processes/*) or a call of a batch (src/operations/batch.ts).
 * Both call these, so a batch call is served exactly as its route. Bodies come in checked
 * against the route's schema (the route's validator, or checkBody for a batch).
 */
export interface TypeCall {
  portal: Portal;
  actor: Actor;
  timeZone: string;
  /** The request as the portal sees it (one deadline across all its native calls). */
  context?: RequestContext;
}

/** What the routes (and the calls of a batch) on smart process types demand of the caller. */
export const TYPE_READ: RouteAccess = { kind: 'portal', scope: 'crm' };
export const TYPE_WRITE: RouteAccess = { kind: 'portal', scope: 'crm', write: true };

export interface ListMeta {
  total: number;
  limit: number;
  offset: number;
  hasMore: boolean;
}

/** List and search parameters (a query string or a search body): the one place the list parser is called. */
export function parseTypeListQuery(call: TypeCall, raw: unknown, source: Source): ListQuery {
  return parseListQuery(TYPE_FIELD_TABLE, raw, source, call.timeZone);
}

/** A page of types as the list answer shows it: the JSON text of `data` (the items, `select` applied), `meta`, and the whole answer's text. */
export interface RenderedList {
  itemsJson: string;
  meta: ListMeta;
  body: string;
}

/**
 * Rendered pages, by page object: a page the portal keeps (docs/architecture.md, "Caches")
 * is rendered once per view. The view holds what else the text depends on: one page object
 * serves queries that differ in select (and time zone), so a few views are kept per page.
 */
const renderedPages = new WeakMap<object, Map<string, RenderedList>>();
const VIEWS_PER_PAGE = 8;

export function renderTypeList(query: ListQuery, page: { records: TypeRecord[]; total: number }, timeZone: string): RenderedList {
  const view = query.select ? `${timeZone}|${query.limit}|${query.offset}|${query.select.join(',')}` : `${timeZone}|${query.limit}|${query.offset}`;
  let views = renderedPages.get(page);
  const known = views?.get(view);
  if (known) return known;
  const meta = { total: page.total, limit: query.limit, offset: query.offset, hasMore: query.offset + page.records.length < page.total };
  const itemsJson = listItemsJson(page.records, timeZone, query.select);
  const rendered = { itemsJson, meta, body: `{"success":true,"data":${itemsJson},"meta":${JSON.stringify(meta)}}` };
  if (!views) renderedPages.set(page, (views = new Map()));
  else if (views.size >= VIEWS_PER_PAGE) views.clear();
  views.set(view, rendered);
  return rendered;
}

/** GET /v1/smart-processes and POST /v1/smart-processes/search: parse (400s), ask the portal, present. */
export async function listTypes(call: TypeCall, raw: unknown, source: Source): Promise<RenderedList> {
  const query = parseTypeListQuery(call, raw, source);
  return renderTypeList(query, await call.portal.types.list(query, call.context), call.timeZone);
}

/** GET /v1/smart-processes/:entityTypeId; also PATCH's existence check (contract §4: 404 before any body problem), whose card the write may start from (WriteOptions.seen). */
export async function getType(call: TypeCall, entityTypeId: number): Promise<TypeCard> {
  const card = await call.portal.types.get(entityTypeId, call.context);
  if (!card) throw typeNotFound(entityTypeId);
  return card;
}

/** POST /v1/smart-processes (body checked against CreateTypeBodySchema). */
export function createType(call: TypeCall, body: CreateTypeBody): Promise<TypeCard> {
  return call.portal.types.create(parseCreateBody(body), call.actor, { context: call.context });
}

/** PATCH /v1/smart-processes/:entityTypeId (existence checked, body checked against PatchTypeBodySchema). */
export function updateType(call: TypeCall, entityTypeId: number, body: PatchTypeBody | undefined, ifMatch?: readonly number[], seen?: TypeCard): Promise<TypeCard> {
  return call.portal.types.update(entityTypeId, parsePatchBody(body, entityTypeId), call.actor, { ifMatch, context: call.context, seen });
}

/** DELETE /v1/smart-processes/:entityTypeId. */
export function deleteType(call: TypeCall, entityTypeId: number, ifMatch?: readonly number[]): Promise<void> {
  return call.portal.types.delete(entityTypeId, call.actor, { ifMatch, context: call.context });
}

/** The data of GET /v1/smart-processes/fields, one per set of read-only flags (one per portal kind): /fields tells the truth for the caller's portal. */
const fieldsData = new Map<string, ReturnType<typeof describeFields>>();

/** GET /v1/smart-processes/fields: the flags this portal cannot set are shown read-only. */
export function typeFieldsData(portal: Portal): ReturnType<typeof describeFields> {
  const readOnly = portal.types.readOnlyFlags ?? [];
  const key = readOnly.join(',');
  let data = fieldsData.get(key);
  if (!data) fieldsData.set(key, (data = describeFields(readOnly)));
  return data;
}
