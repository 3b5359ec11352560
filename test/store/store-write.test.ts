import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KeyRecord } from '../../src/domain/records.js';
import { migrate } from '../../src/store/migrations/index.js';
import type { Store } from '../../src/store/store.js';
import { openTestStore, TEST_DIALECT, type TestStore } from '../helpers/test-store.js';

/**
 * The one write path of the store (issue 8): `store.write(work)` is atomic on both
 * stores, every repository (keys included) takes part in it, `committed` runs after the
 * COMMIT, and what a driver error means comes from the store, not from its codes.
 */
describe(`store.write (${TEST_DIALECT})`, () => {
  let testStore: TestStore;
  let store: Store;
  let portalId: number;
  before(async () => {
    testStore = openTestStore();
    store = testStore.store;
    await migrate(store);
    portalId = (await store.write(({ repos }) => repos.portals.create({ kind: 'local', name: 'Write path', timeZone: 'UTC' }))).id;
  });
  after(() => testStore.drop());

  const key = (id: string, portal: number | null = portalId): KeyRecord => ({
    id, kind: 'personal', portalId: portal, name: id, keyPrefix: 'vibe_api_abcd', keySuffix: 'wxyz', scopes: ['crm'], accessMode: 'READWRITE',
    expiresAt: null, requestsPerSecond: null, allowedIps: [], redirectUris: [], userId: 1, createdByKeyId: null, createdAt: 1, updatedAt: 1,
  });

  it('a write that fails half-way leaves nothing behind', async () => {
    await assert.rejects(
      store.write(async ({ repos }) => {
        await repos.keys.insert(key('key_half'), 'hash_half');
        throw new Error('rules said no');
      }),
      /rules said no/,
    );
    assert.equal(await store.read.keys.get('key_half'), null);
  });

  it('keys, portals and types take part in the same write; `committed` runs after it with its value', async () => {
    const seen: string[] = [];
    const value = await store.write(
      async ({ repos }) => {
        await repos.keys.insert(key('key_together'), 'hash_together');
        await repos.portals.update(portalId, { name: 'Renamed with a key' });
        seen.push('work');
        return 'done';
      },
      (v) => seen.push(`committed ${v}`),
    );
    assert.equal(value, 'done');
    assert.deepEqual(seen, ['work', 'committed done']);
    assert.equal((await store.read.keys.get('key_together'))?.name, 'key_together');
    assert.equal((await store.read.portals.get(portalId))?.name, 'Renamed with a key');
  });

  it('a `committed` callback that throws does not fail the stored write', async () => {
    await store.write(({ repos }) => repos.keys.insert(key('key_upkeep'), 'hash_upkeep'), () => {
      throw new Error('upkeep broke');
    });
    assert.ok(await store.read.keys.get('key_upkeep'));
  });

  it('failureOf tells a unique violation and a missing foreign key apart, whatever the driver', async () => {
    const duplicate = await store.write(({ repos }) => repos.keys.insert(key('key_together'), 'hash_other')).catch((e: unknown) => e);
    assert.equal(store.failureOf(duplicate), 'unique');
    const orphan = await store.write(({ repos }) => repos.keys.insert(key('key_orphan', 999_999), 'hash_orphan')).catch((e: unknown) => e);
    assert.equal(store.failureOf(orphan), 'foreign_key');
    assert.equal(store.failureOf(new Error('not the store')), null);
    // Extended SQLite codes count by their primary code.
    assert.equal(store.failureOf(Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' })), 'unavailable');
    assert.equal(store.failureOf(Object.assign(new Error('busy'), { code: 'SQLITE_BUSY_SNAPSHOT' })), 'unavailable');
  });

  it('writes submitted together share one transaction on SQLite (group commit, keys included)', { skip: TEST_DIALECT !== 'sqlite' ? 'group commit is SQLite only' : false }, async () => {
    const numbers = await Promise.all(['a', 'b', 'c'].map((n) => store.write(async ({ repos, transactionNumber }) => (await repos.keys.insert(key(`key_batch_${n}`), `hash_batch_${n}`), transactionNumber))));
    assert.equal(new Set(numbers).size, 1, `one transaction: ${numbers}`);
  });

  it('on PostgreSQL a write aborted for a deadlock or serialization conflict runs again, and is counted', { skip: TEST_DIALECT !== 'postgres' ? 'row locks and conflicts are PostgreSQL' : false }, async () => {
    const before = store.stats.conflictRetries;
    let runs = 0;
    await store.write(async ({ repos }) => {
      runs++;
      await repos.keys.insert(key(`key_conflict_${runs}`), `hash_conflict_${runs}`);
      if (runs === 1) throw Object.assign(new Error('could not serialize access'), { code: '40001' });
    });
    assert.equal(runs, 2);
    assert.equal(store.stats.conflictRetries, before + 1);
    assert.equal(await store.read.keys.get('key_conflict_1'), null, 'the aborted run left nothing');
    assert.ok(await store.read.keys.get('key_conflict_2'));
  });
});
