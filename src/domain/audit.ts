/**
 * The audit trail (issue 11 item 2): what an entry says, and who made a change. No I/O.
 *
 * Every change of a type, key, portal or session is recorded in the store in the same
 * transaction as the change. The context of a change travels as an explicit object from
 * the request (request id, key, client address) to the store write: no AsyncLocalStorage
 * (it cost about 13% CPU per request when measured).
 */
import type { KeyKind, KeyRecord, PortalRecord, SessionRecord } from './records.js';
import { isoTime } from './records.js';
import { validationError, type ErrorDetail } from '../errors.js';
import { INT32_MAX, textProblem } from './input-rules.js';

export const AUDIT_RESOURCES = ['type', 'key', 'portal', 'session'] as const;
export type AuditResource = (typeof AUDIT_RESOURCES)[number];

export const AUDIT_ACTIONS = ['create', 'update', 'delete', 'rotate'] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** `key`: a request made with an API key; `cli`: the operator on the store (the CLI); `system`: the server itself (first start). */
export const AUDIT_ACTORS = ['key', 'cli', 'system'] as const;
export type AuditActor = (typeof AUDIT_ACTORS)[number];

/** Who makes a change and from where. */
export interface AuditContext {
  actor: AuditActor;
  keyId: string | null;
  keyKind: KeyKind | null;
  /** The portal user the change runs as (key owner or session user); null for management keys and the CLI. */
  userId: number | null;
  requestId: string | null;
  clientIp: string | null;
}

/** A management call: the key that makes it (the rules on what it may do look at it) and the audit context. */
export interface ManagementCaller {
  key: KeyRecord;
  audit: AuditContext;
}

/** Changes made on the store through the CLI (or by code that calls a service without a request). */
export const CLI_AUDIT: AuditContext = Object.freeze({ actor: 'cli', keyId: null, keyKind: null, userId: null, requestId: null, clientIp: null });
/** Changes the server makes by itself (the first start). */
export const SYSTEM_AUDIT: AuditContext = Object.freeze({ actor: 'system', keyId: null, keyKind: null, userId: null, requestId: null, clientIp: null });

/**
 * What changed: per field, the value before and after. A created record has only `after`,
 * a deleted one only `before`. Never a secret: key secrets, session tokens and credentials
 * are not fields of these records; a rotation says `secret` changed, without values.
 */
export type FieldChange = { before?: unknown; after?: unknown };
export type Changes = Record<string, FieldChange>;

/** An entry as a write hands it to the store. */
export interface AuditEntryInput {
  /** Epoch milliseconds. */
  at: number;
  portalId: number | null;
  resource: AuditResource;
  resourceId: string;
  action: AuditAction;
  context: AuditContext;
  changes: Changes;
}

/** An entry as stored and read. */
export interface AuditEntry extends AuditEntryInput {
  id: number;
}

export const REDACTED = '[redacted]';

/** The fields of `after` that differ from `before` (compared as JSON), each with both values. */
export function changedFields<T extends object>(before: T, after: T, fields: readonly (keyof T & string)[]): Changes {
  const changes: Changes = {};
  for (const field of fields) {
    const [a, b] = [before[field], after[field]];
    if (a === b || (typeof a === 'object' && JSON.stringify(a) === JSON.stringify(b))) continue;
    changes[field] = { before: a, after: b };
  }
  return changes;
}

/** Every field of a record that was created (`after`) or deleted (`before`). */
export function wholeRecord<T extends object>(record: T, fields: readonly (keyof T & string)[], side: 'before' | 'after'): Changes {
  const changes: Changes = {};
  for (const field of fields) changes[field] = { [side]: record[field] };
  return changes;
}

/** The fields of a key an entry shows (what GET /v1/keys shows, times as ISO 8601; never the secret or its hash). */
const KEY_FIELDS = ['kind', 'portalId', 'name', 'scopes', 'accessMode', 'expiresAt', 'requestsPerSecond', 'allowedIps', 'userId'] as const;
type KeyView = Record<(typeof KEY_FIELDS)[number], unknown>;
const keyView = (key: KeyRecord): KeyView => ({ ...key, expiresAt: isoTime(key.expiresAt) });

/** A change of a record as two views of it: the fields that differ, or every field of one created (no `before`) or deleted (no `after`). */
function viewChanges<V extends object>(before: V | null, after: V | null, fields: readonly (keyof V & string)[]): Changes {
  if (before && after) return changedFields(before, after, fields);
  if (after) return wholeRecord(after, fields, 'after');
  return before ? wholeRecord(before, fields, 'before') : {};
}

export function keyChanges(before: KeyRecord | null, after: KeyRecord | null): Changes {
  return viewChanges(before && keyView(before), after && keyView(after), KEY_FIELDS);
}

/** A session as an entry shows it: never its token. */
export function sessionChanges(session: SessionRecord, side: 'before' | 'after'): Changes {
  return wholeRecord({ keyId: session.keyId, userId: session.userId, expiresAt: isoTime(session.expiresAt) }, ['keyId', 'userId', 'expiresAt'], side);
}

