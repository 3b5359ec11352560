import crypto from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import FindMyWay from 'find-my-way';
import { MAX_ERROR_DETAILS } from '../../domain/input-rules.js';
import { ApiError, ERROR_TABLE, validationError, type ErrorCode } from '../../errors.js';
import { LogThrottle } from '../../log-throttle.js';
import { detailsFromAjv } from './validation-errors.js';

const FASTIFY_CODES = new Map<string, ErrorCode>([
  ['FST_ERR_CTP_BODY_TOO_LARGE', 'PAYLOAD_TOO_LARGE'],
  ['FST_ERR_CTP_INVALID_MEDIA_TYPE', 'UNSUPPORTED_MEDIA_TYPE'],
  ['FST_ERR_CTP_INVALID_CONTENT_LENGTH', 'VALIDATION_ERROR'],
  ['FST_ERR_CTP_EMPTY_JSON_BODY', 'VALIDATION_ERROR'],
  ['FST_ERR_CTP_INVALID_JSON_BODY', 'VALIDATION_ERROR'],
]);

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

/** At most MAX_ERROR_DETAILS entries; one last entry says how many more there were. */
function cappedDetails(details: ApiError['details']) {
  if (!details || details.length <= MAX_ERROR_DETAILS) return details;
  const rest = details.length - MAX_ERROR_DETAILS;
  return [...details.slice(0, MAX_ERROR_DETAILS), { location: 'request', message: `and ${rest} more problem${rest === 1 ? '' : 's'} (an answer lists at most ${MAX_ERROR_DETAILS})` }];
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
      ...(error.details ? { details: cappedDetails(error.details) } : {}),
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
  const code = error.code ? FASTIFY_CODES.get(error.code) : undefined;
  if (code === 'PAYLOAD_TOO_LARGE') return new ApiError(code, 'Request body is larger than 1 MiB');
  if (code === 'UNSUPPORTED_MEDIA_TYPE') return new ApiError(code, 'Send JSON with Content-Type: application/json', { hint: 'Only application/json bodies are accepted.' });
  if (code === 'VALIDATION_ERROR') {
    const problem = error.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' ? 'Content-Length does not match the body' : 'body is not valid JSON';
    return validationError([{ location: 'body', message: problem, fix: 'send a JSON object' }], `Malformed request: ${problem}`);
  }
  if (error.statusCode === 400 && error.message) return validationError([{ location: 'request', message: error.message }]);
  // Any other client error of the framework: the code of the table with its status, else a 400.
  if (error.statusCode && error.statusCode > 400 && error.statusCode < 500) {
    const same = (Object.keys(ERROR_TABLE) as ErrorCode[]).find((c) => ERROR_TABLE[c].status === error.statusCode);
    return new ApiError(same ?? 'VALIDATION_ERROR', error.message || 'The request cannot be served');
  }
  return null;
}

/**
 * Fastify's router refused the URL before any route ran (`frameworkErrors` option):
 * a path that is not valid percent-encoding, or a path segment over `maxParamLength`.
 * No hook runs for these, so the request id header is set here.
 */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  reply.header('x-request-id', request.id);
  let apiError: ApiError;
  if (error.code === 'FST_ERR_BAD_URL') {
    apiError = validationError([{ location: 'url', message: 'the path is not valid percent-encoding of UTF-8 text', fix: 'percent-encode each byte of UTF-8 text: % followed by two hex digits' }], 'Malformed request: the path cannot be decoded');
  } else if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    apiError = validationError([{ location: 'params', message: `a path parameter is longer than ${MAX_PARAM_LENGTH} characters`, fix: 'ids are short: list them with GET on the collection' }], `Malformed request: a path parameter is longer than ${MAX_PARAM_LENGTH} characters`);
  } else {
    request.log.error({ err: error, requestId: request.id }, 'router error');
    apiError = new ApiError('INTERNAL_ERROR', `Internal error; quote requestId ${request.id} when reporting it`);
  }
  return sendError(request, reply, apiError);
}

/** Fastify's default maxParamLength (the router refuses longer path parameters). */
export const MAX_PARAM_LENGTH = 100;

/** What the HTTP parser's refusals mean to a client (node's llhttp error codes). */
const PARSER_ERRORS = new Map<string, string>([
  ['HPE_INVALID_CONTENT_LENGTH', 'Content-Length is not a number, or is sent together with Transfer-Encoding'],
  ['HPE_UNEXPECTED_CONTENT_LENGTH', 'Content-Length is repeated, or sent together with Transfer-Encoding'],
  ['HPE_INVALID_TRANSFER_ENCODING', 'Transfer-Encoding other than chunked is not supported'],
  ['HPE_INVALID_CHUNK_SIZE', 'a chunk size of the chunked body is not a hexadecimal number'],
  ['HPE_INVALID_METHOD', 'the HTTP method is unknown'],
  ['HPE_INVALID_VERSION', 'the HTTP version is not supported'],
  ['HPE_INVALID_HEADER_TOKEN', 'a header name or value holds a character HTTP does not allow'],
  ['HPE_INVALID_URL', 'the request target is not a valid URL (percent-encode non-ASCII characters)'],
]);

