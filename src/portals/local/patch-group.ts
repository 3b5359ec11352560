import type { AuditEntryInput } from '../../domain/audit.js';
import { relationsOf, type Edge, type TypeCard, type TypeRecord } from '../../domain/smart-process-type/card.js';
import { recordChanges, storedEdgesOf } from '../../domain/smart-process-type/changes.js';
import type { TypePatch } from '../../domain/smart-process-type/input.js';
import type { Store } from '../../store/store.js';
import { checkIfMatch, type Actor, type WriteOptions } from '../portal.js';

/** PATCHes written by one statement at most. */
export const MAX_GROUP = 64;

interface Pending {
  patch: TypePatch;
  actor: Actor;
  options: WriteOptions;
  resolve: (card: TypeCard | null) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; record: TypeRecord } | { ok: false; error: unknown };

export interface PatchGroupsDeps {
  portalId: number;
  store: Store;
  /** The type's card as a read of this request may see it (the cache, token-checked). */
  read: (entityTypeId: number) => Promise<TypeCard | null>;
  /** Resolves once no instance can serve from a cache what a committed write changed (SharedTypeCache.settle). */
  settle: (portalId: number, committedAt: number) => Promise<void>;
  /** Told the number of PATCHes each statement wrote (GET /metrics). */
  onGroup?: (size: number) => void;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

export function applyPatch(current: TypeRecord, patch: TypePatch): TypeRecord {
  const next: TypeRecord = { ...current };
  if (patch.title !== undefined) next.title = patch.title;
  if (patch.code !== undefined) next.code = patch.code;
  if (patch.flags) next.flags = (current.flags & ~patch.flags.mask) | patch.flags.values;
  if (patch.linkedUserFields !== undefined) next.linkedUserFields = patch.linkedUserFields;
  return next;
}

export function scalarChanged(current: TypeRecord, next: TypeRecord): boolean {
  return next.title !== current.title || next.code !== current.code || next.flags !== current.flags || next.linkedUserFields !== current.linkedUserFields;
}

/**
 * PATCHes of a type's own fields (title, flags, linkedUserFields: no relations, no code) on
 * PostgreSQL, grouped per type in this instance: one statement and one commit for all the
 * PATCHes of a type that arrived while the previous statement for it ran.
 *
 * Why: every PATCH of one type takes that row's lock until its COMMIT has reached the disk,
 * so concurrent PATCHes of one type queue behind each other's commits. Written one at a
 * time they ran at the disk's commit rate, with the waits of the last in the queue (p99)
 * many commits long; and each one that lost the race for the version it started from ran
 * again in a transaction of its own, which held the lock over several round trips.
 *
 * What a client sees is what it would see had the group's PATCHes run one after the other
 * in the order they arrived, each committed before it is answered:
 *
 * - each PATCH applies to the type as the previous one left it, moves the version by one,
 *   and is answered with its own card; If-Match is checked against that version;
 * - a PATCH that changes nothing is answered with the card as it stands and writes nothing;
 * - the type's row is written once, with the last PATCH's values, and each PATCH that
 *   changed something gets its own audit entry, in the same statement, only if the row is
 *   still at the version the group started from (checked by the statement itself);
 * - a group starts from the newest of the card the previous group wrote and the cards the
 *   PATCHes' own existence checks found, so a PATCH that changes nothing (or fails its
 *   If-Match) is never answered from a card older than what it had read itself;
 * - every PATCH of the group is answered only after that statement committed and the
 *   caches were told (`settle`) of this group and of every earlier one (also a PATCH that
 *   wrote nothing: its answer shows what the earlier group wrote). If the statement is
 *   refused (a constraint, one PATCH's audit entry), nothing of the group is stored and
 *   each PATCH runs alone, so only the one at fault fails; if the store cannot be reached,
 *   every PATCH of the group gets that answer (503). The next group's statement does not
 *   wait for the caches to be told (it starts from the row this group wrote), its answers do;
 * - if another instance (or a write of this one that is not grouped: relations, code,
 *   delete) changed the row meanwhile, the group is prepared again from the row as it
 *   stands, in one transaction that holds the row's lock (`SELECT ... FOR UPDATE`, its
 *   edges, the same statement): one more try for the whole group, which cannot lose the
 *   race again. A type not found runs each PATCH alone (`submit` resolves null: the full
 *   path answers 404).
 */
export class PatchGroups {
  private readonly queues = new Map<number, Pending[]>();

  constructor(private readonly deps: PatchGroupsDeps) {}

  /** The PATCH's card once committed; null: run it alone (the type was not found). */
  submit(entityTypeId: number, patch: TypePatch, actor: Actor, options: WriteOptions): Promise<TypeCard | null> {
    return new Promise((resolve, reject) => {
      const pending: Pending = { patch, actor, options, resolve, reject };
      const queue = this.queues.get(entityTypeId);
      if (queue) return void queue.push(pending);
      const fresh = [pending];
      this.queues.set(entityTypeId, fresh);
      void this.drain(entityTypeId, fresh);
    });
  }

  private async drain(entityTypeId: number, queue: Pending[]): Promise<void> {
    // The card the previous group of this drain wrote: the row as it stands unless someone else wrote since (the statement checks).
    let last: TypeCard | null = null;
    // Settles once the caches have been told of every group written so far: no answer goes out before that.
    let told: Promise<void> = Promise.resolve();
    try {
      while (queue.length) ({ last, told } = await this.write(entityTypeId, queue.splice(0, MAX_GROUP), last, told));
    } finally {
      this.queues.delete(entityTypeId);
    }
  }

