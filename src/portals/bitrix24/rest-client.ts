/**
 * A small fetch-based client for the Bitrix24 REST API (`crm.type.*` and `batch`).
 *
 * Why not the official `@bitrix24/b24jssdk` (MIT, Node 20+; v2.2.0 read for this decision):
 * - it hard-codes `https://` (`fromWebhookUrl` refuses `http:`, the auth managers rebuild
 *   the base URL as `https://{domain}`), so it cannot talk to a local fake portal, which
 *   every test of the adapter needs;
 * - it parses errors with `responseData.error && ...`, so the documented numeric `0`
 *   ("not found" from crm.type.get/update/delete) falls through and its description is
 *   lost, and its list helpers drop `total`/`next`;
 * - its rate limiting and token refresh live in the memory of one process: smartproc needs
 *   one budget per portal and one refresh per credential across instances (Redis), so we
 *   would have to switch both off and rebuild them anyway (budget.ts, oauth.ts);
 * - it brings axios, luxon and ~14 MB for what is here a few JSON POSTs.
 * What we need of the transport is small and fully documented (settings/how-to-call-rest-api/):
 * a JSON POST to `{base}{method}.json`, the `{result,total,next,time}` / `{error,
 * error_description}` shapes, the batch format and the system error codes. Owning it also
 * lets us tell a request that never left (safe to repeat, even `crm.type.add`) from one
 * whose answer was lost (the write may have happened): see `kind` below.
 *
 * Secrets: the webhook secret and access tokens are kept in private fields and never put
 * into an error message, an error property, `String(error)` or `util.inspect` output; the
 * URL (which holds the webhook secret) is never part of an error, and any echo of a secret
 * in a portal's description is masked.
 */
import diagnostics from 'node:diagnostics_channel';
import { AsyncLocalStorage } from 'node:async_hooks';
import { inspect } from 'node:util';
import qs from 'qs';

export const DEFAULT_USER_AGENT = 'smartproc/0.1 (+bitrix24 adapter)';
export const DEFAULT_TIMEOUT_MS = 30_000;
/** `batch` takes at most 50 commands (settings/how-to-call-rest-api/batch.md). */
export const MAX_BATCH_COMMANDS = 50;

/**
 * What a failure means for the caller:
 * - `not_found`: the numeric code `0` from crm.type.get/getByEntityTypeId/update/delete;
 * - `method`: the method refused the input (INVALID_ARG_VALUE, BX_ERROR, 100, `0` from add...);
 * - `access_denied`: ACCESS_DENIED, insufficient_scope, INVALID_CREDENTIALS (the user lacks
 *   rights), user_access_error, allowed_only_intranet_user, any other 403;
 * - `expired_token`: 401 expired_token (OAuth: refresh once and repeat);
 * - `invalid_credentials`: the portal rejected the credentials themselves (NO_AUTH_FOUND,
 *   invalid_token, any other 401): a revoked webhook or a dead token;
 * - `query_limit`: 503 QUERY_LIMIT_EXCEEDED (not executed: safe to repeat after a pause);
 * - `operation_time_limit`: 429 OPERATION_TIME_LIMIT (not executed: hold the method);
 * - `overload`: 503 OVERLOAD_LIMIT (a manual block: do not retry);
 * - `server`: INTERNAL_SERVER_ERROR, ERROR_CORE, other 5xx, an answer that is not the
 *   documented JSON;
 * - `network`: the request never left (connection refused, DNS, TLS): safe to repeat;
 * - `timeout`: the per-call timeout fired before the request was sent: safe to repeat;
 * - `answer_lost`: a timeout or a dropped connection after the request was (or may have
 *   been) sent: the portal may have executed it. Never repeat a non-idempotent write blindly.
 */
export type Bitrix24ErrorKind =
  | 'not_found'
  | 'method'
  | 'access_denied'
  | 'expired_token'
  | 'invalid_credentials'
  | 'query_limit'
  | 'operation_time_limit'
  | 'overload'
  | 'server'
  | 'network'
  | 'timeout'
  | 'answer_lost';

