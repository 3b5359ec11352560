import type { FastifyRequest, RouteOptions } from 'fastify';
import { jsonInputProblems, MAX_JSON_DEPTH } from '../../domain/input-rules.js';
import { validationError } from '../../errors.js';

type Done = (error: Error | null, body?: unknown) => void;
type JsonParser = (request: FastifyRequest, body: string, done: Done) => void;

/** Quick test: anything in a parsed value that the full walk would look at closer. */
const SUSPECT_TEXT = /[\u0000\ud800-\udfff]/;

function suspect(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
      return SUSPECT_TEXT.test(value);
    case 'number':
      return !Number.isFinite(value);
    case 'object': {
      if (value === null) return false;
      if (depth >= MAX_JSON_DEPTH) return true;
      if (Array.isArray(value)) {
        for (const item of value) if (suspect(item, depth + 1)) return true;
        return false;
      }
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        if (SUSPECT_TEXT.test(key) || suspect((value as Record<string, unknown>)[key], depth + 1)) return true;
      }
      return false;
    }
    default:
      return false;
  }
}

/** The 400 for an input that breaks the input rules (input-rules.ts), or null; the common case costs one quick walk. */
export function inputRulesError(value: unknown, location: string) {
  if (!suspect(value, 0)) return null;
  const problems = jsonInputProblems(value, location);
  return problems.length ? validationError(problems) : null;
}

const PROTO_KEY = /"(?:__proto__|constructor)"/;

/**
 * The application/json parser: Fastify's (which refuses `__proto__` and
 * `constructor.prototype` keys), then the input rules on the parsed value: at most
 * MAX_JSON_DEPTH levels, finite numbers (1e309 parses to Infinity), no NUL and no lone
 * surrogate in any string or key. An empty body is "no body" (PATCH without a body = {}).
 */
export function jsonBodyParser(parse: JsonParser) {
  return (request: FastifyRequest, body: string, done: Done) => {
    if (body === '' || body.trim() === '') return done(null, undefined);
    parse(request, body, (error, value) => {
      if (error) return deferBodyError(request, PROTO_KEY.test(body) && isJson(body) ? protoKeyError() : error, done);
      const rulesError = inputRulesError(value, 'body');
      if (rulesError) return deferBodyError(request, rulesError, done);
      done(null, value);
    });
  };
}

/**
 * Body errors wait for their turn (contract §4: access → path → existence → body). The
 * parser runs before any route hook, so a body that cannot be taken is remembered here,
 * the body is left empty, and the error is thrown by the last preValidation hook of the
 * route (after the route's own path and existence checks, before schema validation):
 * malformed JSON sent to an unknown id is 404, to a bad id 400 at the path.
 */
const bodyErrors = new WeakMap<FastifyRequest, Error>();

function deferBodyError(request: FastifyRequest, error: Error, done: Done) {
  bodyErrors.set(request, error);
  done(null, undefined);
}

/** Whether the request's body could not be taken (a route that checks existence only when needed asks this). */
export const hasBodyError = (request: FastifyRequest) => bodyErrors.has(request);

async function throwBodyError(request: FastifyRequest) {
  const error = bodyErrors.get(request);
  if (error) throw error;
}

/** onRoute: appends the deferred body check to the route's preValidation hooks. */
export function checkBodyAfterRouteChecks(route: RouteOptions) {
  const own = route.preValidation === undefined ? [] : Array.isArray(route.preValidation) ? route.preValidation : [route.preValidation];
  route.preValidation = [...own, throwBodyError] as RouteOptions['preValidation'];
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const protoKeyError = () =>
  validationError(
    [{ location: 'body', message: 'holds a key "__proto__", or "constructor" with "prototype" in it: such keys are refused anywhere in a body', fix: 'remove the key: no field of the API has that name' }],
    'Malformed request: the body holds a "__proto__" or "constructor.prototype" key',
  );
