import { ApiError, validationError, type ErrorDetail } from '../errors.js';
import type { KeysRepository, Repositories, Store, StoreTransaction } from '../store/store.js';
import type { InvalidationBus } from './invalidation.js';
import { allowedIpProblems, DEFAULT_REQUESTS_PER_SECOND, isManagementScope, MANAGEMENT_SCOPES, redirectUriProblems, scopeProblems } from './key-model.js';
import { displayParts, hashSecret, KEY_PREFIX, newId, newKeySecret, newSessionToken, SESSION_PREFIX } from './tokens.js';
import { isoTime, type AccessMode, type KeyKind, type KeyRecord, type SessionRecord, type SessionUser } from '../domain/records.js';
import { CLI_AUDIT, keyChanges, REDACTED, sessionChanges, type AuditAction, type AuditContext, type Changes, type ManagementCaller } from '../domain/audit.js';

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
  /** Who makes the session, for its audit entry (default: the application key acting for the user). */
  audit?: AuditContext;
}

export type KeyChanges = Omit<KeyInput, 'kind' | 'portalId'>;

/** The key making a management call; null when the operator acts through the CLI on the store. */
export type ActingKey = KeyRecord | null;

/** Who calls: a management key with its audit context, or null for the operator on the store (the CLI: actor "cli", no key). */
export type Caller = ManagementCaller | null;

/** The audit entry of a key or session change, in the write's own transaction. */
function record(repos: Repositories, audit: AuditContext, resource: 'key' | 'session', subject: { id: string; portalId: number | null }, action: AuditAction, changes: Changes): Promise<void> {
  return repos.audit.record({ at: Date.now(), portalId: subject.portalId, resource, resourceId: subject.id, action, context: audit, changes });
}

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

  async create(input: KeyInput, caller: Caller, now = Date.now()): Promise<{ key: KeyRecord; secret: string }> {
    const { key, secret } = await this.prepare(input, caller?.key ?? null, now, async (id) => (await this.store.read.portals.get(id)) !== null);
    await this.write(async ({ repos }) => {
      await repos.keys.insert(key, hashSecret(secret));
      await record(repos, caller?.audit ?? CLI_AUDIT, 'key', key, 'create', keyChanges(null, key));
    }, { location: 'body.portalId', message: `portal ${key.portalId} was deleted meanwhile` });
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

  async update(id: string, changes: KeyChanges, caller: Caller, now = Date.now()): Promise<KeyRecord> {
    const actor = caller?.key ?? null;
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
      const audited = keyChanges(current, changed);
      if (Object.keys(audited).length) await record(repos, caller?.audit ?? CLI_AUDIT, 'key', changed, 'update', audited);
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
  async delete(id: string, caller: Caller = null): Promise<void> {
    await this.store.write(async ({ repos }) => {
      const current = await this.lockedKey(repos.keys, id);
      this.assertMayActOn(caller?.key ?? null, current);
      await repos.keys.delete(id);
      // Its sessions end with it; the entry of the key says so.
      await record(repos, caller?.audit ?? CLI_AUDIT, 'key', current, 'delete', keyChanges(current, null));
    });
    await this.bus.publish({ type: 'key', id });
  }

  /**
   * A new secret, shown once; the old ones stop at once or after the grace period.
   * The caller receives the secret, so it must hold every management scope of the key.
   */
  async rotate(id: string, gracePeriodSeconds: number, caller: Caller = null, now = Date.now()): Promise<{ key: KeyRecord; secret: string; previousSecretExpiresAt: number }> {
    const actor = caller?.key ?? null;
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
      await record(repos, caller?.audit ?? CLI_AUDIT, 'key', key, 'rotate', { secret: { before: REDACTED, after: REDACTED }, previousSecretExpiresAt: { after: isoTime(previousSecretExpiresAt) } });
      return { key, secret };
    });
    await this.bus.publish({ type: 'key', id });
    return { ...rotated, previousSecretExpiresAt };
  }

  /** `audit`: who asks for the session (a management key or the CLI). */
  async mintSession(input: { keyId: string; userId: number; name?: string | null; email?: string | null }, audit: AuditContext, now = Date.now()): Promise<{ session: SessionRecord; token: string }> {
    const key = await this.repo().get(input.keyId);
    if (!key) throw validationError([{ location: 'body.keyId', message: `no key with id ${input.keyId}` }]);
    if (key.kind !== 'application' || key.portalId === null) {
      throw validationError([{ location: 'body.keyId', message: `sessions are for application keys (vibe_app_); ${key.id} is a ${key.kind} key` }]);
    }
    if (key.expiresAt !== null && key.expiresAt <= now) throw validationError([{ location: 'body.keyId', message: `key ${key.id} has expired` }]);
    const user: SessionUser = { id: input.userId, name: input.name?.trim() || null, email: input.email?.trim() || null };
    return this.write(({ repos }) => this.createSession(repos, { key, user, audit }, now), { location: 'body.keyId', message: `key ${key.id} (or its portal) was deleted meanwhile` });
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
    // Made by the user authorizing the application unless the caller says otherwise (POST /v1/sessions, the CLI).
    const audit = input.audit ?? { actor: 'key', keyId: key.id, keyKind: key.kind, userId: user.id, requestId: null, clientIp: null };
    await record(repos, audit, 'session', session, 'create', sessionChanges(session, 'after'));
    return { session, token };
  }

  /** Ends a session by id, at once, on every instance (DELETE /v1/sessions/:id; 404 when there is none). */
  async deleteSession(id: string, audit: AuditContext): Promise<SessionRecord> {
    const session = await this.store.write(async ({ repos }) => {
      const found = await repos.keys.deleteSession(id);
      if (!found) throw new ApiError('ENTITY_NOT_FOUND', `Session ${id} not found`);
      await record(repos, audit, 'session', found, 'delete', sessionChanges(found, 'before'));
      return found;
    });
    await this.bus.publish({ type: 'key', id: session.keyId });
    await this.bus.publish({ type: 'session', id: session.id });
    return session;
  }

  /** Ends a session by its token, at once, on every instance (POST /v1/oauth/revoke); false when there was no such session. */
  async endSession(token: string, origin: { requestId: string; clientIp: string }): Promise<boolean> {
    const ended = await this.store.write(async ({ repos }) => {
      const found = await repos.keys.deleteSessionByHash(hashSecret(token));
      // The session ends itself: its application key acting for its user.
      if (found) await record(repos, { actor: 'key', keyId: found.keyId, keyKind: 'application', userId: found.userId, ...origin }, 'session', found, 'delete', sessionChanges(found, 'before'));
      return found;
    });
    if (!ended) return false;
    await this.bus.publish({ type: 'session', id: ended.id });
    return true;
  }
}
