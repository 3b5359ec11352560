/**
 * Bitrix24 failures -> smartproc's ApiError, per bitrix24.md § "System errors and what
 * /v1 answers":
 *
 * | kind (native codes)                                              | /v1 answer                    |
 * |------------------------------------------------------------------|-------------------------------|
 * | not_found (`0` on get/getByEntityTypeId/update/delete)           | 404 SMART_PROCESS_NOT_FOUND   |
 * | method (INVALID_ARG_VALUE, BX_ERROR, 100, *_RESTRICTED, ...)     | 422 BITRIX_ERROR              |
 * | access_denied (ACCESS_DENIED, insufficient_scope,                |                               |
 * |   INVALID_CREDENTIALS, user_access_error, allowed_only_intranet) | 403 BITRIX_ACCESS_DENIED      |
 * | expired_token (still expired after the one refresh)              | 401 TOKEN_EXPIRED             |
 * | OAuth refresh failed (rejected / token server unavailable)       | 401 TOKEN_EXPIRED             |
 * | invalid_credentials (NO_AUTH_FOUND, invalid_token)               | 401 TOKEN_MISSING             |
 * | invalid_grant (NeedsAuthorizationError)                          | 401 TOKEN_MISSING             |
 * | query_limit, operation_time_limit (the budget gave up)           | 504 QUEUE_TIMEOUT + retryAfter|
 * | overload (OVERLOAD_LIMIT)                                        | 502 BITRIX_UNAVAILABLE        |
 * | server, network, timeout, answer_lost                            | 502 BITRIX_UNAVAILABLE        |
 *
 * Messages carry the native code and description (the description is localized: passed
 * on, never matched); hints are chosen by the code. No secret is ever part of them: the
 * client and the token manager keep them out of their errors.
 */
import { ApiError } from '../../errors.js';
import { Bitrix24Error } from './rest-client.js';
import { NeedsAuthorizationError, OAuthError } from './oauth.js';

export interface MappingContext {
  /** The type the route was about: named in the 404 message. */
  entityTypeId?: number;
  /** The call wrote (add/update/delete): an answer_lost then says that the write may have happened. */
  write?: boolean;
  /** For tests: the clock that operating_reset_at is compared with. */
  now?: () => number;
}

function native(error: Bitrix24Error): string {
  return `Bitrix24 ${error.method} answered ${String(error.code)}${error.description ? `: ${error.description}` : ''}`;
}

