/**
 * User authorization of application keys (issue 10): the person behind an application
 * authorizes it once, and the application gets a session (vibe_session_, 24 h) acting as
 * that person.
 *
 *   GET /v1/oauth/authorize?app_key&state[&redirect_uri]
 *     local portal    → the sandbox consent page (/oauth/sandbox?flow=F)
 *     bitrix24 portal → https://{portal}/oauth/authorize/?client_id&state=F → GET /oauth/callback?code&state=F
 *   completion without redirect_uri → /oauth/complete?status=success; the application polls
 *     GET /v1/oauth/poll (pending → once complete: the session; 10 minutes)
 *   completion with redirect_uri → U?code&state (the code: once, 5 minutes) → POST /v1/oauth/token;
 *     failures → U?error=CODE&state
 *
 * Every step may land on another instance: the flow lives in the store (`oauth_flows`),
 * its secrets (F, the code) as SHA-256 hashes, a bitrix24 user's tokens sealed. Status
 * changes are compare-and-set in one write each (pending → complete|failed → done), so a
 * code or a poll result is handed out once, however many requests race for it.
 */
import { ApiError, ERROR_TABLE, type ErrorCode } from '../errors.js';
import type { KeyRecord, PortalRecord, SessionUser } from '../domain/records.js';
import type { OAuthFlowRecord, Store } from '../store/store.js';
import type { Bitrix24UserAuthorization } from '../portals/bitrix24/user-authorization.js';
import { SESSION_LIFETIME_MS, type KeysService } from './keys-service.js';
import { hashSecret, KEY_PREFIX, kindOfKey, newId, randomBase62 } from './tokens.js';

export const MIN_STATE_LENGTH = 16;
export const MAX_STATE_LENGTH = 512;
/** A started authorization waits this long for the person. */
export const FLOW_LIFETIME_MS = 10 * 60_000;
/** A completed authorization's poll result lives this long. */
export const RESULT_LIFETIME_MS = 10 * 60_000;
/** A one-time code (redirect_uri completion) lives this long. */
export const CODE_LIFETIME_MS = 5 * 60_000;

/** What a completed poll and POST /v1/oauth/token answer (the hosted API's shape). */
export interface SessionGrant {
  access_token: string;
  user: SessionUser;
  expires_in: number;
}

export type PollAnswer = { status: 'pending' } | ({ status: 'complete' } & SessionGrant);

/** The sandbox consent page's view of a pending flow. */
export interface ConsentView {
  keyName: string;
  portalName: string;
  redirect: boolean;
}

export interface UserAuthorizationDeps {
  store: Store;
  keys: KeysService;
  bitrix24: Bitrix24UserAuthorization;
  /** PUBLIC_URL (or http://HOST:PORT), without a trailing slash. */
  publicUrl: () => string;
  log?: { warn(obj: object, message: string): void };
}

/** `U?name=value&...`: U's own query kept, ours added. */
function withParams(uri: string, params: Record<string, string>): string {
  const url = new URL(uri);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return url.toString();
}

export class UserAuthorization {
  constructor(private readonly deps: UserAuthorizationDeps) {}

  private get store() {
    return this.deps.store;
  }

  /** The application key behind app_key, and its portal: INVALID_APP_KEY, KEY_EXPIRED, KEY_INACTIVE. */
  async applicationKey(appKey: string | undefined, now = Date.now()): Promise<{ key: KeyRecord; portal: PortalRecord }> {
    const value = appKey?.trim() ?? '';
    if (!value) throw new ApiError('INVALID_APP_KEY', 'app_key is missing', { hint: 'Send the application key (vibe_app_...) as app_key.' });
    if (kindOfKey(value) !== 'application') {
      throw new ApiError('INVALID_APP_KEY', value.startsWith(KEY_PREFIX.application) ? 'app_key is malformed' : 'app_key is not an application key (vibe_app_...)', { hint: 'User authorization is for application keys: create one with kind "application" (POST /v1/keys).' });
    }
    const found = await this.store.read.keys.findBySecretHash(hashSecret(value));
    if (!found || found.key.kind !== 'application' || found.key.portalId === null) throw new ApiError('INVALID_APP_KEY', 'app_key is unknown or was deleted');
    const { key } = found;
    if (key.expiresAt !== null && key.expiresAt <= now) throw new ApiError('KEY_EXPIRED', 'The application key has expired', { hint: 'Extend it (PATCH /v1/keys/:id expiresAt) or use another application key.' });
    if (found.secretExpiresAt !== null && found.secretExpiresAt <= now) throw new ApiError('KEY_INACTIVE', 'This secret of the application key was rotated out', { hint: "Use the key's current secret." });
    const portal = await this.store.read.portals.get(found.key.portalId);
    if (!portal) throw new ApiError('INVALID_APP_KEY', 'The portal of the application key was deleted');
    return { key, portal };
  }

