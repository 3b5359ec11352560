/**
 * The credential of a `bitrix24` portal (issue 9 item 1): what a client sends to
 * /v1/portals, the rules it must meet, how it is sealed at rest, the one cheap call that
 * checks it, and the CredentialStore the OAuth token manager uses.
 *
 * - Input: `webhookUrl` (incoming webhook `https://{portal}/rest/{userId}/{secret}/`) or
 *   `oauth` {clientId, clientSecret, clientEndpoint, accessToken, refreshToken, expiresAt?,
 *   tokenUrl?}. `https://` only, except loopback hosts (127.0.0.0/8, ::1, localhost), which
 *   tests use for a local fake portal.
 * - At rest: one JSON document with every secret, sealed with the server's SecretBox
 *   (AES-256-GCM), bound to the portal id (the context), in `bitrix24_portals.sealed`.
 *   Shown: `{type, userId?, domain}` only.
 * - Check: the `scope` method (common/system/scope.md): a `basic` method every webhook and
 *   application may call, which answers the scopes the credential was granted. One call
 *   proves the portal accepts the credential and tells whether `crm` is among them
 *   (`user.current` would need the `user` scope, which a crm-only webhook lacks). A
 *   rejected credential or one without `crm` is 422 BITRIX_ERROR with the portal's own
 *   error and a hint; a portal that cannot be reached is 502 BITRIX_UNAVAILABLE.
 */
import type { SecretBox, Store } from '../../store/store.js';
import { ApiError, type ErrorDetail } from '../../errors.js';
import type { Bitrix24CredentialType } from '../../domain/records.js';
import { Bitrix24Error, Bitrix24RestClient, parseWebhookUrl, type RestClientOptions } from './rest-client.js';
import { DEFAULT_TOKEN_URL, MemoryCredentialStore, OAuthError, TokenManager, type CredentialStore, type OAuthCredential } from './oauth.js';
import { DEFAULT_BUDGET_LIMITS, type BudgetLimits, type PortalBudget } from './budget.js';
import { mapBitrix24Failure } from './error-mapping.js';

export interface OAuthInput {
  clientId: string;
  clientSecret: string;
  clientEndpoint: string;
  accessToken: string;
  refreshToken: string;
  /** ISO 8601, or epoch seconds (Bitrix24's `expires`); omitted: unknown (refresh on expired_token only). */
  expiresAt?: string | number | null;
  tokenUrl?: string;
}

export interface Bitrix24Input {
  webhookUrl?: string;
  oauth?: OAuthInput;
  limits?: Partial<BudgetLimits>;
}

/** The sealed document. */
export type Credential = { type: 'webhook'; webhookUrl: string } | ({ type: 'oauth' } & OAuthCredential);

export interface CredentialSummary {
  type: Bitrix24CredentialType;
  userId: number | null;
  domain: string;
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/** https, or http to a loopback host. Problems are reported at `location`; the URL (it may hold a secret) is never repeated. */
function urlProblems(value: string, location: string, what: string): ErrorDetail[] {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return [{ location, message: `${what} is not a URL` }];
  }
  if (url.protocol === 'https:') return [];
  if (url.protocol === 'http:' && LOOPBACK.test(url.hostname)) return [];
  return [{ location, message: `${what} must use https:// (http:// only for loopback hosts: 127.0.0.0/8, ::1, localhost)`, fix: 'use the https:// address of the portal' }];
}

function expiresAtOf(value: OAuthInput['expiresAt'], problems: ErrorDetail[]): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'number') return value * 1000;
  const ms = Date.parse(value);
  if (!Number.isFinite(ms) || !/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    problems.push({ location: 'body.oauth.expiresAt', message: 'expected an ISO 8601 time or epoch seconds' });
    return 0;
  }
  return ms;
}

export function limitsProblems(limits: Partial<BudgetLimits> | undefined): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  if (!limits) return problems;
  if (limits.burst !== undefined && !(Number.isInteger(limits.burst) && limits.burst >= 2 && limits.burst <= 100_000)) {
    problems.push({ location: 'body.limits.burst', message: 'must be an integer from 2 to 100000', fix: 'the portal plan: 50 (Enterprise: 250)' });
  }
  if (limits.perSecond !== undefined && !(Number.isFinite(limits.perSecond) && limits.perSecond > 0 && limits.perSecond <= 1000)) {
    problems.push({ location: 'body.limits.perSecond', message: 'must be a number above 0 and at most 1000', fix: 'the portal plan: 2 (Enterprise: 5)' });
  }
  return problems;
}

export function fullLimits(limits: Partial<BudgetLimits> | undefined, base: BudgetLimits = DEFAULT_BUDGET_LIMITS): BudgetLimits {
  return { burst: limits?.burst ?? base.burst, perSecond: limits?.perSecond ?? base.perSecond };
}

/**
 * The credential a request gives (exactly one of webhookUrl / oauth when `required`), or
 * null when it gives none; problems are pushed (400 VALIDATION_ERROR).
 */
