import { Ajv, type ValidateFunction } from 'ajv';
import type { TSchema } from 'typebox';
import { validationError } from '../errors.js';
import { AJV_OPTIONS } from '../http/ajv-options.js';
import { detailsFromAjv } from '../http/plugins/validation-errors.js';

let ajv: Ajv | null = null;
const compiled = new WeakMap<TSchema, ValidateFunction>();

function instance(): Ajv {
  if (ajv) return ajv;
  // Fastify's own defaults that the custom options leave standing (addUsedSchema), then the same options and plugins.
  ajv = new Ajv({ addUsedSchema: false, ...AJV_OPTIONS.customOptions });
  for (const plugin of AJV_OPTIONS.plugins) (plugin as unknown as (a: Ajv) => void)(ajv);
  return ajv;
}

/**
 * Checks a value against a route's body schema outside a route (an item of a batch),
 * with the options the routes' validator has: the same refusals, the same `details`
 * (`location` starts with `context`, e.g. `body.items[3]`). Throws 400 VALIDATION_ERROR.
 */
export function checkBody<S extends TSchema>(schema: S, value: unknown, context: string): void {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = instance().compile(schema);
    compiled.set(schema, validate);
  }
  if (!validate(value)) throw validationError(detailsFromAjv(context, (validate.errors ?? []) as never));
}
