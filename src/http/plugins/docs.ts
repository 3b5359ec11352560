import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { ERROR_TABLE } from '../../errors.js';
import { ErrorEnvelopeSchema } from '../schemas.js';

const errorTableMarkdown = [
  '| code | HTTP | when |',
  '|---|---|---|',
  ...Object.entries(ERROR_TABLE).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.when} |`),
].join('\n');

/** The OpenAPI 3.1 document (from the route schemas and the error table) and the /docs reference page. */
export default fp(async function docsPlugin(app: FastifyInstance, options: { version: string }) {
  app.addSchema(ErrorEnvelopeSchema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'smartproc',
        version: options.version,
        description: `Self-hosted Bitrix24 smart process types, faithful to the VibeCode /v1 API.\n\nEvery error answers \`{"success": false, "error": {"code", "message", "hint"?, "details"?, "retryAfter"?, "requestId"}}\`.\n\n${errorTableMarkdown}`,
      },
      servers: [{ url: '/' }],
      components: {
        securitySchemes: {
          ApiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key', description: 'vibe_api_ (personal), vibe_app_ (application, with a session) or vibe_live_ (management)' },
          Session: { type: 'http', scheme: 'bearer', description: 'vibe_session_... for application keys' },
        },
      },
      security: [{ ApiKey: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true }, staticCSP: true });
  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
});
