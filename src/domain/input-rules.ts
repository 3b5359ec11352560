import { Type, type Static, type TNumberOptions, type TSchema, type TStringOptions } from 'typebox';
import { validationError, type ErrorDetail } from '../errors.js';

/**
 * The rules every input obeys, whatever the route and whatever the store (docs/api.md,
 * "Input rules and limits"). They live here once: the request schemas, the list/search
 * parser, the path helpers and the JSON body parser all use these.
 */

/** Every integer column is a 32-bit signed integer on PostgreSQL; SQLite gives the same answers by the same check. */
export const INT32_MIN = -2_147_483_648;
export const INT32_MAX = 2_147_483_647;
/** Nesting of a JSON body: objects and arrays, the outermost counting 1. */
export const MAX_JSON_DEPTH = 32;
/** Values in one filter: each item of every $in list counts, and each plain value. */
export const MAX_FILTER_VALUES = 1000;
/** Characters of one text filter value (stored titles and codes are at most 255; SQLite's LIKE takes patterns up to 50,000 bytes). */
export const MAX_TEXT_FILTER_LENGTH = 1000;
/** Entries on one side of `relations` in a request (each is one statement parameter on SQLite, which takes 32,766). */
export const MAX_RELATIONS_PER_SIDE = 1000;
/** Sort keys of one list request: `sort` and `order` together. */
export const MAX_SORT_KEYS = 10;
/** Entries of `details` in one error answer; the rest is summed up in a last entry. */
export const MAX_ERROR_DETAILS = 100;

/** `T | null` as one JSON Schema type list (one clear error instead of an anyOf cascade). */
export function Nullable<T extends TSchema>(schema: T, options: Record<string, unknown> = {}) {
  const raw = schema as unknown as { type: string };
  return Type.Unsafe<Static<T> | null>({ ...schema, ...options, type: [raw.type, 'null'] });
}

/** An integer in the 32-bit range (a TypeBox schema): `Int32({ minimum: 1 })` for ids. */
export function Int32(options: TNumberOptions = {}) {
  return Type.Integer({ minimum: INT32_MIN, maximum: INT32_MAX, ...options });
}

export const isInt32 = (n: number) => Number.isInteger(n) && n >= INT32_MIN && n <= INT32_MAX;

/** What an integer outside the range is told. */
export const int32RangeMessage = (min = INT32_MIN, max = INT32_MAX) => `must be an integer from ${min} to ${max}`;

/** String.prototype.isWellFormed (Node 20; the ES2024 lib is not in tsconfig). */
type WellFormedCheck = string & { isWellFormed(): boolean };

/** NUL, and every UTF-16 surrogate (paired ones are then accepted by isWellFormed). */
const SUSPECT_TEXT = /[\u0000\ud800-\udfff]/;

/**
 * Why a text cannot be taken, or null. Bitrix24 text fields cannot hold NUL (nor can
 * PostgreSQL text), and a lone surrogate is not Unicode: SQLite would store U+FFFD
 * instead, so the answer would change with no write. One regular expression test
 * for ordinary text.
 */
export function textProblem(text: string): string | null {
  if (!SUSPECT_TEXT.test(text)) return null;
  if (text.includes('\u0000')) return 'must not contain the NUL character (U+0000)';
  if (!(text as WellFormedCheck).isWellFormed()) return 'must be well-formed Unicode: it holds a lone UTF-16 surrogate (\\ud800-\\udfff without its pair)';
  return null;
}

const TEXT_FIX = 'remove the character, or send the text as UTF-8 / well-formed JSON escapes';

/** The Ajv format of text that obeys textProblem (for strings that do not come in a JSON body, e.g. path parameters). */
export const SAFE_TEXT_FORMAT = 'safe-text';

/** A string schema that refuses NUL and lone surrogates. */
export function SafeText(options: TStringOptions = {}) {
  return Type.String({ ...options, format: SAFE_TEXT_FORMAT });
}

