import { ApiError } from '../errors.js';
import type { Store } from '../store/store.js';
import type { Readiness } from '../portals/portal.js';
import type { InvalidationBus } from './invalidation.js';
import { compileAllowedIps } from './key-model.js';
import type { KeyRateLimiter, RateLimitState } from './rate-limiter.js';
import { hashSecret, isWellFormedSession, kindOfKey, KEY_PREFIX, SESSION_PREFIX } from './tokens.js';
import { TtlCache } from './ttl-cache.js';
import type { KeyRecord, PortalRecord, SessionRecord } from '../domain/records.js';

/** What a route demands of its caller. */
export interface RouteAccess {
  /** portal: personal or application keys of a portal; management: management keys; any: every valid key. */
  kind: 'portal' | 'management' | 'any';
  scope?: string;
  write?: boolean;
  /**
   * For a route whose body says whether it writes (POST /v1/smart-processes/batch: its
   * `action`): rows 1–8 run before the body is read as for a read, then, once it is parsed,
   * row 8 for a body that writes, then row 9 (the auth plugin), so that row 8 still comes
   * before row 9.
   */
  writesWith?: (body: unknown) => boolean;
}

export interface Credentials {
  apiKey?: string;
  authorization?: string;
  ip: string;
}

export interface Principal {
  key: KeyRecord;
  portal: PortalRecord | null;
  session: SessionRecord | null;
  /** The Bitrix24 user the caller acts as (key owner or session user); null for management keys. */
  userId: number | null;
  rateLimit: RateLimitState | null;
}

interface ResolvedKey {
  key: KeyRecord;
  secretExpiresAt: number | null;
  portal: PortalRecord | null;
  ipAllowed: ((ip: string) => boolean) | null;
}

/** Cached keys and sessions live at most this long: a revocation takes effect within it on every instance. */
export const KEY_CACHE_TTL_MS = 1000;

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearer(header: string | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : null;
}

/**
 * The check order of contract §5, first failure wins:
 * key present → key valid → IP → key kind → session → scope → read-only → rate limit.
 */
export class AccessService {
  private readonly keys: TtlCache<ResolvedKey | null>;
  private readonly sessions: TtlCache<SessionRecord | null>;
  /** Requests refused for their key's rate limit (GET /metrics). */
  readonly stats = { rateLimited: 0 };

  constructor(
    private readonly store: Store,
    private readonly limiter: KeyRateLimiter,
    readonly bus: InvalidationBus,
    /** Row 6: whether a portal can serve calls now (the portal registry answers). */
    private readonly readinessOf: (portal: PortalRecord) => Readiness,
    ttlMs = KEY_CACHE_TTL_MS,
  ) {
    this.keys = new TtlCache(ttlMs);
    this.sessions = new TtlCache(ttlMs);
    bus.onMessage((message) => {
      if (message.type === 'all') {
        this.keys.invalidate();
        this.sessions.invalidate();
      } else if (message.type === 'session') {
        this.sessions.invalidate((s) => s?.id === message.id);
      } else if (message.type === 'key') {
        this.keys.invalidate((v) => v?.key.id === message.id);
        this.sessions.invalidate((s) => s?.keyId === message.id);
      } else {
        this.keys.invalidate((v) => v?.key.portalId === message.id);
        this.sessions.invalidate((s) => s?.portalId === message.id);
      }
    });
  }

  /** Hits and misses of the key and session caches (GET /metrics). */
  get cacheStats() {
    return { keys: this.keys.stats, sessions: this.sessions.stats };
  }

  get rateLimitBackend() {
    return this.limiter.backend;
  }

  private resolve(token: string): Promise<ResolvedKey | null> {
    const hash = hashSecret(token);
    return this.keys.get(hash, async () => {
      const found = await this.store.read.keys.findBySecretHash(hash);
      if (!found) return null;
      const portal = found.key.portalId === null ? null : await this.store.read.portals.get(found.key.portalId);
      if (found.key.portalId !== null && !portal) return null;
      return { key: found.key, secretExpiresAt: found.secretExpiresAt, portal, ipAllowed: compileAllowedIps(found.key.allowedIps) };
    });
  }

  private session(token: string): Promise<SessionRecord | null> {
    const hash = hashSecret(token);
    return this.sessions.get(hash, () => this.store.read.keys.findSession(hash));
  }

  /**
   * Whether a caller, once past the rows that depend on the request (key, address,
   * session, rate), may call a route: rows 4, 6, 7 and 8 of the check order, the same
   * code `check` runs (it feeds /v1/me's list of callable routes).
   */
  mayCall(principal: Pick<Principal, 'key' | 'portal'>, access: RouteAccess): boolean {
    return this.refusal(principal, access) === null;
  }

  /**
   * The refusal of rows 4, 6, 7 and 8 for a caller already admitted (the calls of a batch:
   * each is checked as its direct route would be, without counting against the rate limit
   * again), or null.
   */
  refusal(principal: Pick<Principal, 'key' | 'portal'>, access: RouteAccess): ApiError | null {
    return kindRefusal(principal.key, access) ?? this.rightsRefusal(principal.key, principal.portal, access);
  }

