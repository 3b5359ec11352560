import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { describe, it } from 'node:test';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openStore } from '../../src/store/database.js';
import { TEST_DIALECT } from '../helpers/test-store.js';
import { EXTERNAL_CHECK_MS } from '../../src/portals/local/type-card-cache.js';

const pause = () => new Promise((r) => setTimeout(r, EXTERNAL_CHECK_MS + 10));

const run = TEST_DIALECT === 'sqlite' ? {} : { skip: 'the card cache exists only on SQLite (PostgreSQL is shared by instances, so cards are always read from it)' };

describe('cards of local portals cached in memory (SQLite)', run, () => {
  it('a change committed by another connection (e.g. the CLI) is seen within EXTERNAL_CHECK_MS', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-cache-')), 'store.db');
    const store = openStore({ databaseUrl: null, dataDir: '.', sqliteFile: file });
    const app = await buildApp({ config: { ...loadConfig({}), redisUrl: null }, store, logger: false });
    const other = new Sqlite(file);
    try {
      const portal = await app.services.portals.create({ name: 'Cache' });
      const { secret } = await app.services.keys.create({ kind: 'personal', portalId: portal.id, scopes: ['crm'], requestsPerSecond: null }, null);
      const get = async () => (await app.inject({ method: 'GET', url: '/v1/smart-processes/1050', headers: { 'x-api-key': secret } })).json();
      await app.inject({ method: 'POST', url: '/v1/smart-processes', headers: { 'x-api-key': secret, 'content-type': 'application/json' }, payload: { title: 'Before', entityTypeId: 1050 } });
      assert.equal((await get()).data.title, 'Before');
      assert.equal((await get()).data.title, 'Before', 'served again (from the cache)');

      other.prepare('UPDATE smart_process_types SET title = ? WHERE entity_type_id = 1050').run('Changed elsewhere');
      await pause();
      assert.equal((await get()).data.title, 'Changed elsewhere');

      other.prepare('DELETE FROM smart_process_types WHERE entity_type_id = 1050').run();
      await pause();
      assert.equal((await get()).error.code, 'SMART_PROCESS_NOT_FOUND');
    } finally {
      other.close();
      await app.close();
      await store.close();
    }
  });

  it('a relation set on one type shows at once on the cached card of the other end', async () => {
    const store = openStore({ databaseUrl: null, dataDir: '.', sqliteFile: ':memory:' });
    const app = await buildApp({ config: { ...loadConfig({}), redisUrl: null }, store, logger: false });
    try {
      const portal = await app.services.portals.create({ name: 'Cache' });
      const { secret } = await app.services.keys.create({ kind: 'personal', portalId: portal.id, scopes: ['crm'], requestsPerSecond: null }, null);
      const call = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown) =>
        app.inject({ method, url, headers: { 'x-api-key': secret, ...(payload ? { 'content-type': 'application/json' } : {}) }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });
      await call('POST', '/v1/smart-processes', { title: 'A', entityTypeId: 1060 });
      await call('POST', '/v1/smart-processes', { title: 'B', entityTypeId: 1062 });
      assert.deepEqual((await call('GET', '/v1/smart-processes/1060')).json().data.relations.child, []);
      await call('PATCH', '/v1/smart-processes/1062', { relations: { parent: [{ entityTypeId: 1060 }] } });
      assert.deepEqual((await call('GET', '/v1/smart-processes/1060')).json().data.relations.child.map((r: { entityTypeId: number }) => r.entityTypeId), [1062]);
    } finally {
      await app.close();
      await store.close();
    }
  });
});
