import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { typeNotFound } from '../../../errors.js';
import { EntityTypeIdParamsSchema } from '../../../domain/smart-process-type/schemas.js';
import { hasBodyError } from '../../plugins/input-guard.js';
import { errorResponses, NoContentSchema, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import { ifMatchOf, portalCall } from '../../portal-route.js';
import { deleteType } from '../../../operations/smart-process-types.js';
import { entityTypeIdFrom, TAGS, WRITE } from './shared.js';

const deleteRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.delete('/:entityTypeId', {
    config: { access: WRITE },
    // Contract §4 order: a body DELETE does not use is still checked, after path and existence (the look-up only then: deletes need none).
    preValidation: async (request) => {
      const entityTypeId = entityTypeIdFrom(request);
      if (hasBodyError(request) && !(await portalCall(request).portal.types.has(entityTypeId))) throw typeNotFound(entityTypeId);
    },
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
