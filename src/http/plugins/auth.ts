import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { rateLimitHeaders, type AccessService, type Principal, type RouteAccess } from '../../access/access-service.js';
import type { AuditContext, ManagementCaller } from '../../domain/audit.js';
import { ApiError } from '../../errors.js';
import type { Portal } from '../../portals/portal.js';
import type { PortalRegistry } from '../../portals/registry.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route; absent = public. */
    access?: RouteAccess;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** The portal of the calling key (portal routes only). */
export function portalOf(request: FastifyRequest, registry: PortalRegistry): Portal {
  const portal = request.principal?.portal;
  if (!portal) throw new ApiError('INTERNAL_ERROR', 'portal route without a portal key');
  const found = registry.portalFor(portal);
  const session = request.principal?.session;
  return session?.bitrix24Tokens && found.forSession ? found.forSession(session) : found;
}

/**
 * Who makes a change and from where, as the audit trail records it: the calling key
 * (id, kind), the portal user it acts as, the request id and the client address
 * (TRUST_PROXY applies). Passed explicitly down to the store write.
 */
export function auditContextOf(request: FastifyRequest): AuditContext {
  const principal = principalOf(request);
  return { actor: 'key', keyId: principal.key.id, keyKind: principal.key.kind, userId: principal.userId, requestId: request.id, clientIp: request.ip };
}

/** A management call: the calling key (for the rules on what it may do) and its audit context. */
export function managementCaller(request: FastifyRequest): ManagementCaller {
  return { key: principalOf(request).key, audit: auditContextOf(request) };
}

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new ApiError('INTERNAL_ERROR', 'route without access configuration');
  return request.principal;
}

/**
 * Runs the check order of contract §5 on every route that declares `config.access`: the
 * check is added to those routes' own onRequest hooks when they are registered (after
 * the global hooks, so an answer refused here still carries its X-Request-Id).
 */
export default fp(async function authPlugin(app: FastifyInstance, options: { access: AccessService }) {
  app.decorateRequest('principal', null);
  // src/http/portal-route.ts: the request's context as its portal sees it.
  app.decorateRequest('portalContext', null);
  app.addHook('onRoute', (route) => {
    const access = route.config?.access;
    if (!access) return;
    const check = async (request: FastifyRequest, reply: FastifyReply) => {
      const apiKey = request.headers['x-api-key'];
      request.principal = await options.access.check({ apiKey: Array.isArray(apiKey) ? apiKey[0] : apiKey, authorization: request.headers.authorization, ip: request.ip }, access);
      if (request.principal.rateLimit) reply.headers(rateLimitHeaders(request.principal.rateLimit));
    };
    route.onRequest = [check, ...(route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest])];
    const { writesWith } = access;
    if (!writesWith) return;
    // The body says whether the request writes: row 8 for a write, then row 9, once it is parsed (before any handler check).
    const afterBody = async (request: FastifyRequest, reply: FastifyReply) => {
      const principal = principalOf(request);
      if (writesWith(request.body)) {
        const refusal = options.access.refusal(principal, { ...access, write: true });
        if (refusal) throw refusal;
      }
      principal.rateLimit = await options.access.consumeRate(principal.key);
      if (principal.rateLimit) reply.headers(rateLimitHeaders(principal.rateLimit));
    };
    route.preValidation = [afterBody, ...(route.preValidation === undefined ? [] : Array.isArray(route.preValidation) ? route.preValidation : [route.preValidation])];
  });
});
