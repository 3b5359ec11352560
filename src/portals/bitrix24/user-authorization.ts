/**
 * User authorization on a `bitrix24` portal (issue 10; settings/oauth/index.md): the
 * portal's consent page, the code exchange (`grant_type=authorization_code`) with the
 * portal's own OAuth application, and who the user is (`user.current` with the user's
 * token, `profile` when the application lacks the `user` scope).
 *
 * The user's tokens are sealed with the SecretBox: for the flow between the callback and
 * the collection (context `oauth-flow:<id>`), then for the session (`bitrix24-session:<id>`).
 * No token, code or secret is ever part of an error message.
 */
import { ApiError } from '../../errors.js';
import type { PortalRecord, SessionUser } from '../../domain/records.js';
import type { SecretBox, Store } from '../../store/store.js';
import { DEFAULT_BUDGET_LIMITS, type PortalBudgets } from './budget.js';
import { budgetNameOf } from './bitrix24-portal.js';
import { credentialFromAnswer, DEFAULT_TOKEN_URL, exchangeAuthorizationCode, OAuthError, type CredentialStore, type OAuthCredential } from './oauth.js';
import { unseal } from './portal-credentials.js';
import { Bitrix24Error, Bitrix24RestClient } from './rest-client.js';

export const WEBHOOK_ONLY_HINT =
  "User authorization needs the portal's OAuth application: create a local application in Bitrix24 (Developer resources → Other → Local application) with the crm and user scopes and the redirect URI PUBLIC_URL/oauth/callback, then give the portal its credentials (PATCH /v1/portals/:id with oauth {...}).";

export interface Bitrix24UserAuthorizationDeps {
  store: Store;
  box: () => SecretBox;
  budgets: PortalBudgets;
  callTimeoutMs: number;
}

/** What the callback brings back: who the user is and the user's own tokens (sealed for the flow). */
export interface AuthorizedUser {
  user: SessionUser;
  sealed: string;
}

const flowContext = (flowId: string) => `oauth-flow:${flowId}`;
const sessionContext = (sessionId: string) => `bitrix24-session:${sessionId}`;

export class Bitrix24UserAuthorization {
  constructor(private readonly deps: Bitrix24UserAuthorizationDeps) {}

  /** The portal's OAuth application (its credential row); INVALID_APP_KEY with a hint when the portal has only a webhook. */
  private async application(portal: PortalRecord): Promise<OAuthCredential> {
    const row = await this.deps.store.read.bitrix24.get(portal.id);
    if (!row) throw new ApiError('INVALID_APP_KEY', `Portal ${portal.id} has no credentials, so its users cannot authorize an application`, { hint: WEBHOOK_ONLY_HINT });
    let credential;
    try {
      credential = unseal(this.deps.box(), portal.id, row.sealed);
    } catch {
      throw new ApiError('KEY_INACTIVE', "The portal's credentials cannot be read with this server's secret key", { hint: 'Restore SMARTPROC_SECRET_KEY (or DATA_DIR/secret.key), or PATCH /v1/portals/:id with new credentials.' });
    }
    if (credential.type !== 'oauth') {
      throw new ApiError('INVALID_APP_KEY', `Portal ${portal.id} (${portal.domain}) is connected through an incoming webhook; user authorization needs an OAuth application`, { hint: WEBHOOK_ONLY_HINT });
    }
    const { type: _type, ...oauth } = credential;
    return oauth;
  }

  /** Refuses early (at GET /v1/oauth/authorize) what the callback could not serve. */
  async assertCanAuthorize(portal: PortalRecord): Promise<void> {
    await this.application(portal);
  }

  /** `https://{portal}/oauth/authorize/?client_id=...&state=...` (the redirect URI is the application's setting, never sent). */
  async consentUrl(portal: PortalRecord, state: string): Promise<string> {
    const app = await this.application(portal);
    const url = new URL('/oauth/authorize/', app.clientEndpoint);
    url.searchParams.set('client_id', app.clientId);
    url.searchParams.set('state', state);
    return url.toString();
  }

