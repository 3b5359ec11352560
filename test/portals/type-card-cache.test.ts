import { CLI_AUDIT } from '../../src/domain/audit.js';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { describe, it } from 'node:test';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openStore } from '../../src/store/store.js';
import { TEST_DIALECT } from '../helpers/test-store.js';
import { EXTERNAL_CHECK_MS } from '../../src/portals/local/type-card-cache.js';
import { parseCreateBody, parsePatchBody } from '../../src/domain/smart-process-type/input.js';

const pause = () => new Promise((r) => setTimeout(r, EXTERNAL_CHECK_MS + 10));

const run = TEST_DIALECT === 'sqlite' ? {} : { skip: 'the card cache exists only on SQLite (PostgreSQL is shared by instances, so cards are always read from it)' };

/** A server on its own SQLite store (a file, so that another connection can write to it), a portal and a key. */
async function cacheFixture(options: { file?: boolean } = {}) {
  const file = options.file ? path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-cache-')), 'store.db') : ':memory:';
  const store = openStore({ databaseUrl: null, dataDir: '.', sqliteFile: file });
  const app = await buildApp({ config: { ...loadConfig({}), redisUrl: null, maxEventLoopDelayMs: 0 }, store, logger: false });
  const other = options.file ? new Sqlite(file) : null;
  const record = await app.services.portals.create({ name: 'Cache' });
  const { secret } = await app.services.keys.create({ kind: 'personal', portalId: record.id, scopes: ['crm'], requestsPerSecond: null }, null);
  const call = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown) =>
    app.inject({ method, url, headers: { 'x-api-key': secret, ...(payload ? { 'content-type': 'application/json' } : {}) }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });
  return {
    store,
    app,
    record,
    call,
    /** Another connection to the same file, as the CLI or a hand-made SQL edit would be. */
    other: other!,
    async close() {
      other?.close();
      await app.close();
      await store.close();
    },
  };
}

