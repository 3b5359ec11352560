import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../../../domain/list-query.js';
import { TypeListItemSchema } from '../../../domain/smart-process-type/schemas.js';
import { BODY_ERRORS, documentationOnly, errorResponses, listEnvelope, PORTAL_ACCESS_ERRORS, UncheckedInput } from '../../schemas.js';
import { listTypes } from './list.js';
import { READ, TAGS } from './shared.js';

const Direction = Type.String({ enum: ['asc', 'desc'] });

const SearchBodyDoc = Type.Object({
  filter: Type.Optional(Type.Object({}, {
    additionalProperties: true,
    description: 'Three styles, mixable: {"field": value} (equal), {"field": [v1, v2]} (in), {"field": {"$gte": v}} with $eq $ne $gt $gte $lt $lte $contains $in $nin, ' +
      '{">=field": v} with the Bitrix24 prefixes >= > <= < ! != % = @ !@, and {"field": {">=": v, "%": "text"}} (Bitrix24 operators as keys). AND-ed.',
    examples: [{ entityTypeId: { '>=': 1052 } }, { '%title': 'supply', isStagesEnabled: true, entityTypeId: { $in: [1032, 1034] } }],
  })),
  select: Type.Optional(Type.Array(Type.String(), { description: 'list fields to return; unknown names are ignored' })),
  sort: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: Direction }), Type.String()], { description: '{"createdTime": "desc"}, or "title" / "-createdTime"', examples: [{ createdTime: 'desc' }] })),
  order: Type.Optional(Type.Object({}, { additionalProperties: Direction })),
  pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT, description: 'records in the answer (above 50 too: the hosted API\'s auto-pagination); the same as limit' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT, description: 'the same as pageSize; both given and different: 400' })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
  autoWindow: Type.Optional(Type.Boolean({ description: 'accepted and not needed: smartproc pages any list without date windows (docs/api.md)' })),
}, { additionalProperties: false, examples: [{ filter: {}, sort: {}, pageSize: 20 }] });

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
  }, async (request, reply) => listTypes(request, reply, request.body, 'body'));
};

export default searchRoute;
