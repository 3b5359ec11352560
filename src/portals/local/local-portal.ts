import { ApiError, typeNotFound } from '../../errors.js';
import type { ListQuery } from '../../domain/list-query.js';
import { relationsOf, type Edge, type TypeCard, type TypeRecord } from '../../domain/smart-process-type/card.js';
import { isAllowedEntityTypeId, type TypeDraft, type TypePatch } from '../../domain/smart-process-type/input.js';
import { BASE_ENTITY_TYPES, checkRelations, type RelationEntry, type RelationsChange } from '../../domain/smart-process-type/relations.js';
import type { AuditRepository, PortalsRepository, Store, TypesRepository } from '../../store/store.js';
import type { AuditContext, Changes } from '../../domain/audit.js';
import { edgeChanges, otherEndsChanged, recordChanges, storedEdgesOf, wholeType } from '../../domain/smart-process-type/changes.js';
import { checkIfMatch, type Actor, type Portal, type Readiness, type SmartProcessTypes, type WriteOptions } from '../portal.js';
import { applyPatch, PatchGroups, scalarChanged } from './patch-group.js';
import { pageKey, TypeCardCache, type CacheTicket, type TypeCache, type TypePage } from './type-card-cache.js';
import type { PortalRecord } from '../../domain/records.js';

const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * PostgreSQL: a write that changes edges found, once it held its locks, an edge of its type
 * to a type it had not locked, that type comes before one it holds in the lock order, and
 * another transaction holds it. Waiting for it could deadlock, so the transaction (which
 * has written nothing yet) is rolled back and runs again, locking that type too. This is
 * not a deadlock retry: no transaction waited in a cycle. See docs/architecture.md, "Locking".
 */
class LockOrderRestart extends Error {}

/** A write runs at most this many times for LockOrderRestart (each run asks, in order, for every end seen by the runs before). */
const MAX_LOCK_ROUNDS = 20;

/** The LockOrderRestart runs of this process, and the most runs one write took (the fault suite prints them). */
export const relationLockStats = { restarts: 0, mostRuns: 1 };

/** The entityTypeIds a relations change names (both sides). */
function requestedEnds(change: RelationsChange | undefined): number[] {
  return [...(change?.parent ?? []), ...(change?.child ?? [])].map((entry) => entry.entityTypeId);
}

/** The type at the other end of each edge of `self`. */
function otherEnds(edges: readonly Edge[], self: number): number[] {
  return edges.map((e) => (e.parent === self ? e.child : e.parent));
}

/** A type and its stored edges read for a write that changes edges; `existing`: which of the requested ends are types of the portal (on PostgreSQL, locked). */
interface EdgeWriteState {
  record: TypeRecord;
  edges: Edge[];
  existing: Set<number>;
}

/** The caller's key belonged to a portal that was deleted while the request ran (its keys went with it). */
function portalGone(portalId: number): ApiError {
  return new ApiError('INVALID_API_KEY', `The portal ${portalId} of this key has been deleted`);
}


function sameSide(stored: Edge[], side: 'parent' | 'child', self: number, wanted: RelationEntry[]): boolean {
  const current = new Map(stored.filter((e) => (side === 'parent' ? e.child === self : e.parent === self)).map((e) => [side === 'parent' ? e.parent : e.child, e.isChildrenListEnabled]));
  if (current.size !== wanted.length) return false;
  return wanted.every((w) => current.get(w.entityTypeId) === w.isChildrenListEnabled);
}

/** What one write of a local portal works with: the repositories of its transaction. */
interface WriteScope {
  types: TypesRepository;
  portals: PortalsRepository;
  audit: AuditRepository;
  /** SQLite: the group-commit transaction it runs in (the card cache's guard); null on PostgreSQL. */
  transactionNumber: number | null;
}

const READY: Readiness = { ready: true };

/** An emulated Bitrix24 portal whose CRM data lives in smartproc's own store: always ready. */
export class LocalPortal implements Portal {
  readonly types: LocalTypes;

