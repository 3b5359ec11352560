import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, validationError } from '../errors.js';
import type { BatchDeps } from '../operations/batch.js';
import { portalCall } from './portal-route.js';
import { principalOf } from './plugins/auth.js';

/** What the two batch routes give the batch service (src/operations/batch.ts) of their request. */
export function batchDeps(request: FastifyRequest): BatchDeps {
  return {
    principal: principalOf(request),
    access: request.server.services.access,
    typeCall: () => portalCall(request),
    // As the error handler answers them (src/http/plugins/errors.ts).
    known: (err) => (request.server.services.store.failureOf(err) === 'unavailable' ? new ApiError('SERVICE_UNAVAILABLE', 'The store is unavailable; retry shortly', { retryAfter: 1 }) : null),
    logBug: (err) => request.log.error({ err, requestId: request.id }, 'batch call failed unexpectedly'),
    requestId: request.id,
  };
}

/**
 * If-Match guards one card's version; a batch has none to compare. Refused rather than
 * ignored: a client that sends it believes its writes are guarded.
 */
export function refuseIfMatch(request: FastifyRequest): void {
  if (request.headers['if-match'] === undefined) return;
  throw validationError([{ location: 'headers.if-match', message: 'a batch takes no If-Match', fix: 'send conditional writes one by one (PATCH or DELETE with If-Match)' }]);
}

/** The answer of a batch: `data` is JSON text written by the service. */
export function sendBatch(reply: FastifyReply, dataJson: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(`{"success":true,"data":${dataJson}}`);
}
