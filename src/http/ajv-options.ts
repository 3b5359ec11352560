import ajvFormats from 'ajv-formats';
import { safeTextFormat } from '../domain/input-rules.js';

/**
 * How request schemas are checked (Fastify's `ajv` option), in one place: the routes'
 * validator and the one that checks the items of a batch (src/operations/body-validator.ts)
 * are built from it, so that an item is judged exactly as its single route's body.
 * strictNumbers: NaN and Infinity are not numbers of any schema.
 */
export const AJV_OPTIONS = {
  customOptions: { allErrors: true, removeAdditional: false, coerceTypes: false, useDefaults: false, verbose: true, strict: false, strictNumbers: true },
  plugins: [ajvFormats as never, safeTextFormat as never],
} as const;