  constructor(readonly record: PortalRecord, store: Store, cache: TypeCache | null = null, onPatchGroup?: (size: number) => void) {
    this.types = new LocalTypes(record, store, cache, onPatchGroup);
  }

  readiness(): Readiness {
    return READY;
  }
}

/** The smart process types of a local portal, kept in smartproc's own store. */
export class LocalTypes implements SmartProcessTypes {
  /** SQLite: the same cache, which writes also use (cards they produced, provably current cards). */
  private readonly cards: TypeCardCache | null;

  /** `cache`: cards and list pages kept in memory (docs/architecture.md, "Caches"); null: every read goes to the store. */
  /** PostgreSQL with the shared cache: PATCHes of a type's own fields, grouped per type (patch-group.ts). */
  private readonly groups: PatchGroups | null;

  constructor(readonly record: PortalRecord, private readonly store: Store, private readonly cache: TypeCache | null = null, onPatchGroup?: (size: number) => void) {
    this.cards = cache instanceof TypeCardCache ? cache : null;
    const settle = cache?.settle?.bind(cache);
    this.groups = settle ? new PatchGroups({ portalId: record.id, store, read: (id) => this.get(id), settle, onGroup: onPatchGroup }) : null;
  }


  /**
   * One write, in one transaction: on SQLite through the store's write batch (group
   * commit), on PostgreSQL a transaction of its own.
   *
   * Cached cards: `keep` names the one card a write changed (a PATCH without
   * relations); once committed it replaces the cached one. A write without `keep` may
   * change other types' cards too (relations are seen from both ends): it drops every
   * cached card before it runs, so that later writes of the same batch do not use them,
   * and again once committed.
   */
  private async transaction<T>(work: (scope: WriteScope) => Promise<T>, keep?: (result: T) => TypeCard | null): Promise<T> {
    const cards = this.cards;
    for (let round = 1; ; round++) {
      try {
        const result = await this.store.write(
          async ({ repos, transactionNumber }) => {
            if (!keep) cards?.clear();
            const result = await work({ types: repos.types, portals: repos.portals, audit: repos.audit, transactionNumber });
            const card = keep?.(result);
            if (card) cards?.noteWritten(this.record.id, card);
            return result;
          },
          (result) => {
            // Runs right after the COMMIT, before any other request.
            const card = keep?.(result);
            if (card) cards?.committed(this.record.id, card);
            else cards?.clear();
          },
        );
        // PostgreSQL: before the answer, no instance may serve what this write changed.
        if (this.cache?.settle) await this.cache.settle(this.record.id, performance.now());
        return result;
      } catch (error) {
        this.cache?.clear();
        if (!(error instanceof LockOrderRestart)) throw error;
        if (round >= MAX_LOCK_ROUNDS) throw new ApiError('SERVICE_UNAVAILABLE', 'The relations of this type kept changing while this write waited for them; try again', { retryAfter: 1 });
        relationLockStats.restarts++;
        relationLockStats.mostRuns = Math.max(relationLockStats.mostRuns, round + 1);
      }
    }
  }

  /** A page of the list; a kept page is the same object for as long as it is current (the route renders it once). */
  async list(query: ListQuery): Promise<TypePage> {
    const cache = this.cache;
    const portalId = this.record.id;
    if (!cache) return this.store.read.types.list(portalId, query);
    const taken = cache.ticket(portalId);
    const ticket = taken instanceof Promise ? await taken : taken;
    if (!ticket) return this.store.read.types.list(portalId, query);
    const key = pageKey(query);
    const kept = cache.page(ticket, portalId, key);
    if (kept) return kept;
    return this.shared(ticket, `page|${key}`, async () => {
      const page = await this.store.read.types.list(portalId, query);
      cache.keepPage(ticket, portalId, key, page);
      return page;
    });
  }

  async has(entityTypeId: number) {
    return (await this.get(entityTypeId)) !== null;
  }

