import crypto from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import FindMyWay from 'find-my-way';
import { ApiError, validationError, type ErrorCode } from '../../errors.js';
import { LogThrottle } from '../../log-throttle.js';
import { detailsFromAjv } from './validation-errors.js';

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_ERROR',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'VALIDATION_ERROR',
  FST_ERR_CTP_INVALID_JSON_BODY: 'VALIDATION_ERROR',
};

/** Failures of the store (or Redis) that a retry may cure: 503, not 500. */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006', '53300', 'SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR', 'SQLITE_FULL']);

function isUnavailable(error: { code?: unknown; message?: string }): boolean {
  return (typeof error.code === 'string' && UNAVAILABLE_CODES.has(error.code)) || /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|is not queryable/i.test(error.message ?? '');
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** req_ and 16 random hex digits; the random bytes are drawn 4 KiB at a time (one system call per 512 ids). */
const randomPool = Buffer.alloc(4096);
let poolOffset = randomPool.length;

export function newRequestId(): string {
  if (poolOffset === randomPool.length) {
    crypto.randomFillSync(randomPool);
    poolOffset = 0;
  }
  poolOffset += 8;
  return `req_${randomPool.toString('hex', poolOffset - 8, poolOffset)}`;
}

export function requestIdFrom(header: string | string[] | undefined, mint: () => string): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : mint();
}

export function sendError(request: FastifyRequest, reply: FastifyReply, error: ApiError) {
  if (error.headers) reply.headers(error.headers);
  if (error.retryAfter !== undefined) reply.header('retry-after', String(error.retryAfter));
  return reply.code(error.status).send({
    success: false,
    error: {
      code: error.code,
      message: error.message,
      ...(error.hint ? { hint: error.hint } : {}),
      ...(error.details ? { details: error.details } : {}),
      ...(error.retryAfter !== undefined ? { retryAfter: error.retryAfter } : {}),
      requestId: request.id,
    },
  });
}

function toApiError(error: FastifyError & { validation?: unknown[]; validationContext?: string }): ApiError | null {
  if (error instanceof ApiError) return error;
  if (error.validation) {
    return validationError(detailsFromAjv(error.validationContext ?? 'body', error.validation as never));
  }
  const code = error.code ? FASTIFY_CODES[error.code] : undefined;
  if (code === 'PAYLOAD_TOO_LARGE') return new ApiError(code, 'Request body is larger than 1 MiB');
  if (code === 'UNSUPPORTED_MEDIA_TYPE') return new ApiError(code, 'Send JSON with Content-Type: application/json', { hint: 'Only application/json bodies are accepted.' });
  if (code === 'VALIDATION_ERROR') {
    const problem = error.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' ? 'Content-Length does not match the body' : 'body is not valid JSON';
    return validationError([{ location: 'body', message: problem, fix: 'send a JSON object' }], `Malformed request: ${problem}`);
  }
  if (error.statusCode === 400 && error.message) return validationError([{ location: 'request', message: error.message }]);
  return null;
}

/**
 * The one error handler: every failure leaves as the envelope of contract §2, with
 * the request id; 500s are logged with it and say nothing of the internals.
 * Also: request ids, 404 ROUTE_NOT_FOUND and 405 METHOD_NOT_ALLOWED with Allow.
 */
export default fp(async function errorsPlugin(app: FastifyInstance) {
  const knownRoutes = FindMyWay({ ignoreTrailingSlash: true });
  const noop = () => undefined;
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      try {
        knownRoutes.on(method as 'GET', route.url, noop);
      } catch {
        /* the same method and path twice: already known */
      }
    }
  });


  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0];
    const allowed = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].filter((m) => knownRoutes.find(m as 'GET', path));
    if (allowed.length) {
      reply.header('allow', allowed.join(', '));
      return sendError(request, reply, new ApiError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`));
    }
    return sendError(request, reply, new ApiError('ROUTE_NOT_FOUND', `No route ${request.method} ${path}`, { hint: 'See GET /v1/openapi.json or /docs for the routes.' }));
  });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (!closing) return done();
    reply.header('connection', 'close');
    done(new ApiError('SERVICE_UNAVAILABLE', 'The server is shutting down', { retryAfter: 1 }));
  });

  // While the store is down every request fails the same way: one line per 10 s, not one per request.
  const unavailable = new LogThrottle(10_000);
  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    if (isUnavailable(error)) {
      const held = unavailable.pass();
      if (held !== null) request.log.warn({ err: error, requestId: request.id, ...(held ? { alsoUnavailable: held } : {}) }, 'store unavailable: answering 503');
      return sendError(request, reply, new ApiError('SERVICE_UNAVAILABLE', 'The store is unavailable; retry shortly', { retryAfter: 1 }));
    }
    const apiError = toApiError(error);
    if (apiError) {
      return sendError(request, reply, apiError);
    }
    request.log.error({ err: error, requestId: request.id }, 'unhandled error');
    return sendError(request, reply, new ApiError('INTERNAL_ERROR', `Internal error; quote requestId ${request.id} when reporting it`));
  });
});