const ACCESS_HINTS: Record<string, string> = {
  insufficient_scope: 'Give the webhook or the application the crm scope in Bitrix24.',
  ACCESS_DENIED: "The webhook's or token's user must be a CRM administrator of the portal (and REST needs a commercial plan).",
  INVALID_CREDENTIALS: "The webhook's or token's user lacks the rights for this method on the portal.",
  user_access_error: 'The application is installed, but the portal administrator limited it to other users.',
  allowed_only_intranet_user: "The webhook's or token's user must be an intranet (employee) user of the portal.",
};

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** The ApiError that answers a Bitrix24Error. */
export function bitrix24ErrorToApiError(error: Bitrix24Error, context: MappingContext = {}): ApiError {
  const now = context.now ?? Date.now;
  switch (error.kind) {
    case 'not_found':
      return new ApiError('SMART_PROCESS_NOT_FOUND', `Smart process${context.entityTypeId !== undefined ? ` with entityTypeId=${context.entityTypeId}` : ''} not found (${native(error)})`, {
        hint: 'List the types: GET /v1/smart-processes.',
      });
    case 'method':
      return new ApiError('BITRIX_ERROR', native(error), { hint: 'The portal refused the operation; read the message, fix the data and send again.' });
    case 'access_denied':
      return new ApiError('BITRIX_ACCESS_DENIED', native(error), { hint: ACCESS_HINTS[String(error.code)] ?? 'Grant the rights or scopes on the portal (the crm scope; a CRM administrator user).' });
    case 'expired_token':
      return new ApiError('TOKEN_EXPIRED', `The portal's access token has expired and could not be renewed (${native(error)})`, {
        hint: "Check the portal's OAuth application; if this persists, authorize it again (PATCH /v1/portals/:id with new tokens).",
      });
    case 'invalid_credentials':
      return new ApiError('TOKEN_MISSING', `The portal's credentials were rejected (${native(error)})`, {
        hint: 'The webhook was deleted or its token revoked: create a new incoming webhook with the crm scope (or authorize the application again) and PATCH /v1/portals/:id.',
      });
    case 'query_limit': {
      const retryAfter = seconds(error.retryAfterMs ?? 1000);
      return new ApiError('QUEUE_TIMEOUT', `The portal's request limit is exhausted (${native(error)})`, { retryAfter, hint: `Retry after ${retryAfter} s.` });
    }
    case 'operation_time_limit': {
      const resetAt = error.time?.operating_reset_at;
      const retryAfter = error.retryAfterMs !== undefined ? seconds(error.retryAfterMs) : resetAt && resetAt * 1000 > now() ? seconds(resetAt * 1000 - now()) : 60;
      return new ApiError('QUEUE_TIMEOUT', `The portal blocked ${error.method} for its accumulated run time (${native(error)})`, { retryAfter, hint: `Retry after ${retryAfter} s.` });
    }
    case 'overload':
      return new ApiError('BITRIX_UNAVAILABLE', `The portal's REST API is blocked for overload (${native(error)})`, { hint: 'This is a manual block by Bitrix24: contact Bitrix24 support to lift it.' });
    case 'answer_lost':
      return new ApiError('BITRIX_UNAVAILABLE', `The portal did not answer ${error.method}${context.write ? '; the write may or may not have happened' : ''} (${native(error)})`, {
        hint: context.write ? 'Check the current state (GET) before retrying the write.' : 'Retry shortly.',
      });
    case 'server':
    case 'network':
    case 'timeout':
      return new ApiError('BITRIX_UNAVAILABLE', `The portal could not serve ${error.method} (${native(error)})`, {
        hint: context.write && error.kind === 'server' ? 'Check the current state (GET) before retrying the write.' : 'Retry shortly; if it persists, check that the portal is reachable.',
      });
  }
}

/** The ApiError that answers a failure of the token server. */
export function oauthErrorToApiError(error: OAuthError): ApiError {
  const what = `${error.code}${error.description ? `: ${error.description}` : ''}`;
  if (error instanceof NeedsAuthorizationError || error.kind === 'needs_authorization') {
    return new ApiError('TOKEN_MISSING', `The portal needs a new authorization: its refresh token was refused (${what})`, {
      hint: 'Authorize the application on the portal again and store the new tokens (PATCH /v1/portals/:id with oauth.accessToken and oauth.refreshToken).',
    });
  }
  if (error.kind === 'unavailable') {
    return new ApiError('TOKEN_EXPIRED', `The portal's access token has expired and the authorization server could not renew it (${what})`, { hint: 'Retry shortly; the authorization server (tokenUrl) is unreachable or failing.' });
  }
  return new ApiError('TOKEN_EXPIRED', `The portal's access token has expired and the authorization server refused to renew it (${what})`, {
    hint: "Check the application's clientId and clientSecret, that it is still installed and paid for on the portal; or authorize it again.",
  });
}

/**
 * Maps what a Bitrix24 call threw: Bitrix24Error and OAuthError become ApiError, an ApiError
 * (e.g. the budget's QUEUE_TIMEOUT) passes, anything else is returned unchanged (a bug: 500).
 */
export function mapBitrix24Failure(error: unknown, context: MappingContext = {}): unknown {
  if (error instanceof Bitrix24Error) return bitrix24ErrorToApiError(error, context);
  if (error instanceof OAuthError) return oauthErrorToApiError(error);
  return error;
}
