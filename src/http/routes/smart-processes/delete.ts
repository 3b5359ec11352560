import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { EntityTypeIdParamsSchema } from '../../../domain/smart-process-type/schemas.js';
import { errorResponses, NoContentSchema, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import { ifMatchOf, portalCall } from '../../portal-route.js';
import { deleteType } from '../../../operations/smart-process-types.js';
import { entityTypeIdFrom, TAGS, WRITE } from './shared.js';

const deleteRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.delete('/:entityTypeId', {
    config: { access: WRITE },
    schema: {
      tags: TAGS,
      summary: 'Delete a smart process type (and every relation that touches it)',
      params: EntityTypeIdParamsSchema,
      response: {
        204: NoContentSchema({ description: 'Deleted; empty body' }),
        ...errorResponses([...PORTAL_ACCESS_ERRORS, 'WRITE_BLOCKED_READONLY_KEY', 'VALIDATION_ERROR', 'SMART_PROCESS_NOT_FOUND', 'METHOD_NOT_ALLOWED', 'PRECONDITION_FAILED', 'BITRIX_ERROR']),
      },
    },
  }, async (request, reply) => {
    const entityTypeId = entityTypeIdFrom(request);
    await deleteType(portalCall(request), entityTypeId, ifMatchOf(request));
    return reply.code(204).send();
  });
};

export default deleteRoute;
