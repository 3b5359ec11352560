import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

import { auditContextOf } from '../plugins/auth.js';
import { BODY_ERRORS, dataEnvelope, errorResponses, MANAGEMENT_ACCESS_ERRORS, NoContentSchema } from '../schemas.js';
import { CreateSessionBodySchema, IdParamsSchema, SessionSchema } from './management-schemas.js';
import { isoTime } from '../../domain/records.js';

const WRITE = { kind: 'management', scope: 'vibe:mgmt:keys', write: true } as const;

/** /v1/sessions: 24 h user sessions for application keys of a local portal (mint, end). */
const sessionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/', {
    config: { access: WRITE },
    schema: {
      tags: ['Sessions'],
      summary: 'Mint a session (vibe_session_, 24 h) for an application key and a portal user',
      body: CreateSessionBodySchema,
      response: { 201: dataEnvelope(SessionSchema), ...errorResponses([...MANAGEMENT_ACCESS_ERRORS, 'WRITE_BLOCKED_READONLY_KEY', ...BODY_ERRORS]) },
    },
  }, async (request, reply) => {
    const { session, token } = await app.services.keys.mintSession(request.body, auditContextOf(request));
    return reply.code(201).send({
      success: true,
      data: { id: session.id, token, keyId: session.keyId, portalId: session.portalId, userId: session.userId, expiresAt: isoTime(session.expiresAt)! },
    });
  });

  app.delete('/:id', {
    config: { access: WRITE },
    schema: {
      tags: ['Sessions'],
      summary: 'End a session at once, on every instance (beyond the hosted API)',
      params: IdParamsSchema,
      response: { 204: NoContentSchema(), ...errorResponses([...MANAGEMENT_ACCESS_ERRORS, 'WRITE_BLOCKED_READONLY_KEY', 'ENTITY_NOT_FOUND']) },
    },
  }, async (request, reply) => {
    await app.services.keys.deleteSession(request.params.id, auditContextOf(request));
    return reply.code(204).send();
  });
};

export default sessionRoutes;
