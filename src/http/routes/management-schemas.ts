import { Type } from 'typebox';
import { ACCESS_MODES, KEY_KINDS, PORTAL_KINDS } from '../../domain/records.js';
import { MAX_GRACE_SECONDS } from '../../access/keys-service.js';
import { Int32, Nullable, SafeText } from '../../domain/input-rules.js';

const Scopes = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 100, description: 'Bitrix24 scopes (crm, task, user, ...) for portal keys; vibe:mgmt:keys / vibe:mgmt:portals for management keys' });
const AllowedIps = Type.Array(Type.String({ maxLength: 64 }), { maxItems: 200, description: 'IPv4/IPv6 addresses and CIDRs; empty = any' });
const RedirectUris = Type.Array(Type.String({ maxLength: 2000 }), { maxItems: 20, description: 'application keys: where user authorization (GET /v1/oauth/authorize?redirect_uri=) may return; https:// (http:// only for localhost), matched exactly' });
const AccessModeSchema = Type.Enum(ACCESS_MODES);
export const KeyKindSchema = (options = {}) => Type.Enum(KEY_KINDS, options);
const PortalKindSchema = (options = {}) => Type.Enum(PORTAL_KINDS, options);
const Rps = Nullable(Type.Integer({ minimum: 1, maximum: 100000 }), { description: 'requests per second (default 10); null = no limit' });

export const KeySchema = Type.Object({
  id: Type.String(),
  kind: KeyKindSchema(),
  name: Type.String(),
  portalId: Nullable(Type.Integer()),
  keyPrefix: Type.String(),
  keySuffix: Type.String(),
  scopes: Type.Array(Type.String()),
  accessMode: AccessModeSchema,
  expiresAt: Nullable(Type.String({ format: 'date-time' })),
  requestsPerSecond: Nullable(Type.Integer()),
  allowedIps: Type.Array(Type.String()),
  redirectUris: Type.Array(Type.String()),
  userId: Nullable(Type.Integer()),
  createdByKeyId: Nullable(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});

export const KeyWithSecretSchema = Type.Object({
  ...KeySchema.properties,
  secret: Type.String({ description: 'shown once: store it now' }),
  previousSecretExpiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'rotation: when the old secret stops working' })),
});

export const CreateKeyBodySchema = Type.Object({
  kind: Type.Optional(KeyKindSchema({ default: 'personal' })),
  portalId: Type.Optional(Nullable(Int32({ minimum: 1 }))),
  name: Type.Optional(Type.String({ maxLength: 200 })),
  scopes: Type.Optional(Scopes),
  accessMode: Type.Optional(AccessModeSchema),
  expiresAt: Type.Optional(Nullable(Type.String({ description: 'ISO 8601; null = never' }))),
  requestsPerSecond: Type.Optional(Rps),
  allowedIps: Type.Optional(AllowedIps),
  redirectUris: Type.Optional(RedirectUris),
  userId: Type.Optional(Nullable(Int32({ minimum: 1, description: 'the portal user a personal key acts as (default 1)' }))),
}, { additionalProperties: false });

export const UpdateKeyBodySchema = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 200 })),
  scopes: Type.Optional(Scopes),
  accessMode: Type.Optional(AccessModeSchema),
  expiresAt: Type.Optional(Nullable(Type.String())),
  requestsPerSecond: Type.Optional(Rps),
  allowedIps: Type.Optional(AllowedIps),
  redirectUris: Type.Optional(RedirectUris),
  userId: Type.Optional(Nullable(Int32({ minimum: 1 }))),
}, { additionalProperties: false });

export const RotateKeyBodySchema = Type.Object({
  gracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_GRACE_SECONDS, default: 0, description: 'how long the old secret keeps working (0 = stops at once)' })),
}, { additionalProperties: false });

// ---- bitrix24 portals (issue 9): credentials in, never out ----
const Secret = (description: string) => Type.String({ minLength: 1, maxLength: 2000, description });
const WebhookUrl = Type.String({ maxLength: 2000, description: 'incoming webhook with the crm scope: https://{portal}/rest/{userId}/{secret}/ (http:// only for loopback hosts)' });
const OAuthInputSchema = Type.Object({
  clientId: Secret('application client_id'),
  clientSecret: Secret('application client_secret'),
  clientEndpoint: Type.String({ maxLength: 2000, description: 'https://{portal}/rest/' }),
  accessToken: Secret('access token'),
  refreshToken: Secret('refresh token'),
  expiresAt: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Integer({ minimum: 0 }), Type.Null()], { description: 'when the access token expires: ISO 8601 or epoch seconds' })),
  tokenUrl: Type.Optional(Type.String({ maxLength: 2000, description: 'default https://oauth.bitrix.info/oauth/token/' })),
}, { additionalProperties: false });
const LimitsSchema = Type.Object({
  burst: Type.Optional(Type.Integer({ minimum: 2, maximum: 100000, description: "the portal's X: requests above it are refused (50; Enterprise 250)" })),
  perSecond: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1000, description: "the portal's Y: drain per second (2; Enterprise 5)" })),
}, { additionalProperties: false });
const Bitrix24Fields = {
  webhookUrl: Type.Optional(WebhookUrl),
  oauth: Type.Optional(OAuthInputSchema),
  limits: Type.Optional(LimitsSchema),
};

export const PortalSchema = Type.Object({
  id: Type.Integer(),
  kind: PortalKindSchema(),
  name: Type.String(),
  domain: Type.String(),
  timeZone: Type.String(),
  credentials: Type.Optional(Type.Object({ type: Type.Union([Type.Literal('webhook'), Type.Literal('oauth')]), userId: Type.Optional(Type.Integer()), domain: Type.String() }, { description: 'bitrix24 portals: no secret is ever shown' })),
  limits: Type.Optional(Type.Object({ burst: Type.Integer(), perSecond: Type.Number() })),
  needsAuthorization: Type.Optional(Type.Boolean({ description: 'bitrix24 OAuth portals: the refresh token died; store new tokens' })),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});

export const CreatePortalBodySchema = Type.Object({
  kind: Type.Optional(PortalKindSchema({ default: 'local' })),
  name: Type.Optional(Type.String({ maxLength: 200 })),
  timeZone: Type.Optional(Type.String({ maxLength: 64, description: 'IANA time zone (default UTC)' })),
  ...Bitrix24Fields,
}, { additionalProperties: false });

export const UpdatePortalBodySchema = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 200 })),
  timeZone: Type.Optional(Type.String({ maxLength: 64 })),
  ...Bitrix24Fields,
}, { additionalProperties: false });

export const CreateSessionBodySchema = Type.Object({
  keyId: Type.String({ description: 'id of an application key (vibe_app_) of a local portal' }),
  userId: Int32({ minimum: 1, description: 'the portal user the session acts as' }),
  name: Type.Optional(Nullable(Type.String({ maxLength: 200, description: "the user's name, shown by /v1/me" }))),
  email: Type.Optional(Nullable(Type.String({ maxLength: 254, description: "the user's e-mail, shown by /v1/me" }))),
}, { additionalProperties: false });

export const SessionSchema = Type.Object({
  id: Type.String(),
  token: Type.String({ description: 'vibe_session_...: shown once; send as Authorization: Bearer' }),
  keyId: Type.String(),
  portalId: Type.Integer(),
  userId: Type.Integer(),
  expiresAt: Type.String({ format: 'date-time' }),
});

export const IdParamsSchema = Type.Object({ id: SafeText() });
