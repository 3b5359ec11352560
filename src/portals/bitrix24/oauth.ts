/**
 * OAuth tokens of a Bitrix24 application (settings/oauth/): the token manager that
 * refreshes on `expired_token` (or a passed expiry) once per credential at a time, in
 * this process and across instances, and the token endpoint calls (`refresh_token` and
 * `authorization_code` grants).
 *
 * Rules it keeps (settings/oauth/auto-renewal.md, bitrix24.md § OAuth):
 * - never on a timer, never before every call: only when the portal answers 401
 *   `expired_token`, or the stored expiry has passed;
 * - one refresh in flight per credential: in this process a shared promise; across
 *   instances a lock (`RefreshLock`, e.g. `RedisRefreshLock`: SET NX PX with a random
 *   token, released only by its holder). An instance that finds the lock taken waits for
 *   the stored credential to change and takes it over instead of refreshing again;
 * - a refresh token is used once: the new pair is persisted with a compare-and-set on the
 *   previous refresh token (`CredentialStore.replace`), so two writers cannot lose one;
 * - `invalid_grant`: the refresh token is dead; unless another instance already replaced
 *   it, the credential needs a new authorization (`NeedsAuthorizationError`, mapped to
 *   401 TOKEN_MISSING with a hint), and is not sent to the token server again.
 *
 * The token server is asked with GET and the parameters in the query string, as the docs
 * show. That URL holds the client secret and the refresh token, so it is never part of an
 * error or a log line.
 */
import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import type { Redis } from 'ioredis';
import { Bitrix24Error, DEFAULT_USER_AGENT, type OAuthCallAuth } from './rest-client.js';

export const DEFAULT_TOKEN_URL = 'https://oauth.bitrix.info/oauth/token/';

/** One stored OAuth credential of a portal. */
export interface OAuthCredential {
  clientId: string;
  clientSecret: string;
  accessToken: string;
  refreshToken: string;
  /** When the access token expires (epoch ms); 0 when unknown. */
  expiresAt: number;
  /** `https://{portal}/rest/`: where method calls go. */
  clientEndpoint: string;
  /** The authorization server's token URL; DEFAULT_TOKEN_URL when unset. */
  tokenUrl?: string;
  /** From the last token answer: the portal's lasting id, the granted scopes, the user. */
  memberId?: string;
  scope?: string;
  userId?: number;
  serverEndpoint?: string;
}

/** The authorization server's answer (settings/oauth/index.md, auto-renewal.md). */
export interface TokenAnswer {
  access_token: string;
  refresh_token: string;
  expires_in?: number;
  expires?: number;
  client_endpoint?: string;
  server_endpoint?: string;
  /** The authorization server's domain (not the portal's). */
  domain?: string;
  member_id?: string;
  scope?: string;
  user_id?: number;
  status?: string;
}

/**
 * Where a credential lives (the portal record; the real one comes with the portal store).
 * `replace` is a compare-and-set: it stores `next` only if the stored refresh token is
 * still `previousRefreshToken`, atomically, and says whether it did; a successful replace
 * also clears a needs-authorization mark.
 */
export interface CredentialStore {
  load(): Promise<OAuthCredential>;
  replace(previousRefreshToken: string, next: OAuthCredential): Promise<boolean>;
  /** Told once when the refresh token turned out dead (invalid_grant). */
  markNeedsAuthorization?(refreshToken: string): Promise<void>;
}

/** A lock across instances. `tryAcquire` resolves a release function, or null when another holder has it. */
export interface RefreshLock {
  tryAcquire(name: string, ttlMs: number): Promise<(() => Promise<void>) | null>;
}

/**
 * - `needs_authorization`: invalid_grant: the refresh token (or code) is dead; a user must authorize again;
 * - `rejected`: the token server refused (invalid_client, invalid_request, invalid_scope, PAYMENT_REQUIRED...);
 * - `unavailable`: the token server could not be reached, timed out, or did not answer the documented JSON.
 */
export type OAuthErrorKind = 'needs_authorization' | 'rejected' | 'unavailable';

export class OAuthError extends Error {
  override readonly name: string = 'OAuthError';
  constructor(
    readonly kind: OAuthErrorKind,
    /** The token server's `error` code, or TOKEN_SERVER_UNAVAILABLE / UNEXPECTED_ANSWER / REFRESH_WAIT_TIMEOUT. */
    readonly code: string,
    readonly description: string,
    readonly status = 0,
  ) {
    super(`Bitrix24 OAuth: ${code}${description ? ` (${description})` : ''}${status ? ` [HTTP ${status}]` : ''}`);
  }
}

