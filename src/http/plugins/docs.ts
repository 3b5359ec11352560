import type { FastifyInstance, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { RouteAccess } from '../../access/access-service.js';
import { POSITIVE_INT32_PARAM } from '../../domain/input-rules.js';
import { ERROR_TABLE } from '../../errors.js';
import { ErrorEnvelopeSchema } from '../schemas.js';

const errorTableMarkdown = [
  '| code | HTTP | when |',
  '|---|---|---|',
  ...Object.entries(ERROR_TABLE).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.when} |`),
].join('\n');

const authenticationMarkdown = [
  'Every call carries one of two credentials (the hosted API\'s two ways):',
  '',
  '- **a personal key** (`vibe_api_...`) alone, in `X-Api-Key`; management routes (`/v1/keys`, `/v1/portals`, `/v1/sessions`) take a management key (`vibe_live_...`) the same way;',
  '- **an application key** (`vibe_app_...`) in `X-Api-Key` **plus** a user session (`vibe_session_...`) in `Authorization: Bearer`.',
  '',
  'In this page, "Authorize" takes either: fill `ApiKey` alone, or `ApiKey` and `Session`. Keys allow 10 requests per second unless set otherwise (`requestsPerSecond`).',
].join('\n');

/** Both ways to call a portal route: a personal key alone, or an application key with a user session. */
const PORTAL_SECURITY: Record<string, string[]>[] = [{ ApiKey: [] }, { ApiKey: [], Session: [] }];
/** Management routes: a management key alone. */
const MANAGEMENT_SECURITY: Record<string, string[]>[] = [{ ApiKey: [] }];

/** The security requirements of a route, from its access configuration (absent: a public route). */
function securityOf(access: RouteAccess | undefined): Record<string, string[]>[] {
  if (!access) return [];
  return access.kind === 'management' ? MANAGEMENT_SECURITY : PORTAL_SECURITY;
}

/** The operationIds of the API (names for generated clients); a route not named here gets one from its method and path. */
const OPERATION_IDS: Record<string, string> = {
  'GET /v1/smart-processes': 'listSmartProcesses',
  'POST /v1/smart-processes': 'createSmartProcess',
  'POST /v1/smart-processes/search': 'searchSmartProcesses',
  'GET /v1/smart-processes/fields': 'getSmartProcessFields',
  'GET /v1/smart-processes/:entityTypeId': 'getSmartProcess',
  'PATCH /v1/smart-processes/:entityTypeId': 'updateSmartProcess',
  'DELETE /v1/smart-processes/:entityTypeId': 'deleteSmartProcess',
  'GET /v1/me': 'getMe',
  'GET /v1/keys': 'listKeys',
  'POST /v1/keys': 'createKey',
  'GET /v1/keys/:id': 'getKey',
  'PATCH /v1/keys/:id': 'updateKey',
  'DELETE /v1/keys/:id': 'deleteKey',
  'POST /v1/keys/:id/rotate': 'rotateKey',
  'GET /v1/portals': 'listPortals',
  'POST /v1/portals': 'createPortal',
  'GET /v1/portals/:id': 'getPortal',
  'PATCH /v1/portals/:id': 'updatePortal',
  'DELETE /v1/portals/:id': 'deletePortal',
  'POST /v1/sessions': 'createSession',
};

/** A route's operationId: its name above, else one made from method and path (`POST /v1/batch` → `postBatch`, `GET /v1/oauth/poll` → `getOauthPoll`), unique as they are. */
function operationIdOf(method: string, url: string): string {
  const path = url.replace(/\/$/, '');
  const named = OPERATION_IDS[`${method} ${path}`];
  if (named) return named;
  const words = path.split('/').filter((s) => s && s !== 'v1').flatMap((s) => (s.startsWith(':') ? ['by', s.slice(1)] : s.split(/[-_.]/)));
  return method.toLowerCase() + words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}

type JsonObject = Record<string, unknown>;

/** Path parameters marked by PositiveInt32Param are documented as integers (the route checks the text itself). */
function documentedParams(params: unknown): unknown {
  const properties = (params as { properties?: Record<string, JsonObject> } | undefined)?.properties;
  if (!properties || !Object.values(properties).some((p) => p[POSITIVE_INT32_PARAM])) return params;
  const documented: Record<string, JsonObject> = {};
  for (const [name, schema] of Object.entries(properties)) {
    const integer = schema[POSITIVE_INT32_PARAM] as { minimum: number; maximum: number; example?: number } | undefined;
    if (!integer) {
      documented[name] = schema;
      continue;
    }
    const { example, ...range } = integer;
    documented[name] = { type: 'integer', ...range, ...(schema.description ? { description: schema.description } : {}), ...(example !== undefined ? { examples: [example] } : {}) };
  }
  return { ...(params as JsonObject), properties: documented };
}

/**
 * Error answers (errorResponses) carry one example per code in `x-examples`; @fastify/swagger drops the siblings
 * of a $ref, so the document gets them in the media-type form, where Swagger UI offers each example by its code.
 */
function documentedResponses(response: unknown): unknown {
  if (!response || typeof response !== 'object') return response;
  const documented: JsonObject = {};
  for (const [status, schema] of Object.entries(response as Record<string, JsonObject>)) {
    const examples = schema?.['x-examples'];
    if (!examples || typeof schema.$ref !== 'string') {
      documented[status] = schema;
      continue;
    }
    documented[status] = { description: schema.description, content: { 'application/json': { schema: { $ref: schema.$ref }, examples } } };
  }
  return documented;
}

/**
 * What the OpenAPI document says of a route beyond its schema: its operationId, how to
 * authenticate (from `config.access`), integer path ids and an example of each error code.
 */
function transform({ schema, url, route }: { schema: RouteOptions['schema'] & JsonObject; url: string; route: RouteOptions }) {
  if (!schema || schema.hide) return { schema, url };
  const method = Array.isArray(route.method) ? route.method[0] : route.method;
  return {
    url,
    schema: {
      ...schema,
      operationId: schema.operationId ?? operationIdOf(method, url),
      security: schema.security ?? securityOf(route.config?.access),
      ...(schema.params ? { params: documentedParams(schema.params) } : {}),
      ...(schema.response ? { response: documentedResponses(schema.response) } : {}),
    },
  };
}

/**
 * Query parameters that are objects (`filter[field][$op]=value`, `order[field]=asc`) are deepObject parameters;
 * their example is empty, so that "Try it out" sends none unless the person fills them in (Swagger UI would
 * otherwise send its generated `additionalProp1`, which the API refuses as an unknown parameter).
 */
function documentQueryObjects(document: { paths?: Record<string, Record<string, { parameters?: JsonObject[] }>> }) {
  for (const operations of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      for (const parameter of operation.parameters ?? []) {
        if (parameter.in !== 'query' || (parameter.schema as JsonObject | undefined)?.type !== 'object') continue;
        parameter.style = 'deepObject';
        parameter.explode = true;
        if (parameter.example === undefined && parameter.examples === undefined) parameter.example = {};
      }
    }
  }
  return document;
}

/**
 * The Content-Security-Policy of /docs: everything from this server (no CDN, no online
 * validator); inline styles are allowed because Swagger UI sets style attributes; no
 * upgrade-insecure-requests, so that "Try it out" works on a plain-HTTP address too.
 */
const DOCS_CSP = "default-src 'self'; base-uri 'self'; connect-src 'self'; font-src 'self' data:; form-action 'self'; frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' 'unsafe-inline'";

/** The OpenAPI 3.1 document (from the route schemas and the error table) and the /docs reference page (Swagger UI). */
export default fp(async function docsPlugin(app: FastifyInstance, options: { version: string }) {
  app.addSchema(ErrorEnvelopeSchema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'smartproc',
        version: options.version,
        description: `Self-hosted Bitrix24 smart process types, faithful to the VibeCode /v1 API.\n\n## Authentication\n\n${authenticationMarkdown}\n\n## Errors\n\nEvery error answers \`{"success": false, "error": {"code", "message", "hint"?, "details"?, "retryAfter"?, "requestId"}}\`.\n\n${errorTableMarkdown}`,
        license: { name: 'MIT', identifier: 'MIT' },
      },
      servers: [{ url: '/' }],
      components: {
        securitySchemes: {
          ApiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key', description: 'A personal key (vibe_api_...) alone; an application key (vibe_app_...) together with Session; a management key (vibe_live_...) on /v1/keys, /v1/portals and /v1/sessions.' },
          Session: { type: 'http', scheme: 'bearer', description: 'With an application key only: the user session token (vibe_session_...) the application got for its user.' },
        },
      },
      tags: [
        { name: 'Smart processes', description: 'Smart process types of the portal of the key (the hosted API\'s /v1/smart-processes)' },
        { name: 'Keys', description: 'Management: personal, application and management keys' },
        { name: 'Portals', description: 'Management: local and bitrix24 portals' },
        { name: 'Sessions', description: 'Management: user sessions of application keys' },
      ],
    },
    transform: transform as never,
    transformObject: (documentObject) => documentQueryObjects((documentObject as { openapiObject: never }).openapiObject) as never,
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true, displayOperationId: true, validatorUrl: null, tryItOutEnabled: false },
    theme: { title: 'smartproc API reference' },
    staticCSP: DOCS_CSP,
  });
  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
});