  async get(entityTypeId: number): Promise<TypeCard | null> {
    const cache = this.cache;
    const portalId = this.record.id;
    if (!cache) return this.readCard(entityTypeId);
    const taken = cache.ticket(portalId);
    const ticket = taken instanceof Promise ? await taken : taken;
    if (!ticket) return this.readCard(entityTypeId);
    const kept = cache.card(ticket, portalId, entityTypeId);
    if (kept) return kept;
    return this.shared(ticket, `card|${entityTypeId}`, async () => {
      const card = await this.readCard(entityTypeId);
      if (card) cache.keepCard(ticket, portalId, entityTypeId, card);
      return card;
    });
  }

  /** Store reads under way, by what they read and the token they hold (PostgreSQL), with when their ticket was taken. */
  private readonly reading = new Map<string, { at: number; read: Promise<unknown> }>();

  /**
   * A store read for a read holding `ticket`. On PostgreSQL, reads of the same card (or
   * page) that hold the same token share one store read, as they would share a card kept
   * under that token: the read started after its own ticket was taken, and any write
   * answered before a read started has changed the token that read gets
   * (shared-type-cache.ts). The same bound in time too: a read joins only within the
   * cache's lifetime of the first one's ticket (a write that could not set the token waits
   * that out before it answers), and only the first one keeps what it read, under its own
   * ticket. Under a stream of PATCHes every write changes the token; the existence checks
   * of the PATCHes waiting meanwhile read the card once per token instead of once each.
   */
  private shared<T>(ticket: CacheTicket, what: string, read: () => Promise<T>): Promise<T> {
    if (ticket.token === undefined || ticket.at === undefined) return read();
    const key = `${what}|${ticket.token}`;
    const under = this.reading.get(key);
    if (under && ticket.at - under.at < (this.cache?.ttlMs ?? 0)) return under.read as Promise<T>;
    const started = { at: ticket.at, read: read() as Promise<unknown> };
    this.reading.set(key, started);
    void started.read.then(
      () => this.reading.get(key) === started && this.reading.delete(key),
      () => this.reading.get(key) === started && this.reading.delete(key),
    );
    return started.read as Promise<T>;
  }

  private async readCard(entityTypeId: number): Promise<TypeCard | null> {
    const types = this.store.read.types;
    const [record, edges] = await Promise.all([types.get(this.record.id, entityTypeId), types.edgesOf(this.record.id, entityTypeId)]);
    return record && { record, relations: relationsOf(record, edges) };
  }

  async create(draft: TypeDraft, actor: Actor): Promise<TypeCard> {
    const portalId = this.record.id;
    try {
      return await this.transaction(async ({ types, portals, audit }) => {
        // Locks in the order of every write (docs/architecture.md, "Locking"): the types at the
        // other ends of the new edges, then the portal row (its counters). An end counts only
        // if its row is there once locked: a type deleted meanwhile is refused, never linked.
        const ends = await types.lockInOrder(portalId, requestedEnds(draft.relations).filter((etid) => !BASE_ENTITY_TYPES.has(etid) && etid !== draft.entityTypeId));
        const id = await portals.nextTypeId(portalId);
        if (id === null) throw portalGone(portalId);
        const entityTypeId = draft.entityTypeId ?? (await this.allocateEntityTypeId(types, portals));
        if (draft.entityTypeId !== null) {
          if (!isAllowedEntityTypeId(draft.entityTypeId)) {
            throw new ApiError('BITRIX_ERROR', 'entityTypeId is out of allowed range', { hint: 'Use 128..191 or an even number ≥ 1030, or omit entityTypeId to have one allocated.', details: [{ location: 'body.entityTypeId', message: 'out of allowed range' }] });
          }
          if (await types.isEntityTypeIdUsed(portalId, entityTypeId)) throw new ApiError('BITRIX_ERROR', `entityTypeId ${entityTypeId} is already used`);
        }
        if (draft.code !== null) await this.assertCodeFree(types, draft.code, null);
        const relations = checkRelations(draft.relations, draft.flags, entityTypeId, new Set(ends.map((end) => end.entityTypeId)));
        const now = nowSeconds();
        const record: TypeRecord = {
          id,
          entityTypeId,
          title: draft.title,
          code: draft.code,
          createdBy: actor.userId,
          createdTime: now,
          updatedBy: actor.userId,
          updatedTime: now,
          customSectionId: draft.customSectionId,
          flags: draft.flags,
          linkedUserFields: draft.linkedUserFields,
          itemCount: 0,
          version: 1,
        };
        await types.insert(portalId, record);
        if (relations.parent) await types.replaceEdges(portalId, entityTypeId, 'parent', relations.parent);
        if (relations.child) await types.replaceEdges(portalId, entityTypeId, 'child', relations.child);
        const edges = await types.edgesOf(portalId, entityTypeId);
        const others = otherEndsChanged([], edges, entityTypeId);
        await types.bumpVersions(portalId, others);
        await this.writeEntry(audit, actor.audit, entityTypeId, 'create', wholeType(record, edges, 'after'));
        await this.recordOtherEnds({ types, audit }, actor.audit, entityTypeId, [], others);
        return { record, relations: relationsOf(record, edges) };
      });
    } catch (error) {
      if (this.store.failureOf(error) === 'unique') throw new ApiError('BITRIX_ERROR', 'entityTypeId or code was taken by a concurrent request; try again');
      throw error;
    }
  }