  /**
   * Exchanges the code the portal sent back for the user's tokens and asks the portal who
   * the user is; the tokens come back sealed for the flow. Throws ApiError (BITRIX_ERROR,
   * BITRIX_UNAVAILABLE, AUTHORIZATION_DENIED) with messages free of secrets.
   */
  async exchange(portal: PortalRecord, flowId: string, input: { code: string; memberId: string | null }): Promise<AuthorizedUser> {
    const app = await this.application(portal);
    const expectedMember = portal.bitrix24?.memberId ?? app.memberId ?? null;
    if (expectedMember && input.memberId && input.memberId !== expectedMember) {
      throw new ApiError('AUTHORIZATION_DENIED', 'The person authorized on another Bitrix24 portal than the one of this application key');
    }
    let answer;
    try {
      answer = await exchangeAuthorizationCode({ clientId: app.clientId, clientSecret: app.clientSecret, code: input.code }, { tokenUrl: app.tokenUrl ?? DEFAULT_TOKEN_URL, timeoutMs: 15_000 });
    } catch (error) {
      if (error instanceof OAuthError) {
        if (error.kind === 'unavailable') throw new ApiError('BITRIX_UNAVAILABLE', `The authorization server could not be reached to exchange the code (${error.code})`, { hint: 'Try the authorization again shortly.' });
        throw new ApiError('BITRIX_ERROR', `The authorization server refused the code (${error.code}${error.description ? `: ${error.description}` : ''})`, { hint: "Codes live 30 seconds; try again. If it persists, check the portal's OAuth clientId and clientSecret." });
      }
      throw error;
    }
    const credential = credentialFromAnswer(answer, { clientId: app.clientId, clientSecret: app.clientSecret, clientEndpoint: app.clientEndpoint, tokenUrl: app.tokenUrl });
    if (new URL(credential.clientEndpoint).host !== new URL(app.clientEndpoint).host || (expectedMember && credential.memberId && credential.memberId !== expectedMember)) {
      throw new ApiError('AUTHORIZATION_DENIED', 'The person authorized on another Bitrix24 portal than the one of this application key');
    }
    const user = await this.whoIs(portal, credential);
    if (credential.userId === undefined) credential.userId = user.id;
    return { user, sealed: this.deps.box().encrypt(JSON.stringify(credential), flowContext(flowId)) };
  }

  /** user.current with the user's token (scope user); `profile` (basic) when the application lacks it. */
  private async whoIs(portal: PortalRecord, credential: OAuthCredential): Promise<SessionUser> {
    const client = Bitrix24RestClient.oauth(credential.clientEndpoint, { timeoutMs: this.deps.callTimeoutMs });
    const budget = this.deps.budgets.get(budgetNameOf(portal), portal.bitrix24?.limits ?? DEFAULT_BUDGET_LIMITS);
    const auth = { accessToken: credential.accessToken, clientEndpoint: credential.clientEndpoint };
    const ask = (method: string) => budget.run(method, () => client.call<Record<string, unknown>>(method, {}, { auth }));
    let result: Record<string, unknown>;
    try {
      try {
        result = (await ask('user.current')).result;
      } catch (error) {
        if (!(error instanceof Bitrix24Error && error.kind === 'access_denied')) throw error;
        result = (await ask('profile')).result;
      }
    } catch (error) {
      if (error instanceof ApiError) throw error;
      if (error instanceof Bitrix24Error) {
        const unavailable = ['network', 'timeout', 'server', 'answer_lost', 'overload'].includes(error.kind);
        throw new ApiError(unavailable ? 'BITRIX_UNAVAILABLE' : 'BITRIX_ERROR', `The portal did not say who the user is (Bitrix24 ${error.method} answered ${String(error.code)})`, { hint: 'Try the authorization again.' });
      }
      throw error;
    }
    const id = Number(result?.ID);
    if (!Number.isInteger(id) || id <= 0) throw new ApiError('BITRIX_ERROR', 'The portal answered user.current without a user id');
    const name = [result.NAME, result.LAST_NAME].filter((p) => typeof p === 'string' && p.trim()).join(' ').trim();
    const email = typeof result.EMAIL === 'string' && result.EMAIL.trim() ? result.EMAIL.trim() : null;
    return { id, name: name || null, email };
  }

  /** The flow's sealed tokens, sealed again for the session that takes them. */
  sealForSession(flowId: string, sealedForFlow: string): (sessionId: string) => string {
    const box = this.deps.box();
    const plain = box.decrypt(sealedForFlow, flowContext(flowId));
    return (sessionId) => box.encrypt(plain, sessionContext(sessionId));
  }
}

/**
 * The token manager's store for a session's user tokens: `bitrix24_user_tokens`, with the
 * same compare-and-set on the refresh token as the portal's (SealedCredentialStore).
 * A dead refresh token is not marked: the session simply stops working (401) and the user
 * authorizes again.
 */
export class UserTokenStore implements CredentialStore {
  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly sessionId: string,
  ) {}

  async load(): Promise<OAuthCredential> {
    const row = await this.store.read.oauth.userTokens(this.sessionId);
    if (!row) throw new ApiError('INVALID_SESSION', 'The session has ended', { hint: 'Authorize again: GET /v1/oauth/authorize.' });
    return JSON.parse(this.box.decrypt(row.sealed, sessionContext(this.sessionId))) as OAuthCredential;
  }

  async replace(previousRefreshToken: string, next: OAuthCredential): Promise<boolean> {
    const sealed = this.box.encrypt(JSON.stringify(next), sessionContext(this.sessionId));
    return this.store.write(async ({ repos }) => {
      const row = await repos.oauth.userTokens(this.sessionId, { forUpdate: true });
      if (!row) return false;
      let current: OAuthCredential;
      try {
        current = JSON.parse(this.box.decrypt(row.sealed, sessionContext(this.sessionId))) as OAuthCredential;
      } catch {
        return false;
      }
      if (current.refreshToken !== previousRefreshToken) return false;
      await repos.oauth.replaceUserTokens(this.sessionId, sealed);
      return true;
    });
  }
}
