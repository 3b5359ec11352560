import type { InvalidationBus } from '../access/invalidation.js';
import type { PortalKind, PortalRecord } from '../domain/records.js';
import { ApiError } from '../errors.js';
import type { Store } from '../store/store.js';
import { LocalPortal } from './local/local-portal.js';
import type { Redis } from 'ioredis';
import { PortalTokens, SharedTypeCache } from './local/shared-type-cache.js';
import { TypeCardCache, type TypeCache } from './local/type-card-cache.js';
import type { Portal, Readiness, SmartProcessTypes } from './portal.js';

/** Builds the Portal object of a portal record of one kind. */
export type PortalFactory = (record: PortalRecord) => Portal;

/**
 * One Portal object per portal (a `bitrix24` portal holds its token, refresh lock and
 * request budget there), built by the factory of the record's kind. A portal changed
 * or deleted (on any instance, through the invalidation bus) gets a new object; so
 * does a record that is newer than the one the object was built from.
 */
export class PortalRegistry {
  /**
   * Cards and list pages of local portals: on SQLite (this process is the one writer)
   * TypeCardCache; on PostgreSQL, which instances share, SharedTypeCache with a token per
   * portal in Redis; on PostgreSQL without REDIS_URL none (every read goes to the store).
   */
  readonly cards: TypeCache | null;
  private readonly portals = new Map<number, Portal>();
  private readonly factories: Partial<Record<PortalKind, PortalFactory>>;

  constructor(
    store: Store,
    bus: InvalidationBus,
    factories: Partial<Record<PortalKind, PortalFactory>> = {},
    options: { redis?: Redis | null; /** Told the size of each PATCH group written (GET /metrics). */ onPatchGroup?: (size: number) => void } = {},
  ) {
    const { dataVersion } = store.capabilities;
    this.cards = dataVersion ? new TypeCardCache(dataVersion) : options.redis ? new SharedTypeCache(new PortalTokens(options.redis, `smartproc:types-token:${store.schema ?? ''}:`)) : null;
    this.factories = { local: (record) => new LocalPortal(record, store, this.cards, options.onPatchGroup), ...factories };
    bus.onMessage((message) => {
      if (message.type === 'key' || message.type === 'session') return;
      this.cards?.clear();
      if (message.type === 'portal') this.portals.delete(message.id);
      else this.portals.clear();
    });
  }

  portalFor(record: PortalRecord): Portal {
    const known = this.portals.get(record.id);
    if (known && (known.record === record || known.record.updatedAt >= record.updatedAt)) return known;
    const factory = this.factories[record.kind];
    const portal = factory ? factory(record) : new UnservedPortal(record);
    this.portals.set(record.id, portal);
    return portal;
  }

  readiness(record: PortalRecord): Readiness {
    return this.portalFor(record).readiness();
  }
}

const NO_TOKENS = 'The API key has no configured tokens';

/** A portal of a kind this server has no implementation for: never ready. */
class UnservedPortal implements Portal {
  readonly types: SmartProcessTypes;

  constructor(readonly record: PortalRecord) {
    const hint = unservedHint(record);
    const refuse = async (): Promise<never> => {
      throw new ApiError('TOKEN_MISSING', NO_TOKENS, { hint });
    };
    this.types = { list: refuse, get: refuse, has: refuse, create: refuse, update: refuse, delete: refuse };
  }

  readiness(): Readiness {
    return { ready: false, message: NO_TOKENS, hint: unservedHint(this.record) };
  }
}

const unservedHint = (record: PortalRecord) => `${record.kind} portals are not served by this version of smartproc.`;