describe('cards of local portals cached in memory (SQLite)', run, () => {
  it('a change committed by another connection (e.g. the CLI) is seen within EXTERNAL_CHECK_MS', async () => {
    const { call, other, close } = await cacheFixture({ file: true });
    try {
      const get = async () => (await call('GET', '/v1/smart-processes/1050')).json();
      await call('POST', '/v1/smart-processes', { title: 'Before', entityTypeId: 1050 });
      assert.equal((await get()).data.title, 'Before');
      assert.equal((await get()).data.title, 'Before', 'served again (from the cache)');

      other.prepare('UPDATE smart_process_types SET title = ? WHERE entity_type_id = 1050').run('Changed elsewhere');
      await pause();
      assert.equal((await get()).data.title, 'Changed elsewhere');

      other.prepare('DELETE FROM smart_process_types WHERE entity_type_id = 1050').run();
      await pause();
      assert.equal((await get()).error.code, 'SMART_PROCESS_NOT_FOUND');
    } finally {
      await close();
    }
  });

  it('a relation set on one type shows at once on the cached card of the other end', async () => {
    const { call, close } = await cacheFixture();
    try {
      await call('POST', '/v1/smart-processes', { title: 'A', entityTypeId: 1060 });
      await call('POST', '/v1/smart-processes', { title: 'B', entityTypeId: 1062 });
      assert.deepEqual((await call('GET', '/v1/smart-processes/1060')).json().data.relations.child, []);
      await call('PATCH', '/v1/smart-processes/1062', { relations: { parent: [{ entityTypeId: 1060 }] } });
      assert.deepEqual((await call('GET', '/v1/smart-processes/1060')).json().data.relations.child.map((r: { entityTypeId: number }) => r.entityTypeId), [1062]);
    } finally {
      await close();
    }
  });

  it('a write trusts a cached card only if no other connection committed since: a change made elsewhere is never written back over', async () => {
    const { call, other, close } = await cacheFixture({ file: true });
    try {
      await call('POST', '/v1/smart-processes', { title: 'Before', entityTypeId: 1070 });
      await call('PATCH', '/v1/smart-processes/1070', { isStagesEnabled: true }); // its card is now cached by the write
      // Another connection changes the title without moving the version (as a hand-made SQL edit would).
      other.prepare('UPDATE smart_process_types SET title = ?, title_lower = ? WHERE entity_type_id = 1070').run('Changed elsewhere', 'changed elsewhere');
      // At once, well inside EXTERNAL_CHECK_MS: the write checks under the write lock.
      const patched = (await call('PATCH', '/v1/smart-processes/1070', { isCategoriesEnabled: true })).json();
      assert.equal(patched.data.title, 'Changed elsewhere');
      assert.equal(other.prepare('SELECT title FROM smart_process_types WHERE entity_type_id = 1070').pluck().get(), 'Changed elsewhere');

      // Deleted and created again elsewhere: the same entityTypeId at version 1 once more.
      other.prepare('DELETE FROM smart_process_types WHERE entity_type_id = 1070').run();
      await call('POST', '/v1/smart-processes', { title: 'Second life', entityTypeId: 1070 });
      await call('GET', '/v1/smart-processes/1070');
      other.prepare('UPDATE smart_process_types SET title = ?, title_lower = ?, flags = 0 WHERE entity_type_id = 1070').run('Third life', 'third life');
      const again = (await call('PATCH', '/v1/smart-processes/1070', { isSourceEnabled: true })).json();
      assert.equal(again.data.title, 'Third life');
      assert.equal(again.data.isStagesEnabled, false);
    } finally {
      await close();
    }
  });

  it('in one batch, a write after a relation change of another type sees the new relations of its own card', async () => {
    const { app, store, record, close } = await cacheFixture();
    try {
      const portal = app.services.portalRegistry.portalFor(record);
      const actor = { userId: 1, audit: CLI_AUDIT };
      const draft = (title: string, entityTypeId: number) => parseCreateBody({ title, entityTypeId });
      await portal.types.create(draft('X', 1080), actor);
      await portal.types.create(draft('Y', 1082), actor);
      await portal.types.update(1080, parsePatchBody({ title: 'X cached' }, 1080), actor); // X's card is cached

      const commits: string[] = [];
      const connection = (store.writes as unknown as { connection: { run: (q: { sql: string }, parameters?: unknown[]) => unknown } }).connection;
      const run = connection.run.bind(connection);
      connection.run = (query, parameters) => {
        if (query.sql === 'commit') commits.push(query.sql);
        return run(query as never, parameters);
      };
      const [first, , last] = await Promise.all([
        portal.types.update(1080, parsePatchBody({ title: 'X one' }, 1080), actor),
        portal.types.update(1082, parsePatchBody({ relations: { parent: [{ entityTypeId: 1080 }] } }, 1082), actor),
        portal.types.update(1080, parsePatchBody({ title: 'X two' }, 1080), actor),
      ]);
      assert.equal(commits.length, 1, 'the three writes shared one transaction');
      assert.deepEqual(first.relations.child, []);
      assert.deepEqual(last.relations.child.map((r) => r.entityTypeId), [1082]);
      assert.equal(last.record.version, first.record.version + 2, 'one for the relation set from the other end, one for its own change');
      assert.deepEqual((await portal.types.get(1080))!.relations.child.map((r) => r.entityTypeId), [1082]);
    } finally {
      await close();
    }
  });

  it('list pages: kept until a write of this process (every kind of write), and a change by another connection is seen within EXTERNAL_CHECK_MS', async () => {
    const { call, store, other, close } = await cacheFixture({ file: true });
    try {
      let listReads = 0;
      const list = store.read.types.list.bind(store.read.types);
      store.read.types.list = (...args) => (listReads++, list(...args));
      const titles = async (query = '') => (await call('GET', `/v1/smart-processes?limit=50${query}`)).json().data.map((t: { title: string }) => t.title);
      await call('POST', '/v1/smart-processes', { title: 'One', entityTypeId: 1090 });
      assert.deepEqual(await titles(), ['One']);
      assert.deepEqual(await titles(), ['One']);
      assert.equal(listReads, 1, 'the second list came from the cache');
      assert.deepEqual(await titles('&select=title'), ['One'], 'another select is the same page, shown otherwise');
      assert.equal(listReads, 1, 'the page holds whole records whatever the select');
      const selected = (await call('GET', '/v1/smart-processes?limit=50&select=title')).json().data;
      assert.deepEqual(selected, [{ title: 'One' }], 'the select applies to the kept page');
      const whole = (await call('GET', '/v1/smart-processes?limit=50')).json().data;
      assert.equal(whole[0].title, 'One');
      assert.ok('entityTypeId' in whole[0] && 'isStagesEnabled' in whole[0], 'the whole items after a selected view of the same page');
      assert.equal(listReads, 1);

      await call('POST', '/v1/smart-processes', { title: 'Two', entityTypeId: 1092 });
      assert.deepEqual(await titles(), ['One', 'Two'], 'after a create');
      await call('PATCH', '/v1/smart-processes/1090', { title: 'One bis' });
      assert.deepEqual(await titles(), ['One bis', 'Two'], 'after a PATCH (which keeps the other cards)');
      assert.deepEqual(await titles('&select=title'), ['One bis', 'Two']);
      await call('PATCH', '/v1/smart-processes/1092', { relations: { parent: [{ entityTypeId: 1090 }] } });
      await call('DELETE' as 'GET', '/v1/smart-processes/1092');
      assert.deepEqual(await titles(), ['One bis'], 'after a delete');

      other.prepare('UPDATE smart_process_types SET title = ?, title_lower = ? WHERE entity_type_id = 1090').run('Elsewhere', 'elsewhere');
      await pause();
      assert.deepEqual(await titles(), ['Elsewhere']);
    } finally {
      await close();
    }
  });
});