/** The `time` block of an answer (settings/performance/limits.md). */
export interface Bitrix24Time {
  start?: number;
  finish?: number;
  duration?: number;
  processing?: number;
  date_start?: string;
  date_finish?: string;
  /** Accumulated run time of this method (seconds) for this application or webhook. */
  operating?: number;
  /** Unix time (seconds) at which the oldest minute basket leaves `operating`. */
  operating_reset_at?: number;
}

export interface CallResult<T = unknown> {
  result: T;
  total?: number;
  next?: number;
  time?: Bitrix24Time;
}

/** Methods whose numeric `0` error means "no such type" (bitrix24.md; crm.type.add's `0` is a validation error). */
const NOT_FOUND_ZERO_METHODS = new Set(['crm.type.get', 'crm.type.getbyentitytypeid', 'crm.type.update', 'crm.type.delete']);

const CODE_KINDS: Record<string, Bitrix24ErrorKind> = {
  expired_token: 'expired_token',
  NO_AUTH_FOUND: 'invalid_credentials',
  invalid_token: 'invalid_credentials',
  ACCESS_DENIED: 'access_denied',
  insufficient_scope: 'access_denied',
  INVALID_CREDENTIALS: 'access_denied',
  user_access_error: 'access_denied',
  allowed_only_intranet_user: 'access_denied',
  QUERY_LIMIT_EXCEEDED: 'query_limit',
  OPERATION_TIME_LIMIT: 'operation_time_limit',
  OVERLOAD_LIMIT: 'overload',
  INTERNAL_SERVER_ERROR: 'server',
  ERROR_CORE: 'server',
  ERROR_UNEXPECTED_ANSWER: 'server',
  PORTAL_DELETED: 'server',
};

/** The kind of a native error answer: by its code first (never by its localized description), then by the HTTP status. */
export function classifyBitrix24Error(code: string | number, status: number, method: string): Bitrix24ErrorKind {
  if (code === 0 || code === '0') return NOT_FOUND_ZERO_METHODS.has(method.toLowerCase()) ? 'not_found' : 'method';
  const known = typeof code === 'string' ? CODE_KINDS[code] : undefined;
  if (known) return known;
  if (status >= 500) return 'server';
  if (status === 401) return 'invalid_credentials';
  if (status === 403) return 'access_denied';
  if (status === 429) return 'query_limit';
  return 'method';
}

export interface Bitrix24ErrorInit {
  code: string | number;
  description: string;
  status: number;
  method: string;
  kind?: Bitrix24ErrorKind;
  time?: Bitrix24Time;
  retryAfterMs?: number;
  /** For transport failures: the system error code behind it (ECONNRESET, UND_ERR_SOCKET...), never its message. */
  causeCode?: string;
}

/**
 * Every failure of a call: a native error answer, a transport failure, or an answer that
 * is not the documented JSON. `code` is the native code as sent (a string, or the number
 * 0); for failures without a native answer it is one of NETWORK_ERROR, TIMEOUT,
 * ANSWER_LOST, UNEXPECTED_ANSWER and `status` is the HTTP status or 0 when none arrived.
 */
export class Bitrix24Error extends Error {
  override readonly name = 'Bitrix24Error';
  readonly code: string | number;
  readonly description: string;
  readonly status: number;
  readonly kind: Bitrix24ErrorKind;
  readonly method: string;
  readonly time?: Bitrix24Time;
  readonly retryAfterMs?: number;
  readonly causeCode?: string;

  constructor(init: Bitrix24ErrorInit) {
    const kind = init.kind ?? classifyBitrix24Error(init.code, init.status, init.method);
    super(`Bitrix24 ${init.method}: ${String(init.code)}${init.description ? ` (${init.description})` : ''}${init.status ? ` [HTTP ${init.status}]` : ''}`);
    this.code = init.code;
    this.description = init.description;
    this.status = init.status;
    this.kind = kind;
    this.method = init.method;
    if (init.time) this.time = init.time;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
    if (init.causeCode) this.causeCode = init.causeCode;
  }