export function credentialOf(input: Bitrix24Input, required: boolean, problems: ErrorDetail[]): Credential | null {
  if (input.webhookUrl !== undefined && input.oauth !== undefined) {
    problems.push({ location: 'body', message: 'give either webhookUrl or oauth, not both' });
    return null;
  }
  if (input.webhookUrl !== undefined) {
    const before = problems.length;
    problems.push(...urlProblems(input.webhookUrl, 'body.webhookUrl', 'webhookUrl'));
    if (problems.length > before) return null;
    try {
      return { type: 'webhook', webhookUrl: parseWebhookUrl(input.webhookUrl).base };
    } catch (error) {
      problems.push({ location: 'body.webhookUrl', message: (error as Error).message, fix: 'copy the URL of an incoming webhook (Developer resources → Other → Incoming webhook)' });
      return null;
    }
  }
  if (input.oauth !== undefined) {
    const o = input.oauth;
    const before = problems.length;
    problems.push(...urlProblems(o.clientEndpoint, 'body.oauth.clientEndpoint', 'clientEndpoint'));
    if (o.tokenUrl !== undefined) problems.push(...urlProblems(o.tokenUrl, 'body.oauth.tokenUrl', 'tokenUrl'));
    for (const name of ['clientId', 'clientSecret', 'accessToken', 'refreshToken'] as const) {
      if (!o[name]?.trim()) problems.push({ location: `body.oauth.${name}`, message: `${name} must not be blank` });
    }
    const expiresAt = expiresAtOf(o.expiresAt, problems);
    if (problems.length > before) return null;
    const endpoint = o.clientEndpoint.endsWith('/') ? o.clientEndpoint : `${o.clientEndpoint}/`;
    return { type: 'oauth', clientId: o.clientId, clientSecret: o.clientSecret, accessToken: o.accessToken, refreshToken: o.refreshToken, expiresAt, clientEndpoint: endpoint, tokenUrl: o.tokenUrl ?? DEFAULT_TOKEN_URL };
  }
  if (required) problems.push({ location: 'body.webhookUrl', message: 'a bitrix24 portal needs webhookUrl or oauth', fix: 'create an incoming webhook with the crm scope in Bitrix24 and send its URL as webhookUrl' });
  return null;
}

export function summaryOf(credential: Credential): CredentialSummary {
  if (credential.type === 'webhook') {
    const parts = parseWebhookUrl(credential.webhookUrl);
    return { type: 'webhook', userId: parts.userId, domain: parts.domain };
  }
  return { type: 'oauth', userId: credential.userId ?? null, domain: new URL(credential.clientEndpoint).host };
}

const context = (portalId: number) => `bitrix24-portal:${portalId}`;

export function seal(box: SecretBox, portalId: number, credential: Credential): string {
  return box.encrypt(JSON.stringify(credential), context(portalId));
}

export function unseal(box: SecretBox, portalId: number, sealed: string): Credential {
  return JSON.parse(box.decrypt(sealed, context(portalId))) as Credential;
}

export function restClientOf(credential: Credential, options: RestClientOptions = {}): Bitrix24RestClient {
  return credential.type === 'webhook' ? Bitrix24RestClient.webhook(credential.webhookUrl, options) : Bitrix24RestClient.oauth(credential.clientEndpoint, options);
}

const CHECK_HINT = 'Create an incoming webhook with the crm scope in Bitrix24 (Developer resources → Other → Incoming webhook) and send its URL, or give the tokens of an OAuth application that has the crm scope.';

/**
 * The one cheap call that checks a credential: `scope`. Resolves with the credential to
 * store (an OAuth credential may have been refreshed on the way, its old refresh token
 * then being dead) or throws 422 BITRIX_ERROR (refused), 502 BITRIX_UNAVAILABLE (portal or
 * authorization server unreachable) or 504 QUEUE_TIMEOUT with retryAfter (the portal's limits).
 */
