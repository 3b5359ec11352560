import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { DEFAULT_LIMIT, MAX_LIMIT, type Source } from '../../../domain/list-query.js';
import { listTypes as listTypesOf } from '../../../operations/smart-process-types.js';
import { TypeListItemSchema } from '../../../domain/smart-process-type/schemas.js';
import { documentationOnly, errorResponses, listEnvelope, PORTAL_ACCESS_ERRORS, UncheckedInput } from '../../schemas.js';
import { portalCall } from '../../portal-route.js';
import { READ, TAGS } from './shared.js';

const FilterDoc = Type.Object({}, {
  additionalProperties: true,
  description: 'filter[field]=value (equal), filter[field][]=v1&filter[field][]=v2 (in), filter[field][$op]=value with $eq $ne $gt $gte $lt $lte $contains $in $nin ($in/$nin: comma-separated), ' +
    'Bitrix24 prefixes filter[>=field]=value (>= > <= < ! != % = @ !@), or Bitrix24 operators as keys filter[field][>=]=value. Mixable; AND-ed.',
});

export const ListQueryDoc = Type.Object({
  filter: Type.Optional(FilterDoc),
  select: Type.Optional(Type.String({ description: 'comma-separated list fields; unknown names are ignored' })),
  sort: Type.Optional(Type.String({ description: 'a field, "-field" for descending; several comma-separated; or sort[field]=asc|desc' })),
  order: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'order[field]=asc|desc' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT, description: 'records in the answer (above 50 too); the same as pageSize' })),
  pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT, description: 'the same as limit; both given and different: 400' })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
  autoWindow: Type.Optional(Type.Boolean({ description: 'accepted and not needed (docs/api.md)' })),
});

/** List and search share this: parse (400s), ask the portal, present (the JSON text is written directly). */
export async function listTypes(request: FastifyRequest, reply: FastifyReply, raw: unknown, source: Source) {
  // A string, not a Buffer: Node writes the headers and a string body in one piece; a Buffer body went out
  // as a second write and the list's p99 grew several-fold on the bench.
  return reply.type('application/json; charset=utf-8').send((await listTypesOf(portalCall(request), raw, source)).body);
}

const listRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/', {
    config: { access: READ },
    validatorCompiler: documentationOnly,
    schema: {
      tags: TAGS,
      summary: 'List smart process types',
      querystring: UncheckedInput(ListQueryDoc),
      response: { 200: listEnvelope(TypeListItemSchema), ...errorResponses([...PORTAL_ACCESS_ERRORS, 'VALIDATION_ERROR', 'INVALID_FILTER_OPERATOR']) },
    },
  }, async (request, reply) => listTypes(request, reply, request.query, 'query'));
};

export default listRoute;