  /** True when the portal certainly did not execute the call (so even crm.type.add may be sent again). */
  get notExecuted(): boolean {
    return this.kind !== 'answer_lost' && this.kind !== 'server';
  }
}

// ---------------------------------------------------------------------------
// Was the request sent? Node's fetch (undici) publishes diagnostics channels: the
// request object is created inside our fetch's async context (so AsyncLocalStorage
// links it to the call), and `undici:client:sendHeaders` fires when its bytes go to
// the socket. A call that saw `create` but not `sendHeaders` never reached the portal.
// If the channels are silent (another runtime), every failure counts as "maybe sent".
// ---------------------------------------------------------------------------

interface SendTrace {
  created: boolean;
  sent: boolean;
}

const traceContext = new AsyncLocalStorage<SendTrace>();
const traces = new WeakMap<object, SendTrace>();
let channelsReady = false;

function watchSends(): void {
  if (channelsReady) return;
  channelsReady = true;
  diagnostics.subscribe('undici:request:create', (message) => {
    const trace = traceContext.getStore();
    const request = (message as { request?: object }).request;
    if (!trace || !request) return;
    trace.created = true;
    traces.set(request, trace);
  });
  diagnostics.subscribe('undici:client:sendHeaders', (message) => {
    const request = (message as { request?: object }).request;
    const trace = request ? traces.get(request) : undefined;
    if (trace) trace.sent = true;
  });
}

/** Errors whose code proves the request never left this machine. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']);

function causeCodeOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function isTimeout(error: unknown, signal: AbortSignal): boolean {
  const name = (error as { name?: string })?.name;
  return name === 'TimeoutError' || (name === 'AbortError' && signal.aborted);
}

// ---------------------------------------------------------------------------
// Webhook URLs
// ---------------------------------------------------------------------------

export interface WebhookParts {
  /** `https://acme.bitrix24.com/rest/1/abc123/`: holds the secret. */
  base: string;
  origin: string;
  domain: string;
  userId: number;
  secret: string;
}

/**
 * Parses an incoming webhook URL `https://{portal}/rest/{userId}/{secret}/` (`http://` is
 * accepted too: whether to allow it is the caller's rule). The error never repeats the URL.
 */
export function parseWebhookUrl(url: string): WebhookParts {
  const expected = 'expected https://{portal}/rest/{userId}/{secret}/';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`Invalid webhook URL: not a URL; ${expected}`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new TypeError(`Invalid webhook URL: the scheme must be https; ${expected}`);
  if (parsed.username || parsed.password || parsed.search || parsed.hash) throw new TypeError(`Invalid webhook URL: no user info, query or fragment allowed; ${expected}`);
  const segments = parsed.pathname.split('/').filter(Boolean);
  const [rest, userId, secret] = segments.slice(-3);
  if (segments.length < 3 || rest !== 'rest' || !/^[1-9][0-9]*$/.test(userId ?? '') || !/^[A-Za-z0-9_-]+$/.test(secret ?? '')) {
    throw new TypeError(`Invalid webhook URL: ${expected}`);
  }
  const prefix = segments.slice(0, -3).map((s) => `${s}/`).join('');
  return { base: `${parsed.origin}/${prefix}rest/${userId}/${secret}/`, origin: parsed.origin, domain: parsed.host, userId: Number(userId), secret };
}

