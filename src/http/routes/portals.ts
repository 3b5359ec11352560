import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { RouteAccess } from '../../access/access-service.js';

import { positiveInt32Param } from '../../domain/input-rules.js';

import { auditContextOf } from '../plugins/auth.js';
import { BODY_ERRORS, dataEnvelope, errorResponses, MANAGEMENT_ACCESS_ERRORS, NoContentSchema } from '../schemas.js';
import { CreatePortalBodySchema, IdParamsSchema, PortalSchema, UpdatePortalBodySchema } from './management-schemas.js';
import { isoTime, type PortalRecord } from '../../domain/records.js';

const READ: RouteAccess = { kind: 'management', scope: 'vibe:mgmt:portals' };
const WRITE: RouteAccess = { ...READ, write: true };
const tags = ['Portals'];
const errors = (...extra: Parameters<typeof errorResponses>[0]) => errorResponses([...MANAGEMENT_ACCESS_ERRORS, ...extra]);

export function presentPortal(p: PortalRecord) {
  // bitrix24: what may be shown of the credential (type, userId, domain), never a secret.
  const b24 = p.bitrix24 ? { credentials: p.bitrix24.credentials, limits: p.bitrix24.limits, needsAuthorization: p.bitrix24.needsAuthorization } : {};
  return { id: p.id, kind: p.kind, name: p.name, domain: p.domain, timeZone: p.timeZone, ...b24, createdAt: isoTime(p.createdAt)!, updatedAt: isoTime(p.updatedAt)! };
}

const portalId = (params: { id: string }): number => positiveInt32Param(params.id, 'params.id', 'list the portals: GET /v1/portals');

/** /v1/portals: local portals, for operators (management key with vibe:mgmt:portals). */
const portalRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const portals = app.services.portals;

  app.get('/', {
    config: { access: READ },
    schema: { tags, summary: 'List portals', response: { 200: dataEnvelope(Type.Array(PortalSchema)), ...errors() } },
  }, async () => ({ success: true as const, data: (await portals.list()).map(presentPortal) }));

  app.post('/', {
    config: { access: WRITE },
    schema: { tags, summary: 'Create a portal: local, or bitrix24 with webhookUrl or oauth', body: CreatePortalBodySchema, response: { 201: dataEnvelope(PortalSchema), ...errors('WRITE_BLOCKED_READONLY_KEY', 'BITRIX_ERROR', 'BITRIX_UNAVAILABLE', ...BODY_ERRORS) } },
    preValidation: async (request) => {
      if (request.body === undefined) request.body = {};
    },
  }, async (request, reply) => reply.code(201).send({ success: true, data: presentPortal(await portals.create(request.body, auditContextOf(request))) }));

  app.get('/:id', {
    config: { access: READ },
    schema: { tags, summary: 'Get a portal', params: IdParamsSchema, response: { 200: dataEnvelope(PortalSchema), ...errors('VALIDATION_ERROR', 'ENTITY_NOT_FOUND') } },
  }, async (request) => ({ success: true as const, data: presentPortal(await portals.get(portalId(request.params))) }));

  app.patch('/:id', {
    config: { access: WRITE },
    schema: { tags, summary: 'Rename a portal, change its time zone, or replace a bitrix24 portal\'s credentials or limits', params: IdParamsSchema, body: UpdatePortalBodySchema, response: { 200: dataEnvelope(PortalSchema), ...errors('WRITE_BLOCKED_READONLY_KEY', 'ENTITY_NOT_FOUND', 'BITRIX_ERROR', 'BITRIX_UNAVAILABLE', ...BODY_ERRORS) } },
    preValidation: async (request) => {
      if (request.body === undefined) request.body = {};
    },
  }, async (request) => ({ success: true as const, data: presentPortal(await portals.update(portalId(request.params), request.body, auditContextOf(request))) }));

  app.delete('/:id', {
    config: { access: WRITE },
    schema: {
      tags, summary: 'Delete a portal; one with keys or types only with ?force=true',
      params: IdParamsSchema,
      querystring: Type.Object({ force: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])) }, { additionalProperties: false }),
      response: { 204: NoContentSchema(), ...errors('WRITE_BLOCKED_READONLY_KEY', 'VALIDATION_ERROR', 'ENTITY_NOT_FOUND', 'PORTAL_NOT_EMPTY') },
    },
  }, async (request, reply) => {
    await portals.delete(portalId(request.params), request.query.force === 'true', auditContextOf(request));
    return reply.code(204).send();
  });
};

export default portalRoutes;
