import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CreateTypeBodySchema, TypeCardSchema } from '../../../domain/smart-process-type/schemas.js';
import { BODY_ERRORS, writeEnvelope, errorResponses, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import { portalCall } from '../../portal-route.js';
import { createType } from '../../../operations/smart-process-types.js';
import { sendCard, TAGS, WRITE } from './shared.js';

const createRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/', {
    config: { access: WRITE },
    schema: {
      tags: TAGS,
      summary: 'Create a smart process type',
      body: CreateTypeBodySchema,
      response: { 201: writeEnvelope(TypeCardSchema, 'Created: the card (with warnings when a bitrix24 portal did not keep everything asked)'), ...errorResponses([...PORTAL_ACCESS_ERRORS, 'WRITE_BLOCKED_READONLY_KEY', ...BODY_ERRORS, 'BITRIX_ERROR']) },
    },
  }, async (request, reply) => {
    const call = portalCall(request);
    return sendCard(reply, await createType(call, request.body), call.timeZone, 201);
  });
};

export default createRoute;
