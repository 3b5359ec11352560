import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { sql, type CompiledQuery } from 'kysely';
import { openStore, type Store } from '../../src/store/store.js';
import type { Runner } from '../../src/store/repository.js';
import { BatchSelfWaitError, MAX_BATCH, SELF_WAIT_LIMIT_MS } from '../../src/store/write-batch.js';

/** Group commit exists only on the SQLite store (PostgreSQL runs each write in a transaction of its own). */
describe('SQLite write batch (group commit)', () => {
  let store: Store;
  let statements: string[];

  const insert = (run: Runner, name: string, value: string) => run(sql`insert into settings (name, value) values (${name}, ${value})`.compile(store.db));
  const stored = async () => (await store.db.selectFrom('settings').select(['name', 'value']).orderBy('name').execute()).map((r) => `${r.name}=${r.value}`);
  const batch = () => store.writes!;

  before(async () => {
    store = openStore({ databaseUrl: null, dataDir: '.', sqliteFile: ':memory:' });
    await store.db.schema.createTable('settings').addColumn('name', 'text', (c) => c.primaryKey()).addColumn('value', 'text', (c) => c.notNull()).execute();
    // Every statement the batch runs on the connection, in order.
    const connection = (batch() as unknown as { connection: { run: Runner } }).connection;
    const run = connection.run.bind(connection);
    connection.run = ((query: CompiledQuery, parameters?: readonly unknown[]) => {
      statements.push(query.sql);
      return run(query, parameters);
    }) as Runner;
  });
  after(() => store.close());
  beforeEach(async () => {
    await store.db.deleteFrom('settings').execute();
    statements = [];
  });

  it('writes submitted in the same turn of the event loop share one transaction, each in a savepoint', async () => {
    const results = await Promise.all([1, 2, 3].map((i) => batch().submit(async (run) => (await insert(run, `k${i}`, 'v'), i))));
    assert.deepEqual(results, [1, 2, 3]);
    assert.deepEqual(await stored(), ['k1=v', 'k2=v', 'k3=v']);
    assert.equal(statements.filter((s) => s === 'begin immediate').length, 1);
    assert.equal(statements.filter((s) => s === 'commit').length, 1);
    assert.equal(statements.filter((s) => s === 'savepoint write').length, 3);
  });

  it('a lone write runs in a plain transaction', async () => {
    await batch().submit(async (run) => insert(run, 'alone', 'v'));
    assert.deepEqual(statements, ['begin immediate', 'insert into settings (name, value) values (?, ?)', 'commit']);
  });

  it('a write that fails is rolled back to its savepoint and gets its own error; the others are stored', async () => {
    const answers = await Promise.allSettled([
      batch().submit(async (run) => insert(run, 'a', '1')),
      batch().submit(async (run) => {
        await insert(run, 'b', 'half-written');
        throw new Error('rules said no');
      }),
      batch().submit(async (run) => insert(run, 'c', '3')),
    ]);
    assert.deepEqual(answers.map((a) => a.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.equal((answers[1] as PromiseRejectedResult).reason.message, 'rules said no');
    assert.deepEqual(await stored(), ['a=1', 'c=3']);
    assert.ok(statements.includes('rollback to write'));
  });

  it('a lone write that fails leaves nothing behind', async () => {
    await assert.rejects(
      batch().submit(async (run) => {
        await insert(run, 'x', '1');
        await insert(run, 'x', 'duplicate key');
      }),
      /UNIQUE constraint failed/,
    );
    assert.deepEqual(await stored(), []);
  });

  it('when SQLite ends the transaction itself, nothing of the batch is stored and every write gets the error', async () => {
    const answers = await Promise.allSettled([
      batch().submit(async (run) => insert(run, 'a', '1')),
      batch().submit(async (run) => {
        run({ sql: 'rollback', parameters: [] } as unknown as CompiledQuery);
        throw new Error('the transaction is gone');
      }),
      batch().submit(async (run) => insert(run, 'c', '3')),
    ]);
    assert.deepEqual(answers.map((a) => a.status), ['rejected', 'rejected', 'rejected']);
    for (const answer of answers) assert.equal((answer as PromiseRejectedResult).reason.message, 'the transaction is gone');
    assert.deepEqual(await stored(), []);
  });

  it('a failing COMMIT rejects every write of the batch and stores none', async () => {
    await store.db.schema.createTable('guarded').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('owner', 'text', (c) => c.references('settings.name').notNull()).execute();
    await sql`pragma foreign_keys = on`.execute(store.db);
    try {
      const answers = await Promise.allSettled([
        batch().submit(async (run) => insert(run, 'a', '1')),
        batch().submit(async (run) => {
          // A deferred foreign key is checked at COMMIT, where it fails.
          await run(sql`pragma defer_foreign_keys = on`.compile(store.db));
          await run(sql`insert into guarded (id, owner) values (1, 'nobody')`.compile(store.db));
        }),
      ]);
      assert.deepEqual(answers.map((a) => a.status), ['rejected', 'rejected']);
      assert.match((answers[0] as PromiseRejectedResult).reason.message, /FOREIGN KEY constraint failed/);
      assert.deepEqual(await stored(), []);
      assert.equal((await sql<{ n: number }>`select count(*) as n from guarded`.execute(store.db)).rows[0].n, 0);
    } finally {
      await store.db.schema.dropTable('guarded').execute();
    }
  });

  it('a write settles only after the COMMIT, and `committed` callbacks run right after it, in submission order', async () => {
    const seen: string[] = [];
    const submit = (name: string) =>
      batch()
        .submit(
          async (run) => {
            await insert(run, name, 'v');
            seen.push(`work ${name}`);
            return name;
          },
          (value) => seen.push(`committed ${value} (${statements.at(-1)})`),
        )
        .then((value) => seen.push(`settled ${value}`));
    await Promise.all([submit('a'), submit('b')]);
    assert.deepEqual(seen, ['work a', 'work b', 'committed a (commit)', 'committed b (commit)', 'settled a', 'settled b']);
  });

  it('a `committed` callback that throws does not fail its stored write nor the next writes of the batch', async () => {
    const results = await Promise.all([
      batch().submit(async (run) => (await insert(run, 'a', '1'), 'a'), () => {
        throw new Error('upkeep broke');
      }),
      batch().submit(async (run) => (await insert(run, 'b', '2'), 'b')),
    ]);
    assert.deepEqual(results, ['a', 'b']);
    assert.deepEqual(await stored(), ['a=1', 'b=2']);
  });

  it("Kysely's own queries wait for a running batch instead of running inside its transaction", async () => {
    let readDuringBatch: Promise<string[]> | null = null;
    const write = batch().submit(async (run) => {
      await insert(run, 'a', 'uncommitted');
      readDuringBatch = stored();
      await new Promise((resolve) => setTimeout(resolve, 20));
      throw new Error('abandon');
    });
    await assert.rejects(write, /abandon/);
    assert.deepEqual(await readDuringBatch, []);
  });

  it('a write that awaits a query outside its runner fails loudly (it would wait for itself) and the store goes on', async () => {
    const started = Date.now();
    const [misused, neighbour] = await Promise.allSettled([
      batch().submit(async (run) => {
        await insert(run, 'misused', 'half-written');
        return stored();
      }),
      batch().submit(async (run) => insert(run, 'neighbour', 'v')),
    ]);
    assert.equal(misused.status, 'rejected');
    assert.ok((misused as PromiseRejectedResult).reason instanceof BatchSelfWaitError, String((misused as PromiseRejectedResult).reason));
    assert.match((misused as PromiseRejectedResult).reason.message, /runner/);
    assert.ok(Date.now() - started < SELF_WAIT_LIMIT_MS + 2000, 'it fails within the limit');
    assert.equal(neighbour.status, 'fulfilled');
    assert.deepEqual(await stored(), ['neighbour=v'], 'the misused write was rolled back alone');
    await batch().submit(async (run) => insert(run, 'after', 'v'));
    assert.deepEqual(await stored(), ['after=v', 'neighbour=v'], 'the store is not left locked');
  });

  it('a write that awaits another write (which waits for this batch) fails loudly too, and the store goes on', async () => {
    const outer = batch().submit(async (run) => {
      await insert(run, 'outer', 'v');
      await batch().submit(async (inner) => insert(inner, 'inner', 'v'));
      return 'never';
    });
    await assert.rejects(outer, BatchSelfWaitError);
    await batch().submit(async (run) => insert(run, 'after', 'v'));
    assert.ok(!(await stored()).includes('outer=v'), 'the outer write was rolled back');
    assert.ok((await stored()).includes('after=v'), 'the store is not left locked');
  });

  it('a write abandoned as stuck cannot run statements afterwards (nothing lands outside a transaction)', async () => {
    let resumed: Promise<unknown> | null = null;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const stuck = batch().submit(async (run) => {
      await gate;
      resumed = Promise.resolve().then(() => insert(run, 'late', 'v'));
      return resumed;
    });
    await assert.rejects(stuck, BatchSelfWaitError);
    release();
    await new Promise((resolve) => setTimeout(resolve, 10));
    await assert.rejects(resumed!, BatchSelfWaitError);
    assert.ok(!(await stored()).includes('late=v'));
  });

  it(`takes at most ${MAX_BATCH} writes per transaction and runs the rest in the next one`, async () => {
    const count = MAX_BATCH + 5;
    await Promise.all(Array.from({ length: count }, (_, i) => batch().submit(async (run) => insert(run, `k${String(i).padStart(3, '0')}`, 'v'))));
    assert.equal((await stored()).length, count);
    assert.equal(statements.filter((s) => s === 'commit').length, 2);
  });
});
