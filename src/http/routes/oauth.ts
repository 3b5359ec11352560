import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ApiError } from '../../errors.js';
import { bearer } from '../../access/access-service.js';
import { isWellFormedSession, SESSION_PREFIX } from '../../access/tokens.js';
import { CODE_LIFETIME_MS, FLOW_LIFETIME_MS, MIN_STATE_LENGTH, RESULT_LIFETIME_MS } from '../../access/user-authorization.js';
import { Nullable } from '../../domain/input-rules.js';
import { BODY_ERRORS, errorResponses } from '../schemas.js';

const tags = ['User authorization'];
const AppKey = Type.String({ maxLength: 200, description: 'the application key (vibe_app_...)' });
const State = Type.String({ maxLength: 512, description: `a random value of at least ${MIN_STATE_LENGTH} characters, new for every authorization (CSRF); echoed back` });
const RedirectUri = Type.String({ maxLength: 2000, description: "one of the application key's redirectUris, exactly" });
const KEY_ERRORS = ['INVALID_APP_KEY', 'KEY_EXPIRED', 'KEY_INACTIVE'] as const;

const UserSchema = Type.Object({ id: Type.Integer(), name: Nullable(Type.String()), email: Nullable(Type.String()) }, { description: 'the user the session acts as' });
const GrantFields = {
  access_token: Type.String({ description: 'vibe_session_...: send as Authorization: Bearer with X-Api-Key: the application key. Handed out once.' }),
  user: UserSchema,
  expires_in: Type.Integer({ description: 'seconds the session lives (86400)' }),
};
const GrantSchema = Type.Object({ success: Type.Literal(true), status: Type.Literal('complete'), ...GrantFields });
const PollSchema = Type.Object(
  {
    success: Type.Literal(true),
    status: Type.Union([Type.Literal('pending'), Type.Literal('complete')]),
    access_token: Type.Optional(GrantFields.access_token),
    user: Type.Optional(UserSchema),
    expires_in: Type.Optional(GrantFields.expires_in),
  },
  { description: '`pending` until the person is done; then once `complete` with the session' },
);

/**
 * /v1/oauth: user authorization of application keys (docs/build-an-application.md). No
 * X-Api-Key: app_key travels as a parameter (authorize is a browser navigation), and
 * revoke is authorized by the session itself.
 */
const oauthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const flows = app.services.authorization;

  app.get('/authorize', {
    schema: {
      tags,
      summary: 'Start a user authorization (open in the browser: a redirect or a popup)',
      description: `Sends the person to the consent page: a local portal's sandbox page, or the Bitrix24 portal's own consent (https://{portal}/oauth/authorize/?client_id=...&state=...), which returns to GET /oauth/callback. Then, without redirect_uri, the person sees /oauth/complete?status=success and the application polls GET /v1/oauth/poll; with redirect_uri, the browser goes to redirect_uri?code=...&state=... (code: once, ${CODE_LIFETIME_MS / 60_000} minutes) for POST /v1/oauth/token, and failures to redirect_uri?error=CODE&state=.... The person has ${FLOW_LIFETIME_MS / 60_000} minutes. Refusals before redirect_uri is known to be the key's are JSON errors.`,
      security: [],
      querystring: Type.Object({ app_key: Type.Optional(AppKey), state: Type.Optional(State), redirect_uri: Type.Optional(RedirectUri) }),
      response: {
        302: Type.Null({ description: 'Location: the consent page, or redirect_uri?error=CODE&state=... for a refusal once redirect_uri is known to be the key\'s' }),
        ...errorResponses([...KEY_ERRORS, 'INVALID_REDIRECT_URI', 'INVALID_STATE', 'VALIDATION_ERROR', 'BITRIX_UNAVAILABLE']),
      },
    },
  }, async (request, reply) => {
    const location = await flows.authorize(request.query);
    return reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').redirect(location, 302);
  });

  app.get('/poll', {
    // Browser applications poll from their own origin: a simple GET without credentials, so any origin may read it.
    onRequest: async (_request, reply) => {
      reply.header('access-control-allow-origin', '*');
    },
    schema: {
      tags,
      summary: 'Poll a user authorization (completion without redirect_uri)',
      description: `\`{"success": true, "status": "pending"}\` while the person has not finished (also for a state this server has not seen yet: the popup may not have reached /v1/oauth/authorize), then once \`"complete"\` with the session. The result is handed out once and kept ${RESULT_LIFETIME_MS / 60_000} minutes; after that, or once collected, INVALID_STATE. A declined authorization answers AUTHORIZATION_DENIED once (a failed Bitrix24 exchange: its BITRIX_* code).`,
      security: [],
      querystring: Type.Object({ app_key: Type.Optional(AppKey), state: Type.Optional(State) }),
      response: { 200: PollSchema, ...errorResponses([...KEY_ERRORS, 'INVALID_STATE', 'AUTHORIZATION_DENIED', 'VALIDATION_ERROR']) },
    },
  }, async (request, reply) => {
    reply.header('cache-control', 'no-store');
    return { success: true as const, ...(await flows.poll(request.query)) };
  });

  app.post('/token', {
    schema: {
      tags,
      summary: 'Exchange the one-time code of a redirect_uri completion for a session',
      description: `From the application's backend. The code works once, for ${CODE_LIFETIME_MS / 60_000} minutes, with the application key it was issued to and the same redirect_uri.`,
      security: [],
      body: Type.Object({ app_key: Type.Optional(AppKey), code: Type.Optional(Type.String({ maxLength: 200, description: 'the code redirect_uri received' })), redirect_uri: Type.Optional(RedirectUri) }, { additionalProperties: false }),
      response: { 200: GrantSchema, ...errorResponses([...KEY_ERRORS, 'INVALID_CODE', 'INVALID_REDIRECT_URI', 'AUTHORIZATION_DENIED', ...BODY_ERRORS]) },
    },
  }, async (request, reply) => {
    reply.header('cache-control', 'no-store');
    return { success: true as const, status: 'complete' as const, ...(await flows.exchangeCode(request.body ?? {})) };
  });

  app.post('/revoke', {
    schema: {
      tags,
      summary: 'End a session at once (every instance)',
      description: 'Authorization: Bearer vibe_session_... (the session is its own credential). A bitrix24 session\'s user tokens are deleted with it.',
      security: [{ Session: [] }],
      response: { 200: Type.Object({ success: Type.Literal(true), revoked: Type.Literal(true) }), ...errorResponses(['TOKEN_MISSING', 'INVALID_SESSION']) },
    },
  }, async (request) => {
    const token = bearer(request.headers.authorization);
    if (!token) throw new ApiError('TOKEN_MISSING', 'Send the session to end as Authorization: Bearer vibe_session_...');
    if (!token.startsWith(SESSION_PREFIX) || !isWellFormedSession(token)) throw new ApiError('INVALID_SESSION', 'The session token is malformed');
    if (!(await app.services.keys.endSession(token, { requestId: request.id, clientIp: request.ip }))) throw new ApiError('INVALID_SESSION', 'The session is unknown or has already ended');
    return { success: true as const, revoked: true as const };
  });
};

export default oauthRoutes;
