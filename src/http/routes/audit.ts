import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { RouteAccess } from '../../access/access-service.js';
import { AUDIT_ACTIONS, AUDIT_ACTORS, AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, AUDIT_RESOURCES, parseAuditQuery, type AuditEntry } from '../../domain/audit.js';
import { KEY_KINDS } from '../../domain/records.js';
import { documentationOnly, errorResponses, listEnvelope, MANAGEMENT_ACCESS_ERRORS, UncheckedInput } from '../schemas.js';

const FieldChangeSchema = Type.Object({ before: Type.Optional(Type.Unknown()), after: Type.Optional(Type.Unknown()) }, { additionalProperties: false });

export const AuditEntrySchema = Type.Object({
  id: Type.Integer(),
  at: Type.String({ description: 'when the change was stored, ISO 8601 UTC with milliseconds' }),
  portalId: Type.Union([Type.Integer(), Type.Null()], { description: 'the portal the changed record belongs to; null for management keys' }),
  resource: Type.Enum(AUDIT_RESOURCES),
  resourceId: Type.String({ description: 'entityTypeId of a type, id of a key, portal or session' }),
  action: Type.Enum(AUDIT_ACTIONS),
  actor: Type.Enum(AUDIT_ACTORS, { description: 'key: a request with an API key; cli: the smartproc command on the store; system: the server itself (first start)' }),
  keyId: Type.Union([Type.String(), Type.Null()]),
  keyKind: Type.Union([Type.Enum(KEY_KINDS), Type.Null()]),
  userId: Type.Union([Type.Integer(), Type.Null()], { description: 'the portal user the change ran as (key owner or session user)' }),
  requestId: Type.Union([Type.String(), Type.Null()]),
  clientIp: Type.Union([Type.String(), Type.Null()]),
  changes: Type.Record(Type.String(), FieldChangeSchema, {
    description: 'per changed field, its value before and after (a created record has only after, a deleted one only before); never a secret',
  }),
});

export function presentAuditEntry(entry: AuditEntry) {
  const { context } = entry;
  return {
    id: entry.id,
    at: new Date(entry.at).toISOString(),
    portalId: entry.portalId,
    resource: entry.resource,
    resourceId: entry.resourceId,
    action: entry.action,
    actor: context.actor,
    keyId: context.keyId,
    keyKind: context.keyKind,
    userId: context.userId,
    requestId: context.requestId,
    clientIp: context.clientIp,
    changes: entry.changes,
  };
}

export const PageQueryDoc = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: AUDIT_MAX_LIMIT, default: AUDIT_DEFAULT_LIMIT })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
};

const AuditQueryDoc = Type.Object({
  portalId: Type.Optional(Type.Integer({ minimum: 1, description: 'entries of this portal (its types, keys, sessions and the portal itself)' })),
  keyId: Type.Optional(Type.String({ description: 'changes made with this key' })),
  resource: Type.Optional(Type.Enum(AUDIT_RESOURCES)),
  resourceId: Type.Optional(Type.String({ description: 'with resource: one record (an entityTypeId, a key, portal or session id)' })),
  action: Type.Optional(Type.Enum(AUDIT_ACTIONS)),
  since: Type.Optional(Type.String({ description: 'ISO 8601; entries at or after' })),
  until: Type.Optional(Type.String({ description: 'ISO 8601; entries before' })),
  ...PageQueryDoc,
}, { additionalProperties: false });

const ACCESS: RouteAccess = { kind: 'management', scope: 'vibe:mgmt:audit' };

/** GET /v1/audit: every recorded change, newest first (management key with vibe:mgmt:audit). */
const auditRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/', {
    config: { access: ACCESS },
    validatorCompiler: documentationOnly,
    schema: {
      tags: ['Audit'],
      summary: 'The audit trail: changes of types, keys, portals and sessions, newest first (beyond the hosted API)',
      querystring: UncheckedInput(AuditQueryDoc),
      response: { 200: listEnvelope(AuditEntrySchema), ...errorResponses([...MANAGEMENT_ACCESS_ERRORS, 'VALIDATION_ERROR']) },
    },
  }, async (request) => {
    const { limit, offset, ...filter } = parseAuditQuery(request.query, true);
    const { entries, total } = await app.services.audit.list(filter, { limit, offset });
    return { success: true as const, data: entries.map(presentAuditEntry), meta: { total, limit, offset, hasMore: offset + entries.length < total } };
  });
};

export default auditRoutes;