/** The fields of a portal an entry shows (bitrix24: what may be shown of the credential, and the limits; never the credential). */
const PORTAL_FIELDS = ['kind', 'name', 'domain', 'timeZone', 'credentials', 'limits'] as const;
type PortalView = Record<(typeof PORTAL_FIELDS)[number], unknown>;
const portalView = (portal: PortalRecord): PortalView => ({
  kind: portal.kind,
  name: portal.name,
  domain: portal.domain,
  timeZone: portal.timeZone,
  credentials: portal.bitrix24?.credentials ?? null,
  limits: portal.bitrix24?.limits ?? null,
});

/**
 * `credentialReplaced`: a bitrix24 portal got a new credential; the entry says so
 * (`credential`, values redacted) even when what may be shown of it stayed the same.
 */
export function portalChanges(before: PortalRecord | null, after: PortalRecord | null, options: { credentialReplaced?: boolean } = {}): Changes {
  const fields = PORTAL_FIELDS.filter((field) => field !== 'credentials' && field !== 'limits' ? true : (before ?? after)?.kind === 'bitrix24');
  const changes = viewChanges(before && portalView(before), after && portalView(after), fields);
  if (options.credentialReplaced) changes.credential = { before: REDACTED, after: REDACTED };
  return changes;
}

/** Paging of audit reads: the API's limit/offset, with a smaller ceiling than lists of types (entries are larger). */
export const AUDIT_DEFAULT_LIMIT = 50;
export const AUDIT_MAX_LIMIT = 500;

/** Which entries a reader wants; every part optional, all of them AND-ed. */
export interface AuditFilter {
  portalId?: number;
  keyId?: string;
  resource?: AuditResource;
  resourceId?: string;
  action?: AuditAction;
  /** Epoch milliseconds, inclusive. */
  since?: number;
  /** Epoch milliseconds, exclusive. */
  until?: number;
}

export interface AuditQuery extends AuditFilter {
  limit: number;
  offset: number;
}

const FILTERS = ['portalId', 'keyId', 'resource', 'resourceId', 'action', 'since', 'until'] as const;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

/**
 * The query of an audit read, every problem in one 400. `filters`: which filters the
 * route takes (the history of a type takes none: its portal and type are the path's).
 */
export function parseAuditQuery(raw: unknown, filters: boolean): AuditQuery {
  const query = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const problems: ErrorDetail[] = [];
  const allowed: readonly string[] = filters ? [...FILTERS, 'limit', 'offset'] : ['limit', 'offset'];
  const text = (name: string): string | undefined => {
    const value = query[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') {
      problems.push({ location: `query.${name}`, message: 'must be given once, as a plain value' });
      return undefined;
    }
    return value;
  };
  const integer = (name: string, min: number, max: number): number | undefined => {
    const value = text(name);
    if (value === undefined) return undefined;
    const n = /^[0-9]{1,10}$/.test(value) ? Number(value) : NaN;
    if (n >= min && n <= max) return n;
    problems.push({ location: `query.${name}`, message: `must be an integer from ${min} to ${max}` });
    return undefined;
  };
  const oneOf = <T extends string>(name: string, values: readonly T[]): T | undefined => {
    const value = text(name);
    if (value === undefined || (values as readonly string[]).includes(value)) return value as T | undefined;
    problems.push({ location: `query.${name}`, message: `must be one of ${values.join(', ')}` });
    return undefined;
  };
  const time = (name: string): number | undefined => {
    const value = text(name);
    if (value === undefined) return undefined;
    const ms = ISO_TIME.test(value) ? Date.parse(value) : NaN;
    if (!Number.isNaN(ms)) return ms;
    problems.push({ location: `query.${name}`, message: 'must be an ISO 8601 time, e.g. 2026-11-30T08:00:00Z or 2026-11-30' });
    return undefined;
  };
  for (const name of Object.keys(query)) {
    if (!allowed.includes(name)) problems.push({ location: `query.${name}`, message: 'unknown parameter', fix: `use ${allowed.join(', ')}` });
  }
  const parsed: AuditQuery = { limit: integer('limit', 1, AUDIT_MAX_LIMIT) ?? AUDIT_DEFAULT_LIMIT, offset: integer('offset', 0, INT32_MAX) ?? 0 };
  if (filters) {
    const portalId = integer('portalId', 1, INT32_MAX);
    const keyId = text('keyId');
    const resource = oneOf('resource', AUDIT_RESOURCES);
    const resourceId = text('resourceId');
    const action = oneOf('action', AUDIT_ACTIONS);
    const since = time('since');
    const until = time('until');
    Object.assign(parsed, Object.fromEntries(Object.entries({ portalId, keyId, resource, resourceId, action, since, until }).filter(([, v]) => v !== undefined)));
  }
  for (const name of ['keyId', 'resourceId'] as const) {
    const value = parsed[name];
    const problem = value === undefined ? null : textProblem(value);
    if (problem) problems.push({ location: `query.${name}`, message: problem });
  }
  if (problems.length) throw validationError(problems);
  return parsed;
}
