import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../../../domain/list-query.js';
import { TypeListItemSchema } from '../../../domain/smart-process-type/schemas.js';
import { BODY_ERRORS, documentationOnly, errorResponses, listEnvelope, PORTAL_ACCESS_ERRORS, UncheckedInput } from '../../schemas.js';
import { listTypes } from './list.js';
import { READ, TAGS } from './shared.js';

const SearchBodyDoc = Type.Object({
  filter: Type.Optional(Type.Object({}, { additionalProperties: true, description: '{"field": value} or {"field": {"$op": value}}; $in takes an array' })),
  select: Type.Optional(Type.Array(Type.String())),
  sort: Type.Optional(Type.String()),
  order: Type.Optional(Type.Object({}, { additionalProperties: Type.String({ enum: ['asc', 'desc'] }) })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
}, { additionalProperties: false });

const searchRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/search', {
    config: { access: READ },
    validatorCompiler: documentationOnly,
    schema: {
      tags: TAGS,
      summary: 'Search smart process types (a read: allowed for read-only keys)',
      body: UncheckedInput(SearchBodyDoc),
      response: { 200: listEnvelope(TypeListItemSchema), ...errorResponses([...PORTAL_ACCESS_ERRORS, ...BODY_ERRORS, 'INVALID_FILTER_OPERATOR']) },
    },
  }, async (request, reply) => listTypes(request, reply, request.body ?? {}, 'body'));
};

export default searchRoute;