/**
 * The HTTP parser refused the request before Fastify saw it (node's 'clientError'):
 * still the envelope, with a code of the table. A header section over node's limit
 * (--max-http-header-size, 16 KiB by default) is 431 HEADERS_TOO_LARGE.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket) {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // As Node's own handler: once an answer has gone out on this connection, a second one would corrupt the
  // stream. A request still arriving with no response pending (its body trickling in after an early 401,
  // say) has had its answer already.
  const raw = socket as Socket & { _httpMessage?: { headersSent?: boolean } | null; parser?: { incoming?: { complete?: boolean } | null } | null };
  const answered = raw._httpMessage ? raw._httpMessage.headersSent : Boolean(raw.parser?.incoming && !raw.parser.incoming.complete);
  if (!socket.writable || answered) {
    socket.destroy(error);
    return;
  }
  const requestId = newRequestId();
  let code: ErrorCode = 'VALIDATION_ERROR';
  let message: string;
  let hint: string | undefined;
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    code = 'REQUEST_TIMEOUT';
    message = 'The request did not arrive in time (see HEADERS_TIMEOUT_MS and REQUEST_TIMEOUT_MS)';
    hint = 'Send the whole request promptly; open the connection when you are ready to send.';
  } else if (error.code === 'HPE_HEADER_OVERFLOW') {
    code = 'HEADERS_TOO_LARGE';
    message = `The request line and headers are larger than ${http.maxHeaderSize} bytes (${Math.round(http.maxHeaderSize / 1024)} KiB)`;
    hint = 'Send shorter headers, or a long filter in the body of POST /v1/smart-processes/search.';
  } else {
    message = `Malformed HTTP request: ${PARSER_ERRORS.get(error.code ?? '') ?? `the HTTP parser refused it (${error.code ?? 'bad request'})`}`;
    hint = 'Percent-encode the URL and check the headers.';
  }
  const { status } = ERROR_TABLE[code];
  const body = JSON.stringify({ success: false, error: { code, message, hint, requestId } });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** An Expect header other than 100-continue (node's 'checkExpectation'; node's own answer would be an empty 417). */
export function refuseExpectation(request: http.IncomingMessage, response: http.ServerResponse) {
  const requestId = newRequestId();
  const expect = String(request.headers.expect).slice(0, 60);
  const body = JSON.stringify({
    success: false,
    error: {
      code: 'VALIDATION_ERROR',
      message: `Malformed HTTP request: Expect: ${expect} is not supported`,
      details: [{ location: 'headers.expect', message: 'only 100-continue is supported', fix: 'leave the Expect header out, or send Expect: 100-continue' }],
      requestId,
    },
  });
  response.writeHead(400, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId, connection: 'close' });
  response.end(body);
}

/** CONNECT (a proxy request) never reaches the router: node hands the socket over; answer 405 and close. */
export function refuseConnect(_request: http.IncomingMessage, socket: Socket) {
  const requestId = newRequestId();
  const allow = 'GET, HEAD, POST, PATCH, DELETE';
  const body = JSON.stringify({ success: false, error: { code: 'METHOD_NOT_ALLOWED', message: `CONNECT is not allowed: smartproc is not a proxy; allowed: ${allow}`, requestId } });
  socket.on('error', () => socket.destroy());
  socket.end(`HTTP/1.1 405 Method Not Allowed\r\nAllow: ${allow}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * The one error handler: every failure leaves as the envelope of contract §2, with
 * the request id; 500s are logged with it and say nothing of the internals.
 * Also: request ids, 404 ROUTE_NOT_FOUND and 405 METHOD_NOT_ALLOWED with Allow.
 */
export default fp(async function errorsPlugin(app: FastifyInstance) {
  const knownRoutes = FindMyWay({ ignoreTrailingSlash: true });
  /** Route paths without parameters (`/v1/smart-processes/search`): literal routes that win over `/:id` beside them. */
  const literalPaths = new Set<string>();
  const normal = (path: string) => (path.length > 1 ? path.replace(/\/+$/, '') : path);
  const noop = () => undefined;
  app.addHook('onRoute', (route) => {
    // A catch-all route (@fastify/cors's `OPTIONS *` for preflights) serves no resource: it makes no path known.
    if (route.url === '*') return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!/[:*]/.test(route.url)) literalPaths.add(normal(route.url));
    for (const method of methods) {
      try {
        knownRoutes.on(method as 'GET', route.url, noop, { url: route.url });
      } catch {
        /* the same method and path twice: already known */
      }
    }
  });

  /**
   * The methods that really work on a path (the 405's Allow): a method counts when one of
   * its routes matches, except that on the path of a literal route (`/search`, `/fields`)
   * only that route's methods count — `GET /search` matches `/:entityTypeId` in the router,
   * and that route answers it with a 405 of its own.
   */
  const allowedMethods = (path: string) => {
    const literal = literalPaths.has(normal(path)) ? normal(path) : null;
    return ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].filter((m) => {
      const found = knownRoutes.find(m as 'GET', path);
      if (!found) return false;
      const url = (found.store as { url: string }).url;
      return literal === null || normal(url) === literal || url.endsWith('*');
    });
  };

  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0];
    const allowed = allowedMethods(path);
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
    // HTTP/1.1 requires Host (RFC 9112 §3.2); node's own refusal would be an empty 400.
    if (request.headers.host === undefined && request.raw.httpVersion === '1.1') {
      return done(validationError([{ location: 'headers.host', message: 'is required in HTTP/1.1', fix: 'send Host: <server name>' }], 'Malformed HTTP request: no Host header'));
    }
    if (!closing) return done();
    reply.header('connection', 'close');
    done(new ApiError('SERVICE_UNAVAILABLE', 'The server is shutting down', { retryAfter: 1 }));
  });

  // While the store is down every request fails the same way: one line per 10 s, not one per request.
  const unavailable = new LogThrottle(10_000);
  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    // Failures of the store that a retry may cure: 503, not 500 (the store says which they are).
    const storeFailure = request.server.services.store.failureOf(error);
    if (storeFailure) request.server.metrics?.storeError(storeFailure);
    if (storeFailure === 'unavailable') {
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