  private async allocateEntityTypeId(types: TypesRepository, portals: PortalsRepository): Promise<number> {
    for (;;) {
      const candidate = await portals.advanceEntityTypeIdCounter(this.record.id);
      if (!(await types.isEntityTypeIdUsed(this.record.id, candidate))) return candidate;
    }
  }

  private async assertCodeFree(types: TypesRepository, code: string, self: number | null): Promise<void> {
    const holder = await types.findByCode(this.record.id, code);
    if (holder && holder.entityTypeId !== self) {
      throw new ApiError('BITRIX_ERROR', `code "${code}" is already used by the smart process with entityTypeId=${holder.entityTypeId} ("${holder.title}")`, {
        details: [{ location: 'body.code', message: `already used by entityTypeId=${holder.entityTypeId}`, fix: 'choose another code, or clear it on the other type first' }],
      });
    }
  }

  async update(entityTypeId: number, patch: TypePatch, actor: Actor, options: WriteOptions = {}): Promise<TypeCard> {
    const portalId = this.record.id;
    // Without relations in the request, only this type's card changed: keep it.
    const keep = patch.relations ? undefined : (card: TypeCard) => card;
    // Types seen at the other end of this type's edges, kept across runs of the transaction (LockOrderRestart).
    const seen = new Set<number>();
    // PostgreSQL with the shared cache: PATCHes of the type's own fields are grouped per type, one statement and one commit a group (patch-group.ts).
    if (this.groups && !patch.relations && patch.code === undefined) {
      const card = await this.groups.submit(entityTypeId, patch, actor, options);
      if (card) return card;
      // Not found, or the row kept changing under the group: the full path below, alone.
    }
    try {
      return await this.transaction(async (scope) => {
        const { types } = scope;
        // Without relations only this type's row is locked: the cheap path of a PATCH.
        const forEdges = patch.relations ? await this.lockForEdgeWrite(scope, entityTypeId, requestedEnds(patch.relations), seen, true) : null;
        const stored = patch.relations ? forEdges : await this.storedForWrite(scope, entityTypeId);
        if (!stored) throw typeNotFound(entityTypeId);
        const { record: current, edges } = stored;
        assertVersion(current, options);
        const next = applyPatch(current, patch);
        if (next.code !== null && next.code !== current.code) await this.assertCodeFree(types, next.code, entityTypeId);

        const relations = patch.relations ? checkRelations(patch.relations, next.flags, entityTypeId, forEdges!.existing) : {};
        const changedSides = (['parent', 'child'] as const).filter((side) => relations[side] && !sameSide(edges, side, entityTypeId, relations[side]!));
        if (!scalarChanged(current, next) && changedSides.length === 0) return { record: current, relations: relationsOf(current, edges) };

        next.updatedBy = actor.userId;
        next.updatedTime = nowSeconds();
        next.version = current.version + 1;
        await types.update(portalId, next);
        // The entry before the edges are written: they go in the same transaction, and it is rolled back with them.
        const changes = recordChanges(current, next);
        if (changedSides.length) edgeChanges(entityTypeId, edges, edgesAfter(edges, entityTypeId, relations), changes);
        await this.writeEntry(scope.audit, actor.audit, entityTypeId, 'update', changes);
        if (!changedSides.length) return { record: next, relations: relationsOf(next, edges) };
        for (const side of changedSides) await types.replaceEdges(portalId, entityTypeId, side, relations[side]!);
        const after = await types.edgesOf(portalId, entityTypeId);
        const others = otherEndsChanged(edges, after, entityTypeId);
        await types.bumpVersions(portalId, others);
        await this.recordOtherEnds(scope, actor.audit, entityTypeId, edges, others);
        return { record: next, relations: relationsOf(next, after) };
      }, keep);
    } catch (error) {
      if (this.store.failureOf(error) === 'unique') throw new ApiError('BITRIX_ERROR', 'code was taken by a concurrent request; try again');
      throw error;
    }
  }

