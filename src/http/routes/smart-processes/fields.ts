import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { FieldsAnswerSchema } from '../../../domain/smart-process-type/schemas.js';
import { dataEnvelope, errorResponses, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import { portalCall } from '../../portal-route.js';
import { READ, TAGS } from './shared.js';
import { typeFieldsData } from '../../../operations/smart-process-types.js';

const fieldsRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/fields', {
    config: { access: READ },
    schema: { tags: TAGS, summary: 'Describe the fields of a smart process type', response: { 200: dataEnvelope(FieldsAnswerSchema), ...errorResponses(PORTAL_ACCESS_ERRORS) } },
  }, async (request) => ({ success: true as const, data: typeFieldsData(portalCall(request).portal) }));
};

export default fieldsRoute;