  private checkState(state: string | undefined): string {
    if (!state || state.length < MIN_STATE_LENGTH) {
      throw new ApiError('INVALID_STATE', `state is ${state ? `${state.length} characters long` : 'missing'}; it must be at least ${MIN_STATE_LENGTH} characters`, {
        hint: 'Send a fresh random value of at least 16 characters (e.g. crypto.randomUUID()) as state, and check it when the person comes back (CSRF).',
      });
    }
    if (state.length > MAX_STATE_LENGTH) throw new ApiError('INVALID_STATE', `state must be at most ${MAX_STATE_LENGTH} characters`);
    return state;
  }

  /**
   * GET /v1/oauth/authorize: where to send the browser. app_key and redirect_uri problems are
   * thrown (answered as JSON: no redirect to an unchecked address); once redirect_uri is known
   * to be the key's, every other refusal goes back to it as U?error=CODE&state=S.
   */
  async authorize(query: { app_key?: string; state?: string; redirect_uri?: string }, now = Date.now()): Promise<string> {
    const { key, portal } = await this.applicationKey(query.app_key, now);
    const redirectUri = query.redirect_uri;
    if (redirectUri !== undefined && !key.redirectUris.includes(redirectUri)) {
      throw new ApiError('INVALID_REDIRECT_URI', 'redirect_uri is not one of the redirectUris of the application key', {
        hint: key.redirectUris.length ? 'Send one of the registered URIs exactly, or register this one (PATCH /v1/keys/:id redirectUris).' : 'Register it on the key first (PATCH /v1/keys/:id with redirectUris), or leave redirect_uri out and poll GET /v1/oauth/poll.',
      });
    }
    try {
      const state = this.checkState(query.state);
      if (portal.kind === 'bitrix24') await this.deps.bitrix24.assertCanAuthorize(portal);
      const flowSecret = randomBase62(40);
      const flowId = newId('flw');
      await this.store.write(({ repos }) =>
        repos.oauth.start({ id: flowId, flowHash: hashSecret(flowSecret), keyId: key.id, portalId: portal.id, state, redirectUri: redirectUri ?? null, expiresAt: now + FLOW_LIFETIME_MS, createdAt: now }),
      );
      if (portal.kind === 'bitrix24') return await this.deps.bitrix24.consentUrl(portal, flowSecret);
      return `${this.deps.publicUrl()}/oauth/sandbox?${new URLSearchParams({ flow: flowSecret })}`;
    } catch (error) {
      if (redirectUri !== undefined && error instanceof ApiError) return withParams(redirectUri, { error: error.code, ...(query.state ? { state: query.state } : {}) });
      throw error;
    }
  }

  /** A pending flow by its secret, or the refusal (INVALID_STATE) a page shows. */
  private async pendingFlow(flowSecret: string | undefined, now: number): Promise<OAuthFlowRecord> {
    const flow = flowSecret ? await this.store.read.oauth.byFlowHash(hashSecret(flowSecret)) : null;
    if (!flow) throw new ApiError('INVALID_STATE', 'This authorization link is unknown', { hint: 'Start again from the application.' });
    if (flow.status !== 'pending') throw new ApiError('INVALID_STATE', 'This authorization was already answered', { hint: 'Go back to the application.' });
    if (flow.expiresAt <= now) throw new ApiError('INVALID_STATE', `This authorization expired (it waits ${FLOW_LIFETIME_MS / 60_000} minutes)`, { hint: 'Start again from the application.' });
    return flow;
  }