/** The refresh token is dead (invalid_grant): the portal needs a new authorization. */
export class NeedsAuthorizationError extends OAuthError {
  override readonly name = 'NeedsAuthorizationError';
  constructor(code = 'invalid_grant', description = 'the refresh token is no longer valid', status = 0) {
    super('needs_authorization', code, description, status);
  }
}

// ---------------------------------------------------------------------------
// The token endpoint
// ---------------------------------------------------------------------------

export interface TokenRequestOptions {
  tokenUrl?: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
  userAgent?: string;
}

const DEFAULT_TOKEN_TIMEOUT_MS = 15_000;

function maskAll(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 4) out = out.split(secret).join('***');
  return out;
}

async function requestToken(params: Record<string, string>, secrets: string[], options: TokenRequestOptions): Promise<TokenAnswer> {
  let url: URL;
  try {
    url = new URL(options.tokenUrl ?? DEFAULT_TOKEN_URL);
  } catch {
    throw new OAuthError('rejected', 'INVALID_TOKEN_URL', 'the token URL is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new OAuthError('rejected', 'INVALID_TOKEN_URL', 'the token URL must be https');
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TOKEN_TIMEOUT_MS;
  let status = 0;
  let text: string;
  try {
    const response = await (options.fetch ?? globalThis.fetch)(url, {
      method: 'GET',
      headers: { accept: 'application/json', 'user-agent': options.userAgent ?? DEFAULT_USER_AGENT },
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    });
    status = response.status;
    text = await response.text();
  } catch (error) {
    const timedOut = (error as { name?: string })?.name === 'TimeoutError';
    throw new OAuthError('unavailable', 'TOKEN_SERVER_UNAVAILABLE', timedOut ? `no answer within ${timeoutMs} ms` : 'the token server could not be reached', status);
  }
  let body: Record<string, unknown> | null = null;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
  } catch {
    body = null;
  }
  if (body && typeof body.error === 'string' && body.error) {
    const description = maskAll(typeof body.error_description === 'string' ? body.error_description : '', secrets);
    if (body.error === 'invalid_grant') throw new NeedsAuthorizationError(body.error, description, status);
    throw new OAuthError(status >= 500 ? 'unavailable' : 'rejected', body.error, description, status);
  }
  if (status === 200 && body && typeof body.access_token === 'string' && body.access_token && typeof body.refresh_token === 'string' && body.refresh_token) {
    return body as unknown as TokenAnswer;
  }
  throw new OAuthError(status >= 500 || status === 200 ? 'unavailable' : 'rejected', 'UNEXPECTED_ANSWER', 'the token server did not answer the documented JSON', status);
}

/** `grant_type=refresh_token`: a new pair for the stored refresh token (which dies with it). */
export function refreshTokens(credential: Pick<OAuthCredential, 'clientId' | 'clientSecret' | 'refreshToken' | 'tokenUrl'>, options: TokenRequestOptions = {}): Promise<TokenAnswer> {
  return requestToken(
    { grant_type: 'refresh_token', client_id: credential.clientId, client_secret: credential.clientSecret, refresh_token: credential.refreshToken },
    [credential.clientSecret, credential.refreshToken],
    { ...options, tokenUrl: options.tokenUrl ?? credential.tokenUrl },
  );
}

/** `grant_type=authorization_code`: the first pair, from the `code` a user brought back (valid 30 s). */
export function exchangeAuthorizationCode(input: { clientId: string; clientSecret: string; code: string }, options: TokenRequestOptions = {}): Promise<TokenAnswer> {
  return requestToken({ grant_type: 'authorization_code', client_id: input.clientId, client_secret: input.clientSecret, code: input.code }, [input.clientSecret, input.code], options);
}

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/**
 * Why a token answer's `client_endpoint` cannot be used, or null when it can: it must be
 * https (http only for loopback hosts, as for portal URLs), without user info, query or
 * fragment, and on the same host (and port) as the endpoint the credential already has.
 * The tokens are sent there with every call: an answer must not be able to send them
 * elsewhere. (A portal that really moved domain needs a new credential: PATCH the portal.)
 */
export function clientEndpointProblem(candidate: string, current: string | undefined): string | null {
  let url: URL;
  try {
    url = new URL(candidate);
  } catch {
    return 'it is not a URL';
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOST.test(url.hostname))) return `its scheme ${url.protocol} is not https (http only for loopback hosts)`;
  if (url.username || url.password || url.search || url.hash) return 'it has user info, a query or a fragment';
  let currentHost: string;
  try {
    currentHost = new URL(current ?? '').host;
  } catch {
    return 'the credential has no endpoint to compare it with';
  }
  if (url.host.toLowerCase() !== currentHost.toLowerCase()) return `its host ${url.host} is not the portal's host ${currentHost}`;
  return null;
}

