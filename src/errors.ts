/**
 * The one error table of smartproc (contract §7). Every error answer, the
 * OpenAPI document and docs/errors.md are derived from it.
 */
export const ERROR_TABLE = {
  VALIDATION_ERROR: { status: 400, when: 'The request does not match the schema; `details` lists every problem.', action: 'Fix each entry of `details` (see its `fix`) and send again.' },
  BATCH_LIMIT_EXCEEDED: { status: 400, when: 'A batch holds more calls (POST /v1/batch: 50) or items (POST /v1/smart-processes/batch: 500) than it may.', action: 'Split the batch into several requests.' },
  INVALID_FILTER_OPERATOR: { status: 400, when: 'A filter uses an unknown operator.', action: 'Use one of $gt $gte $lt $lte $ne $contains $in or the prefixes >= > <= < ! != %.' },
  MISSING_API_KEY: { status: 401, when: 'No key was sent.', action: 'Send the key in the X-Api-Key header.' },
  INVALID_API_KEY: { status: 401, when: 'The key is unknown, malformed, deleted, rotated out or expired.', action: 'Check the key; create or rotate one with a management key.' },
  TOKEN_MISSING: { status: 401, when: 'An application key came without a session, or the portal has no usable credentials.', action: 'Send Authorization: Bearer vibe_session_...; for a Bitrix24 portal, configure its credentials.' },
  INVALID_SESSION: { status: 401, when: 'The session token is unknown or malformed.', action: 'Mint a new session (POST /v1/sessions).' },
  INVALID_APP_KEY: { status: 401, when: 'User authorization (/v1/oauth/*): app_key is missing, unknown, malformed or not an application key (vibe_app_); or its bitrix24 portal has only a webhook, while user authorization needs an OAuth application.', action: "Send the application key as app_key; for a bitrix24 portal, give it an OAuth application's credentials (PATCH /v1/portals/:id with oauth)." },
  KEY_EXPIRED: { status: 401, when: "User authorization: the application key's expiresAt has passed.", action: 'Use a current application key, or extend this one (PATCH /v1/keys/:id expiresAt).' },
  INVALID_CODE: { status: 400, when: 'POST /v1/oauth/token: the code is unknown, expired (5 minutes), already used, or was issued to another application key.', action: 'Start the authorization again (GET /v1/oauth/authorize) and exchange the new code at once.' },
  INVALID_STATE: { status: 400, when: 'User authorization: state is missing or shorter than 16 characters, or the authorization with this state expired (10 minutes), failed or was already collected.', action: 'Send a fresh random state of at least 16 characters and start again (GET /v1/oauth/authorize).' },
  INVALID_REDIRECT_URI: { status: 400, when: "User authorization: redirect_uri is not one of the application key's redirectUris, or differs from the one the authorization started with.", action: 'Register the URI on the key (PATCH /v1/keys/:id redirectUris) and send it exactly.' },
  TOKEN_EXPIRED: { status: 401, when: 'The session (or the portal token) has expired.', action: 'Mint a new session; sessions live 24 hours and are not refreshed.' },
  SCOPE_DENIED: { status: 403, when: 'The key lacks the scope the route needs.', action: 'Add the scope to the key (PATCH /v1/keys/:id) or use another key.' },
  IP_NOT_ALLOWED: { status: 403, when: "The caller's address is outside the key's allowedIps.", action: "Call from an allowed address or widen the key's allowedIps." },
  MANAGEMENT_KEY_NO_ENTITY_ACCESS: { status: 403, when: 'A management key was used on a portal route.', action: 'Use a personal or application key of the portal.' },
  MANAGEMENT_SCOPE_REQUIRED: { status: 403, when: 'The route needs a management key with a vibe:mgmt:* scope it lacks.', action: 'Use a management key that has the named scope.' },
  SESSION_APP_MISMATCH: { status: 403, when: 'The session was issued for another application key.', action: 'Use the session with the application key it was minted for.' },
  KEY_INACTIVE: { status: 403, when: "User authorization: the application key cannot start a session now: this secret was rotated out, or its bitrix24 portal's credentials cannot be read with this server's secret key.", action: "Use the key's current secret; restore SMARTPROC_SECRET_KEY or give the portal new credentials (PATCH /v1/portals/:id)." },
  AUTHORIZATION_DENIED: { status: 403, when: 'User authorization: the person declined on the consent page, or Bitrix24 sent no authorization (beyond the hosted API).', action: 'Ask the person to authorize again (GET /v1/oauth/authorize).' },
  WRITE_BLOCKED_READONLY_KEY: { status: 403, when: 'A write was attempted with a READONLY key.', action: 'Use a READWRITE key.' },
  BITRIX_ACCESS_DENIED: { status: 403, when: 'The Bitrix24 portal refused access (rights, scope not granted).', action: 'Grant the rights or scopes on the portal.' },
  SMART_PROCESS_NOT_FOUND: { status: 404, when: 'No smart process type with this entityTypeId in the portal of the key.', action: 'List the types: GET /v1/smart-processes.' },
  ENTITY_NOT_FOUND: { status: 404, when: 'Another record (key, portal) was not found.', action: 'Check the id.' },
  ENTITY_NOT_SUPPORTED: { status: 404, when: 'A call of POST /v1/batch names an entity smartproc does not serve (a per-call error; the message lists the served ones).', action: 'Use an entity the message lists (smart-processes).' },
  ROUTE_NOT_FOUND: { status: 404, when: 'No such route.', action: 'See GET /v1/openapi.json for the routes.' },
  METHOD_NOT_ALLOWED: { status: 405, when: 'The route exists but not with this method; see the Allow header.', action: 'Use a method from the Allow header.' },
  PORTAL_NOT_EMPTY: { status: 409, when: 'A portal that still has keys or types was asked to be deleted without ?force=true (beyond the hosted API).', action: 'Delete its keys and types first, or send ?force=true.' },
  REQUEST_TIMEOUT: { status: 408, when: 'The request (its headers or its body) did not arrive within the time limit (beyond the hosted API).', action: 'Send the whole request promptly; see HEADERS_TIMEOUT_MS and REQUEST_TIMEOUT_MS.' },
  PRECONDITION_FAILED: { status: 412, when: 'If-Match did not match the current version (beyond the hosted API).', action: 'GET the current card, re-apply your change, send again with the new ETag.' },
  PAYLOAD_TOO_LARGE: { status: 413, when: 'The body is over the limit (1 MiB).', action: 'Send a smaller body.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, when: 'A body that is not application/json.', action: 'Send Content-Type: application/json.' },
  BITRIX_ERROR: { status: 422, when: 'The portal (emulated or real) rejected the operation; `message` says why.', action: 'Read the message; fix the data.' },
  RATE_LIMITED: { status: 429, when: "The key is over its requestsPerSecond.", action: 'Wait `retryAfter` seconds (also in Retry-After).' },
  HEADERS_TOO_LARGE: { status: 431, when: 'The request line and headers together are over the limit (16 KiB).', action: 'Send shorter headers; put a long filter in the body of POST /v1/smart-processes/search.' },
  INTERNAL_ERROR: { status: 500, when: 'A bug. The message hides internals; the log has the request id.', action: 'Report it with the requestId.' },
  BITRIX_UNAVAILABLE: { status: 502, when: 'The real portal could not be reached or kept failing; a write may or may not have happened.', action: 'Check the state, then retry.' },
  SERVICE_UNAVAILABLE: { status: 503, when: 'The store is down, the server is overloaded or shutting down.', action: 'Retry after `retryAfter` seconds.' },
  QUEUE_TIMEOUT: { status: 504, when: "A request waited too long (BITRIX24_QUEUE_TIMEOUT_MS, for all its calls together) for the portal's rate budget, or for another write of the same type on another instance.", action: 'Retry after `retryAfter` seconds.' },
} as const satisfies Record<string, { status: number; when: string; action: string }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export interface ErrorDetail {
  location: string;
  message: string;
  fix?: string;
}

export interface ApiErrorOptions {
  hint?: string;
  details?: ErrorDetail[];
  retryAfter?: number;
  headers?: Record<string, string>;
}

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly details?: ErrorDetail[];
  readonly retryAfter?: number;
  readonly headers?: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: ApiErrorOptions = {}) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
    this.retryAfter = options.retryAfter;
    this.headers = options.headers;
  }

  get status(): number {
    return ERROR_TABLE[this.code].status;
  }
}

export function validationError(details: ErrorDetail[], message?: string): ApiError {
  const summary = message ?? (details.length === 1 ? `${details[0].location}: ${details[0].message}` : `${details.length} problems in the request`);
  return new ApiError('VALIDATION_ERROR', summary, { details });
}

export function typeNotFound(entityTypeId: number | string): ApiError {
  return new ApiError('SMART_PROCESS_NOT_FOUND', `Smart process with entityTypeId=${entityTypeId} not found`);
}
