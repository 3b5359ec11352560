import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

import { BODY_ERRORS, dataEnvelope, errorResponses, MANAGEMENT_ACCESS_ERRORS } from '../schemas.js';
import { CreateSessionBodySchema, SessionSchema } from './management-schemas.js';
import { isoTime } from '../../domain/records.js';

/** POST /v1/sessions: a 24 h user session for an application key of a local portal. */
const sessionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/', {
    config: { access: { kind: 'management', scope: 'vibe:mgmt:keys', write: true } },
    schema: {
      tags: ['Sessions'],
      summary: 'Mint a session (vibe_session_, 24 h) for an application key and a portal user',
      body: CreateSessionBodySchema,
      response: { 201: dataEnvelope(SessionSchema), ...errorResponses([...MANAGEMENT_ACCESS_ERRORS, 'WRITE_BLOCKED_READONLY_KEY', ...BODY_ERRORS]) },
    },
  }, async (request, reply) => {
    const { session, token } = await app.services.keys.mintSession(request.body);
    return reply.code(201).send({
      success: true,
      data: { id: session.id, token, keyId: session.keyId, portalId: session.portalId, userId: session.userId, expiresAt: isoTime(session.expiresAt)! },
    });
  });
};

export default sessionRoutes;
