import type { FastifyInstance } from 'fastify';
import { ApiError } from '../../errors.js';
import { LogThrottle } from '../../log-throttle.js';
import type { Metrics } from '../../observability/metrics.js';
import type { ComponentName, Readiness } from '../../observability/readiness.js';
import { sendError } from '../plugins/errors.js';

/**
 * GET /ready (public, like /health) and GET /metrics (management keys only on this port;
 * without a key on METRICS_PORT, src/http/metrics-server.ts). docs/operations.md.
 */
export default async function operationsRoutes(app: FastifyInstance, options: { readiness: Readiness; metrics: Metrics }) {
  const { readiness, metrics } = options;
  const notReadyLog = new LogThrottle(10_000);

  app.get('/ready', { schema: { hide: true }, config: { pressureHandler: () => undefined } }, async (request, reply) => {
    const report = await readiness.check();
    const checks = Object.fromEntries(Object.entries(report.components).map(([name, c]) => [name, c.status])) as Record<ComponentName, string>;
    if (report.ready) return { success: true, data: { status: 'ready', checks } };
    const failing = (Object.entries(report.components) as [ComponentName, (typeof report.components)[ComponentName]][]).filter(([, c]) => !c.ok);
    const held = notReadyLog.pass();
    if (held !== null) {
      const causes = Object.fromEntries(failing.map(([name, c]) => [name, c.cause instanceof Error ? c.cause.message : c.status]));
      request.log.warn({ checks, causes, ...(held ? { alsoNotReady: held } : {}) }, `not ready: ${failing.map(([name, c]) => `${name} ${c.status}`).join('; ')}`);
    }
    return sendError(
      request,
      reply,
      new ApiError('SERVICE_UNAVAILABLE', `Not ready: ${failing.map(([name, c]) => `${name} ${c.status}`).join('; ')}`, {
        details: failing.map(([name, c]) => ({ location: name, message: c.status })),
        hint: 'GET /ready answers 200 once the store answers, its migrations are applied and Redis (when REDIS_URL is set) answers; the server log says why.',
      }),
    );
  });

  app.get('/metrics', { schema: { hide: true }, config: { access: { kind: 'management' } } }, async (_request, reply) => {
    reply.type(metrics.contentType);
    return metrics.text();
  });
}
