import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { migrate, SingleStatementError } from '../../src/store/store.js';
import { openTestStore, TEST_DIALECT } from '../helpers/test-store.js';

describe('store.write with singleStatement', () => {
  it('runs its one statement (PostgreSQL: without BEGIN/COMMIT) and gives its result', async () => {
    const { store, drop } = openTestStore();
    try {
      await migrate(store);
      const count = await store.write(({ repos }) => repos.types.countForPortal(1), undefined, { singleStatement: true });
      assert.equal(count, 0);
    } finally {
      await drop();
    }
  });

  it(TEST_DIALECT === 'postgres' ? 'PostgreSQL: a second statement fails the write before it is sent' : 'SQLite: the option changes nothing (writes share the batch transaction)', async () => {
    const { store, drop } = openTestStore();
    try {
      await migrate(store);
      const twoStatements = store.write(
        async ({ repos }) => {
          await repos.types.countForPortal(1);
          return repos.types.countForPortal(2);
        },
        undefined,
        { singleStatement: true },
      );
      if (TEST_DIALECT === 'postgres') await assert.rejects(twoStatements, SingleStatementError);
      else assert.equal(await twoStatements, 0);
    } finally {
      await drop();
    }
  });
});
