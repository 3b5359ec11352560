import type { InvalidationBus } from '../access/invalidation.js';
import { isValidTimeZone } from '../domain/time.js';
import { ApiError, validationError, type ErrorDetail } from '../errors.js';
import type { Store } from '../store/store.js';
import type { PortalKind, PortalRecord } from '../domain/records.js';

export interface PortalInput {
  kind?: PortalKind;
  name?: string;
  timeZone?: string;
}

function timeZoneProblems(timeZone: string | undefined): ErrorDetail[] {
  if (timeZone === undefined || isValidTimeZone(timeZone)) return [];
  return [{ location: 'body.timeZone', message: `"${timeZone}" is not an IANA time zone`, fix: 'e.g. UTC, Europe/Moscow, America/New_York' }];
}

/** Local portals: the operations behind /v1/portals and `smartproc portals`. */
export class PortalsService {
  constructor(private readonly store: Store, private readonly bus: InvalidationBus) {}

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

  async create(input: PortalInput): Promise<PortalRecord> {
    const problems = timeZoneProblems(input.timeZone);
    if (input.kind === 'bitrix24') problems.push({ location: 'body.kind', message: 'bitrix24 portals are not served by this version yet', fix: 'create a local portal' });
    if (problems.length) throw validationError(problems);
    return this.store.write(({ repos }) => repos.portals.create({ kind: 'local', name: input.name?.trim() || 'Local portal', timeZone: input.timeZone ?? 'UTC' }));
  }

  async update(id: number, changes: { name?: string; timeZone?: string }): Promise<PortalRecord> {
    await this.get(id);
    const problems = timeZoneProblems(changes.timeZone);
    if (problems.length) throw validationError(problems);
    const updated = await this.store.write(({ repos }) => repos.portals.update(id, { name: changes.name?.trim() || undefined, timeZone: changes.timeZone }));
    // Deleted between the check above and the write.
    if (!updated) throw new ApiError('ENTITY_NOT_FOUND', `Portal ${id} not found`);
    await this.bus.publish({ type: 'portal', id });
    return updated;
  }

  /** A portal that still has keys or types is kept unless `force` is given. */
  async delete(id: number, force: boolean): Promise<void> {
    for (let round = 1; !(await this.deleteOnce(id, force)); round++) {
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
  private async deleteOnce(id: number, force: boolean): Promise<boolean> {
    return this.store.write(async ({ repos }) => {
      const { portals, types, keys } = repos;
      const rowLocks = this.store.capabilities.rowLocks;
      if (!(await portals.get(id))) throw new ApiError('ENTITY_NOT_FOUND', `Portal ${id} not found`);
      const locked = await types.lockAllInOrder(id);
      if (rowLocks && !(await portals.lockForDelete(id))) throw new ApiError('ENTITY_NOT_FOUND', `Portal ${id} not found`);
      const typeCount = rowLocks ? await types.countForPortal(id) : locked.length;
      if (typeCount !== locked.length) return false;
      if (!force) {
        const keyCount = await keys.countForPortal(id);
        if (keyCount || typeCount) {
          throw new ApiError('PORTAL_NOT_EMPTY', `Portal ${id} still has ${keyCount} key(s) and ${typeCount} smart process type(s)`, { hint: 'Delete them first, or send ?force=true to delete the portal with everything in it.' });
        }
      }
      await portals.delete(id);
      return true;
    });
  }
}