function endpointWithSlash(endpoint: string): string {
  let parsed: URL;
  try {
    parsed = new URL(endpoint);
  } catch {
    throw new TypeError('Invalid client endpoint: expected https://{portal}/rest/');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new TypeError('Invalid client endpoint: the scheme must be https');
  if (parsed.search || parsed.hash || parsed.username || parsed.password) throw new TypeError('Invalid client endpoint: no user info, query or fragment allowed');
  return parsed.href.endsWith('/') ? parsed.href : `${parsed.href}/`;
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

export interface RestClientOptions {
  /** Per-call timeout (ms), default 30 s (the portal stops a call at 60 s). */
  timeoutMs?: number;
  userAgent?: string;
  /** For tests; defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** The OAuth part of one call: the current access token (from the token manager) and, when it changed, the endpoint. */
export interface OAuthCallAuth {
  accessToken: string;
  clientEndpoint?: string;
}

export interface CallOptions {
  /** Required for an OAuth client. */
  auth?: OAuthCallAuth;
  timeoutMs?: number;
  /** Aborting it ends the call like a timeout. */
  signal?: AbortSignal;
}

export type BatchCommand = string | { method: string; params?: Record<string, unknown> };

export interface BatchResult {
  /** Results of the commands that succeeded, by command key. */
  result: Record<string, unknown>;
  /** Errors of the commands that failed, by command key (kind classified with the command's method). */
  errors: Record<string, Bitrix24Error>;
  total: Record<string, number>;
  next: Record<string, number>;
  times: Record<string, Bitrix24Time>;
  /** The `time` block of the batch call itself. */
  time?: Bitrix24Time;
}

const METHOD_NAME = /^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/;

type Transport = { type: 'webhook'; parts: WebhookParts } | { type: 'oauth'; endpoint: string; domain: string };

export class Bitrix24RestClient {
  readonly #transport: Transport;
  readonly #fetch: typeof fetch;
  readonly timeoutMs: number;
  readonly userAgent: string;

  private constructor(transport: Transport, options: RestClientOptions) {
    this.#transport = transport;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.userAgent = options.userAgent ?? DEFAULT_USER_AGENT;
    if (!(this.timeoutMs > 0)) throw new RangeError('timeoutMs must be positive');
    watchSends();
  }

  /** Incoming webhook: `https://{portal}/rest/{userId}/{secret}/`. */
  static webhook(url: string, options: RestClientOptions = {}): Bitrix24RestClient {
    return new Bitrix24RestClient({ type: 'webhook', parts: parseWebhookUrl(url) }, options);
  }

  /** OAuth application: `{client_endpoint}{method}.json` with `auth=<token>`; each call brings its token (see CallOptions.auth). */
  static oauth(clientEndpoint: string, options: RestClientOptions = {}): Bitrix24RestClient {
    const endpoint = endpointWithSlash(clientEndpoint);
    return new Bitrix24RestClient({ type: 'oauth', endpoint, domain: new URL(endpoint).host }, options);
  }

  get type(): 'webhook' | 'oauth' {
    return this.#transport.type;
  }

  /** The portal's host (what `credentials.domain` shows). */
  get domain(): string {
    return this.#transport.type === 'webhook' ? this.#transport.parts.domain : this.#transport.domain;
  }

  /** The webhook's user id (webhooks only). */
  get userId(): number | undefined {
    return this.#transport.type === 'webhook' ? this.#transport.parts.userId : undefined;
  }

  /** Calls one method; resolves with `{result, total?, next?, time?}` or rejects with a Bitrix24Error. */
  async call<T = unknown>(method: string, params: Record<string, unknown> = {}, options: CallOptions = {}): Promise<CallResult<T>> {
    if (!METHOD_NAME.test(method)) throw new TypeError(`Invalid Bitrix24 method name: ${JSON.stringify(method).slice(0, 80)}`);
    const { url, body, secrets } = this.request(method, params, options);
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
    const trace: SendTrace = { created: false, sent: false };
    let response: Response;
    let text: string;
    try {
      ({ response, text } = await traceContext.run(trace, async () => {
        const response = await this.#fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json', 'user-agent': this.userAgent },
          body,
          signal,
          // A redirect would carry the body (and the token in it) elsewhere: it is reported instead.
          redirect: 'manual',
        });
        return { response, text: await response.text() };
      }));
    } catch (error) {
      throw transportError(method, error, signal, trace, timeoutMs);
    }
    return parseAnswer<T>(method, response, text, secrets);
  }

  /**
   * Runs up to 50 commands in one request (`batch`, counted as one request by the portal).
   * `halt`: stop at the first failing command. A failure of the batch call itself (auth,
   * limits, transport) rejects; failures of single commands are in `errors`.
   */
  async batch(commands: Record<string, BatchCommand> | BatchCommand[], halt = false, options: CallOptions = {}): Promise<BatchResult> {
    const entries = Array.isArray(commands) ? commands.map((c, i) => [String(i), c] as const) : Object.entries(commands);
    if (entries.length === 0) throw new RangeError('batch needs at least one command');
    if (entries.length > MAX_BATCH_COMMANDS) throw new RangeError(`batch takes at most ${MAX_BATCH_COMMANDS} commands, got ${entries.length}`);
    const cmd: Record<string, string> = {};
    const methods: Record<string, string> = {};
    for (const [key, command] of entries) {
      const { method, text } = batchCommandText(command);
      cmd[key] = text;
      methods[key] = method;
    }
    const answer = await this.call<Record<string, unknown>>('batch', { halt: halt ? 1 : 0, cmd }, options);
    const payload = (answer.result ?? {}) as Record<string, unknown>;
    const secrets = this.secretsOf(options);
    const errors: Record<string, Bitrix24Error> = {};
    for (const [key, value] of Object.entries(asRecord(payload.result_error))) {
      const error = asRecord(value);
      const code = error.error === undefined || error.error === null ? 'UNKNOWN' : (error.error as string | number);
      errors[key] = new Bitrix24Error({ code, description: mask(String(error.error_description ?? ''), secrets), status: 200, method: methods[key] ?? 'batch' });
    }
    return {
      result: asRecord(payload.result),
      errors,
      total: asRecord(payload.result_total) as Record<string, number>,
      next: asRecord(payload.result_next) as Record<string, number>,
      times: asRecord(payload.result_time) as Record<string, Bitrix24Time>,
      ...(answer.time ? { time: answer.time } : {}),
    };
  }

  private secretsOf(options: CallOptions): string[] {
    const secrets: string[] = [];
    if (this.#transport.type === 'webhook') secrets.push(this.#transport.parts.secret);
    if (options.auth?.accessToken) secrets.push(options.auth.accessToken);
    return secrets;
  }

  private request(method: string, params: Record<string, unknown>, options: CallOptions): { url: string; body: string; secrets: string[] } {
    const transport = this.#transport;
    if (transport.type === 'webhook') {
      return { url: `${transport.parts.base}${method}.json`, body: JSON.stringify(params), secrets: [transport.parts.secret] };
    }
    const token = options.auth?.accessToken;
    if (!token) throw new TypeError('An OAuth call needs options.auth.accessToken (from the token manager)');
    const endpoint = options.auth?.clientEndpoint ? endpointWithSlash(options.auth.clientEndpoint) : transport.endpoint;
    return { url: `${endpoint}${method}.json`, body: JSON.stringify({ ...params, auth: token }), secrets: [token] };
  }

  toJSON(): object {
    return { type: this.type, domain: this.domain, ...(this.userId !== undefined ? { userId: this.userId } : {}) };
  }

  [inspect.custom](): string {
    return `Bitrix24RestClient ${JSON.stringify(this.toJSON())}`;
  }
}

/** `method?param=value&...` with the values URL-encoded once (JSON body: the string itself is not encoded again). */
export function batchCommandText(command: BatchCommand): { method: string; text: string } {
  if (typeof command === 'string') {
    const method = command.split('?', 1)[0];
    if (!METHOD_NAME.test(method)) throw new TypeError(`Invalid Bitrix24 method name in batch: ${JSON.stringify(method).slice(0, 80)}`);
    return { method, text: command };
  }
  if (!METHOD_NAME.test(command.method)) throw new TypeError(`Invalid Bitrix24 method name in batch: ${JSON.stringify(command.method).slice(0, 80)}`);
  if (command.method.toLowerCase() === 'batch') throw new TypeError('batch cannot contain batch');
  const query = qs.stringify(command.params ?? {}, { encodeValuesOnly: true, arrayFormat: 'indices' });
  return { method: command.method, text: query ? `${command.method}?${query}` : command.method };
}

function asRecord(value: unknown): Record<string, unknown> {
  if (Array.isArray(value)) return Object.fromEntries(value.map((v, i) => [String(i), v]));
  return value && typeof value === 'object' ? (value as Record<string, unknown>) : {};
}

function mask(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 4) out = out.split(secret).join('***');
  return out;
}

function retryAfterOf(response: Response): number | undefined {
  const header = response.headers.get('retry-after');
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

function timeOf(value: unknown): Bitrix24Time | undefined {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Bitrix24Time) : undefined;
}

function parseAnswer<T>(method: string, response: Response, text: string, secrets: string[]): CallResult<T> {
  const status = response.status;
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  const record = body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : null;
  const retryAfterMs = retryAfterOf(response);
  const hasError = record !== null && 'error' in record && record.error !== null && record.error !== undefined;
  if (record && hasError) {
    const code = typeof record.error === 'number' || typeof record.error === 'string' ? record.error : JSON.stringify(record.error).slice(0, 100);
    const time = timeOf(record.time);
    throw new Bitrix24Error({
      code,
      description: mask(typeof record.error_description === 'string' ? record.error_description : '', secrets),
      status,
      method,
      ...(time ? { time } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  if (status >= 200 && status < 300 && record && 'result' in record) {
    const out: CallResult<T> = { result: record.result as T };
    if (typeof record.total === 'number' || (typeof record.total === 'string' && record.total !== '')) out.total = Number(record.total);
    if (typeof record.next === 'number' || (typeof record.next === 'string' && record.next !== '')) out.next = Number(record.next);
    const time = timeOf(record.time);
    if (time) out.time = time;
    return out;
  }
  // Not the documented JSON (an HTML error page of a proxy, a redirect, an empty body).
  const code = status >= 200 && status < 300 ? 'UNEXPECTED_ANSWER' : `HTTP_${status}`;
  const kind: Bitrix24ErrorKind = status === 401 ? 'invalid_credentials' : status === 403 ? 'access_denied' : status === 429 ? 'query_limit' : status >= 300 && status < 400 ? 'method' : 'server';
  throw new Bitrix24Error({
    code,
    description: status >= 300 && status < 400 ? 'the portal answered with a redirect (is the address right?)' : 'the portal did not answer with the documented JSON',
    status,
    method,
    kind,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
}

function transportError(method: string, error: unknown, signal: AbortSignal, trace: SendTrace, timeoutMs: number): Bitrix24Error {
  if (error instanceof Bitrix24Error) return error;
  const causeCode = causeCodeOf(error);
  const timedOut = isTimeout(error, signal);
  // Sent for sure, or unknown (the channels were silent and the code proves nothing): maybe executed.
  const notSent = (trace.created && !trace.sent) || (causeCode !== undefined && NOT_SENT_CODES.has(causeCode));
  const base = { status: 0, method, ...(causeCode ? { causeCode } : {}) };
  if (!notSent) {
    return new Bitrix24Error({ ...base, code: 'ANSWER_LOST', kind: 'answer_lost', description: timedOut ? `no answer within ${timeoutMs} ms after the request was sent; it may have been executed` : `the connection failed after the request was sent${causeCode ? ` (${causeCode})` : ''}; it may have been executed` });
  }
  if (timedOut || causeCode === 'UND_ERR_CONNECT_TIMEOUT') {
    return new Bitrix24Error({ ...base, code: 'TIMEOUT', kind: 'timeout', description: `the portal could not be reached within ${timeoutMs} ms; the request was not sent` });
  }
  return new Bitrix24Error({ ...base, code: 'NETWORK_ERROR', kind: 'network', description: `the portal could not be reached${causeCode ? ` (${causeCode})` : ''}; the request was not sent` });
}
