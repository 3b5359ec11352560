/**
 * The records every layer speaks of: portals, keys and sessions as the store holds them
 * and the services use them. Each kind is one union, written once here; schemas and
 * validation take their values from these lists. No I/O.
 */

export const PORTAL_KINDS = ['local', 'bitrix24'] as const;
export type PortalKind = (typeof PORTAL_KINDS)[number];

export interface PortalRecord {
  id: number;
  kind: PortalKind;
  name: string;
  domain: string;
  timeZone: string;
  createdAt: number;
  updatedAt: number;
  /** `bitrix24` portals: what may be shown of the credential, and the portal's limits (never a secret). */
  bitrix24?: Bitrix24PortalInfo;
}

export const BITRIX24_CREDENTIAL_TYPES = ['webhook', 'oauth'] as const;
export type Bitrix24CredentialType = (typeof BITRIX24_CREDENTIAL_TYPES)[number];

export interface Bitrix24PortalInfo {
  credentials: { type: Bitrix24CredentialType; userId?: number; domain: string };
  limits: { burst: number; perSecond: number };
  memberId: string | null;
  /** The OAuth refresh token died (invalid_grant): the portal needs a new authorization. */
  needsAuthorization: boolean;
}

export const KEY_KINDS = ['personal', 'application', 'management'] as const;
export type KeyKind = (typeof KEY_KINDS)[number];

export const ACCESS_MODES = ['READWRITE', 'READONLY'] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];

export interface KeyRecord {
  id: string;
  kind: KeyKind;
  portalId: number | null;
  name: string;
  keyPrefix: string;
  keySuffix: string;
  scopes: string[];
  accessMode: AccessMode;
  /** Epoch milliseconds; null = never. */
  expiresAt: number | null;
  /** null = no limit. */
  requestsPerSecond: number | null;
  allowedIps: string[];
  /** Application keys: where GET /v1/oauth/authorize may send the person back (exact match). */
  redirectUris: string[];
  userId: number | null;
  createdByKeyId: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface SessionRecord {
  id: string;
  keyId: string;
  portalId: number;
  userId: number;
  /** The user as the authorization gave it (user authorization); null for sessions minted without a name or e-mail. */
  userName: string | null;
  userEmail: string | null;
  /** bitrix24 portals: the session carries the user's own Bitrix24 tokens (calls run with them). */
  bitrix24Tokens: boolean;
  tokenPrefix: string;
  tokenSuffix: string;
  expiresAt: number;
  createdAt: number;
}

/** The user a session acts as, as answers show it. */
export interface SessionUser {
  id: number;
  name: string | null;
  email: string | null;
}

/** Epoch milliseconds as ISO 8601 UTC with second precision (null stays null). */
export function isoTime(ms: number): string;
export function isoTime(ms: number | null): string | null;
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
