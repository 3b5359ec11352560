import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { EntityTypeIdParamsSchema, PatchTypeBodySchema, TypeCardSchema } from '../../../domain/smart-process-type/schemas.js';
import { BODY_ERRORS, writeEnvelope, errorResponses, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import type { TypeCard } from '../../../domain/smart-process-type/card.js';
import { ifMatchOf, portalCall } from '../../portal-route.js';
import { getType, updateType } from '../../../operations/smart-process-types.js';
import { entityTypeIdFrom, sendCard, TAGS, WRITE } from './shared.js';

/** The card the existence check found, per request: the write may start from it (WriteOptions.seen). */
const seenCards = new WeakMap<object, TypeCard>();

const updateRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.patch('/:entityTypeId', {
    config: { access: WRITE },
    // Contract §4 order: access → path → existence → body. Fastify validates the body after preValidation.
    preValidation: async (request) => {
      const entityTypeId = entityTypeIdFrom(request);
      seenCards.set(request, await getType(portalCall(request), entityTypeId));
      if (request.body === undefined) request.body = {};
    },
    schema: {
      tags: TAGS,
      summary: 'Update a smart process type: only the fields sent change',
      description: 'A present relations side replaces that side; linkedUserFields is a full overwrite; {} changes nothing. If-Match with the ETag makes the edit safe against concurrent changes (412 when stale).',
      params: EntityTypeIdParamsSchema,
      body: PatchTypeBodySchema,
      response: {
        200: writeEnvelope(TypeCardSchema, 'The full card after the update (with warnings when a bitrix24 portal did not keep everything asked)'),
        ...errorResponses([...PORTAL_ACCESS_ERRORS, 'WRITE_BLOCKED_READONLY_KEY', 'SMART_PROCESS_NOT_FOUND', 'METHOD_NOT_ALLOWED', ...BODY_ERRORS, 'PRECONDITION_FAILED', 'BITRIX_ERROR']),
      },
    },
  }, async (request, reply) => {
    const entityTypeId = entityTypeIdFrom(request);
    const call = portalCall(request);
    return sendCard(reply, await updateType(call, entityTypeId, request.body, ifMatchOf(request), seenCards.get(request)), call.timeZone);
  });
};

export default updateRoute;