  /**
   * A type and its stored edges as they are now, read inside a write (on PostgreSQL the
   * row is locked). On SQLite a cached card stands in for reading the row and its edges
   * when it is provably current: no other connection has committed since it was cached
   * (checked under the write lock) and the row's version is the card's.
   */
  private async storedForWrite(scope: WriteScope, entityTypeId: number): Promise<{ record: TypeRecord; edges: Edge[] } | null> {
    const { types } = scope;
    const portalId = this.record.id;
    const cached = scope.transactionNumber !== null && this.cards?.forWrite(portalId, entityTypeId, scope.transactionNumber);
    if (cached && (await types.versionOf(portalId, entityTypeId)) === cached.record.version) return { record: cached.record, edges: storedEdgesOf(cached) };
    return this.storedNow(types, entityTypeId);
  }

  /**
   * Everything a write that changes the edges of `self` (a PATCH with relations, a delete)
   * reads before it writes.
   *
   * PostgreSQL: locks, in one statement and in ascending entityTypeId, every type row the
   * write can touch: `self`, the other ends of its edges and the `requested` ends. Who is at the
   * other end is read before the lock, so it may be stale: once `self` is locked its edges
   * cannot change any more (changing an edge needs the locks of both ends), so they are
   * read again. An end that was not locked is locked now: waiting for it if it comes
   * after every type locked (the order holds), else only if no one holds it (NOWAIT);
   * if someone does, the transaction runs again locking it too (LockOrderRestart, with
   * `seen` carried over so each run locks more).
   *
   * SQLite (one writer, already held): the row and edges as `storedForWrite` gives them
   * (`cached`), and which requested ends exist.
   */
  private async lockForEdgeWrite(scope: WriteScope, self: number, requested: number[], seen: Set<number>, cached: boolean): Promise<EdgeWriteState | null> {
    const { types } = scope;
    const portalId = this.record.id;
    const lockable = (etid: number) => !BASE_ENTITY_TYPES.has(etid);
    if (!this.store.capabilities.rowLocks) {
      const stored = cached ? await this.storedForWrite(scope, self) : await this.storedNow(types, self);
      if (!stored) return null;
      const ends = await types.lockInOrder(portalId, requested.filter((etid) => lockable(etid) && etid !== self));
      return { ...stored, existing: new Set(ends.map((end) => end.entityTypeId)) };
    }
    for (const end of otherEnds(await types.edgesOf(portalId, self), self)) seen.add(end);
    const rows = await types.lockInOrder(portalId, [self, ...requested, ...seen].filter(lockable));
    const record = rows.find((row) => row.entityTypeId === self);
    if (!record) return null;
    // What counts is the rows locked, not the ones asked for: a type deleted and created
    // again while this statement waited is a row its snapshot did not see, hence not locked.
    const locked = new Set(rows.map((row) => row.entityTypeId));
    const edges = await types.edgesOf(portalId, self);
    const missing = [...new Set(otherEnds(edges, self))].filter((end) => lockable(end) && !locked.has(end));
    if (missing.length) {
      for (const end of missing) seen.add(end);
      // After every row held, waiting keeps the order. Before one: only without waiting
      // (NOWAIT; a transaction that never waits out of order cannot be in a deadlock).
      const inOrder = Math.min(...missing) > Math.max(...locked);
      let more: TypeRecord[];
      try {
        more = await types.lockInOrder(portalId, missing, { noWait: !inOrder });
      } catch (error) {
        if (this.store.failureOf(error) === 'lock_not_available') throw new LockOrderRestart();
        throw error;
      }
      // An end of an edge of a locked type cannot be deleted (that needs the lock of both ends); if its row is still not there, run again.
      if (more.length < missing.length) throw new LockOrderRestart();
    }
    return { record, edges, existing: locked };
  }

