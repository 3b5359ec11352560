import { ApiError, validationError, type ErrorDetail } from '../errors.js';
import type { KeysRepository, Repositories, Store, StoreTransaction } from '../store/store.js';
import type { InvalidationBus } from './invalidation.js';
import { allowedIpProblems, DEFAULT_REQUESTS_PER_SECOND, isManagementScope, MANAGEMENT_SCOPES, redirectUriProblems, scopeProblems } from './key-model.js';
import { displayParts, hashSecret, KEY_PREFIX, newId, newKeySecret, newSessionToken, SESSION_PREFIX } from './tokens.js';
import type { AccessMode, KeyKind, KeyRecord, SessionRecord, SessionUser } from '../domain/records.js';

export const SESSION_LIFETIME_MS = 24 * 3600 * 1000;
export const MAX_GRACE_SECONDS = 7 * 24 * 3600;

export interface KeyInput {
  kind?: KeyKind;
  portalId?: number | null;
  name?: string;
  scopes?: string[];
  accessMode?: AccessMode;
  /** ISO 8601 or null. */
  expiresAt?: string | null;
  requestsPerSecond?: number | null;
  allowedIps?: string[];
  /** Application keys: where user authorization may return (exact match). */
  redirectUris?: string[];
  userId?: number | null;
}

/** What a new session is made of: the application key, the user, and (bitrix24) the user's tokens sealed for the session's id. */
export interface SessionInput {
  key: KeyRecord;
  user: SessionUser;
  sealUserTokens?: (sessionId: string) => string;
}

export type KeyChanges = Omit<KeyInput, 'kind' | 'portalId'>;

/** The key making a management call; null when the operator acts through the CLI on the store. */
export type ActingKey = KeyRecord | null;

function parseExpiry(value: string | null | undefined, problems: ErrorDetail[], now: number): number | null | undefined {
  if (value === undefined || value === null) return value;
  const ms = Date.parse(value);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    problems.push({ location: 'body.expiresAt', message: 'must be an ISO 8601 time, e.g. 2027-01-31T00:00:00Z', fix: 'or null for a key that never expires' });
    return undefined;
  }
  if (ms <= now) problems.push({ location: 'body.expiresAt', message: 'must be in the future' });
  return ms;
}

/** Keys, rotation and sessions: the operations behind /v1/keys, /v1/sessions and the CLI. */
export class KeysService {
  constructor(private readonly store: Store, private readonly bus: InvalidationBus) {}

  private repo() {
    return this.store.read.keys;
  }

  /** Runs a write; a portal or key that a foreign key needs, deleted meanwhile, is the 400 `location` names. */
  private async write<T>(work: (tx: StoreTransaction) => Promise<T>, gone: { location: string; message: string }): Promise<T> {
    try {
      return await this.store.write(work);
    } catch (error) {
      if (this.store.failureOf(error) === 'foreign_key') throw validationError([gone]);
      throw error;
    }
  }

  list(filter: { portalId?: number; kind?: KeyKind } = {}) {
    return this.repo().list(filter);
  }

  async get(id: string): Promise<KeyRecord> {
    const key = await this.repo().get(id);
    if (!key) throw new ApiError('ENTITY_NOT_FOUND', `Key ${id} not found`);
    return key;
  }

  /** No key gives another (or itself) management scopes it does not hold. */
  private assertNoEscalation(actor: ActingKey, scopes: string[], location = 'body.scopes'): void {
    if (!actor) return;
    const beyond = scopes.filter((s) => isManagementScope(s) && !actor.scopes.includes(s));
    if (beyond.length) {
      throw new ApiError('MANAGEMENT_SCOPE_REQUIRED', `A key cannot grant scopes it does not hold: ${beyond.join(', ')}`, {
        details: beyond.map((s) => ({ location, message: `${s} is not among the scopes of the calling key` })),
      });
    }
  }

