import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { EntityTypeIdParamsSchema, TypeCardSchema } from '../../../domain/smart-process-type/schemas.js';
import { dataEnvelope, errorResponses, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import { portalCall } from '../../portal-route.js';
import { getType } from '../../../operations/smart-process-types.js';
import { entityTypeIdFrom, READ, sendStoredCard, TAGS } from './shared.js';

const getRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/:entityTypeId', {
    config: { access: READ },
    schema: {
      tags: TAGS,
      summary: 'Get one smart process type (the card, with relations and linkedUserFields)',
      params: EntityTypeIdParamsSchema,
      response: { 200: dataEnvelope(TypeCardSchema), ...errorResponses([...PORTAL_ACCESS_ERRORS, 'VALIDATION_ERROR', 'SMART_PROCESS_NOT_FOUND', 'METHOD_NOT_ALLOWED']) },
    },
  }, async (request, reply) => {
    const entityTypeId = entityTypeIdFrom(request);
    const call = portalCall(request);
    return sendStoredCard(reply, await getType(call, entityTypeId), call.timeZone);
  });
};

export default getRoute;
