import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RouteAccess } from '../../../access/access-service.js';
import type { TypeCard } from '../../../domain/smart-process-type/card.js';
import { cardJson } from '../../../domain/smart-process-type/card.js';
import { positiveInt32Param } from '../../../domain/input-rules.js';
import { ApiError } from '../../../errors.js';
import type { Actor, Portal } from '../../../portals/portal.js';
import { portalOf, principalOf } from '../../plugins/auth.js';

export const READ: RouteAccess = { kind: 'portal', scope: 'crm' };
export const WRITE: RouteAccess = { kind: 'portal', scope: 'crm', write: true };
export const TAGS = ['Smart processes'];

/** Literal routes next to /:entityTypeId and the methods they have (GET /search is 405, not 400). A Map: `constructor` is not a route. */
const LITERAL_SEGMENTS = new Map<string, string[]>([['search', ['POST']], ['fields', ['GET', 'HEAD']]]);

/** Path parameter check (after access, before existence): a positive integer in the 32-bit range. */
export function entityTypeIdFrom(request: FastifyRequest): number {
  const raw = (request.params as { entityTypeId: string }).entityTypeId;
  const literal = LITERAL_SEGMENTS.get(raw);
  if (literal) {
    throw new ApiError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on /v1/smart-processes/${raw}; allowed: ${literal.join(', ')}`, { headers: { allow: literal.join(', ') } });
  }
  return positiveInt32Param(raw, 'params.entityTypeId', 'list the types: GET /v1/smart-processes');
}

export interface PortalCall {
  portal: Portal;
  actor: Actor;
  timeZone: string;
}

export function portalCall(request: FastifyRequest): PortalCall {
  const principal = principalOf(request);
  const portal = portalOf(request, request.server.services.portalRegistry);
  return { portal, actor: { userId: principal.userId ?? 0 }, timeZone: portal.record.timeZone };
}

/** If-Match (beyond the hosted API): the ETag of the version the client edits. */
export function ifMatchOf(request: FastifyRequest): number | undefined {
  const header = request.headers['if-match'];
  if (header === undefined || header.trim() === '*') return undefined;
  const match = /^\s*(?:W\/)?"(\d{1,15})"\s*$/.exec(header);
  return match ? Number(match[1]) : -1;
}

/**
 * GET answers: a card read from the card cache is the same object until it changes, so
 * its answer is rendered once per time zone. Written cards are new objects and go
 * through `sendCard` without this: every WeakMap key costs each minor GC (ephemerons),
 * which made PATCH measurably slower when all its cards were added here.
 */
const rendered = new WeakMap<TypeCard, { timeZone: string; body: string }>();

export function sendStoredCard(reply: FastifyReply, card: TypeCard, timeZone: string) {
  let answer = rendered.get(card);
  if (!answer || answer.timeZone !== timeZone) {
    answer = { timeZone, body: cardAnswer(card, timeZone) };
    rendered.set(card, answer);
  }
  return sendJson(reply, card, answer.body, 200);
}

export function sendCard(reply: FastifyReply, card: TypeCard, timeZone: string, status = 200) {
  return sendJson(reply, card, cardAnswer(card, timeZone), status);
}

const cardAnswer = (card: TypeCard, timeZone: string) => `{"success":true,"data":${cardJson(card, timeZone)}}`;

function sendJson(reply: FastifyReply, card: TypeCard, body: string, status: number) {
  return reply.code(status).header('etag', `"${card.record.version}"`).type('application/json; charset=utf-8').send(body);
}
