import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { describeFields } from '../../../domain/smart-process-type/fields.js';
import { FieldsAnswerSchema } from '../../../domain/smart-process-type/schemas.js';
import { dataEnvelope, errorResponses, PORTAL_ACCESS_ERRORS } from '../../schemas.js';
import { portalCall } from '../../portal-route.js';
import { READ, TAGS } from './shared.js';

/** The answer per set of read-only flags (one per portal kind): /fields tells the truth for the caller's portal. */
const answers = new Map<string, { success: true; data: ReturnType<typeof describeFields> }>();

function answerFor(readOnly: readonly string[] = []) {
  const key = readOnly.join(',');
  let answer = answers.get(key);
  if (!answer) answers.set(key, (answer = { success: true as const, data: describeFields(readOnly) }));
  return answer;
}

const fieldsRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/fields', {
    config: { access: READ },
    schema: { tags: TAGS, summary: 'Describe the fields of a smart process type', response: { 200: dataEnvelope(FieldsAnswerSchema), ...errorResponses(PORTAL_ACCESS_ERRORS) } },
  }, async (request) => answerFor(portalCall(request).portal.types.readOnlyFlags));
};

export default fieldsRoute;
