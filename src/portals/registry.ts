import { ApiError } from '../errors.js';
import type { Store } from '../store/database.js';
import type { PortalRecord } from '../store/repositories/portals-repository.js';
import { LocalPortal } from './local/local-portal.js';
import type { Portal } from './portal.js';

/** Gives the Portal implementation for a portal record. */
export class PortalRegistry {
  constructor(private readonly store: Store) {}

  for(record: PortalRecord): Portal {
    if (record.kind === 'local') return new LocalPortal(record, this.store);
    throw new ApiError('TOKEN_MISSING', 'The API key has no configured tokens', { hint: 'Bitrix24 portals are not served by this version of smartproc yet.' });
  }
}