/**
 * The credential after a token answer; `previous` gives the application's keys and what the
 * answer leaves out. A `client_endpoint` that clientEndpointProblem refuses is not taken: the
 * previous endpoint is kept (the new tokens are, the old refresh token being spent) and
 * `onEndpointRefused` is told why (no secret is part of the reason).
 */
export function credentialFromAnswer(answer: TokenAnswer, previous: Pick<OAuthCredential, 'clientId' | 'clientSecret'> & Partial<OAuthCredential>, now = Date.now(), onEndpointRefused?: (reason: string) => void): OAuthCredential {
  const expiresAt = typeof answer.expires_in === 'number' && answer.expires_in > 0 ? now + answer.expires_in * 1000 : typeof answer.expires === 'number' && answer.expires > 0 ? answer.expires * 1000 : 0;
  let offered = answer.client_endpoint;
  if (offered && previous.clientEndpoint) {
    const problem = clientEndpointProblem(offered, previous.clientEndpoint);
    if (problem) {
      onEndpointRefused?.(`the token answer's client_endpoint was not taken: ${problem}; the portal's endpoint is kept`);
      offered = undefined;
    }
  }
  const clientEndpoint = offered || previous.clientEndpoint;
  if (!clientEndpoint) throw new OAuthError('rejected', 'UNEXPECTED_ANSWER', 'the token answer has no client_endpoint');
  const next: OAuthCredential = {
    ...previous,
    clientId: previous.clientId,
    clientSecret: previous.clientSecret,
    accessToken: answer.access_token,
    refreshToken: answer.refresh_token,
    expiresAt,
    clientEndpoint,
  };
  if (answer.member_id) next.memberId = answer.member_id;
  if (answer.scope) next.scope = answer.scope;
  if (answer.user_id !== undefined && answer.user_id !== null) next.userId = Number(answer.user_id);
  if (answer.server_endpoint) next.serverEndpoint = answer.server_endpoint;
  return next;
}

// ---------------------------------------------------------------------------
// Stores and locks
// ---------------------------------------------------------------------------

