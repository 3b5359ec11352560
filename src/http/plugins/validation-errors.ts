import type { ErrorObject } from 'ajv';
import { SAFE_TEXT_FORMAT, textProblem } from '../../domain/input-rules.js';
import { closestName } from '../../domain/suggest.js';
import type { ErrorDetail } from '../../errors.js';

type AjvError = ErrorObject & { parentSchema?: { properties?: Record<string, unknown> }; data?: unknown };

/** `/relations/parent/0/entityTypeId` → `body.relations.parent[0].entityTypeId`. */
export function locationOf(context: string, instancePath: string): string {
  let out = context;
  for (const raw of instancePath.split('/').slice(1)) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(segment) ? `[${segment}]` : `.${segment}`;
  }
  return out;
}

const describeType = (t: unknown) => (Array.isArray(t) ? t.join(' or ') : String(t)).replace('object', 'a JSON object').replace('array', 'an array');

function sample(data: unknown): string {
  const text = JSON.stringify(data);
  return text === undefined ? 'nothing' : text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Ajv errors (allErrors) → the envelope's details, with a "did you mean" fix for unknown fields. */
export function detailsFromAjv(context: string, errors: AjvError[]): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const base = locationOf(context, e.instancePath);
    let detail: ErrorDetail;
    switch (e.keyword) {
      case 'required':
        detail = { location: `${base}.${(e.params as { missingProperty: string }).missingProperty}`, message: 'is required' };
        break;
      case 'additionalProperties': {
        const name = (e.params as { additionalProperty: string }).additionalProperty;
        const known = Object.keys(e.parentSchema?.properties ?? {});
        const suggestion = closestName(name, known);
        detail = { location: `${base}.${name}`, message: 'is not a known field', fix: suggestion ? `did you mean "${suggestion}"?` : `known fields: ${known.join(', ')}` };
        break;
      }
      case 'type':
        detail = { location: base, message: `must be ${describeType((e.params as { type: unknown }).type)}; got ${sample(e.data)}` };
        break;
      case 'enum':
        detail = { location: base, message: `must be one of ${((e.params as { allowedValues: unknown[] }).allowedValues ?? []).map((v) => JSON.stringify(v)).join(', ')}; got ${sample(e.data)}` };
        break;
      case 'minimum':
      case 'maximum': {
        // Say the whole range, so that a client learns both ends at once (ids: 1 to 2147483647).
        const range = e.parentSchema as { minimum?: number; maximum?: number; type?: unknown } | undefined;
        const kind = String(range?.type).includes('integer') ? 'an integer' : 'a number';
        const message =
          range?.minimum !== undefined && range?.maximum !== undefined
            ? `must be ${kind} from ${range.minimum} to ${range.maximum}`
            : `must be ${(e.params as { comparison: string }).comparison} ${(e.params as { limit: number }).limit}`;
        detail = { location: base, message: `${message}; got ${sample(e.data)}` };
        break;
      }
      case 'format': {
        const problem = (e.params as { format: string }).format === SAFE_TEXT_FORMAT && typeof e.data === 'string' ? textProblem(e.data) : null;
        detail = { location: base, message: problem ?? e.message ?? 'is invalid' };
        break;
      }
      default:
        detail = { location: base, message: e.message ?? 'is invalid' };
    }
    const key = `${detail.location}|${detail.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      details.push(detail);
    }
  }
  return details;
}
