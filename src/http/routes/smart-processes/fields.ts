import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { FieldsAnswerSchema } from '../../../domain/smart-process-type/schemas.js';
import { dataEnvelope, errorResponses, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import { READ, TAGS } from './shared.js';
import { TYPE_FIELDS_DATA } from '../../../operations/smart-process-types.js';

const answer = { success: true as const, data: TYPE_FIELDS_DATA };

const fieldsRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/fields', {
    config: { access: READ },
    schema: { tags: TAGS, summary: 'Describe the fields of a smart process type', response: { 200: dataEnvelope(FieldsAnswerSchema), ...errorResponses(PORTAL_ACCESS_ERRORS) } },
  }, async () => answer);
};

export default fieldsRoute;
