/**
 * One log line per request, and the request metrics (issue 11 items 1 and 6).
 *
 * Fastify's own request logging writes two lines per request ("incoming request" with the
 * whole URL, query string included, and "request completed"). A LogController (Fastify's
 * documented hook for its request log lines) replaces both with one line when the answer
 * has gone out: the request id (`reqId`, bound to every line of the request), the key id
 * (never its secret), the portal id, the route pattern, the method, the status and the time.
 * The same call records the request in the metrics, so that neither costs a hook.
 *
 * Secrets: the line holds ids only, and the path only with every token that looks like a
 * smartproc secret masked; the logger's `redact` (pino, LOG_REDACT below) censors the
 * fields that hold secrets wherever a log call passes them (headers, credentials).
 */
import type { FastifyBaseLogger, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import { LogController } from 'fastify';
import { UNMATCHED_ROUTE, type Metrics } from './metrics.js';

/** Fields censored in every log line (pino's `redact`; one level of `*` wildcard). */
export const LOG_REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  ...['secret', 'token', 'apiKey', 'webhookUrl', 'clientSecret', 'accessToken', 'refreshToken', 'client_secret', 'access_token', 'refresh_token', 'password', 'authorization', 'oauth', 'sealed'].flatMap((name) => [name, `*.${name}`]),
];
export const LOG_REDACT = { paths: LOG_REDACT_PATHS, censor: '[redacted]' };

