import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { RouteAccess } from '../../access/access-service.js';
import { presentKey } from '../../access/key-model.js';
import { positiveInt32Param } from '../../domain/input-rules.js';
import { managementCaller } from '../plugins/auth.js';
import { BODY_ERRORS, dataEnvelope, errorResponses, MANAGEMENT_ACCESS_ERRORS, NoContentSchema } from '../schemas.js';
import { CreateKeyBodySchema, KeyKindSchema, IdParamsSchema, KeySchema, KeyWithSecretSchema, RotateKeyBodySchema, UpdateKeyBodySchema } from './management-schemas.js';
import { isoTime } from '../../domain/records.js';

const READ: RouteAccess = { kind: 'management', scope: 'vibe:mgmt:keys' };
const WRITE: RouteAccess = { ...READ, write: true };
const tags = ['Keys'];
const errors = (...extra: Parameters<typeof errorResponses>[0]) => errorResponses([...MANAGEMENT_ACCESS_ERRORS, ...extra]);

/** /v1/keys: keys of every kind, for operators (management key with vibe:mgmt:keys). */
const keyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const keys = app.services.keys;

  app.get('/', {
    config: { access: READ },
    schema: {
      tags, summary: 'List keys (never their secrets)',
      querystring: Type.Object({ portalId: Type.Optional(Type.String({ pattern: '^[0-9]+$' })), kind: Type.Optional(KeyKindSchema()) }, { additionalProperties: false }),
      response: { 200: dataEnvelope(Type.Array(KeySchema)), ...errors('VALIDATION_ERROR') },
    },
  }, async (request) => {
    const { query } = request;
    const portalId = query.portalId === undefined ? undefined : positiveInt32Param(query.portalId, 'query.portalId', 'list the portals: GET /v1/portals');
    const list = await keys.list({ portalId, kind: query.kind });
    return { success: true as const, data: list.map(presentKey) };
  });

  app.post('/', {
    config: { access: WRITE },
    schema: { tags, summary: 'Create a key; the secret is in the answer, once', body: CreateKeyBodySchema, response: { 201: dataEnvelope(KeyWithSecretSchema), ...errors('WRITE_BLOCKED_READONLY_KEY', ...BODY_ERRORS) } },
  }, async (request, reply) => {
    const { key, secret } = await keys.create(request.body, managementCaller(request));
    return reply.code(201).send({ success: true, data: { ...presentKey(key), secret } });
  });

  app.get('/:id', {
    config: { access: READ },
    schema: { tags, summary: 'Get a key', params: IdParamsSchema, response: { 200: dataEnvelope(KeySchema), ...errors('ENTITY_NOT_FOUND') } },
  }, async (request) => ({ success: true as const, data: presentKey(await keys.get(request.params.id)) }));

  app.patch('/:id', {
    config: { access: WRITE },
    schema: { tags, summary: 'Change a key (takes effect on the next request, on every instance)', params: IdParamsSchema, body: UpdateKeyBodySchema, response: { 200: dataEnvelope(KeySchema), ...errors('WRITE_BLOCKED_READONLY_KEY', 'ENTITY_NOT_FOUND', ...BODY_ERRORS) } },
  }, async (request) => {
    const key = await keys.update(request.params.id, request.body ?? {}, managementCaller(request));
    return { success: true as const, data: presentKey(key) };
  });

  app.delete('/:id', {
    config: { access: WRITE },
    schema: { tags, summary: 'Delete a key (refused on the next request, on every instance)', params: IdParamsSchema, response: { 204: NoContentSchema(), ...errors('WRITE_BLOCKED_READONLY_KEY', 'ENTITY_NOT_FOUND') } },
  }, async (request, reply) => {
    await keys.delete(request.params.id, managementCaller(request));
    return reply.code(204).send();
  });

  app.post('/:id/rotate', {
    config: { access: WRITE },
    schema: { tags, summary: 'Rotate a key: a new secret, once; the old one stops at once or after gracePeriodSeconds', params: IdParamsSchema, body: RotateKeyBodySchema, response: { 200: dataEnvelope(KeyWithSecretSchema), ...errors('WRITE_BLOCKED_READONLY_KEY', 'ENTITY_NOT_FOUND', ...BODY_ERRORS) } },
    preValidation: async (request) => {
      if (request.body === undefined) request.body = {};
    },
  }, async (request) => {
    const grace = request.body.gracePeriodSeconds ?? 0;
    const { key, secret, previousSecretExpiresAt } = await keys.rotate(request.params.id, grace, managementCaller(request));
    return { success: true as const, data: { ...presentKey(key), secret, previousSecretExpiresAt: isoTime(previousSecretExpiresAt)! } };
  });
};

export default keyRoutes;