/** Registers SAFE_TEXT_FORMAT on Fastify's Ajv (`ajv.plugins`). */
export function safeTextFormat(ajv: { addFormat(name: string, format: { type: 'string'; validate: (text: string) => boolean }): unknown }) {
  ajv.addFormat(SAFE_TEXT_FORMAT, { type: 'string', validate: (text) => textProblem(text) === null });
  return ajv;
}

/** `body.a.b[0]`, or `body["odd key"]` when the key is not a plain name (so that the location itself is safe text). */
export function childLocation(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (/^[A-Za-z0-9_$@%<>=!|.-]{1,64}$/.test(key)) return `${parent}.${key}`;
  const shown = key.length > 64 ? `${key.slice(0, 61)}...` : key;
  return `${parent}[${JSON.stringify(shown)}]`;
}

/**
 * Problems of a parsed JSON value as input: nesting deeper than MAX_JSON_DEPTH, a number
 * that is not finite (JSON.parse turns 1e309 into Infinity), NUL or a lone surrogate in
 * any string or key. The walk never goes deeper than the limit, so it cannot overflow
 * the stack; it stops collecting after MAX_ERROR_DETAILS problems.
 */
export function jsonInputProblems(value: unknown, location: string): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  walk(value, location, 0, problems);
  return problems;
}

function walk(value: unknown, location: string, depth: number, problems: ErrorDetail[]): void {
  if (problems.length > MAX_ERROR_DETAILS) return;
  switch (typeof value) {
    case 'string': {
      const problem = textProblem(value);
      if (problem) problems.push({ location, message: problem, fix: TEXT_FIX });
      return;
    }
    case 'number':
      if (!Number.isFinite(value)) problems.push({ location, message: 'must be a finite number: it is beyond the range of a JSON number (about ±1.8e308)', fix: 'send a number in the range of the field' });
      return;
    case 'object': {
      if (value === null) return;
      if (depth + 1 > MAX_JSON_DEPTH) {
        problems.push({ location, message: `is nested deeper than ${MAX_JSON_DEPTH} levels of objects and arrays`, fix: `keep JSON within ${MAX_JSON_DEPTH} levels` });
        return;
      }
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) walk(value[i], childLocation(location, i), depth + 1, problems);
        return;
      }
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        const keyProblem = textProblem(key);
        if (keyProblem) problems.push({ location: childLocation(location, key), message: `its name ${keyProblem}`, fix: TEXT_FIX });
        walk((value as Record<string, unknown>)[key], childLocation(location, key), depth + 1, problems);
      }
      return;
    }
    default:
  }
}

/** Throws the 400 for the problems of an input (see jsonInputProblems). */
export function assertSafeInput(value: unknown, location: string): void {
  const problems = jsonInputProblems(value, location);
  if (problems.length) throw validationError(problems);
}

/** Annotation of a PositiveInt32Param schema: the OpenAPI document shows the parameter as an integer (src/http/plugins/docs.ts). */
export const POSITIVE_INT32_PARAM = 'x-positive-int32';

/**
 * The schema of a path parameter checked with positiveInt32Param: any text passes the
 * schema, as the route checks it itself after the access check (contract §4 order, and
 * `search`/`fields` answered 405); documented as an integer from 1 to INT32_MAX.
 */
export function PositiveInt32Param(options: { description?: string; example?: number } = {}) {
  return Type.String({ ...(options.description ? { description: options.description } : {}), [POSITIVE_INT32_PARAM]: { minimum: 1, maximum: INT32_MAX, ...(options.example ? { example: options.example } : {}) } });
}

/**
 * A positive integer path parameter (entityTypeId, portal id): digits only, 1..INT32_MAX;
 * anything else is 400 naming the range. A value in the range is then merely absent (404)
 * or found.
 */
export function positiveInt32Param(raw: string, location: string, fix?: string): number {
  const value = /^[0-9]{1,10}$/.test(raw) ? Number(raw) : NaN;
  if (value >= 1 && value <= INT32_MAX) return value;
  const shown = raw.length > 40 ? `${raw.slice(0, 37)}...` : raw;
  throw validationError([{ location, message: `must be a positive integer from 1 to ${INT32_MAX}; got ${JSON.stringify(shown)}`, ...(fix ? { fix } : {}) }]);
}
