import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import qs from 'qs';
import { AccessService } from './access/access-service.js';
import { InvalidationBus, invalidationChannel } from './access/invalidation.js';
import { KeysService } from './access/keys-service.js';
import { AuditService } from './audit/audit-service.js';
import { KeyRateLimiter } from './access/rate-limiter.js';
import { RedisConnection } from './access/redis.js';
import type { Config } from './config.js';
import authPlugin from './http/plugins/auth.js';
import corsPlugin from './http/plugins/cors.js';
import docsPlugin from './http/plugins/docs.js';
import errorsPlugin, { clientErrorHandler, frameworkErrors, newRequestId, refuseConnect, refuseExpectation, requestIdFrom } from './http/plugins/errors.js';
import pressurePlugin from './http/plugins/pressure.js';
import { AJV_OPTIONS } from './http/ajv-options.js';
import { checkBodyAfterRouteChecks, jsonBodyParser } from './http/plugins/input-guard.js';
import keyRoutes from './http/routes/keys.js';
import meRoutes, { type CatalogRoute } from './http/routes/me.js';
import portalRoutes from './http/routes/portals.js';
import sessionRoutes from './http/routes/sessions.js';
import auditRoutes from './http/routes/audit.js';
import oauthRoutes from './http/routes/oauth.js';
import oauthPages from './http/routes/oauth-pages.js';
import { UserAuthorization } from './access/user-authorization.js';
import { Bitrix24UserAuthorization } from './portals/bitrix24/user-authorization.js';
import { publicUrlOf } from './http/public-url.js';
import smartProcessRoutes from './http/routes/smart-processes/index.js';
import batchRoutes from './http/routes/batch.js';
import type { Services } from './http/services.js';
import { PortalRegistry } from './portals/registry.js';
import { PortalsService } from './portals/portals-service.js';
import { loadSecretBox, migrate, openStore, type SecretBox, type Store } from './store/store.js';
import { Bitrix24Portal, forgetSessionTokens } from './portals/bitrix24/bitrix24-portal.js';
import { Bitrix24PortalSetup } from './portals/bitrix24/bitrix24-portals.js';
import { PortalBudgets } from './portals/bitrix24/budget.js';
import operationsRoutes from './http/routes/operations.js';
import { Metrics } from './observability/metrics.js';
import { Readiness } from './observability/readiness.js';
import { RequestObserver, requestLogger, withRedaction } from './observability/request-log.js';

/** package.json is one level up from src/ and two from dist/src/. */
function packageVersion(): string {
  const require = createRequire(import.meta.url);
  for (const candidate of ['../package.json', '../../package.json']) {
    try {
      const pkg = require(candidate) as { name?: string; version: string };
      if (pkg.name === 'smartproc') return pkg.version;
    } catch {
      /* try the next */
    }
  }
  return '0.0.0';
}
const version = packageVersion();
export { version };

export interface AppOptions {
  config: Config;
  /** An open store; by default one is opened from the config (and closed with the app). */
  store?: Store;
  logger?: FastifyServerOptions['logger'];
  /** Key cache lifetime in ms (tests shorten or lengthen it). */
  keyCacheTtlMs?: number;
  /** The SecretBox for bitrix24 credentials; by default loaded on first use from SMARTPROC_SECRET_KEY or DATA_DIR/secret.key. */
  secretBox?: SecretBox;
}

/** Builds the whole server: store, services, plugins, routes, one error handler. Does not listen. */
/**
 * The Redis name of this deployment when REDIS_PREFIX is not set: `smartproc:<id>`, the id
 * claimed once in the store's settings (a random id; every instance on the same store reads
 * the same one, whatever spelling of DATABASE_URL it uses).
 */