/** smartproc's secrets (keys, sessions) as they may appear in a path a client sent by mistake. */
const SECRET_TOKEN = /vibe_(?:api|app|live|session)_[A-Za-z0-9]+/g;
/** A webhook URL's secret segment, should a client put one in a path: /rest/<user>/<secret>. */
const WEBHOOK_SECRET = /(\/rest\/\d+\/)[^/?#]+/g;

export function maskPath(url: string): string {
  const path = url.split('?', 1)[0];
  return path.replace(SECRET_TOKEN, (token) => `${token.slice(0, token.indexOf('_', 5) + 1)}***`).replace(WEBHOOK_SECRET, '$1***');
}

/**
 * Query parameters whose values are secrets or single-use credentials: the application key
 * and state of GET /v1/oauth/authorize and /poll, Bitrix24's code and our flow secret at
 * /oauth/callback and /oauth/sandbox, and OAuth names in general. Their values never reach a
 * log line; the rest of the URL does.
 */
const SECRET_PARAMS = /([?&](?:app_key|code|state|flow|access_token|refresh_token|token|auth|client_secret|api_key)=)[^&#]*/gi;

function maskUrl(url: string): string {
  return url.includes('?') ? url.replace(SECRET_PARAMS, '$1***') : url;
}

interface LoggedRequest {
  method: string;
  url: string;
  host?: string;
  socket?: { remoteAddress?: string; remotePort?: number };
  headers?: Record<string, unknown>;
}

/** Fastify's request serializer with the URL masked. */
function serializeRequest(request: LoggedRequest) {
  return {
    method: request.method,
    url: maskUrl(request.url),
    host: request.host ?? request.headers?.host,
    remoteAddress: request.socket?.remoteAddress,
    remotePort: request.socket?.remotePort,
  };
}

/**
 * The logger options of buildApp: the caller's (level, stream...) with LOG_REDACT and a
 * request serializer whose URL has secret query values masked (a logger instance is left as it is).
 */
export function withRedaction(logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (!logger) return logger;
  if (logger === true) return { redact: LOG_REDACT, serializers: { req: serializeRequest as never } };
  if (typeof (logger as { child?: unknown }).child === 'function') return logger;
  const options = logger as { serializers?: Record<string, unknown> };
  return { redact: LOG_REDACT, ...logger, serializers: { req: serializeRequest, ...options.serializers } } as FastifyServerOptions['logger'];
}

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type LogArgs = Parameters<FastifyBaseLogger['info']>;

/**
 * A request's logger that becomes a pino child (with the request id bound) only when it
 * writes a line. Fastify makes a child logger for every request; with `redact` set, pino runs
 * the redaction over the bindings of each one, which cost several microseconds per request
 * even when nothing of the request is logged (LOG_LEVEL=warn and a 200 answer). The lines it
 * writes are the child's: same bindings, same redaction.
 */
class RequestLogger {
  #child: FastifyBaseLogger | null = null;
  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bound: Record<string, unknown>,
  ) {}

  private get made(): FastifyBaseLogger {
    return (this.#child ??= this.parent.child(this.bound));
  }

  get level(): string {
    return (this.#child ?? this.parent).level;
  }

  set level(level: string) {
    this.made.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return ((this.#child ?? this.parent) as FastifyBaseLogger & { isLevelEnabled(level: string): boolean }).isLevelEnabled(level);
  }

  private write(level: Level, args: LogArgs): void {
    if (!this.isLevelEnabled(level)) return;
    const child = this.made;
    (child[level] as (...args: LogArgs) => void).apply(child, args);
  }

  fatal(...args: LogArgs): void {
    this.write('fatal', args);
  }
  error(...args: LogArgs): void {
    this.write('error', args);
  }
  warn(...args: LogArgs): void {
    this.write('warn', args);
  }
  info(...args: LogArgs): void {
    this.write('info', args);
  }
  debug(...args: LogArgs): void {
    this.write('debug', args);
  }
  trace(...args: LogArgs): void {
    this.write('trace', args);
  }
  silent(): void {}

  child(...args: Parameters<FastifyBaseLogger['child']>): FastifyBaseLogger {
    return this.made.child(...args);
  }

  bindings(): Record<string, unknown> {
    return (this.made as FastifyBaseLogger & { bindings(): Record<string, unknown> }).bindings();
  }
}

/**
 * Fastify's `childLoggerFactory`: a RequestLogger, or the logger's own child when the route
 * sets its own level or serializers, or the logger is not pino (no `isLevelEnabled`).
 */
export function requestLogger(logger: FastifyBaseLogger, bindings: Record<string, unknown>, options: object): FastifyBaseLogger {
  if (typeof (logger as { isLevelEnabled?: unknown }).isLevelEnabled !== 'function') return logger.child(bindings, options);
  for (const _ in options) return logger.child(bindings, options);
  return new RequestLogger(logger, bindings) as unknown as FastifyBaseLogger;
}

export class RequestObserver extends LogController {
  constructor(private readonly metrics: Metrics) {
    super({});
  }

  /** No "incoming request" line: the one line is written when the answer is done. */
  override incomingRequest(): void {}

  /**
   * Without a logger (`logger: false`, tests) Fastify calls requestCompleted only for routes
   * with an onResponse hook: this one counts the request then (the observer does not).
   */
  readonly countWithoutLogger = (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    this.metrics.request(request.routeOptions.url ?? UNMATCHED_ROUTE, request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  };

  private logged = true;

  /** No logger: requests are counted by `countWithoutLogger`, not here. */
  withoutLogger(): this {
    this.logged = false;
    return this;
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (!this.logged) return;
    const seconds = reply.elapsedTime / 1000;
    const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
    const status = reply.statusCode;
    this.metrics.request(route, request.method, status, seconds);
    const log = reply.log as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean };
    if (error) {
      log.error({ ...this.fields(request, route, status, reply.elapsedTime), err: error }, 'request errored');
    } else if (log.isLevelEnabled?.('info') ?? true) {
      log.info(this.fields(request, route, status, reply.elapsedTime), 'request');
    }
  }

  private fields(request: FastifyRequest, route: string, status: number, ms: number) {
    const principal = request.principal;
    return {
      method: request.method,
      route,
      ...(route === UNMATCHED_ROUTE ? { path: maskPath(request.url) } : {}),
      status,
      responseTime: Math.round(ms * 100) / 100,
      keyId: principal?.key.id ?? null,
      portal: principal?.portal?.id ?? null,
      ...(principal?.session ? { sessionId: principal.session.id } : {}),
    };
  }
}