  /** Rows 6, 7, 8: the refusal, or null. */
  private rightsRefusal(key: KeyRecord, portal: PortalRecord | null, access: RouteAccess): ApiError | null {
    // 6. a portal route of a portal that cannot serve calls (a bitrix24 portal without usable credentials)
    if (access.kind === 'portal' && portal) {
      const readiness = this.readinessOf(portal);
      if (!readiness.ready) return new ApiError('TOKEN_MISSING', readiness.message, { hint: readiness.hint });
    }
    // 7. scope
    if (access.scope && !key.scopes.includes(access.scope)) {
      if (access.kind === 'management') return new ApiError('MANAGEMENT_SCOPE_REQUIRED', `This route needs a management key with the ${access.scope} scope`);
      return new ApiError('SCOPE_DENIED', `The API key does not have the ${access.scope} scope`, { hint: `Add ${access.scope} to the key's scopes.` });
    }
    // 8. read-only keys do not write
    if (access.write && key.accessMode === 'READONLY') return new ApiError('WRITE_BLOCKED_READONLY_KEY', 'This key is read-only; the request would change data');
    return null;
  }

  async check(credentials: Credentials, access: RouteAccess): Promise<Principal> {
    // 1. a key at all (X-Api-Key, or a personal/management key as Bearer)
    let token = credentials.apiKey?.trim() || null;
    if (!token) {
      const fromBearer = bearer(credentials.authorization);
      if (fromBearer && (fromBearer.startsWith(KEY_PREFIX.personal) || fromBearer.startsWith(KEY_PREFIX.management))) token = fromBearer;
    }
    if (!token) throw new ApiError('MISSING_API_KEY', 'The X-Api-Key header was not passed', { hint: 'Send your key in the X-Api-Key header.' });

    // 2. a valid key
    if (!kindOfKey(token)) throw new ApiError('INVALID_API_KEY', 'API key is malformed', { hint: 'Keys look like vibe_api_..., vibe_app_... or vibe_live_... followed by at least 32 letters and digits.' });
    const resolved = await this.resolve(token);
    if (!resolved) throw new ApiError('INVALID_API_KEY', 'API key not found or revoked');
    const now = Date.now();
    const { key } = resolved;
    if (key.expiresAt !== null && key.expiresAt <= now) throw new ApiError('INVALID_API_KEY', 'API key has expired');
    if (resolved.secretExpiresAt !== null && resolved.secretExpiresAt <= now) throw new ApiError('INVALID_API_KEY', 'API key was rotated; use the new secret');

    // 3. caller address
    if (resolved.ipAllowed && !resolved.ipAllowed(credentials.ip)) {
      throw new ApiError('IP_NOT_ALLOWED', `Requests from ${credentials.ip} are not allowed for this key`, { hint: "Call from an address in the key's allowedIps." });
    }

    // 4. the kind of key the route takes
    const wrongKind = kindRefusal(key, access);
    if (wrongKind) throw wrongKind;

    // 5. the session of an application key
    let session: SessionRecord | null = null;
    if (key.kind === 'application') {
      const sessionToken = bearer(credentials.authorization);
      if (!sessionToken) throw new ApiError('TOKEN_MISSING', 'Application keys need a user session: send Authorization: Bearer vibe_session_...', { hint: 'Mint one with POST /v1/sessions.' });
      if (!sessionToken.startsWith(SESSION_PREFIX) || !isWellFormedSession(sessionToken)) throw new ApiError('INVALID_SESSION', 'The session token is malformed');
      session = await this.session(sessionToken);
      if (!session) throw new ApiError('INVALID_SESSION', 'The session is unknown');
      if (session.expiresAt <= now) throw new ApiError('TOKEN_EXPIRED', 'The session has expired', { hint: 'Sessions live 24 hours; mint a new one.' });
      if (session.keyId !== key.id) throw new ApiError('SESSION_APP_MISMATCH', 'The session was issued for another application key');
    }

    // 6. the portal can serve calls; 7. scope; 8. read-only keys do not write
    const noRight = this.rightsRefusal(key, resolved.portal, access);
    if (noRight) throw noRight;

    // 9. rate limit (for a route whose body says whether it writes: after the body, see RouteAccess.writesWith)
    const rateLimit = access.writesWith ? null : await this.consumeRate(key);
    return { key, portal: resolved.portal, session, userId: session ? session.userId : key.userId, rateLimit };
  }

  /** Row 9: one request of the key's requestsPerSecond; 429 RATE_LIMITED over it. */
  async consumeRate(key: KeyRecord): Promise<RateLimitState | null> {
    if (key.requestsPerSecond === null) return null;
    const rateLimit = await this.limiter.consume(key.id, key.requestsPerSecond);
    if (!rateLimit.allowed) {
      this.stats.rateLimited++;
      throw new ApiError('RATE_LIMITED', `Rate limit of ${key.requestsPerSecond} requests per second exceeded`, {
        retryAfter: rateLimit.retryAfter,
        headers: rateLimitHeaders(rateLimit),
      });
    }
    return rateLimit;
  }
}

/** Row 4: the kind of key the route takes; the refusal, or null. */
function kindRefusal(key: KeyRecord, access: RouteAccess): ApiError | null {
  if (access.kind === 'portal' && key.kind === 'management') {
    return new ApiError('MANAGEMENT_KEY_NO_ENTITY_ACCESS', 'Management keys cannot access portal data', { hint: 'Use a personal (vibe_api_) or application (vibe_app_) key of the portal.' });
  }
  if (access.kind === 'management' && key.kind !== 'management') {
    return new ApiError('MANAGEMENT_SCOPE_REQUIRED', `This route needs a management key${access.scope ? ` with the ${access.scope} scope` : ''}`);
  }
  return null;
}

export function rateLimitHeaders(state: RateLimitState): Record<string, string> {
  return {
    'x-ratelimit-limit': String(state.limit),
    'x-ratelimit-remaining': String(state.remaining),
    'x-ratelimit-reset': String(state.resetAt),
  };
}