  async create(input: KeyInput, actor: ActingKey, now = Date.now()): Promise<{ key: KeyRecord; secret: string }> {
    const { key, secret } = await this.prepare(input, actor, now, async (id) => (await this.store.read.portals.get(id)) !== null);
    await this.write(({ repos }) => repos.keys.insert(key, hashSecret(secret)), { location: 'body.portalId', message: `portal ${key.portalId} was deleted meanwhile` });
    return { key, secret };
  }

  /** A new key and its secret, validated and checked against the acting key, not yet stored (the first start stores it in its own write). */
  async prepare(input: KeyInput, actor: ActingKey, now: number, portalExists: (id: number) => Promise<boolean>): Promise<{ key: KeyRecord; secret: string }> {
    const kind = input.kind ?? 'personal';
    const problems: ErrorDetail[] = [];
    let portalId: number | null = null;
    if (kind === 'management') {
      if (input.portalId !== undefined && input.portalId !== null) problems.push({ location: 'body.portalId', message: 'management keys belong to no portal', fix: 'leave portalId out' });
    } else if (input.portalId === undefined || input.portalId === null) {
      problems.push({ location: 'body.portalId', message: `a ${kind} key needs the portal it belongs to`, fix: 'list portals: GET /v1/portals' });
    } else if (!(await portalExists(input.portalId))) {
      problems.push({ location: 'body.portalId', message: `no portal with id ${input.portalId}`, fix: 'list portals: GET /v1/portals' });
    } else portalId = input.portalId;

    const scopes = [...new Set(input.scopes ?? (kind === 'management' ? (actor ? actor.scopes : [...MANAGEMENT_SCOPES]) : ['crm']))];
    problems.push(...scopeProblems(kind, scopes));
    problems.push(...allowedIpProblems(input.allowedIps ?? []));
    problems.push(...redirectUriProblems(kind, input.redirectUris ?? []));
    const expiresAt = parseExpiry(input.expiresAt, problems, now);
    if (kind !== 'personal' && input.userId !== undefined && input.userId !== null) problems.push({ location: 'body.userId', message: `only personal keys act as a fixed user; a ${kind} key ${kind === 'application' ? 'acts as the user of its session' : 'acts as the operator'}` });
    if (problems.length) throw validationError(problems);
    this.assertNoEscalation(actor, scopes);

    const secret = newKeySecret(kind);
    const display = displayParts(secret, KEY_PREFIX[kind]);
    const key: KeyRecord = {
      id: newId('key'),
      kind,
      portalId,
      name: input.name?.trim() || `${kind} key`,
      keyPrefix: display.prefix,
      keySuffix: display.suffix,
      scopes,
      accessMode: input.accessMode ?? 'READWRITE',
      expiresAt: expiresAt ?? null,
      requestsPerSecond: input.requestsPerSecond === undefined ? DEFAULT_REQUESTS_PER_SECOND : input.requestsPerSecond,
      allowedIps: input.allowedIps ?? [],
      redirectUris: [...new Set(input.redirectUris ?? [])],
      userId: kind === 'personal' ? (input.userId ?? 1) : null,
      createdByKeyId: actor?.id ?? null,
      createdAt: now,
      updatedAt: now,
    };
    if (actor && kind === 'management') this.assertNotWidened(actor, key, 'A management key cannot create one with more rights than its own');
    return { key, secret };
  }