  /** The sandbox consent page of a local portal's pending flow. */
  async consentView(flowSecret: string | undefined, now = Date.now()): Promise<ConsentView> {
    const flow = await this.pendingFlow(flowSecret, now);
    const [key, portal] = await Promise.all([this.store.read.keys.get(flow.keyId), this.store.read.portals.get(flow.portalId)]);
    if (!key || !portal || portal.kind !== 'local') throw new ApiError('INVALID_STATE', 'This authorization link is unknown', { hint: 'Start again from the application.' });
    return { keyName: key.name, portalName: portal.name, redirect: flow.redirectUri !== null };
  }

  /** The person's answer on the sandbox page: where the browser goes next. */
  async consentDecision(flowSecret: string | undefined, decision: { approve: boolean; user: SessionUser }, now = Date.now()): Promise<string> {
    const flow = await this.pendingFlow(flowSecret, now);
    const portal = await this.store.read.portals.get(flow.portalId);
    if (!portal || portal.kind !== 'local') throw new ApiError('INVALID_STATE', 'This authorization link is unknown');
    return this.finish(flow, decision.approve ? { user: decision.user } : { error: 'AUTHORIZATION_DENIED' }, now);
  }

  /**
   * GET /oauth/callback (bitrix24): the portal sent the person back with `code` and our
   * `state`; the code is exchanged for the user's tokens, the portal says who the user is.
   * Unknown or used states are thrown (a page: there is nowhere safe to redirect).
   */
  async callback(query: { code?: string; state?: string; member_id?: string; error?: string }, now = Date.now()): Promise<string> {
    const flow = query.state ? await this.store.read.oauth.byFlowHash(hashSecret(query.state)) : null;
    if (!flow) throw new ApiError('INVALID_STATE', 'This authorization is unknown to smartproc', { hint: 'Start again from the application.' });
    if (flow.status !== 'pending') throw new ApiError('INVALID_STATE', 'This authorization was already answered', { hint: 'Go back to the application.' });
    if (flow.expiresAt <= now) return this.failureLocation(flow, 'INVALID_STATE');
    const portal = await this.store.read.portals.get(flow.portalId);
    if (!portal || portal.kind !== 'bitrix24') throw new ApiError('INVALID_STATE', 'This authorization is unknown to smartproc');
    if (query.error || !query.code) return this.finish(flow, { error: 'AUTHORIZATION_DENIED' }, now);
    let authorized;
    try {
      authorized = await this.deps.bitrix24.exchange(portal, flow.id, { code: query.code, memberId: query.member_id ?? null });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      this.deps.log?.warn({ flowId: flow.id, keyId: flow.keyId, portalId: portal.id, code: error.code, reason: error.message }, 'user authorization failed at the Bitrix24 callback');
      return this.finish(flow, { error: error.code }, Date.now());
    }
    return this.finish(flow, { user: authorized.user, sealed: authorized.sealed }, Date.now());
  }

  private completeUrl(params: Record<string, string>): string {
    return `${this.deps.publicUrl()}/oauth/complete?${new URLSearchParams(params)}`;
  }

  private failureLocation(flow: OAuthFlowRecord, code: ErrorCode | string): string {
    return flow.redirectUri ? withParams(flow.redirectUri, { error: code, state: flow.state }) : this.completeUrl({ status: 'error', error: code });
  }

  /** pending → complete (a code when the flow returns through redirect_uri) or failed; where the browser goes. */
  private async finish(flow: OAuthFlowRecord, outcome: { user: SessionUser; sealed?: string } | { error: ErrorCode | string }, now: number): Promise<string> {
    if ('error' in outcome) {
      const done = await this.store.write(({ repos }) => repos.oauth.finish(flow.id, { status: 'failed', errorCode: outcome.error, expiresAt: now + RESULT_LIFETIME_MS }));
      if (!done) throw new ApiError('INVALID_STATE', 'This authorization was already answered', { hint: 'Go back to the application.' });
      return this.failureLocation(flow, outcome.error);
    }
    const code = flow.redirectUri ? randomBase62(40) : null;
    const done = await this.store.write(({ repos }) =>
      repos.oauth.finish(flow.id, { status: 'complete', user: outcome.user, sealedTokens: outcome.sealed ?? null, codeHash: code ? hashSecret(code) : null, expiresAt: now + (code ? CODE_LIFETIME_MS : RESULT_LIFETIME_MS) }),
    );
    if (!done) throw new ApiError('INVALID_STATE', 'This authorization was already answered', { hint: 'Go back to the application.' });
    return flow.redirectUri && code ? withParams(flow.redirectUri, { code, state: flow.state }) : this.completeUrl({ status: 'success' });
  }

