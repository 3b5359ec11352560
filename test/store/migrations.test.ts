/**
 * Opening a store that is up to date, and GET /ready's migration check, read only smartproc's
 * own migration table: never the catalog of the whole database (Kysely's Migrator reads
 * every table of every schema to find its table, which made each /ready as costly as the
 * database is large, and failed when another schema was dropped at that moment).
 * Runs on each store of the suite.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { migrate, pendingMigrations } from '../../src/store/store.js';
import { openTestStore, TEST_DIALECT } from '../helpers/test-store.js';

/** The SQL text of every statement sent through `pg` while `work` runs (PostgreSQL). */
async function statementsDuring(work: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const first = args[0] as string | { text?: string };
    seen.push(typeof first === 'string' ? first : (first?.text ?? ''));
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    await work();
  } finally {
    pg.Client.prototype.query = query;
  }
  return seen;
}

describe('migrations', () => {
  it('a new store runs every migration; then none is pending, and opening it again runs nothing', async () => {
    const { store, drop } = openTestStore();
    try {
      assert.ok((await pendingMigrations(store)).length > 0, 'a new store has them all pending');
      await migrate(store);
      assert.deepEqual(await pendingMigrations(store), []);
      await migrate(store);
      assert.deepEqual(await pendingMigrations(store), []);
    } finally {
      await drop();
    }
  });

  it('an up-to-date store is opened, and its migrations checked, without reading the catalog of the database', { skip: TEST_DIALECT !== 'postgres' && 'PostgreSQL only (runs in the PostgreSQL pass)' }, async () => {
    const { store, drop } = openTestStore();
    try {
      await migrate(store);
      const statements = await statementsDuring(async () => {
        await migrate(store);
        await pendingMigrations(store);
      });
      assert.ok(statements.length > 0, 'the check reads the store');
      assert.deepEqual(statements.filter((text) => /pg_catalog|information_schema/i.test(text)), [], 'no statement reads the catalog');
    } finally {
      await drop();
    }
  });
});
