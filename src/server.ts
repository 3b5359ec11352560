import type { FastifyInstance } from 'fastify';
import { bootstrapIfEmpty, type BootstrapResult } from './access/bootstrap.js';
import { buildApp, version } from './app.js';
import type { Config } from './config.js';
import { listenMetrics } from './http/metrics-server.js';

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  bootstrap: BootstrapResult | null;
  /** METRICS_PORT set: where GET /metrics is served without a key (closed with the server). */
  metricsUrl: string | null;
}

/** Starts a listening server: migrations, first-start bootstrap, listen. */
export async function startServer(config: Config, options: { logger?: boolean | object } = {}): Promise<RunningServer> {
  const app = await buildApp({ config, logger: options.logger });
  try {
    const bootstrap = await bootstrapIfEmpty(app.services.store, app.services.keys, { dataDir: config.dataDir, managementKey: config.bootstrapManagementKey });
    const address = await app.listen({ port: config.port, host: config.host });
    const url = address.replace('[::1]', 'localhost');
    let metricsUrl: string | null = null;
    if (config.metricsPort !== null) {
      const metrics = await listenMetrics(app.metrics, config.metricsPort, config.metricsHost);
      app.server.once('close', () => void metrics.close());
      metricsUrl = metrics.url;
    }
    return { app, url: config.host === '0.0.0.0' ? `http://127.0.0.1:${new URL(address).port}` : url, bootstrap, metricsUrl };
  } catch (error) {
    await app.close();
    throw error;
  }
}

/** What the first start prints: where the server listens, and the personal key as it is stored (its scopes, mode, user, limit). */
export async function banner(server: RunningServer, config: Config): Promise<string> {
  const lines = [`smartproc ${version} listening on ${server.url} (${server.app.services.store.describe})`, `API reference: ${server.url}/docs`];
  if (server.metricsUrl) lines.push(`Metrics (no key; keep this port internal): ${server.metricsUrl}`);
  if (server.bootstrap) {
    const b = server.bootstrap;
    const [key] = await server.app.services.keys.list({ portalId: b.portalId, kind: 'personal' });
    const limit = key.requestsPerSecond === null ? 'no rate limit' : `${key.requestsPerSecond} requests per second`;
    lines.push(
      '',
      `First start: created local portal ${b.portalId}, a management key and a personal key.`,
      `Both secrets are saved in ${b.file} (readable by its owner only).`,
      `Personal key (scopes ${key.scopes.join(', ')}; ${key.accessMode}; user ${key.userId}; ${limit}): ${b.personalKey}`,
      `Change its limit: npm run smartproc -- keys update ${key.id} --rps 50 (or --no-limit), or PATCH /v1/keys/${key.id} {"requestsPerSecond": 50} with the management key.`,
      '',
      `  curl ${server.url}/v1/smart-processes -H "X-Api-Key: ${b.personalKey}"`,
      '',
    );
  } else if (!config.databaseUrl) {
    lines.push(`Keys of the first start: ${config.dataDir}/bootstrap-keys.json`);
  }
  return lines.join('\n');
}

/** Closes the server gracefully on SIGINT/SIGTERM: in-flight requests finish, new ones get 503. */
export function closeOnSignals(app: FastifyInstance): void {
  let closing = false;
  const close = async (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'closing');
    const timer = setTimeout(() => process.exit(1), 10_000);
    timer.unref();
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void close('SIGINT'));
  process.once('SIGTERM', () => void close('SIGTERM'));
}