  /**
   * The card to start a group from: the newest of the card the previous group wrote and the
   * cards the PATCHes' own existence checks found (each is as new as any write answered
   * before its PATCH started), or a read now when one of them has none. A PATCH that changes
   * nothing, or fails its If-Match, is answered from it without a statement: it is never
   * older than what that PATCH itself had read.
   */
  private async startOf(entityTypeId: number, group: readonly Pending[], last: TypeCard | null): Promise<TypeCard | null> {
    let start = last;
    let read: Promise<TypeCard | null> | undefined;
    for (const { options } of group) {
      const seen = options.seen ?? (await (read ??= this.deps.read(entityTypeId)));
      if (!seen) return null;
      if (!start || newer(seen.record, start.record)) start = seen;
    }
    return start;
  }

  /**
   * Writes one group; the card as it left it (null when it was not written) and when its
   * caches were told. Never throws: each PATCH gets its outcome, and its answer goes out
   * only after the caches were told of this group and every earlier one (`told`).
   */
  private async write(entityTypeId: number, group: Pending[], last: TypeCard | null, told: Promise<void>): Promise<{ last: TypeCard | null; told: Promise<void> }> {
    const { portalId, store } = this.deps;
    try {
      const start = await this.startOf(entityTypeId, group, last);
      if (!start) return { last: null, told: this.alone(group, told) };
      // Optimistic: one statement from that card, written only if the row is still at its version.
      let prepared: Prepared | null = { ...prepare(portalId, start.record, group), edges: storedEdgesOf(start) };
      if (prepared.entries.length) {
        const { entries, end } = prepared;
        const written = await store.write(({ repos }) => repos.types.writeIfVersion(portalId, start.record, end, entries), undefined, { singleStatement: true });
        if (!written) {
          // Someone else wrote the row meanwhile (another instance, or a write of this one that is not grouped):
          // the group again, from the row as it stands, under its lock (one transaction for the whole group).
          prepared = await store.write(async ({ repos }) => {
            const record = await repos.types.get(portalId, entityTypeId, { forUpdate: true });
            if (!record) return null;
            const again: Prepared = { ...prepare(portalId, record, group), edges: await repos.types.edgesOf(portalId, entityTypeId) };
            if (again.entries.length && !(await repos.types.writeIfVersion(portalId, record, again.end, again.entries))) throw new Error('the locked row moved');
            return again;
          });
          if (!prepared) return { last: null, told: this.alone(group, told) };
        }
      }
      const { outcomes, entries, end, edges } = prepared;
      if (entries.length) {
        this.deps.onGroup?.(entries.length);
        // This group's token is set while the next group may already be written (it starts from `end`).
        told = Promise.all([told, this.deps.settle(portalId, performance.now())]).then(() => undefined);
      }
      told
        .then(
          () => answer(group, outcomes, edges),
          (error: unknown) => group.forEach((pending) => pending.reject(error)),
        )
        .catch(() => undefined);
      return { last: { record: end, relations: relationsOf(end, edges) }, told: told.catch(() => undefined) };
    } catch (error) {
      // The store unreachable (the statement's fate may be unknown): every PATCH of the group gets that answer (503).
      // Anything else refused the statement as a whole (one PATCH's audit entry, say): each PATCH runs alone, and only
      // the one at fault fails.
      if (store.failureOf(error) === 'unavailable') for (const pending of group) pending.reject(error);
      else for (const pending of group) pending.resolve(null);
      return { last: null, told };
    }
  }

  /** Each PATCH of the group runs alone (the full path answers 404 for a type not found). */
  private alone(group: readonly Pending[], told: Promise<void>): Promise<void> {
    for (const pending of group) pending.resolve(null);
    return told;
  }
}

interface Prepared {
  outcomes: Outcome[];
  entries: AuditEntryInput[];
  end: TypeRecord;
  edges: Edge[];
}

/** Whether `a` is a later state of the type than `b`: a type deleted and made again has a larger id; then the version. */
function newer(a: TypeRecord, b: TypeRecord): boolean {
  return a.id !== b.id ? a.id > b.id : a.version > b.version;
}

/** The group's PATCHes applied one after the other from `start`: each one's outcome, the audit entries, the row as the last left it. */
function prepare(portalId: number, start: TypeRecord, group: readonly Pending[]): { outcomes: Outcome[]; entries: AuditEntryInput[]; end: TypeRecord } {
  let current = start;
  const outcomes: Outcome[] = [];
  const entries: AuditEntryInput[] = [];
  for (const { patch, actor, options } of group) {
    try {
      checkIfMatch(options, current.version);
    } catch (error) {
      outcomes.push({ ok: false, error });
      continue;
    }
    const next = applyPatch(current, patch);
    if (scalarChanged(current, next)) {
      entries.push({ at: Date.now(), portalId, resource: 'type', resourceId: String(start.entityTypeId), action: 'update', context: actor.audit, changes: recordChanges(current, next) });
      next.updatedBy = actor.userId;
      next.updatedTime = nowSeconds();
      next.version = current.version + 1;
      current = next;
    }
    outcomes.push({ ok: true, record: current });
  }
  return { outcomes, entries, end: current };
}

function answer(group: readonly Pending[], outcomes: readonly Outcome[], edges: Edge[]): void {
  group.forEach((pending, i) => {
    const outcome = outcomes[i];
    if (outcome.ok) pending.resolve({ record: outcome.record, relations: relationsOf(outcome.record, edges) });
    else pending.reject(outcome.error);
  });
}