  /** GET /v1/oauth/poll: pending until the person is done, then the session once. */
  async poll(query: { app_key?: string; state?: string }, now = Date.now()): Promise<PollAnswer> {
    const { key } = await this.applicationKey(query.app_key, now);
    const state = this.checkState(query.state);
    const flow = await this.store.read.oauth.byState(key.id, state);
    // Not seen yet: the popup may not have reached /v1/oauth/authorize yet.
    if (!flow) return { status: 'pending' };
    if (flow.redirectUri !== null) {
      throw new ApiError('INVALID_STATE', 'This authorization returns through redirect_uri', { hint: 'Exchange the code your redirect_uri received: POST /v1/oauth/token.' });
    }
    if (flow.status === 'done') throw new ApiError('INVALID_STATE', 'The result of this authorization was already collected', { hint: 'Results are handed out once; start a new authorization for another session.' });
    if (flow.expiresAt <= now) throw new ApiError('INVALID_STATE', `This authorization expired (${flow.status === 'pending' ? 'the person did not finish within 10 minutes' : 'its result is kept 10 minutes'})`, { hint: 'Start a new authorization.' });
    if (flow.status === 'pending') return { status: 'pending' };
    return { status: 'complete', ...(await this.collect(key, flow, now)) };
  }

  /** POST /v1/oauth/token: the one-time code of a redirect_uri completion → the session. */
  async exchangeCode(body: { app_key?: string; code?: string; redirect_uri?: string }, now = Date.now()): Promise<SessionGrant> {
    const { key } = await this.applicationKey(body.app_key, now);
    const flow = body.code ? await this.store.read.oauth.byCodeHash(hashSecret(body.code)) : null;
    if (!flow || flow.keyId !== key.id) throw new ApiError('INVALID_CODE', 'The code is unknown', { hint: 'Exchange the code your redirect_uri received, with the application key it was issued to.' });
    if (flow.redirectUri !== body.redirect_uri) throw new ApiError('INVALID_REDIRECT_URI', 'redirect_uri differs from the one the authorization started with', { hint: 'Send the same redirect_uri as in GET /v1/oauth/authorize.' });
    if (flow.status === 'done') throw new ApiError('INVALID_CODE', 'The code was already used', { hint: 'Codes work once; start a new authorization.' });
    if (flow.expiresAt <= now || flow.status !== 'complete') throw new ApiError('INVALID_CODE', `The code has expired (codes live ${CODE_LIFETIME_MS / 60_000} minutes)`, { hint: 'Start a new authorization and exchange the code at once.' });
    return this.collect(key, flow, now);
  }

  /** complete → done and the session, in one write: exactly one caller gets it. */
  private async collect(key: KeyRecord, flow: OAuthFlowRecord, now: number): Promise<SessionGrant> {
    const taken = await this.store
      .write(async ({ repos }) => {
        if (!(await repos.oauth.collect(flow.id))) return null;
        if (flow.status === 'failed') return { error: flow.errorCode ?? 'AUTHORIZATION_DENIED' };
        const sealUserTokens = flow.sealedTokens ? this.deps.bitrix24.sealForSession(flow.id, flow.sealedTokens) : undefined;
        return this.deps.keys.createSession(repos, { key, user: flow.user!, sealUserTokens }, now);
      })
      .catch((error: unknown) => {
        if (this.store.failureOf(error) === 'foreign_key') throw new ApiError('INVALID_APP_KEY', 'The application key was deleted meanwhile');
        throw error;
      });
    if (!taken) throw new ApiError(flow.redirectUri ? 'INVALID_CODE' : 'INVALID_STATE', flow.redirectUri ? 'The code was already used' : 'The result of this authorization was already collected');
    if ('error' in taken) {
      const code = (taken.error in ERROR_TABLE ? taken.error : 'AUTHORIZATION_DENIED') as ErrorCode;
      throw new ApiError(code, code === 'AUTHORIZATION_DENIED' ? 'The person declined the authorization' : 'The authorization failed', { hint: 'Start a new authorization.' });
    }
    return { access_token: taken.token, user: { id: taken.session.userId, name: taken.session.userName, email: taken.session.userEmail }, expires_in: SESSION_LIFETIME_MS / 1000 };
  }
}
