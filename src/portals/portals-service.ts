import type { InvalidationBus } from '../access/invalidation.js';
import { isValidTimeZone } from '../domain/time.js';
import { ApiError, validationError, type ErrorDetail } from '../errors.js';
import type { Store } from '../store/store.js';
import type { PortalKind, PortalRecord } from '../domain/records.js';
import { CLI_AUDIT, portalChanges, type AuditContext } from '../domain/audit.js';
import { recordPortalChange } from './portal-audit.js';
import { Bitrix24PortalSetup } from './bitrix24/bitrix24-portals.js';
import type { Bitrix24Input } from './bitrix24/portal-credentials.js';

export interface PortalInput extends Bitrix24Input {
  kind?: PortalKind;
  name?: string;
  timeZone?: string;
}

/** bitrix24 fields sent for a local portal. */
function localOnlyProblems(input: Bitrix24Input): ErrorDetail[] {
  return (['webhookUrl', 'oauth', 'limits'] as const).filter((name) => input[name] !== undefined).map((name) => ({ location: `body.${name}`, message: `${name} is only for bitrix24 portals`, fix: 'send "kind": "bitrix24"' }));
}

function timeZoneProblems(timeZone: string | undefined): ErrorDetail[] {
  if (timeZone === undefined || isValidTimeZone(timeZone)) return [];
  return [{ location: 'body.timeZone', message: `"${timeZone}" is not an IANA time zone`, fix: 'e.g. UTC, Europe/Moscow, America/New_York' }];
}

/**
 * Portals: the operations behind /v1/portals and `smartproc portals`. `audit`: who makes
 * the change (a request's context; the CLI's when left out).
 */
export class PortalsService {
  constructor(private readonly store: Store, private readonly bus: InvalidationBus, private readonly bitrix24: Bitrix24PortalSetup | null = null) {}

  private repo() {
    return this.store.read.portals;
  }

  list() {
    return this.repo().list();
  }

  async get(id: number): Promise<PortalRecord> {
    const portal = await this.repo().get(id);
    if (!portal) throw new ApiError('ENTITY_NOT_FOUND', `Portal ${id} not found`);
    return portal;
  }

  async create(input: PortalInput, audit: AuditContext = CLI_AUDIT): Promise<PortalRecord> {
    const problems = timeZoneProblems(input.timeZone);
    if (input.kind === 'bitrix24' && this.bitrix24) return this.bitrix24.create(input, problems, audit);
    if (input.kind === 'bitrix24') problems.push({ location: 'body.kind', message: 'bitrix24 portals are not served by this version yet', fix: 'create a local portal' });
    else problems.push(...localOnlyProblems(input));
    if (problems.length) throw validationError(problems);
    return this.store.write(async ({ repos }) => {
      const portal = await repos.portals.create({ kind: 'local', name: input.name?.trim() || 'Local portal', timeZone: input.timeZone ?? 'UTC' });
      await recordPortalChange(repos, audit, portal.id, 'create', portalChanges(null, portal));
      return portal;
    });
  }

  async update(id: number, changes: { name?: string; timeZone?: string } & Bitrix24Input, audit: AuditContext = CLI_AUDIT): Promise<PortalRecord> {
    const portal = await this.get(id);
    const problems = timeZoneProblems(changes.timeZone);
    if (problems.length) throw validationError(problems);
    if (Bitrix24PortalSetup.touches(changes)) {
      if (!this.bitrix24 || portal.kind !== 'bitrix24') throw validationError(localOnlyProblems(changes));
      await this.bitrix24.update(portal, changes, audit);
    }
    const updated = await this.store.write(async ({ repos }) => {
      const before = await repos.portals.get(id);
      if (!before) return null;
      const after = await repos.portals.update(id, { name: changes.name?.trim() || undefined, timeZone: changes.timeZone });
      const audited = after ? portalChanges(before, after) : {};
      if (Object.keys(audited).length) await recordPortalChange(repos, audit, id, 'update', audited);
      return after;
    });
    // Deleted between the check above and the write.
    if (!updated) throw new ApiError('ENTITY_NOT_FOUND', `Portal ${id} not found`);
    await this.bus.publish({ type: 'portal', id });
    return updated;
  }

  /** A portal that still has keys or types is kept unless `force` is given. */
  async delete(id: number, force: boolean, audit: AuditContext = CLI_AUDIT): Promise<void> {
    for (let round = 1; !(await this.deleteOnce(id, force, audit)); round++) {
      if (round >= 20) throw new ApiError('SERVICE_UNAVAILABLE', `Types kept being created in portal ${id} while it was being deleted; try again`, { retryAfter: 1 });
    }
    await this.bus.publish({ type: 'portal', id });
  }

  /**
   * One try at deleting a portal; false when a type was created in it meanwhile (run again).
   *
   * PostgreSQL locks in the order every write takes its locks in (docs/architecture.md,
   * "Locking"): the portal's types in ascending entityTypeId, then the portal row, which
   * stops new types. A type created between the two was not locked; locking it now would
   * break the order, so the transaction ends and runs again.
   */
  private async deleteOnce(id: number, force: boolean, audit: AuditContext): Promise<boolean> {
    return this.store.write(async ({ repos }) => {
      const { portals, types, keys } = repos;
      const rowLocks = this.store.capabilities.rowLocks;
      const before = await portals.get(id);
      if (!before) throw new ApiError('ENTITY_NOT_FOUND', `Portal ${id} not found`);
      const locked = await types.lockAllInOrder(id);
      if (rowLocks && !(await portals.lockForDelete(id))) throw new ApiError('ENTITY_NOT_FOUND', `Portal ${id} not found`);
      const typeCount = rowLocks ? await types.countForPortal(id) : locked.length;
      if (typeCount !== locked.length) return false;
      const keyCount = await keys.countForPortal(id);
      if (!force && (keyCount || typeCount)) {
        throw new ApiError('PORTAL_NOT_EMPTY', `Portal ${id} still has ${keyCount} key(s) and ${typeCount} smart process type(s)`, { hint: 'Delete them first, or send ?force=true to delete the portal with everything in it.' });
      }
      await portals.delete(id);
      // A forced delete takes the portal's keys and types with it: the portal's entry counts them.
      const changes = portalChanges(before, null);
      if (keyCount) changes.keys = { before: keyCount, after: 0 };
      if (typeCount) changes.types = { before: typeCount, after: 0 };
      await recordPortalChange(repos, audit, id, 'delete', changes);
      return true;
    });
  }
}
