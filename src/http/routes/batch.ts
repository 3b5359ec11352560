import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { BATCH_ENTITIES, MAX_BATCH_CALLS, MAX_CALL_ID_LENGTH, parseBatchCalls } from '../../domain/batch.js';
import { runBatchCalls } from '../../operations/batch.js';
import { BODY_ERRORS, dataEnvelope, documentationOnly, errorResponses, PORTAL_ACCESS_ERRORS, UncheckedInput } from '../schemas.js';
import { batchDeps, refuseIfMatch, sendBatch } from '../batch-route.js';
import { BatchItemErrorSchema, BatchSummarySchema } from './smart-processes/batch.js';

const entities = [...BATCH_ENTITIES.keys()];
const actions = [...new Set([...BATCH_ENTITIES.values()].flat())];

const CallDoc = Type.Object({
  id: Type.String({ minLength: 1, maxLength: MAX_CALL_ID_LENGTH, description: 'unique within the batch; the answer is keyed by it' }),
  entity: Type.String({ description: `served: ${entities.join(', ')}; another is a per-call ENTITY_NOT_SUPPORTED` }),
  action: Type.String({ enum: actions }),
  entityId: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: '^[0-9]+$' })], { description: 'the id in the direct route\'s path (get, update, delete): the entityTypeId' })),
  params: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'list: the query parameters of GET; search: the search body; create: the POST body; update: the PATCH body' })),
}, { additionalProperties: false });

const BatchBodyDoc = Type.Object({
  calls: Type.Array(CallDoc, { minItems: 1, maxItems: MAX_BATCH_CALLS, description: `1 to ${MAX_BATCH_CALLS} calls; more is 400 BATCH_LIMIT_EXCEEDED` }),
}, { additionalProperties: false });

const BatchAnswer = Type.Object({
  results: Type.Object({}, { additionalProperties: true, description: 'by call id: exactly the `data` its direct route answers (delete: null)' }),
  totals: Type.Object({}, { additionalProperties: Type.Integer(), description: 'by call id, for list and search: meta.total' }),
  errors: Type.Object({}, { additionalProperties: BatchItemErrorSchema, description: 'by call id: the error its direct route would answer' }),
  summary: BatchSummarySchema,
});

/** POST /v1/batch: several calls in one request (docs/api.md, "Batches"). */
const batchRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/', {
    // Each call is checked as its direct route (scope, access mode) by the batch service.
    config: { access: { kind: 'portal' } },
    validatorCompiler: documentationOnly,
    schema: {
      tags: ['Batch'],
      operationId: 'batch',
      summary: `Run up to ${MAX_BATCH_CALLS} calls in one request`,
      description:
        'Calls run one after another in the order sent; each is checked (scopes, access mode) and served exactly as its direct route. ' +
        'A failed call is reported under `errors` and does not stop the others. The request counts once against the key\'s rate limit. ' +
        'On bitrix24 portals neighbouring reads are served from the cache and combined into native batch calls.',
      body: UncheckedInput(BatchBodyDoc),
      response: { 200: dataEnvelope(BatchAnswer), ...errorResponses([...PORTAL_ACCESS_ERRORS, ...BODY_ERRORS, 'BATCH_LIMIT_EXCEEDED']) },
    },
  }, async (request, reply) => {
    refuseIfMatch(request);
    const calls = parseBatchCalls(request.body);
    return sendBatch(reply, await runBatchCalls(calls, batchDeps(request)));
  });
};

export default batchRoute;