  /** The row (locked on PostgreSQL) and its edges, read from the store. */
  private async storedNow(types: TypesRepository, entityTypeId: number): Promise<{ record: TypeRecord; edges: Edge[] } | null> {
    const record = await types.get(this.record.id, entityTypeId, { forUpdate: true });
    return record && { record, edges: await types.edgesOf(this.record.id, entityTypeId) };
  }

  async delete(entityTypeId: number, actor: Actor, options: WriteOptions = {}): Promise<void> {
    const portalId = this.record.id;
    const seen = new Set<number>();
    await this.transaction(async (scope) => {
      const { types } = scope;
      // Not from the card cache: item_count changes without moving the version.
      const stored = await this.lockForEdgeWrite(scope, entityTypeId, [], seen, false);
      if (!stored) throw typeNotFound(entityTypeId);
      const { record: current, edges } = stored;
      assertVersion(current, options);
      if (current.itemCount > 0) throw new ApiError('BITRIX_ERROR', 'You cannot delete an entity type that has elements');
      await this.writeEntry(scope.audit, actor.audit, entityTypeId, 'delete', wholeType(current, edges, 'before'));
      await types.delete(portalId, entityTypeId);
      const others = otherEndsChanged(edges, [], entityTypeId);
      await types.bumpVersions(portalId, others);
      await this.recordOtherEnds(scope, actor.audit, entityTypeId, edges, others);
    });
  }

  private writeEntry(audit: AuditRepository, context: AuditContext, entityTypeId: number, action: 'create' | 'update' | 'delete', changes: Changes): Promise<void> {
    return audit.record({ at: Date.now(), portalId: this.record.id, resource: 'type', resourceId: String(entityTypeId), action, context, changes });
  }

  /**
   * A write that adds, removes or changes edges of `self` changed the cards of the types at
   * their other ends too: each gets an entry of its own (same request id) with its own
   * relations before and after. Base CRM types (no row) have no entries.
   */
  private async recordOtherEnds(scope: Pick<WriteScope, 'types' | 'audit'>, context: AuditContext, self: number, before: readonly Edge[], others: readonly number[]): Promise<void> {
    for (const end of others) {
      if (BASE_ENTITY_TYPES.has(end)) continue;
      const now = await scope.types.edgesOf(this.record.id, end);
      const touches = (e: Edge) => (e.parent === self && e.child === end) || (e.parent === end && e.child === self);
      const was = [...now.filter((e) => !touches(e)), ...before.filter(touches)];
      const changes = edgeChanges(end, was, now);
      if (Object.keys(changes).length) await this.writeEntry(scope.audit, context, end, 'update', changes);
    }
  }
}

/** The stored edges of `self` once the sides a PATCH replaces are written. */
function edgesAfter(edges: readonly Edge[], self: number, relations: RelationsChange): Edge[] {
  const kept = edges.filter((e) => (relations.parent ? e.child !== self : true) && (relations.child ? e.parent !== self : true));
  for (const r of relations.parent ?? []) kept.push({ parent: r.entityTypeId, child: self, isChildrenListEnabled: r.isChildrenListEnabled });
  for (const r of relations.child ?? []) kept.push({ parent: self, child: r.entityTypeId, isChildrenListEnabled: r.isChildrenListEnabled });
  return kept;
}

/** The record with a PATCH's own fields applied (relations aside). */
function assertVersion(current: TypeRecord, options: WriteOptions): void {
  checkIfMatch(options, current.version);
}
