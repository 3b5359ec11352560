import crypto from 'node:crypto';
import pg from 'pg';
import { openStore, type Store } from '../../src/store/store.js';

/**
 * The suite runs once per store: SMARTPROC_TEST_DATABASE_URL=postgres://... selects
 * PostgreSQL (a fresh schema per test app, dropped afterwards); otherwise SQLite in memory.
 */
export const TEST_DATABASE_URL = process.env.SMARTPROC_TEST_DATABASE_URL || null;
export const TEST_DIALECT = TEST_DATABASE_URL ? 'postgres' : 'sqlite';

export interface TestStore {
  store: Store;
  /** A DATABASE_URL that reaches the same data (for a second server process). */
  databaseUrl: string | null;
  drop(): Promise<void>;
}

export interface TestStoreOptions {
  /** PostgreSQL only: reach the server through this port of 127.0.0.1 (a proxy the test can cut). */
  port?: number;
}

export function openTestStore(options: TestStoreOptions = {}): TestStore {
  if (!TEST_DATABASE_URL) {
    const store = openStore({ databaseUrl: null, dataDir: '.', sqliteFile: ':memory:' });
    return { store, databaseUrl: null, drop: () => store.close() };
  }
  const schema = `t_${crypto.randomBytes(6).toString('hex')}`;
  const url = new URL(TEST_DATABASE_URL);
  url.searchParams.set('schema', schema);
  if (options.port) {
    url.hostname = '127.0.0.1';
    url.port = String(options.port);
  }
  const store = openStore({ databaseUrl: url.toString(), dataDir: '.' });
  return {
    store,
    databaseUrl: url.toString(),
    async drop() {
      await store.close();
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