  async update(id: string, changes: KeyChanges, actor: ActingKey, now = Date.now()): Promise<KeyRecord> {
    // Read, checked and written in one write (the row locked on PostgreSQL): a concurrent
    // change, a revocation say, is never overwritten by a row read before it.
    const next = await this.store.write(async ({ repos }) => {
      const current = await this.lockedKey(repos.keys, id);
      this.assertMayActOn(actor, current);
      const problems: ErrorDetail[] = [];
      if (changes.scopes) problems.push(...scopeProblems(current.kind, changes.scopes));
      if (changes.allowedIps) problems.push(...allowedIpProblems(changes.allowedIps));
      if (changes.redirectUris) problems.push(...redirectUriProblems(current.kind, changes.redirectUris));
      const expiresAt = parseExpiry(changes.expiresAt, problems, now);
      if (changes.userId !== undefined && current.kind !== 'personal') problems.push({ location: 'body.userId', message: 'only personal keys act as a fixed user' });
      if (changes.userId === null) problems.push({ location: 'body.userId', message: 'a personal key needs a user id' });
      if (problems.length) throw validationError(problems);
      const changed: KeyRecord = {
        ...current,
        name: changes.name?.trim() || current.name,
        scopes: changes.scopes ? [...new Set(changes.scopes)] : current.scopes,
        accessMode: changes.accessMode ?? current.accessMode,
        expiresAt: expiresAt === undefined ? current.expiresAt : expiresAt,
        requestsPerSecond: changes.requestsPerSecond === undefined ? current.requestsPerSecond : changes.requestsPerSecond,
        allowedIps: changes.allowedIps ?? current.allowedIps,
        redirectUris: changes.redirectUris ? [...new Set(changes.redirectUris)] : current.redirectUris,
        userId: changes.userId === undefined ? current.userId : changes.userId,
        updatedAt: now,
      };
      this.assertNoEscalation(actor, changed.scopes);
      if (actor && actor.id === current.id) this.assertNotWidened(current, changed, 'A key cannot widen its own rights');
      else if (actor && changed.kind === 'management') this.assertNotWidened(actor, changed, 'A management key cannot give another one more rights than its own');
      await repos.keys.update(changed);
      return changed;
    });
    await this.bus.publish({ type: 'key', id });
    return next;
  }

  /** The key as it is now, locked for the write on stores with row locks; 404 when there is none. */
  private async lockedKey(keys: KeysRepository, id: string): Promise<KeyRecord> {
    const current = await keys.get(id, { forUpdate: true });
    if (!current) throw new ApiError('ENTITY_NOT_FOUND', `Key ${id} not found`);
    return current;
  }

  /**
   * "No action on a key with more rights than yours": another key may be changed, rotated
   * or deleted only by a key that holds every management scope it holds and, for a
   * management key, is not more limited than it (a key may always act on itself, within
   * the rules for itself).
   */
  private assertMayActOn(actor: ActingKey, current: KeyRecord): void {
    if (!actor || actor.id === current.id) return;
    this.assertNoEscalation(actor, current.scopes, 'params.id');
    if (current.kind === 'management') this.assertNotWidened(actor, current, 'A management key cannot act on one with more rights than its own', 'params.id');
  }

  /**
   * `next` may not have fewer limits than `baseline`: a key editing itself may only
   * narrow its rights, and a management key cannot make a management key freer than itself.
   */
  private assertNotWidened(baseline: KeyRecord, next: KeyRecord, message: string, location?: string): void {
    const current = baseline;
    const widened: string[] = [];
    if (current.expiresAt !== null && (next.expiresAt === null || next.expiresAt > current.expiresAt)) widened.push('expiresAt');
    if (current.requestsPerSecond !== null && (next.requestsPerSecond === null || next.requestsPerSecond > current.requestsPerSecond)) widened.push('requestsPerSecond');
    if (current.allowedIps.length && (!next.allowedIps.length || next.allowedIps.some((ip) => !current.allowedIps.includes(ip)))) widened.push('allowedIps');
    if (current.accessMode === 'READONLY' && next.accessMode !== 'READONLY') widened.push('accessMode');
    if (widened.length) {
      throw new ApiError('MANAGEMENT_SCOPE_REQUIRED', `${message}: ${widened.join(', ')}`, {
        details: widened.map((f) => ({ location: location ?? `body.${f}`, message: location ? `the key has a freer ${f} than the calling key` : 'would give the calling key more than it has' })),
        hint: 'Ask an operator with another management key to change it.',
      });
    }
  }

  /** The same rule as for changes: no key deletes one with more rights than its own (itself excepted). */
  async delete(id: string, actor: ActingKey = null): Promise<void> {
    await this.store.write(async ({ repos }) => {
      this.assertMayActOn(actor, await this.lockedKey(repos.keys, id));
      await repos.keys.delete(id);
    });
    await this.bus.publish({ type: 'key', id });
  }

