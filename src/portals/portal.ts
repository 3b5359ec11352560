import type { AuditContext } from '../domain/audit.js';
import type { ListQuery } from '../domain/list-query.js';
import type { PortalRecord, SessionRecord } from '../domain/records.js';
import type { TypeCard, TypeRecord } from '../domain/smart-process-type/card.js';
import type { TypeDraft, TypePatch } from '../domain/smart-process-type/input.js';
import { ApiError } from '../errors.js';

/** The portal user an operation runs as (the key owner, or the user of the session), and the context its audit entry records. */
export interface Actor {
  userId: number;
  /** Who makes the change and from where, carried from the request (never AsyncLocalStorage). */
  audit: AuditContext;
}

/**
 * One client request, as the portal sees it: a remote portal bounds every wait of the
 * request (its queue for the portal's budget, a write lock) from `startedAt`, one deadline
 * across all the native calls the request makes. Local portals ignore it.
 */
export interface RequestContext {
  /** When the request reached the route (epoch ms). */
  startedAt: number;
}

export interface WriteOptions {
  /**
   * Optimistic concurrency (beyond the hosted API): the versions (ETags) of If-Match, any
   * of which lets the write go ahead (RFC 9110 §13.1.1, strong comparison: weak tags are
   * left out); empty = none can match. Absent, or `If-Match: *`: no condition.
   */
  ifMatch?: readonly number[];
  context?: RequestContext;
  /** The card this request found when it checked the type exists; a write may start from it (checking its version), instead of reading it again. */
  seen?: TypeCard;
}

/** The 412 of a write whose If-Match lists none of the current version (both portal kinds). */
export function checkIfMatch(options: WriteOptions, version: number): void {
  if (options.ifMatch === undefined || options.ifMatch.includes(version)) return;
  const sent = options.ifMatch.length ? `lists ${options.ifMatch.map((v) => `"${v}"`).join(', ')}` : 'holds no strong ETag of this API';
  throw new ApiError('PRECONDITION_FAILED', `The type has changed: If-Match ${sent}; its ETag is now "${version}"`, {
    hint: 'GET the card again, re-apply your change and send it with the new ETag in If-Match.',
  });
}

/**
 * The smart process types of one portal: the six operations behind /v1/smart-processes.
 * Every write records its audit entry (src/domain/audit.ts) with `actor.audit`.
 */
export interface SmartProcessTypes {
  list(query: ListQuery, context?: RequestContext): Promise<{ records: TypeRecord[]; total: number }>;
  get(entityTypeId: number, context?: RequestContext): Promise<TypeCard | null>;
  has(entityTypeId: number, context?: RequestContext): Promise<boolean>;
  create(draft: TypeDraft, actor: Actor, options?: WriteOptions): Promise<TypeCard>;
  update(entityTypeId: number, patch: TypePatch, actor: Actor, options?: WriteOptions): Promise<TypeCard>;
  delete(entityTypeId: number, actor: Actor, options?: WriteOptions): Promise<void>;
  /**
   * Optional: several cards read together (the reads of a batch). A bitrix24 portal answers
   * from its cache and combines the rest into native `batch` calls; without it, `get` is
   * called per id. Each id's outcome apart: a card, null (no such type), or the error.
   */
  getMany?(entityTypeIds: number[]): Promise<Map<number, Settled<TypeCard | null>>>;
  /** Optional: several list queries answered together (in their order), each outcome apart. */
  listMany?(queries: ListQuery[]): Promise<Settled<{ records: TypeRecord[]; total: number }>[]>;
  /** Flags this portal reports but cannot set (GET /fields shows them read-only); none on a local portal. */
  readonly readOnlyFlags?: readonly string[];
}

/** The outcome of one of several operations asked together. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Whether a portal can serve calls now; when not, why (check order row 6: 401 TOKEN_MISSING). */
export type Readiness = { ready: true } | { ready: false; message: string; hint: string };

/**
 * A Bitrix24 portal as smartproc sees it, grown by parts: `types` today, `items` and
 * others later, each beside the other. `local` portals are emulated on our own store;
 * `bitrix24` portals are reached over REST. Implementations throw ApiError for rule
 * violations and never format HTTP answers. The registry keeps one object per portal.
 */
export interface Portal {
  readonly record: PortalRecord;
  readonly types: SmartProcessTypes;
  readiness(): Readiness;
  /**
   * The portal as the user of a session sees it, when the session carries the user's own
   * credentials (bitrix24 user authorization): calls run with that user's tokens. Absent,
   * or returning the portal itself: calls run with the portal's credential.
   */
  forSession?(session: SessionRecord): Portal;
}
