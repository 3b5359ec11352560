/**
 * PATCH groups (src/portals/local/patch-group.ts) on a store that only records what it is
 * asked: the order in which a group's PATCHes are answered, what they start from and when
 * their answers may go out. The same code on PostgreSQL is specified end to end in
 * test/portals/shared-type-cache.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AuditContext } from '../../src/domain/audit.js';
import type { TypeCard, TypeRecord } from '../../src/domain/smart-process-type/card.js';
import { PatchGroups } from '../../src/portals/local/patch-group.js';
import type { Actor } from '../../src/portals/portal.js';
import type { Store } from '../../src/store/store.js';

const record = (version: number, title: string, id = 1): TypeRecord => ({
  id, entityTypeId: 130, title, code: null, createdBy: 1, createdTime: 0, updatedBy: 1, updatedTime: 0, customSectionId: null, flags: 0, linkedUserFields: 0, itemCount: 0, version,
});
const card = (r: TypeRecord): TypeCard => ({ record: r, relations: { parent: [], child: [] } });
const actor: Actor = { userId: 1, audit: { actor: 'key', keyId: 'key_1', keyKind: 'personal', userId: 1, requestId: 'r', clientIp: '127.0.0.1' } as AuditContext };

/** The type's row, and a store whose one-statement writes apply `writeIfVersion` to it (the first `failFirst` of them fail after `gate`). */
function fakeStore(initial: TypeRecord, options: { gate?: Promise<void>; failFirst?: number; refuseFirst?: number } = {}) {
  const state = { row: initial, statements: 0 };
  const store = {
    // A pool that timed out is the store unavailable; any other error is a refusal of the statement.
    failureOf: (error: unknown) => (/timed out/.test(String((error as Error).message)) ? 'unavailable' : null),
    async write(work: (tx: unknown) => Promise<unknown>) {
      state.statements++;
      if (options.gate) await options.gate;
      if (state.statements <= (options.failFirst ?? 0)) throw new Error('the pool timed out');
      if (state.statements <= (options.refuseFirst ?? 0)) throw new Error('new row violates check constraint');
      return work({
        repos: {
          types: {
            writeIfVersion: async (_portalId: number, from: TypeRecord, next: TypeRecord) => {
              if (state.row.id !== from.id || state.row.version !== from.version) return false;
              state.row = next;
              return true;
            },
            // The group run again under the row's lock reads the row as it stands.
            get: async () => state.row,
            edgesOf: async () => [],
          },
        },
      });
    },
  } as unknown as Store;
  return { store, state };
}

describe('PATCH groups', () => {
  it('a group starts from the newest card its PATCHes saw: a PATCH that read a later write is not answered from an older card', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { store, state } = fakeStore(record(5, 'A'), { gate, failFirst: 1 });
    const groups = new PatchGroups({ portalId: 1, store, read: async () => card(state.row), settle: async () => undefined });
    // P0's statement waits, then fails: the next group has no card of its own drain to start from.
    const p0 = groups.submit(130, { title: 'C' }, actor, { seen: card(record(5, 'A')) });
    // q0 saw version 5 (title A) and asks for title A: nothing to change against what it saw.
    const q0 = groups.submit(130, { title: 'A' }, actor, { seen: card(record(5, 'A')) });
    // Another instance writes title B (version 6) and answers; q1 saw that and asks for title A.
    state.row = record(6, 'B');
    const q1 = groups.submit(130, { title: 'A' }, actor, { seen: card(record(6, 'B')) });
    release();
    await assert.rejects(p0, /pool timed out/);
    const [a0, a1] = await Promise.all([q0, q1]);
    // From version 6 (q1's card): q0 changes B to A (version 7), q1 then finds A and changes nothing.
    assert.deepEqual([state.row.title, state.row.version], ['A', 7], 'the row holds the title both asked for, written once');
    assert.deepEqual([a0!.record.title, a0!.record.version], ['A', 7]);
    assert.deepEqual([a1!.record.title, a1!.record.version], ['A', 7], 'q1 is not answered with version 5 while the row held B at 6');
  });

  it("no answer goes out before the caches were told of every earlier group, also one that writes nothing", async () => {
    const { store, state } = fakeStore(record(5, 'Z'));
    let tell!: () => void;
    const told = new Promise<void>((resolve) => (tell = resolve));
    const groups = new PatchGroups({ portalId: 1, store, read: async () => card(state.row), settle: () => told });
    const p1 = groups.submit(130, { title: 'A' }, actor, { seen: card(record(5, 'Z')) });
    // In the next group: nothing to change against what p1 wrote.
    const p2 = groups.submit(130, { title: 'A' }, actor, { seen: card(record(5, 'Z')) });
    let answered = 0;
    void p1.then(() => answered++);
    void p2.then(() => answered++);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(state.row.version, 6, 'p1 was written');
    assert.equal(answered, 0, 'neither is answered while the token of version 6 is not set');
    tell();
    const [a1, a2] = await Promise.all([p1, p2]);
    assert.equal(a1!.record.version, 6);
    assert.equal(a2!.record.version, 6, 'p2 changes nothing: answered with version 6, after the token moved');
  });

  it('a type deleted and made again with the same entityTypeId is not written from the old one\'s card', async () => {
    const { store, state } = fakeStore(record(3, 'New', 2));
    const groups = new PatchGroups({ portalId: 1, store, read: async () => card(state.row), settle: async () => undefined });
    // The PATCH's card is of the old type (id 1), at the version the new one (id 2) has reached too.
    const answer = await groups.submit(130, { title: 'Patched' }, actor, { seen: card(record(3, 'Old', 1)) });
    assert.equal(state.statements, 2, 'the statement from the old card wrote nothing; the group ran again from the row');
    assert.equal(answer!.record.id, 2, 'the PATCH applies to the type that holds the entityTypeId now');
    assert.deepEqual([state.row.id, state.row.title, state.row.version], [2, 'Patched', 4]);
  });

  it('a statement refused as a whole: each PATCH of the group runs alone; the store unreachable: each gets that error', async () => {
    const refused = fakeStore(record(5, 'A'), { refuseFirst: 1 });
    const groups = new PatchGroups({ portalId: 1, store: refused.store, read: async () => card(refused.state.row), settle: async () => undefined });
    const answers = await Promise.all(['B', 'C'].map((title) => groups.submit(130, { title }, actor, { seen: card(record(5, 'A')) })));
    // B's group (B alone: C arrived while it was being written) is refused: B runs alone (null: the full path, where
    // only a PATCH at fault fails); the next group, C's, is written.
    assert.equal(answers[0], null);
    assert.deepEqual([answers[1]!.record.title, answers[1]!.record.version], ['C', 6]);
    assert.deepEqual([refused.state.row.title, refused.state.row.version], ['C', 6], 'nothing of the refused group stored');

    const down = fakeStore(record(5, 'A'), { failFirst: 1 });
    const others = new PatchGroups({ portalId: 1, store: down.store, read: async () => card(down.state.row), settle: async () => undefined });
    await assert.rejects(others.submit(130, { title: 'B' }, actor, { seen: card(record(5, 'A')) }), /timed out/);
  });
});
