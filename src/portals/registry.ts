import type { InvalidationBus } from '../access/invalidation.js';
import { ApiError } from '../errors.js';
import type { Store } from '../store/database.js';
import { TypeCardCache } from './local/type-card-cache.js';
import type { PortalRecord } from '../store/repositories/portals-repository.js';
import { LocalPortal } from './local/local-portal.js';
import type { Portal } from './portal.js';

/** Gives the Portal implementation for a portal record. */
export class PortalRegistry {
  /** Only where this process is the store's one writer (SQLite); PostgreSQL is shared by instances. */
  private readonly cards: TypeCardCache | null;

  constructor(private readonly store: Store, bus: InvalidationBus) {
    this.cards = store.dataVersion ? new TypeCardCache(store.dataVersion) : null;
    bus.onMessage((message) => {
      if (message.type !== 'key') this.cards?.clear();
    });
  }

  for(record: PortalRecord): Portal {
    if (record.kind === 'local') return new LocalPortal(record, this.store, this.cards);
    throw new ApiError('TOKEN_MISSING', 'The API key has no configured tokens', { hint: 'Bitrix24 portals are not served by this version of smartproc yet.' });
  }
}
