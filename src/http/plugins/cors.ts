import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import cors from '@fastify/cors';

/** The methods of the API's routes (preflight answers these). */
export const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'];
/** Request headers a browser page may send: the two ways to authenticate, If-Match, the body's type, and a request id of its own. */
export const CORS_ALLOWED_HEADERS = ['X-Api-Key', 'Authorization', 'If-Match', 'Content-Type', 'X-Request-Id'];
/** Answer headers a browser page may read (besides the CORS-safelisted ones). */
export const CORS_EXPOSED_HEADERS = ['ETag', 'X-Request-Id', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Retry-After'];
/** How long (s) a browser may reuse a preflight answer. */
export const CORS_MAX_AGE_SECONDS = 600;

/**
 * CORS for browser applications (@fastify/cors), on when CORS_ORIGINS names origins:
 * a listed origin is echoed in Access-Control-Allow-Origin (with Vary: Origin), `*` allows
 * any. Preflights are answered in the onRequest hook, before any key is checked (browsers
 * send no X-Api-Key with a preflight); every other answer, errors included, carries the
 * CORS headers so that a page can read them. Keys travel in headers, never cookies:
 * no Access-Control-Allow-Credentials.
 */
export default fp(async function corsPlugin(app: FastifyInstance, options: { origins: string[] }) {
  await app.register(cors, {
    origin: options.origins.includes('*') ? '*' : options.origins,
    methods: CORS_METHODS,
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    maxAge: CORS_MAX_AGE_SECONDS,
    credentials: false,
    // An OPTIONS request that is not a preflight (no Origin or no Access-Control-Request-Method) is answered
    // like one (204 with the allowed methods) instead of @fastify/cors's plain-text 400 outside the error envelope.
    strictPreflight: false,
  });
});