  /**
   * A new secret, shown once; the old ones stop at once or after the grace period.
   * The caller receives the secret, so it must hold every management scope of the key.
   */
  async rotate(id: string, gracePeriodSeconds: number, actor: ActingKey = null, now = Date.now()): Promise<{ key: KeyRecord; secret: string; previousSecretExpiresAt: number }> {
    const previousSecretExpiresAt = now + gracePeriodSeconds * 1000;
    const rotated = await this.store.write(async ({ repos }) => {
      const current = await this.lockedKey(repos.keys, id);
      this.assertMayActOn(actor, current);
      const secret = newKeySecret(current.kind);
      const hash = hashSecret(secret);
      const display = displayParts(secret, KEY_PREFIX[current.kind]);
      const key: KeyRecord = { ...current, keyPrefix: display.prefix, keySuffix: display.suffix, updatedAt: now };
      await repos.keys.addSecret(id, hash, null, now);
      await repos.keys.expireOtherSecrets(id, hash, previousSecretExpiresAt);
      await repos.keys.update(key);
      return { key, secret };
    });
    await this.bus.publish({ type: 'key', id });
    return { ...rotated, previousSecretExpiresAt };
  }

  async mintSession(input: { keyId: string; userId: number; name?: string | null; email?: string | null }, now = Date.now()): Promise<{ session: SessionRecord; token: string }> {
    const key = await this.repo().get(input.keyId);
    if (!key) throw validationError([{ location: 'body.keyId', message: `no key with id ${input.keyId}` }]);
    if (key.kind !== 'application' || key.portalId === null) {
      throw validationError([{ location: 'body.keyId', message: `sessions are for application keys (vibe_app_); ${key.id} is a ${key.kind} key` }]);
    }
    if (key.expiresAt !== null && key.expiresAt <= now) throw validationError([{ location: 'body.keyId', message: `key ${key.id} has expired` }]);
    const user: SessionUser = { id: input.userId, name: input.name?.trim() || null, email: input.email?.trim() || null };
    return this.write(({ repos }) => this.createSession(repos, { key, user }, now), { location: 'body.keyId', message: `key ${key.id} (or its portal) was deleted meanwhile` });
  }

  /**
   * The one place a session is made (POST /v1/sessions, the CLI, user authorization):
   * a vibe_session_ token (stored as its hash) of 24 hours for an application key and a
   * user, and the user's Bitrix24 tokens when the authorization brought them; written
   * with `repos`, inside the caller's write.
   */
  async createSession(repos: Repositories, input: SessionInput, now = Date.now()): Promise<{ session: SessionRecord; token: string }> {
    const { key, user } = input;
    if (key.kind !== 'application' || key.portalId === null) throw new ApiError('INTERNAL_ERROR', 'sessions are for application keys');
    const token = newSessionToken();
    const display = displayParts(token, SESSION_PREFIX);
    const session: SessionRecord = {
      id: newId('ses'),
      keyId: key.id,
      portalId: key.portalId,
      userId: user.id,
      userName: user.name,
      userEmail: user.email,
      bitrix24Tokens: Boolean(input.sealUserTokens),
      tokenPrefix: display.prefix,
      tokenSuffix: display.suffix,
      expiresAt: now + SESSION_LIFETIME_MS,
      createdAt: now,
    };
    await repos.keys.insertSession(session, hashSecret(token));
    if (input.sealUserTokens) await repos.oauth.insertUserTokens(session.id, key.portalId, input.sealUserTokens(session.id), now);
    return { session, token };
  }

  /** Ends a session at once, on every instance (POST /v1/oauth/revoke); false when there was no such session. */
  async endSession(token: string): Promise<boolean> {
    const ended = await this.store.write(({ repos }) => repos.keys.deleteSession(hashSecret(token)));
    if (!ended) return false;
    await this.bus.publish({ type: 'session', id: ended.id });
    return true;
  }
}
