import type { FastifyReply, FastifyRequest } from 'fastify';
import { positiveInt32Param } from '../domain/input-rules.js';
import { ApiError } from '../errors.js';
import type { Actor, Portal, RequestContext } from '../portals/portal.js';
import { auditContextOf, portalOf, principalOf } from './plugins/auth.js';

/*
 * What the routes of every portal-scoped resource share (/v1/smart-processes today, items
 * later): the id in the path, the call to the caller's portal, If-Match, and answers that
 * carry a card with its ETag. A resource's own file (routes/<resource>/shared.ts) holds
 * what is its own: access, tags, the literal segments beside /:id.
 */

export interface PathIdSpec<P extends string> {
  /** The path parameter, e.g. `entityTypeId` in /v1/smart-processes/:entityTypeId. */
  param: P;
  /** The collection the id is in, as messages show it: /v1/smart-processes. */
  collection: string;
  /** Literal routes next to /:param and the methods they have (GET /search is 405, not 400). A Map: `constructor` is not a route. */
  literals: ReadonlyMap<string, readonly string[]>;
  /** What a bad id is told to do, e.g. "list the types: GET /v1/smart-processes". */
  fix: string;
}

/**
 * The path id check of a resource (after access, before existence): a literal segment
 * with another method is 405 naming the allowed ones; anything else must be a positive
 * integer in the 32-bit range (400).
 */
export function pathId<P extends string>(spec: PathIdSpec<P>): (request: { method: string; params: Record<P, string> }) => number {
  const { param, collection, literals, fix } = spec;
  const location = `params.${param}`;
  return (request) => {
    const raw = request.params[param];
    const literal = literals.get(raw);
    if (literal) {
      throw new ApiError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${collection}/${raw}; allowed: ${literal.join(', ')}`, { headers: { allow: literal.join(', ') } });
    }
    return positiveInt32Param(raw, location, fix);
  };
}

export interface PortalCall {
  portal: Portal;
  actor: Actor;
  timeZone: string;
  /** The request as the portal sees it (one deadline across its native calls): pass it to every portal call of the request. */
  context: RequestContext;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The request as its portal sees it: made when the request first calls its portal (PATCH: in preValidation). */
    portalContext: RequestContext | null;
  }
}

/**
 * A portal route's call. Who acts (`actor`, with the audit context a write records) is
 * made when a write asks for it: reads never do. (Per request, that object and the
 * WeakMap that used to hold the context cost reads measurable time.)
 */
class RequestPortalCall implements PortalCall {
  #actor: Actor | undefined;

  constructor(
    private readonly request: FastifyRequest,
    readonly portal: Portal,
    readonly context: RequestContext,
  ) {}

  get timeZone(): string {
    return this.portal.record.timeZone;
  }

  get actor(): Actor {
    return (this.#actor ??= { userId: principalOf(this.request).userId ?? 0, audit: auditContextOf(this.request) });
  }
}

/** The caller's portal, who acts, the portal's time zone and the request's context (portal routes only). */
export function portalCall(request: FastifyRequest): PortalCall {
  const portal = portalOf(request, request.server.services.portalRegistry);
  const context = (request.portalContext ??= { startedAt: Date.now() });
  return new RequestPortalCall(request, portal, context);
}

/** One element of an If-Match list, and the comma after it: `"..."`, `W/"..."` (RFC 9110 §8.8.3 entity-tag) or empty (§5.6.1). */
const LIST_ELEMENT = /[ \t]*(?:(W\/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(,|$)/y;

/**
 * If-Match (beyond the hosted API; RFC 9110 §13.1.1): undefined when absent or `*` (the
 * type exists, or the route answers 404 first); else the versions of the strong ETags
 * listed, any of which lets the write go ahead. Weak tags never match (If-Match compares
 * strongly), nor do tags this API never hands out; a value that is not `*` nor a list of
 * entity-tags matches nothing (412, and nothing is written). Several If-Match header
 * lines are one list (node joins them with ", ").
 */
export function ifMatchOf(request: FastifyRequest): readonly number[] | undefined {
  const header = request.headers['if-match'];
  if (header === undefined || header.trim() === '*') return undefined;
  const versions: number[] = [];
  for (let at = 0; ; ) {
    LIST_ELEMENT.lastIndex = at;
    const element = LIST_ELEMENT.exec(header);
    if (!element) return [];
    if (element[2] !== undefined && !element[1] && /^\d{1,15}$/.test(element[2])) versions.push(Number(element[2]));
    if (element[3] === '') return versions;
    at = LIST_ELEMENT.lastIndex;
  }
}

/** A card of a portal resource: its record carries the version that is its ETag. */
export interface VersionedCard {
  record: { version: number };
  /** What a write that happened did not do as asked: answered as `warnings` beside `data` (domain/write-warning.ts). */
  warnings?: readonly unknown[];
}

export interface CardAnswers<C extends VersionedCard> {
  /** GET: a card as read from a card cache, rendered once per card and time zone. */
  sendStored(reply: FastifyReply, card: C, timeZone: string): FastifyReply;
  /** A card just written (create, update): rendered for this answer only. */
  send(reply: FastifyReply, card: C, timeZone: string, status?: number): FastifyReply;
}

/**
 * The answers that carry one card, `{"success":true,"data":<card>}` with the ETag header,
 * for a resource whose `cardJson` writes the card's JSON text.
 *
 * GET answers: a card read from the card cache is the same object until it changes, so
 * its answer is rendered once per time zone. Written cards are new objects and go
 * through `send` without this: every WeakMap key costs each minor GC (ephemerons),
 * which made PATCH measurably slower when all its cards were added here.
 */
export function cardAnswers<C extends VersionedCard>(cardJson: (card: C, timeZone: string) => string): CardAnswers<C> {
  const rendered = new WeakMap<C, { timeZone: string; body: string }>();
  const answer = (card: C, timeZone: string) => `{"success":true,"data":${cardJson(card, timeZone)}}`;
  return {
    sendStored(reply, card, timeZone) {
      let stored = rendered.get(card);
      if (!stored || stored.timeZone !== timeZone) {
        stored = { timeZone, body: answer(card, timeZone) };
        rendered.set(card, stored);
      }
      return sendVersioned(reply, card.record.version, stored.body, 200);
    },
    send(reply, card, timeZone, status = 200) {
      const body = card.warnings?.length ? `{"success":true,"data":${cardJson(card, timeZone)},"warnings":${JSON.stringify(card.warnings)}}` : answer(card, timeZone);
      return sendVersioned(reply, card.record.version, body, status);
    },
  };
}

/** Sends a JSON text with the ETag of the version it shows. */
export function sendVersioned(reply: FastifyReply, version: number, body: string, status = 200): FastifyReply {
  return reply.code(status).header('etag', `"${version}"`).type('application/json; charset=utf-8').send(body);
}