/** The compare-and-set store in memory: one process (and the tests). */
export class MemoryCredentialStore implements CredentialStore {
  #credential: OAuthCredential;
  needsAuthorization = false;
  constructor(credential: OAuthCredential) {
    this.#credential = { ...credential };
  }
  async load(): Promise<OAuthCredential> {
    return { ...this.#credential };
  }
  async replace(previousRefreshToken: string, next: OAuthCredential): Promise<boolean> {
    if (this.#credential.refreshToken !== previousRefreshToken) return false;
    this.#credential = { ...next };
    this.needsAuthorization = false;
    return true;
  }
  async markNeedsAuthorization(): Promise<void> {
    this.needsAuthorization = true;
  }
  [inspect.custom](): string {
    return 'MemoryCredentialStore {}';
  }
}

/** The lock's store is reachable but answered too slowly: whether the lock is taken is unknown. */
export class RefreshLockSlowError extends Error {
  override readonly name = 'RefreshLockSlowError';
  constructor() {
    super('refresh lock: Redis answered too slowly');
  }
}

const RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: Redis did not answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The refresh lock in Redis: `SET key token NX PX ttl`; released with a script that
 * deletes the key only while it still holds our token (an expired lock taken over by
 * another instance is not released by us). A Redis that does not answer within
 * `opTimeoutMs` makes `tryAcquire` reject: when it is not connected, the token manager
 * goes on without the lock (the compare-and-set of the store still keeps one refresh
 * token); when it is connected but slow (`RefreshLockSlowError`), the manager waits and
 * reads the store again instead.
 */
export class RedisRefreshLock implements RefreshLock {
  constructor(
    private readonly redis: Redis,
    private readonly options: { prefix?: string; opTimeoutMs?: number } = {},
  ) {}

  async tryAcquire(name: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    const key = `${this.options.prefix ?? 'smartproc:b24'}:refresh-lock:{${name}}`;
    const token = randomUUID();
    const timeout = this.options.opTimeoutMs ?? 100;
    const release = async () => {
      const released = withTimeout(this.redis.eval(RELEASE_SCRIPT, 1, key, token), timeout * 10, 'refresh lock release');
      await released.catch(() => {}); // the TTL ends it anyway
    };
    const set = this.redis.set(key, token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
    set.catch(() => {});
    const taken = withTimeout(set, timeout, 'refresh lock');
    taken.catch(() => {});
    try {
      if ((await taken) !== 'OK') return null;
    } catch (error) {
      // A connected Redis that merely answered slowly is not "Redis down": the lock may well be
      // held by another instance. Say so (the manager waits instead of refreshing without the
      // lock), and give the lock back if the late SET took it after all.
      if ((this.redis as { status?: string }).status === 'ready') {
        void set.then((answer) => (answer === 'OK' ? release() : undefined), () => {});
        throw new RefreshLockSlowError();
      }
      throw error;
    }
    return release;
  }
}

// ---------------------------------------------------------------------------
// The token manager
// ---------------------------------------------------------------------------

export interface TokenManagerOptions {
  store: CredentialStore;
  /** The lock across instances (Redis); null: this process only. */
  lock?: RefreshLock | null;
  /** Names the credential for the lock, e.g. `portal:12`. */
  lockName: string;
  /** How long the lock is held at most (ms), default 20 s (the token request times out at 15 s). */
  lockTtlMs?: number;
  /** How long to wait for another instance's refresh before failing (ms), default 25 s (longer than the lock lives). */
  waitForOtherMs?: number;
  /** How often the store is read while another instance refreshes (ms), default 50. */
  pollMs?: number;
  /** After invalid_grant, how long to look for another instance's new pair in the store before calling the token dead (ms), default 1 s. */
  invalidGrantGraceMs?: number;
  /** A stored expiry this close (ms) counts as passed, default 30 s. */
  expirySkewMs?: number;
  token?: TokenRequestOptions;
  now?: () => number;
  /** Told when a token answer's client_endpoint was refused (clientEndpointProblem); the reason holds no secret. */
  onEndpointRefused?: (reason: string) => void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function differs(a: OAuthCredential, b: OAuthCredential): boolean {
  return a.refreshToken !== b.refreshToken || a.accessToken !== b.accessToken;
}

/**
 * Runs calls with the current access token of one credential and refreshes it when it
 * expired. Compose it outside the request budget so the repeated call takes its own slot:
 * `tokens.withToken((auth) => budget.run(method, () => client.call(method, params, { auth })))`.
 */
export class TokenManager {
  #credential: OAuthCredential | null = null;
  #loading: Promise<OAuthCredential> | null = null;
  #refreshing: Promise<OAuthCredential> | null = null;
  #deadRefreshToken: string | null = null;
  #unsaved: { previous: string; next: OAuthCredential } | null = null;
  /** Refreshes this manager made, and refreshes of another instance it took over. */
  readonly stats = { refreshes: 0, adopted: 0 };
  private readonly now: () => number;

  constructor(private readonly options: TokenManagerOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Runs `fn` with the token; on `expired_token` (or a passed expiry, checked first) refreshes once and runs it again. */
  async withToken<T>(fn: (auth: OAuthCallAuth) => Promise<T>): Promise<T> {
    let credential = await this.current();
    if (this.#unsaved) await this.saveUnsaved();
    if (credential.refreshToken === this.#deadRefreshToken) {
      // Known dead: only a new authorization stored meanwhile helps; the portal is not asked in vain.
      const stored = await this.options.store.load();
      if (!differs(stored, credential)) throw new NeedsAuthorizationError();
      credential = this.adopt(stored);
      this.#deadRefreshToken = null;
    }
    if (credential.expiresAt > 0 && credential.expiresAt - (this.options.expirySkewMs ?? 30_000) <= this.now()) {
      try {
        credential = await this.renew(credential);
      } catch (error) {
        // The token server is down but the token has not quite expired yet: use it while it lasts.
        if (!(error instanceof OAuthError && error.kind === 'unavailable' && credential.expiresAt > this.now())) throw error;
      }
    }
    try {
      return await fn(authOf(credential));
    } catch (error) {
      if (!(error instanceof Bitrix24Error && error.kind === 'expired_token')) throw error;
      const renewed = await this.renew(credential);
      return fn(authOf(renewed));
    }
  }

  /** The credential in use (loaded from the store once). */
  async current(): Promise<OAuthCredential> {
    if (this.#credential) return this.#credential;
    this.#loading ??= this.options.store.load().finally(() => {
      this.#loading = null;
    });
    const loaded = await this.#loading;
    this.#credential ??= loaded;
    return this.#credential;
  }

  /**
   * Reads the stored credential again on the next call (it may have been replaced, e.g. by a
   * PATCH), keeping what only this process knows: a new pair not stored yet, a dead refresh token.
   */
  reload(): void {
    if (!this.#unsaved && !this.#refreshing) this.#credential = null;
  }

  /** Drops the credential held in memory (after it was replaced in the store by someone else). */
  forget(): void {
    this.#credential = null;
    this.#deadRefreshToken = null;
  }

  /** A credential newer than `stale`: the one this process already has, another instance's, or a fresh refresh. */
  private renew(stale: OAuthCredential): Promise<OAuthCredential> {
    if (this.#credential && differs(this.#credential, stale)) return Promise.resolve(this.#credential);
    this.#refreshing ??= this.renewAcrossInstances(stale).finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  private adopt(credential: OAuthCredential): OAuthCredential {
    this.#credential = credential;
    this.stats.adopted++;
    return credential;
  }

  private async renewAcrossInstances(stale: OAuthCredential): Promise<OAuthCredential> {
    const { store, lock } = this.options;
    const deadline = this.now() + (this.options.waitForOtherMs ?? 25_000);
    for (;;) {
      const stored = await store.load();
      if (differs(stored, stale)) return this.adopt(stored);
      if (stored.refreshToken === this.#deadRefreshToken) throw new NeedsAuthorizationError();
      let release: (() => Promise<void>) | null = null;
      let locked = !lock;
      if (lock) {
        try {
          release = await lock.tryAcquire(this.options.lockName, this.options.lockTtlMs ?? 20_000);
          locked = release !== null;
        } catch (error) {
          // Slow: maybe another instance holds it; look at the store again (below) instead of refreshing without it.
          // Unreachable: go on without it (the store's compare-and-set still holds).
          locked = !(error instanceof RefreshLockSlowError);
        }
      }
      if (locked) {
        try {
          const current = release ? await store.load() : stored;
          if (differs(current, stale)) return this.adopt(current);
          return await this.refreshWith(current);
        } finally {
          await release?.();
        }
      }
      if (this.now() >= deadline) throw new OAuthError('unavailable', 'REFRESH_WAIT_TIMEOUT', 'another instance is refreshing this credential and did not finish in time');
      await sleep(this.options.pollMs ?? 50);
    }
  }

  private async refreshWith(credential: OAuthCredential): Promise<OAuthCredential> {
    const { store } = this.options;
    let answer: TokenAnswer;
    try {
      this.stats.refreshes++;
      answer = await refreshTokens(credential, this.options.token);
    } catch (error) {
      if (error instanceof NeedsAuthorizationError) {
        // Used by another instance meanwhile (Redis was unreachable, so no lock)? Then its
        // result reaches the store shortly: look for it a little before calling the token dead.
        const graceEnds = this.now() + (this.options.invalidGrantGraceMs ?? 1000);
        for (;;) {
          const stored = await store.load();
          if (differs(stored, credential)) return this.adopt(stored);
          if (this.now() >= graceEnds) break;
          await sleep(this.options.pollMs ?? 50);
        }
        this.#deadRefreshToken = credential.refreshToken;
        await store.markNeedsAuthorization?.(credential.refreshToken).catch(() => {});
      }
      throw error;
    }
    const next = credentialFromAnswer(answer, credential, this.now(), this.options.onEndpointRefused);
    let saved: boolean;
    try {
      saved = await store.replace(credential.refreshToken, next);
    } catch {
      // The old refresh token is dead now: keep the new pair in memory and store it on the next call.
      this.#unsaved = { previous: credential.refreshToken, next };
      this.#credential = next;
      return next;
    }
    if (!saved) {
      // Replaced meanwhile (an administrator's new credential, or a refresh without the lock): the store wins.
      const stored = await store.load();
      return this.adopt(stored);
    }
    this.#credential = next;
    return next;
  }

  private async saveUnsaved(): Promise<void> {
    const pending = this.#unsaved;
    if (!pending) return;
    try {
      await this.options.store.replace(pending.previous, pending.next); // false: replaced by someone else meanwhile, who wins
      this.#unsaved = null;
    } catch {
      // still unreachable: try again on the next call
    }
  }

  [inspect.custom](): string {
    return `TokenManager { lockName: ${JSON.stringify(this.options.lockName)} }`;
  }

  toJSON(): object {
    return { lockName: this.options.lockName };
  }
}

function authOf(credential: OAuthCredential): OAuthCallAuth {
  return { accessToken: credential.accessToken, clientEndpoint: credential.clientEndpoint };
}
