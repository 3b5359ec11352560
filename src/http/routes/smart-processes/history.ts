import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { parseAuditQuery } from '../../../domain/audit.js';
import { EntityTypeIdParamsSchema } from '../../../domain/smart-process-type/schemas.js';
import { typeNotFound } from '../../../errors.js';
import { documentationOnly, errorResponses, listEnvelope, PORTAL_ACCESS_ERRORS, UncheckedInput } from '../../schemas.js';
import { portalCall } from '../../portal-route.js';
import { AuditEntrySchema, PageQueryDoc, presentAuditEntry } from '../audit.js';
import { entityTypeIdFrom, READ, TAGS } from './shared.js';

const historyRoute: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/:entityTypeId/history', {
    config: { access: READ },
    validatorCompiler: documentationOnly,
    schema: {
      tags: TAGS,
      summary: "A type's changes, newest first (beyond the hosted API)",
      description: 'The audit entries of this type in the portal of the key: its own changes, and relation changes made from the other end. A deleted type keeps its history for the retention period; a type that never had an entry and does not exist is 404.',
      params: EntityTypeIdParamsSchema,
      querystring: UncheckedInput(Type.Object(PageQueryDoc, { additionalProperties: false })),
      response: { 200: listEnvelope(AuditEntrySchema), ...errorResponses([...PORTAL_ACCESS_ERRORS, 'VALIDATION_ERROR', 'SMART_PROCESS_NOT_FOUND']) },
    },
  }, async (request) => {
    const entityTypeId = entityTypeIdFrom(request);
    const { portal } = portalCall(request);
    const exists = () => portal.types.has(entityTypeId);
    // Contract order: existence (404) before the query (400); existence is asked only when it decides.
    let page;
    try {
      page = parseAuditQuery(request.query, false);
    } catch (error) {
      if (!(await exists())) throw typeNotFound(entityTypeId);
      throw error;
    }
    const { limit, offset } = page;
    const { entries, total } = await app.services.audit.list({ portalId: portal.record.id, resource: 'type', resourceId: String(entityTypeId) }, { limit, offset });
    if (total === 0 && !(await exists())) throw typeNotFound(entityTypeId);
    return { success: true as const, data: entries.map(presentAuditEntry), meta: { total, limit, offset, hasMore: offset + entries.length < total } };
  });
};

export default historyRoute;