async function deploymentPrefix(store: Store): Promise<string> {
  await store.write(({ repos }) => repos.settings.claim('deployment_id', randomBytes(9).toString('base64url')));
  return `smartproc:${await store.read.settings.get('deployment_id')}`;
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const store = options.store ?? openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  await migrate(store);
  const metrics = new Metrics({ version, store: store.dialect });
  const logger = withRedaction(options.logger ?? { level: config.logLevel });
  const observer = logger ? new RequestObserver(metrics) : new RequestObserver(metrics).withoutLogger();
  const app = Fastify({
    // Secrets are censored in every line (LOG_REDACT) and secret query values masked (withRedaction);
    // one line per request (RequestObserver, which also feeds the metrics).
    logger,
    logController: observer,
    childLoggerFactory: requestLogger,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy ?? false,
    requestIdHeader: false,
    genReqId: (req) => requestIdFrom(req.headers['x-request-id'], newRequestId),
    // Nothing of a query string is dropped silently: null-prototype objects keep keys such as `constructor` (refused by
    // name later), and no parameter is cut off (the header limit bounds the count: each one takes at least 2 bytes).
    routerOptions: { ignoreTrailingSlash: true, querystringParser: (s: string) => qs.parse(s, { depth: 3, parameterLimit: http.maxHeaderSize, arrayLimit: 200, plainObjects: true, allowPrototypes: true }) as Record<string, unknown> },
    // src/http/ajv-options.ts: shared with the check of batch items.
    ajv: { customOptions: { ...AJV_OPTIONS.customOptions }, plugins: [...AJV_OPTIONS.plugins] },
    return503OnClosing: false,
    // Every refusal before a route runs is in the envelope too: the HTTP parser's, the router's, Node's timeouts.
    clientErrorHandler,
    frameworkErrors,
    // A request without Host reaches the errors plugin, which answers it in the envelope.
    // Slow clients (docs/operations.md): Node checks the timeouts every connectionsCheckingInterval.
    http: { requireHostHeader: false, headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs) },
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
  });
  app.server.on('connect', refuseConnect).on('checkExpectation', refuseExpectation);

  store.log = app.log;
  // Without Redis the server starts all the same (degraded, one warning) and reconnects in the background: docs/operations.md.
  const connection = config.redisUrl ? new RedisConnection(config.redisUrl, app.log) : null;
  const redis = connection?.client ?? null;
  const bus = new InvalidationBus(redis, app.log, invalidationChannel(config.redisPrefix ?? (redis ? await deploymentPrefix(store) : 'smartproc')));
  await bus.start(connection && (await connection.connected()) ? undefined : 0);

  // bitrix24 portals (docs/bitrix24.md): one request budget per portal (Redis when set), credentials sealed with the SecretBox.
  let box = options.secretBox ?? null;
  const secretBox = () => (box ??= loadSecretBox({ dataDir: config.dataDir }).box);
  const budgets = new PortalBudgets({ redis, maxWaitMs: config.bitrix24QueueTimeoutMs, onRedisFallback: (err) => app.log.warn({ err }, 'bitrix24 budget: Redis unavailable, in-memory bucket stands in') });
  const bitrix24 = { store, box: secretBox, budgets, bus, redis, cacheTtlMs: config.bitrix24CacheTtlMs, callTimeoutMs: config.bitrix24CallTimeoutMs, log: app.log, observer: metrics };
  const portalRegistry = new PortalRegistry(store, bus, { bitrix24: (record) => new Bitrix24Portal(record, bitrix24) }, { redis, onPatchGroup: (size) => metrics.patchGroup(size) });
  bus.onMessage((message) => {
    if (message.type === 'session') forgetSessionTokens(bitrix24, message.id);
  });
  const keys = new KeysService(store, bus);
  const services: Services = {
    store,
    access: new AccessService(store, new KeyRateLimiter(redis, { log: app.log }), bus, (portal) => portalRegistry.readiness(portal), options.keyCacheTtlMs),
    keys,
    portals: new PortalsService(store, bus, new Bitrix24PortalSetup(store, secretBox, budgets)),
    portalRegistry,
    audit: new AuditService(store, config.auditRetentionDays),
    authorization: new UserAuthorization({
      store,
      keys,
      bitrix24: new Bitrix24UserAuthorization({ store, box: secretBox, budgets, callTimeoutMs: config.bitrix24CallTimeoutMs }),
      publicUrl: () => publicUrlOf(config, app.server.address()),
      log: app.log,
    }),
  };
  app.decorate('services', services);
  app.decorate('metrics', metrics);
  if (!logger) app.addHook('onResponse', observer.countWithoutLogger);
  metrics.watch({
    keyCache: services.access.cacheStats.keys,
    sessionCache: services.access.cacheStats.sessions,
    rateLimitRefusals: () => services.access.stats.rateLimited,
    conflictRetries: () => store.stats.conflictRetries,
  });
  const writes = store.writes;
  const onBatch = (size: number) => metrics.writeBatch(size);
  if (writes) writes.onBatch = onBatch;
  services.audit.start(app.log);
  app.addHook('onClose', async () => {
    if (writes?.onBatch === onBatch) writes.onBatch = null;
    services.audit.stop();
    await bus.stop();
    connection?.disconnect();
    if (!options.store) await store.close();
  });

  // JSON only; an empty body is "no body" (PATCH without a body = {}).
  // Input rules (depth, finite numbers, text without NUL or lone surrogates) in src/domain/input-rules.ts.
  const jsonParser = jsonBodyParser(app.getDefaultJsonParser('error', 'error'));
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => jsonParser(request, body as string, done));
  // A body error is answered after the route's path and existence checks (contract §4 check order).
  app.addHook('onRoute', checkBodyAfterRouteChecks);

  const catalog: CatalogRoute[] = [];
  app.addHook('onRoute', (route) => {
    const access = route.config?.access;
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== 'HEAD');
    if (access) for (const method of methods) catalog.push({ method, path: route.url.replace(/\/$/, '') || '/', access });
  });

  await app.register(errorsPlugin);
  // After the errors plugin: a preflight answer carries X-Request-Id too. Off unless CORS_ORIGINS is set.
  if (config.corsOrigins.length) await app.register(corsPlugin, { origins: config.corsOrigins });
  await app.register(pressurePlugin, { config });
  await app.register(docsPlugin, { version });
  await app.register(authPlugin, { access: services.access });
  await app.register(smartProcessRoutes, { prefix: '/v1/smart-processes' });
  await app.register(batchRoutes, { prefix: '/v1/batch' });
  await app.register(meRoutes, { prefix: '/v1/me', catalog });
  await app.register(keyRoutes, { prefix: '/v1/keys' });
  await app.register(portalRoutes, { prefix: '/v1/portals' });
  await app.register(sessionRoutes, { prefix: '/v1/sessions' });
  await app.register(auditRoutes, { prefix: '/v1/audit' });
  await app.register(oauthRoutes, { prefix: '/v1/oauth' });
  await app.register(oauthPages, { prefix: '/oauth' });
  await app.register(operationsRoutes, { readiness: new Readiness(store, redis), metrics });
  app.get('/health', { schema: { hide: true }, config: { pressureHandler: () => undefined } }, async () => ({ success: true, data: { status: 'ok', version, store: store.dialect } }));
  await app.ready();
  return app;
}
