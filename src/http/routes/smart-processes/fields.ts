import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { describeFields } from '../../../domain/smart-process-type/fields.js';
import { FieldsAnswerSchema } from '../../../domain/smart-process-type/schemas.js';
import { dataEnvelope, errorResponses, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import { READ, TAGS } from './shared.js';

const answer = { success: true as const, data: describeFields() };

const fieldsRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/fields', {
    config: { access: READ },
    schema: { tags: TAGS, summary: 'Describe the fields of a smart process type', response: { 200: dataEnvelope(FieldsAnswerSchema), ...errorResponses(PORTAL_ACCESS_ERRORS) } },
  }, async () => answer);
};

export default fieldsRoute;
