import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { itemsBatchWrites, ITEM_ACTIONS, MAX_BATCH_ITEMS, parseItemsBatch } from '../../../domain/batch.js';
import { CreateTypeBodySchema, PatchTypeBodySchema, TypeCardSchema } from '../../../domain/smart-process-type/schemas.js';
import { runItemsBatch } from '../../../operations/batch.js';
import { BODY_ERRORS, dataEnvelope, documentationOnly, errorResponses, PORTAL_ACCESS_ERRORS, UncheckedInput } from '../../schemas.js';
import { batchDeps, refuseIfMatch, sendBatch } from '../../batch-route.js';
import { READ, TAGS } from './shared.js';

const IdItem = Type.Object({ entityTypeId: Type.Integer({ minimum: 1 }) }, { additionalProperties: false, description: 'get and delete: the type' });
const UpdateItem = Type.Intersect([Type.Object({ entityTypeId: Type.Integer({ minimum: 1, description: 'the type to update (the path of PATCH)' }) }), PatchTypeBodySchema], { description: 'update: entityTypeId and the PATCH fields' });

const ItemsBatchBodyDoc = Type.Object({
  action: Type.String({ enum: [...ITEM_ACTIONS] }),
  items: Type.Array(Type.Union([CreateTypeBodySchema, UpdateItem, IdItem]), { minItems: 1, maxItems: MAX_BATCH_ITEMS, description: `1 to ${MAX_BATCH_ITEMS} items; more is 400 BATCH_LIMIT_EXCEEDED. create: the body of POST; update: entityTypeId and the PATCH fields; get, delete: {"entityTypeId"}` }),
}, { additionalProperties: false });

export const BatchItemErrorSchema = Type.Object({
  code: Type.String(),
  message: Type.String(),
  status: Type.Integer({ description: 'the HTTP status the single route would have answered' }),
  hint: Type.Optional(Type.String()),
  details: Type.Optional(Type.Array(Type.Object({ location: Type.String(), message: Type.String(), fix: Type.Optional(Type.String()) }))),
  retryAfter: Type.Optional(Type.Integer()),
});
export const BatchSummarySchema = Type.Object({ total: Type.Integer(), succeeded: Type.Integer(), failed: Type.Integer() });

const ItemsBatchAnswer = Type.Object({
  action: Type.String({ enum: [...ITEM_ACTIONS] }),
  results: Type.Array(Type.Union([
    Type.Object({ success: Type.Literal(true), data: Type.Union([TypeCardSchema, Type.Null()], { description: 'the card (create, update, get); null for delete' }) }),
    Type.Object({ success: Type.Literal(false), error: BatchItemErrorSchema }),
  ]), { description: 'one entry per item, in the order sent: what the single route would have answered' }),
  summary: BatchSummarySchema,
});

const itemsBatchRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/batch', {
    // create, update and delete need a READWRITE key: checked once the body is read (row 8, then the rate limit: src/http/plugins/auth.ts).
    config: { access: { ...READ, writesWith: itemsBatchWrites } },
    validatorCompiler: documentationOnly,
    schema: {
      tags: TAGS,
      operationId: 'batchSmartProcesses',
      summary: `Create, update, delete or get up to ${MAX_BATCH_ITEMS} smart process types in one request`,
      description:
        'Each item is checked and applied exactly as its single route (POST, PATCH, DELETE, GET one) would, one after another in the order sent. ' +
        'A failed item does not stop the others and undoes nothing: each write is atomic on its own, the batch is not one transaction. ' +
        'The answer is 200 with each item\'s result or error in order and a summary. The request counts once against the key\'s rate limit. ' +
        'create, update and delete need a READWRITE key; get is a read.',
      body: UncheckedInput(ItemsBatchBodyDoc),
      response: { 200: dataEnvelope(ItemsBatchAnswer), ...errorResponses([...PORTAL_ACCESS_ERRORS, 'WRITE_BLOCKED_READONLY_KEY', ...BODY_ERRORS, 'BATCH_LIMIT_EXCEEDED']) },
    },
  }, async (request, reply) => {
    refuseIfMatch(request);
    const { action, items } = parseItemsBatch(request.body);
    return sendBatch(reply, await runItemsBatch(action, items, batchDeps(request)));
  });
};

export default itemsBatchRoute;
