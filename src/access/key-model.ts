import net from 'node:net';
import type { ErrorDetail } from '../errors.js';
import { isoTime, type KeyKind, type KeyRecord } from '../domain/records.js';

export const MANAGEMENT_SCOPES = ['vibe:mgmt:keys', 'vibe:mgmt:portals', 'vibe:mgmt:audit'] as const;
/** Bitrix24 scopes a bootstrap personal key gets; any lower-case Bitrix24 scope name is accepted on keys. */
export const DEFAULT_PORTAL_SCOPES = ['crm', 'task', 'user', 'department', 'disk', 'im', 'calendar', 'catalog', 'bizproc', 'lists'];
export const DEFAULT_REQUESTS_PER_SECOND = 10;
const BITRIX_SCOPE_RE = /^[a-z][a-z0-9_.]{0,63}$/;

export function isManagementScope(scope: string): boolean {
  return (MANAGEMENT_SCOPES as readonly string[]).includes(scope);
}

/** Problems with a key's scopes for its kind. */
export function scopeProblems(kind: KeyKind, scopes: string[], location = 'body.scopes'): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  scopes.forEach((scope, i) => {
    if (kind === 'management' && !isManagementScope(scope)) {
      problems.push({ location: `${location}[${i}]`, message: `"${scope}" is not a management scope`, fix: `use ${MANAGEMENT_SCOPES.join(' or ')}` });
    } else if (kind !== 'management' && !BITRIX_SCOPE_RE.test(scope)) {
      problems.push({
        location: `${location}[${i}]`,
        message: isManagementScope(scope) ? 'management scopes belong to management keys only' : `"${scope}" is not a Bitrix24 scope name`,
        fix: 'use Bitrix24 scopes such as crm, task, user',
      });
    }
  });
  return problems;
}

/** Validates IPs and CIDRs (IPv4 and IPv6). */
export function allowedIpProblems(entries: string[], location = 'body.allowedIps'): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  entries.forEach((entry, i) => {
    const [address, prefix, extra] = entry.split('/');
    const family = net.isIP(address);
    const maxPrefix = family === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= maxPrefix);
    if (!family || !prefixOk || extra !== undefined) {
      problems.push({ location: `${location}[${i}]`, message: `"${entry}" is not an IP address or CIDR`, fix: 'e.g. 203.0.113.7, 10.0.0.0/8, 2001:db8::/32' });
    }
  });
  return problems;
}

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;
export const MAX_REDIRECT_URIS = 20;

/**
 * redirectUris of an application key: absolute https:// URLs (http:// only for loopback
 * hosts, for development), without a fragment or credentials, at most 2000 characters;
 * matched exactly at GET /v1/oauth/authorize.
 */
export function redirectUriProblems(kind: KeyKind, uris: string[], location = 'body.redirectUris'): ErrorDetail[] {
  if (!uris.length) return [];
  if (kind !== 'application') return [{ location, message: `only application keys (vibe_app_) have redirectUris; this is a ${kind} key` }];
  const problems: ErrorDetail[] = [];
  if (uris.length > MAX_REDIRECT_URIS) problems.push({ location, message: `at most ${MAX_REDIRECT_URIS} URIs` });
  uris.forEach((uri, i) => {
    let url: URL | null = null;
    try {
      url = uri.length <= 2000 ? new URL(uri) : null;
    } catch {
      url = null;
    }
    const fix = 'an absolute https:// URL of your application, e.g. https://app.example.com/oauth/done (http:// only for localhost)';
    if (!url) problems.push({ location: `${location}[${i}]`, message: 'is not an absolute URL', fix });
    else if (!(url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK_HOST.test(url.hostname)))) problems.push({ location: `${location}[${i}]`, message: 'must use https:// (http:// only for loopback hosts)', fix });
    else if (url.hash || uri.includes('#')) problems.push({ location: `${location}[${i}]`, message: 'must not have a fragment (#...)', fix });
    else if (url.username || url.password) problems.push({ location: `${location}[${i}]`, message: 'must not carry a user name or password', fix });
  });
  return problems;
}

function normalizeAddress(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped ? mapped[1] : ip;
}

/** Compiles allowedIps into a matcher; null means any address is allowed. */
export function compileAllowedIps(entries: string[]): ((ip: string) => boolean) | null {
  if (!entries.length) return null;
  const list = new net.BlockList();
  for (const entry of entries) {
    const [address, prefix] = entry.split('/');
    const type = net.isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return (ip: string) => {
    const address = normalizeAddress(ip);
    const family = net.isIP(address);
    if (!family) return false;
    return list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
}

/** A key as the management API shows it: never the secret. */
export function presentKey(key: KeyRecord) {
  return {
    id: key.id,
    kind: key.kind,
    name: key.name,
    portalId: key.portalId,
    keyPrefix: key.keyPrefix,
    keySuffix: key.keySuffix,
    scopes: key.scopes,
    accessMode: key.accessMode,
    expiresAt: isoTime(key.expiresAt),
    requestsPerSecond: key.requestsPerSecond,
    allowedIps: key.allowedIps,
    redirectUris: key.redirectUris,
    userId: key.userId,
    createdByKeyId: key.createdByKeyId,
    createdAt: isoTime(key.createdAt),
    updatedAt: isoTime(key.updatedAt),
  };
}
