import type { AccessService } from '../access/access-service.js';
import type { AuditService } from '../audit/audit-service.js';
import type { KeysService } from '../access/keys-service.js';
import type { UserAuthorization } from '../access/user-authorization.js';
import type { PortalRegistry } from '../portals/registry.js';
import type { PortalsService } from '../portals/portals-service.js';
import type { Store } from '../store/store.js';

/** What routes may use; decorated onto the Fastify instance as `app.services`. */
export interface Services {
  store: Store;
  access: AccessService;
  keys: KeysService;
  portals: PortalsService;
  portalRegistry: PortalRegistry;
  audit: AuditService;
  /** User authorization of application keys (/v1/oauth, /oauth). */
  authorization: UserAuthorization;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}
