import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openTestStore, TEST_DATABASE_URL, type TestStore } from '../helpers/test-store.js';

const execFileAsync = promisify(execFile);

describe('the smartproc command', () => {
  let dataDir: string;
  let testStore: TestStore | null = null;
  let env: NodeJS.ProcessEnv;

  before(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-cli-'));
    env = { ...process.env, DATA_DIR: dataDir, DATABASE_URL: '', REDIS_URL: '' };
    if (TEST_DATABASE_URL) {
      testStore = openTestStore();
      env.DATABASE_URL = testStore.databaseUrl!;
    }
  });
  after(async () => {
    await testStore?.drop();
  });

  const cli = async (...args: string[]) => {
    const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', ...args], { env });
    return stdout;
  };

  it('creates portals and keys on the store, and the keys work against a server on the same store', async () => {
    const portal = JSON.parse(await cli('portals', 'create', '--name', 'CLI portal', '--time-zone', 'Europe/Moscow', '--json'));
    assert.equal(portal.timeZone, 'Europe/Moscow');
    const created = JSON.parse(await cli('keys', 'create', '--portal', String(portal.id), '--scopes', 'crm', '--user-id', '1', '--json'));
    assert.match(created.secret, /^vibe_api_[A-Za-z0-9]{40}$/);
    assert.equal(created.userId, 1);
    assert.deepEqual(created.scopes, ['crm']);

    const store = testStore ? testStore.store : undefined;
    const app = await buildApp({ config: { ...loadConfig({ DATA_DIR: dataDir }), databaseUrl: env.DATABASE_URL || null, redisUrl: null }, store, logger: false });
    try {
      const res = await app.inject({ method: 'POST', url: '/v1/smart-processes', headers: { 'x-api-key': created.secret, 'content-type': 'application/json' }, payload: { title: 'From CLI key' } });
      assert.equal(res.statusCode, 201, res.body);
      assert.match(res.json().data.createdTime, /\+03:00$/);

      const listed = JSON.parse(await cli('keys', 'list', '--portal', String(portal.id), '--json'));
      assert.equal(listed.length, 1);
      assert.equal(listed[0].secret, undefined, 'no secret in a listing');

      const updated = JSON.parse(await cli('keys', 'update', created.id, '--readonly', '--rps', '5', '--json'));
      assert.equal(updated.accessMode, 'READONLY');
      assert.equal(updated.requestsPerSecond, 5);

      const rotated = JSON.parse(await cli('keys', 'rotate', created.id, '--json'));
      assert.notEqual(rotated.secret, created.secret);
      await new Promise((r) => setTimeout(r, 1100));
      const old = await app.inject({ method: 'GET', url: '/v1/smart-processes', headers: { 'x-api-key': created.secret } });
      assert.equal(old.statusCode, 401);
      const fresh = await app.inject({ method: 'GET', url: '/v1/smart-processes', headers: { 'x-api-key': rotated.secret } });
      assert.equal(fresh.statusCode, 200);

      assert.match(await cli('keys', 'delete', created.id), /deleted/);
      await assert.rejects(cli('portals', 'delete', String(portal.id)), /PORTAL_NOT_EMPTY/);
      await cli('portals', 'delete', String(portal.id), '--force');
      assert.doesNotMatch(await cli('portals', 'list'), /CLI portal/);
    } finally {
      await app.close();
    }
  });

  it('sets the redirectUris of an application key (user authorization), and clears them with ""', async () => {
    const portal = JSON.parse(await cli('portals', 'create', '--name', 'CLI redirect portal', '--json'));
    const created = JSON.parse(await cli('keys', 'create', '--kind', 'application', '--portal', String(portal.id), '--redirect-uris', 'https://app.example/cb,http://localhost:3001/cb', '--json'));
    assert.deepEqual(created.redirectUris, ['https://app.example/cb', 'http://localhost:3001/cb']);
    const updated = JSON.parse(await cli('keys', 'update', created.id, '--redirect-uris', 'https://app.example/other', '--json'));
    assert.deepEqual(updated.redirectUris, ['https://app.example/other']);
    assert.deepEqual(JSON.parse(await cli('keys', 'update', created.id, '--redirect-uris', '', '--json')).redirectUris, []);
    await assert.rejects(cli('keys', 'update', created.id, '--redirect-uris', 'http://app.example/cb'), /redirectUris\[0\]/);
    await cli('portals', 'delete', String(portal.id), '--force');
  });

  it('says what is wrong, with exit code 1', async () => {
    await assert.rejects(cli('keys', 'create', '--portal', '999999', '--json'), (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.match(error.stderr, /VALIDATION_ERROR/);
      assert.match(error.stderr, /no portal with id 999999/);
      return true;
    });
  });

  it('refuses whole numbers beyond the 32-bit range with the range in the message, on both stores (issue 7, defect 6)', async () => {
    for (const args of [['keys', 'create', '--portal', '99999999999', '--json'], ['keys', 'create', '--portal', '1', '--user-id', '2147483648', '--json'], ['portals', 'delete', '4294967296']]) {
      await assert.rejects(cli(...args), (error: { code: number; stderr: string }) => {
        assert.equal(error.code, 1, args.join(' '));
        assert.match(error.stderr, /2147483647/, `${args.join(' ')}: ${error.stderr}`);
        assert.doesNotMatch(error.stderr, /out of range for type|SQL|postgres/i);
        return true;
      });
    }
  });

  it('prints human tables without --json', async () => {
    await cli('portals', 'create', '--name', 'Listed');
    const out = await cli('portals', 'list');
    assert.match(out, /^id\s+kind\s+name\s+domain\s+timeZone/m);
  });
});
