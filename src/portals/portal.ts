import type { ListQuery } from '../domain/list-query.js';
import type { TypeCard, TypeRecord } from '../domain/smart-process-type.js';
import type { TypeDraft, TypePatch } from '../domain/type-input.js';
import type { PortalRecord } from '../store/repositories/portals-repository.js';

/** Who performs an operation: the Bitrix24 user id of the key owner or of the session. */
export interface Actor {
  userId: number;
}

export interface WriteOptions {
  /** Optimistic concurrency (beyond the hosted API): the version the client last saw (ETag). */
  ifMatch?: number;
}

/**
 * A Bitrix24 portal as smartproc sees it. `local` portals are emulated on our own
 * store; `bitrix24` portals are reached over REST (a later issue). Implementations
 * throw ApiError for rule violations and never format HTTP answers.
 */
export interface Portal {
  readonly record: PortalRecord;
  listTypes(query: ListQuery): Promise<{ records: TypeRecord[]; total: number }>;
  getType(entityTypeId: number): Promise<TypeCard | null>;
  hasType(entityTypeId: number): Promise<boolean>;
  createType(draft: TypeDraft, actor: Actor): Promise<TypeCard>;
  updateType(entityTypeId: number, patch: TypePatch, actor: Actor, options?: WriteOptions): Promise<TypeCard>;
  deleteType(entityTypeId: number, options?: WriteOptions): Promise<void>;
}
