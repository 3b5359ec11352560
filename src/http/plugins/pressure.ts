import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import underPressure from '@fastify/under-pressure';
import type { Config } from '../../config.js';
import { ApiError } from '../../errors.js';
import { sendError } from './errors.js';

type PressureHandler = (request: FastifyRequest, reply: FastifyReply, type: string, value: number | undefined) => unknown;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A route's own answer under pressure (/health: none, it is served as usual). */
    pressureHandler?: PressureHandler;
  }
}

const RETRY_AFTER_SECONDS = 1;

/**
 * Load shedding with @fastify/under-pressure: while the event loop is saturated (mean
 * delay or utilization over the settings), requests are answered at once with 503
 * SERVICE_UNAVAILABLE and retryAfter instead of queueing behind the backlog.
 */
export default fp(async function pressurePlugin(app: FastifyInstance, options: { config: Config }) {
  const { maxEventLoopDelayMs, maxEventLoopUtilization, pressureSampleIntervalMs } = options.config;
  if (!maxEventLoopDelayMs && !maxEventLoopUtilization) return;
  await app.register(underPressure, {
    maxEventLoopDelay: maxEventLoopDelayMs,
    maxEventLoopUtilization,
    sampleInterval: pressureSampleIntervalMs,
    retryAfter: RETRY_AFTER_SECONDS,
    pressureHandler: (request, reply, type, value) => {
      request.log.warn({ type, value }, 'under pressure: request shed');
      void sendError(request, reply, new ApiError('SERVICE_UNAVAILABLE', 'The server is overloaded; retry shortly', { retryAfter: RETRY_AFTER_SECONDS }));
    },
  });
});
