import { Type, type TSchema } from 'typebox';
import { ERROR_TABLE, type ErrorCode } from '../errors.js';

export const ErrorDetailSchema = Type.Object({
  location: Type.String({ description: 'where the problem is, e.g. body.relations.parent[0].entityTypeId' }),
  message: Type.String(),
  fix: Type.Optional(Type.String()),
});

export const ErrorEnvelopeSchema = Type.Object(
  {
    success: Type.Literal(false),
    error: Type.Object({
      code: Type.String({ enum: Object.keys(ERROR_TABLE) }),
      message: Type.String(),
      hint: Type.Optional(Type.String()),
      details: Type.Optional(Type.Array(ErrorDetailSchema)),
      retryAfter: Type.Optional(Type.Integer()),
      requestId: Type.String(),
    }),
  },
  { $id: 'ErrorEnvelope' },
);

export function dataEnvelope<T extends TSchema>(data: T, description = 'Success') {
  return Type.Object({ success: Type.Literal(true), data }, { description });
}

export const WriteWarningSchema = Type.Object(
  {
    kind: Type.Union([Type.Literal('notApplied'), Type.Literal('unverified')], { description: 'notApplied: asked for, not shown by the card read back; unverified: the card could not be read back' }),
    location: Type.String({ description: 'where in the request, e.g. body.relations.parent[1].entityTypeId' }),
    message: Type.String(),
    fix: Type.Optional(Type.String()),
    requested: Type.Optional(Type.Unknown()),
    actual: Type.Optional(Type.Unknown()),
  },
  { description: 'What a write that happened did not do as asked (bitrix24 portals; docs/bitrix24.md)' },
);

/** The answer of a write that carries a card: `warnings` when the portal did not keep everything asked (never a 4xx for a write that happened). */
export function writeEnvelope<T extends TSchema>(data: T, description = 'Success') {
  return Type.Object({ success: Type.Literal(true), data, warnings: Type.Optional(Type.Array(WriteWarningSchema)) }, { description });
}

/**
 * The schema of an input that a route parses in the domain itself (every problem in one
 * answer), with `validatorCompiler: documentationOnly`: the same JSON Schema for the
 * OpenAPI document, typed `unknown` so that no handler takes the input as validated.
 */
export function UncheckedInput(schema: TSchema) {
  return Type.Unsafe<unknown>(schema);
}

/** The validator compiler of a route whose schemas only document (see UncheckedInput): every input passes to the handler. */
export const documentationOnly = () => () => true;

/** A 204 answer: no body (typed `undefined`, so that handlers call `reply.code(204).send()`). */
export function NoContentSchema(options: { description?: string } = {}) {
  return Type.Unsafe<undefined>(Type.Null(options));
}

export const ListMetaSchema = Type.Object({
  total: Type.Integer(),
  limit: Type.Integer(),
  offset: Type.Integer(),
  hasMore: Type.Boolean({ description: 'offset + data.length < total' }),
});

export function listEnvelope<T extends TSchema>(item: T) {
  return Type.Object({ success: Type.Literal(true), data: Type.Array(item), meta: ListMetaSchema }, { description: 'A page of results' });
}

/** Error answers of a route, grouped by status, each listing its codes from the error table. */
export function errorResponses(codes: ErrorCode[]): Record<number, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of [...codes, 'INTERNAL_ERROR' as const]) {
    const status = ERROR_TABLE[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<number, unknown> = {};
  for (const [status, list] of byStatus) {
    out[status] = Type.Ref('ErrorEnvelope', { description: list.map((c) => `${c}: ${ERROR_TABLE[c].when}`).join('\n\n') });
  }
  return out;
}

export const PORTAL_ACCESS_ERRORS: ErrorCode[] = [
  'MISSING_API_KEY', 'INVALID_API_KEY', 'IP_NOT_ALLOWED', 'MANAGEMENT_KEY_NO_ENTITY_ACCESS', 'TOKEN_MISSING', 'INVALID_SESSION', 'TOKEN_EXPIRED', 'SESSION_APP_MISMATCH', 'SCOPE_DENIED', 'RATE_LIMITED',
];
export const MANAGEMENT_ACCESS_ERRORS: ErrorCode[] = ['MISSING_API_KEY', 'INVALID_API_KEY', 'IP_NOT_ALLOWED', 'MANAGEMENT_SCOPE_REQUIRED', 'RATE_LIMITED'];
export const BODY_ERRORS: ErrorCode[] = ['VALIDATION_ERROR', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'];
