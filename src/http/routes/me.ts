import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { RouteAccess } from '../../access/access-service.js';

import { Nullable } from '../../domain/input-rules.js';
import { principalOf } from '../plugins/auth.js';
import { dataEnvelope, errorResponses } from '../schemas.js';
import { isoTime } from '../../domain/records.js';

export interface CatalogRoute {
  method: string;
  path: string;
  access: RouteAccess;
}

const MeSchema = Type.Object({
  kind: Type.String(),
  keyId: Type.String(),
  keyPrefix: Type.String(),
  keySuffix: Type.String(),
  name: Type.String(),
  portal: Nullable(Type.Object({ id: Type.Integer(), kind: Type.String(), domain: Type.String(), timeZone: Type.String() })),
  scopes: Type.Array(Type.String()),
  accessMode: Type.String(),
  expiresAt: Nullable(Type.String({ format: 'date-time' })),
  rateLimit: Type.Object({ requestsPerSecond: Nullable(Type.Integer()) }),
  allowedIps: Type.Array(Type.String()),
  currentUser: Nullable(Type.Object({ bitrixUserId: Type.Integer() })),
  session: Nullable(Type.Object({
    id: Type.String(),
    expiresAt: Type.String({ format: 'date-time' }),
    user: Type.Object({ id: Type.Integer(), name: Nullable(Type.String()), email: Nullable(Type.String()) }, { description: 'the user the session acts as (user authorization: as the consent page or Bitrix24 user.current gave it)' }),
  })),
  routes: Type.Array(Type.Object({ method: Type.String(), path: Type.String() })),
});

/** GET /v1/me: who the caller is, and what it may call. */
const meRoutes: FastifyPluginAsyncTypebox<{ catalog: CatalogRoute[] }> = async (app, options) => {
  app.get('/', {
    config: { access: { kind: 'any' } },
    schema: { tags: ['Platform'], summary: 'Who am I: the calling key, its portal, user, limits and the routes it may call', response: { 200: dataEnvelope(MeSchema), ...errorResponses(['MISSING_API_KEY', 'INVALID_API_KEY', 'IP_NOT_ALLOWED', 'TOKEN_MISSING', 'INVALID_SESSION', 'TOKEN_EXPIRED', 'SESSION_APP_MISMATCH', 'RATE_LIMITED']) } },
  }, async (request) => {
    const principal = principalOf(request);
    const { key, portal, session, userId } = principal;
    return {
      success: true as const,
      data: {
        kind: key.kind,
        keyId: key.id,
        keyPrefix: key.keyPrefix,
        keySuffix: key.keySuffix,
        name: key.name,
        portal: portal ? { id: portal.id, kind: portal.kind, domain: portal.domain, timeZone: portal.timeZone } : null,
        scopes: key.scopes,
        accessMode: key.accessMode,
        expiresAt: isoTime(key.expiresAt),
        rateLimit: { requestsPerSecond: key.requestsPerSecond },
        allowedIps: key.allowedIps,
        currentUser: userId === null ? null : { bitrixUserId: userId },
        session: session ? { id: session.id, expiresAt: isoTime(session.expiresAt)!, user: { id: session.userId, name: session.userName, email: session.userEmail } } : null,
        routes: options.catalog.filter((r) => app.services.access.mayCall(principal, r.access)).map(({ method, path }) => ({ method, path })),
      },
    };
  });
};

export default meRoutes;