export async function checkCredential(credential: Credential, options: { budget?: PortalBudget; rest?: RestClientOptions; fetch?: typeof fetch } = {}): Promise<Credential> {
  const client = restClientOf(credential, { timeoutMs: 15_000, ...options.rest });
  // One deadline for the check's calls (the call repeated after a refresh too), as for every client request.
  const deadline = options.budget ? Date.now() + options.budget.maxWaitMs : undefined;
  const run = <T>(fn: () => Promise<T>) => (options.budget ? options.budget.run('scope', fn, { deadline }) : fn());
  let scopes: unknown;
  let checked: Credential = credential;
  try {
    if (credential.type === 'webhook') {
      scopes = (await run(() => client.call<unknown>('scope'))).result;
    } else {
      const { type: _type, ...oauth } = credential;
      const store = new MemoryCredentialStore(oauth);
      const tokens = new TokenManager({ store, lockName: 'check', token: { tokenUrl: credential.tokenUrl } });
      scopes = (await tokens.withToken((auth) => run(() => client.call<unknown>('scope', {}, { auth })))).result;
      checked = { type: 'oauth', ...(await store.load()) };
    }
  } catch (error) {
    if (error instanceof ApiError) throw error;
    if (error instanceof Bitrix24Error) {
      if (error.kind === 'query_limit' || error.kind === 'operation_time_limit') {
        // The portal's limits, not the credential: the error table's answer (504 QUEUE_TIMEOUT with retryAfter).
        const mapped = mapBitrix24Failure(error);
        if (mapped instanceof ApiError) throw new ApiError(mapped.code, `${mapped.message}; the credentials could not be checked, nothing was saved`, { hint: mapped.hint, retryAfter: mapped.retryAfter, headers: mapped.headers });
        throw mapped;
      }
      if (['network', 'timeout', 'server', 'answer_lost', 'overload'].includes(error.kind)) {
        throw new ApiError('BITRIX_UNAVAILABLE', `The portal could not be reached to check the credentials (Bitrix24 ${error.method} answered ${String(error.code)}${error.description ? `: ${error.description}` : ''}); nothing was saved`, { hint: 'Check the address and that the portal is reachable from this server, then send again.' });
      }
      throw new ApiError('BITRIX_ERROR', `The portal rejected the credentials: Bitrix24 ${error.method} answered ${String(error.code)}${error.description ? `: ${error.description}` : ''}; nothing was saved`, { hint: CHECK_HINT });
    }
    if (error instanceof OAuthError && error.kind === 'unavailable') {
      throw new ApiError('BITRIX_UNAVAILABLE', `The authorization server could not be reached to check the OAuth tokens (${error.code}${error.description ? `: ${error.description}` : ''}); nothing was saved`, { hint: 'Check tokenUrl and that the authorization server is reachable from this server, then send again.' });
    }
    if (error instanceof OAuthError) {
      throw new ApiError('BITRIX_ERROR', `The authorization server refused the OAuth tokens: ${error.code}${error.description ? `: ${error.description}` : ''}; nothing was saved`, { hint: 'Authorize the application again and send the new accessToken and refreshToken (and check clientId, clientSecret, tokenUrl).' });
    }
    throw error;
  }
  if (!Array.isArray(scopes) || !scopes.includes('crm')) {
    const granted = Array.isArray(scopes) ? scopes.join(', ') || 'none' : 'unknown';
    throw new ApiError('BITRIX_ERROR', `The credentials lack the crm scope (the portal granted: ${granted}); nothing was saved`, { hint: CHECK_HINT });
  }
  return checked;
}

/**
 * The token manager's store: the portal's sealed row. `replace` and `markNeedsAuthorization`
 * compare the stored refresh token (unsealed) with the one the caller started from, inside one
 * write on the row locked for it (`forUpdate` on PostgreSQL; SQLite's writes run one at a time):
 * other changes of the row (limits, a needs-authorization mark) do not make them fail.
 */
export class SealedCredentialStore implements CredentialStore {
  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly portalId: number,
    private readonly onNeedsAuthorization: () => void,
  ) {}

  async load(): Promise<OAuthCredential> {
    const row = await this.store.read.bitrix24.get(this.portalId);
    if (!row) throw new ApiError('TOKEN_MISSING', 'The API key has no configured tokens', { hint: 'The portal has no credentials: PATCH /v1/portals/:id with webhookUrl or oauth.' });
    const credential = unseal(this.box, this.portalId, row.sealed);
    if (credential.type !== 'oauth') throw new ApiError('TOKEN_MISSING', 'The portal credential is not an OAuth credential');
    const { type: _type, ...oauth } = credential;
    return oauth;
  }

  /** The stored refresh token, read on the row locked for this write; null when there is no readable OAuth credential. */
  private async lockedRefreshToken(repos: { bitrix24: { get(id: number, options: { forUpdate?: boolean }): Promise<{ sealed: string } | null> } }): Promise<string | null> {
    const row = await repos.bitrix24.get(this.portalId, { forUpdate: true });
    if (!row) return null;
    try {
      const credential = unseal(this.box, this.portalId, row.sealed);
      return credential.type === 'oauth' ? credential.refreshToken : null;
    } catch {
      return null;
    }
  }

  async replace(previousRefreshToken: string, next: OAuthCredential): Promise<boolean> {
    const sealed = seal(this.box, this.portalId, { type: 'oauth', ...next });
    return this.store.write(async ({ repos }) => {
      if ((await this.lockedRefreshToken(repos)) !== previousRefreshToken) return false;
      await repos.bitrix24.replaceSealed(this.portalId, sealed, next.memberId ?? null);
      return true;
    });
  }

  async markNeedsAuthorization(refreshToken: string): Promise<void> {
    const marked = await this.store.write(async ({ repos }) => {
      if ((await this.lockedRefreshToken(repos)) !== refreshToken) return false;
      await repos.bitrix24.markNeedsAuthorization(this.portalId);
      return true;
    });
    if (marked) this.onNeedsAuthorization();
  }
}
