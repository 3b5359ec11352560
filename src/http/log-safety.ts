import type { AddressInfo } from 'node:net';
import type { FastifyServerOptions } from 'fastify';
import type { Config } from '../config.js';

/**
 * Query parameters whose values are secrets or single-use credentials: the application key
 * and state of GET /v1/oauth/authorize and /poll, Bitrix24's code and our flow secret at
 * /oauth/callback and /oauth/sandbox, and OAuth names in general. Their values never reach a
 * log line; the rest of the URL does.
 */
const SECRET_PARAMS = /([?&](?:app_key|code|state|flow|access_token|refresh_token|token|auth|client_secret|api_key)=)[^&#]*/gi;

export function maskUrl(url: string): string {
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

/** The logger options with the masking request serializer (a logger instance or `false` is left as it is). */
export function safeLogger(logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (logger === false || logger === undefined) return logger;
  if (logger === true) return { serializers: { req: serializeRequest as never } };
  if (typeof (logger as { child?: unknown }).child === 'function') return logger;
  const options = logger as { serializers?: Record<string, unknown> };
  return { ...options, serializers: { req: serializeRequest, ...options.serializers } } as FastifyServerOptions['logger'];
}

/** PUBLIC_URL, or http://HOST:PORT of the listening socket (the configured port before it listens). */
export function publicUrlOf(config: Pick<Config, 'publicUrl' | 'host' | 'port'>, address: AddressInfo | string | null): string {
  if (config.publicUrl) return config.publicUrl;
  const port = address && typeof address === 'object' ? address.port : config.port;
  let host = config.host;
  if (host === '0.0.0.0' || host === '::' || host === '') host = 'localhost';
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `http://${host}:${port}`;
}
