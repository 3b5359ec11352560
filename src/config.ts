import path from 'node:path';

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | null;
  redisUrl: string | null;
  /** Names this deployment's messages on a shared Redis (the cache invalidation channel); null: derived from the store (docs/operations.md). */
  redisPrefix: string | null;
  logLevel: string;
  bootstrapManagementKey: string | null;
  trustProxy: string[] | null;
  bodyLimit: number;
  /** Slow clients: the headers must arrive within this (ms), the whole request within requestTimeoutMs; an idle keep-alive connection is closed after keepAliveTimeoutMs. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Load shedding (@fastify/under-pressure): 503 when the mean event-loop delay (ms) or utilization (0..1) is over these; 0 = off. */
  maxEventLoopDelayMs: number;
  maxEventLoopUtilization: number;
  /** How often the event loop is sampled (ms). */
  pressureSampleIntervalMs: number;
  /** bitrix24 portals (docs/bitrix24.md): how long reads are served from cache, how long a request may wait for the portal's budget, the per-call timeout (ms). */
  bitrix24CacheTtlMs: number;
  bitrix24QueueTimeoutMs: number;
  bitrix24CallTimeoutMs: number;
  /** Audit entries older than this many days are deleted (hourly); 0 keeps them all. */
  auditRetentionDays: number;
  /**
   * PUBLIC_URL: the address people and Bitrix24 reach this server at (user authorization:
   * redirects, the callback to register in a Bitrix24 application, PUBLIC_URL/oauth/callback).
   * null: http://HOST:PORT of the listening socket.
   */
  publicUrl: string | null;
}

export class ConfigError extends Error {}

function parsePort(value: string | undefined): number {
  if (value === undefined || value === '') return 3000;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`PORT must be an integer 0..65535, got "${value}"`);
  return port;
}

function parseNumber(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number, integer = true): number {
  const value = env[name];
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    throw new ConfigError(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

function parseRedisPrefix(value: string | undefined): string | null {
  if (value === undefined || value.trim() === '') return null;
  if (!/^[A-Za-z0-9:._-]{1,100}$/.test(value)) throw new ConfigError(`REDIS_PREFIX must be 1..100 of A-Z a-z 0-9 : . _ -, got "${value}"`);
  return value;
}

function parsePublicUrl(value: string | undefined): string | null {
  if (value === undefined || value.trim() === '') return null;
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw new ConfigError(`PUBLIC_URL must be an absolute http(s) URL such as https://smartproc.example.com, got "${value}"`);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash || url.username || url.password) {
    throw new ConfigError(`PUBLIC_URL must be an http(s) URL without query, fragment or credentials, got "${value}"`);
  }
  return url.toString().replace(/\/+$/, '');
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const trustProxy = env.TRUST_PROXY?.trim();
  const headersTimeoutMs = parseNumber(env, 'HEADERS_TIMEOUT_MS', 10_000, 100, 600_000);
  const requestTimeoutMs = parseNumber(env, 'REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000);
  if (headersTimeoutMs > requestTimeoutMs) throw new ConfigError(`HEADERS_TIMEOUT_MS (${headersTimeoutMs}) must not be longer than REQUEST_TIMEOUT_MS (${requestTimeoutMs})`);
  return {
    port: parsePort(env.PORT),
    host: env.HOST || '127.0.0.1',
    dataDir: path.resolve(env.DATA_DIR || './data'),
    databaseUrl: env.DATABASE_URL || null,
    redisUrl: env.REDIS_URL || null,
    redisPrefix: parseRedisPrefix(env.REDIS_PREFIX),
    logLevel: env.LOG_LEVEL || 'info',
    bootstrapManagementKey: env.SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY || null,
    trustProxy: trustProxy ? trustProxy.split(',').map((s) => s.trim()).filter(Boolean) : null,
    bodyLimit: 1024 * 1024,
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: parseNumber(env, 'KEEP_ALIVE_TIMEOUT_MS', 72_000, 100, 3_600_000),
    maxEventLoopDelayMs: parseNumber(env, 'MAX_EVENT_LOOP_DELAY_MS', 1000, 0, 600_000),
    maxEventLoopUtilization: parseNumber(env, 'MAX_EVENT_LOOP_UTILIZATION', 0, 0, 1, false),
    pressureSampleIntervalMs: 1000,
    bitrix24CacheTtlMs: parseNumber(env, 'BITRIX24_CACHE_TTL_MS', 30_000, 0, 3_600_000),
    bitrix24QueueTimeoutMs: parseNumber(env, 'BITRIX24_QUEUE_TIMEOUT_MS', 10_000, 100, 600_000),
    bitrix24CallTimeoutMs: parseNumber(env, 'BITRIX24_CALL_TIMEOUT_MS', 30_000, 100, 60_000),
    auditRetentionDays: parseNumber(env, 'AUDIT_RETENTION_DAYS', 90, 0, 36_500),
    publicUrl: parsePublicUrl(env.PUBLIC_URL),
  };
}
