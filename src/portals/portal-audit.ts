import type { AuditContext, Changes } from '../domain/audit.js';
import type { Repositories } from '../store/store.js';

/** The audit entry of a portal change, in the write's own transaction (local and bitrix24 portals alike). */
export function recordPortalChange(repos: Repositories, audit: AuditContext, portalId: number, action: 'create' | 'update' | 'delete', changes: Changes): Promise<void> {
  return repos.audit.record({ at: Date.now(), portalId, resource: 'portal', resourceId: String(portalId), action, context: audit, changes });
}
