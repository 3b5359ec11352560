import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { BootstrapError } from '../../src/access/bootstrap.js';
import { TEST_DIALECT } from '../helpers/test-store.js';

const run = TEST_DIALECT === 'sqlite' ? {} : { skip: 'first start is exercised on the SQLite default; the PostgreSQL pass covers the store itself' };

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-first-start-'));
}

describe('first start on an empty store', run, () => {
  it('creates a local portal, a management key and a personal key, and writes them to an owner-only file', async () => {
    const dataDir = tempDir();
    const server = await startServer({ ...loadConfig({ DATA_DIR: dataDir, PORT: '0', MAX_EVENT_LOOP_DELAY_MS: '0' }) }, { logger: false });
    try {
      assert.ok(server.bootstrap);
      const file = path.join(dataDir, 'bootstrap-keys.json');
      assert.equal(server.bootstrap.file, file);
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
      assert.match(saved.personalKey, /^vibe_api_[A-Za-z0-9]{32,}$/);
      assert.match(saved.managementKey, /^vibe_live_[A-Za-z0-9]{32,}$/);
      const me = await fetch(`${server.url}/v1/me`, { headers: { 'X-Api-Key': saved.personalKey } });
      const body = (await me.json()) as { data: { kind: string; currentUser: { bitrixUserId: number }; scopes: string[] } };
      assert.equal(body.data.kind, 'personal');
      assert.equal(body.data.currentUser.bitrixUserId, 1);
      assert.ok(body.data.scopes.includes('crm'));
      const list = await fetch(`${server.url}/v1/smart-processes`, { headers: { 'X-Api-Key': saved.personalKey } });
      assert.equal(list.status, 200);
      const keys = await fetch(`${server.url}/v1/keys`, { headers: { 'X-Api-Key': saved.managementKey } });
      assert.equal(keys.status, 200);
    } finally {
      await server.app.close();
    }
    const again = await startServer({ ...loadConfig({ DATA_DIR: dataDir, PORT: '0', MAX_EVENT_LOOP_DELAY_MS: '0' }) }, { logger: false });
    assert.equal(again.bootstrap, null, 'a second start does not bootstrap again');
    await again.app.close();
  });

  it('SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY sets the management key of the first start', async () => {
    const dataDir = tempDir();
    const chosen = 'vibe_live_' + 'Ab3'.repeat(12);
    const server = await startServer({ ...loadConfig({ DATA_DIR: dataDir, PORT: '0', MAX_EVENT_LOOP_DELAY_MS: '0', SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY: chosen }) }, { logger: false });
    try {
      assert.equal(server.bootstrap?.managementKey, chosen);
      const res = await fetch(`${server.url}/v1/portals`, { headers: { 'X-Api-Key': chosen } });
      assert.equal(res.status, 200);
    } finally {
      await server.app.close();
    }
  });

  it('refuses a bootstrap management key without the prefix or too short, with a clear message', async () => {
    for (const bad of ['my-secret', 'vibe_live_short', 'vibe_api_' + 'a'.repeat(40)]) {
      await assert.rejects(startServer({ ...loadConfig({ DATA_DIR: tempDir(), PORT: '0', MAX_EVENT_LOOP_DELAY_MS: '0', SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY: bad }) }, { logger: false }), (error: Error) => {
        assert.ok(error instanceof BootstrapError);
        assert.match(error.message, /vibe_live_/);
        return true;
      });
    }
  });
  it('a first start that fails half-way stores nothing, and the next start does it all', async () => {
    const dataDir = tempDir();
    // The keys file cannot be written (a folder stands in its place): the first start must fail whole.
    fs.mkdirSync(path.join(dataDir, 'bootstrap-keys.json'));
    await assert.rejects(startServer({ ...loadConfig({ DATA_DIR: dataDir, PORT: '0', MAX_EVENT_LOOP_DELAY_MS: '0' }) }, { logger: false }));
    fs.rmdirSync(path.join(dataDir, 'bootstrap-keys.json'));
    const server = await startServer({ ...loadConfig({ DATA_DIR: dataDir, PORT: '0', MAX_EVENT_LOOP_DELAY_MS: '0' }) }, { logger: false });
    try {
      assert.ok(server.bootstrap, 'the second start bootstraps');
      const saved = JSON.parse(fs.readFileSync(path.join(dataDir, 'bootstrap-keys.json'), 'utf8'));
      const me = await fetch(`${server.url}/v1/me`, { headers: { 'X-Api-Key': saved.personalKey } });
      assert.equal(me.status, 200);
      const portals = await fetch(`${server.url}/v1/portals`, { headers: { 'X-Api-Key': saved.managementKey } });
      assert.equal(((await portals.json()) as { data: unknown[] }).data.length, 1, 'one portal, not one per try');
    } finally {
      await server.app.close();
    }
  });
});
