/**
 * `smartproc secrets rotate` (issue 11 item 5): every sealed credential of the store is
 * sealed again with SMARTPROC_SECRET_KEY, opened with it or with a key of
 * SMARTPROC_PREVIOUS_SECRET_KEYS, in one transaction: when one value cannot be opened,
 * nothing changes. Afterwards a server with the new key alone serves the portals.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { seal, unseal } from '../../src/portals/bitrix24/portal-credentials.js';
import { loadSecretBox, SecretBox, SecretBoxError } from '../../src/store/secret-box.js';
import { openStore, type Store } from '../../src/store/store.js';
import { startFakeBitrix24 } from '../fakes/bitrix24/fake-portal.js';
import { openTestStore, TEST_DATABASE_URL, type TestStore } from '../helpers/test-store.js';

const execFileAsync = promisify(execFile);
const oldKey = crypto.randomBytes(32);
const newKey = crypto.randomBytes(32);
const strangerKey = crypto.randomBytes(32);

describe('smartproc secrets rotate', () => {
  let dataDir: string;
  let testStore: TestStore | null = null;
  let databaseUrl: string | null = null;
  let fake: Awaited<ReturnType<typeof startFakeBitrix24>>;
  /** A second Bitrix24 portal (one smartproc portal per Bitrix24 portal): the OAuth one. */
  let fakeOAuth: Awaited<ReturnType<typeof startFakeBitrix24>>;
  let portalIds: number[] = [];
  let portalKey: string;
  let original: Map<number, string>;

  const openData = (): Store => openStore({ databaseUrl, dataDir });
  const sealedRows = async (): Promise<Map<number, string>> => {
    const store = openData();
    try {
      return new Map([...(await store.read.bitrix24.getMany(portalIds)).entries()].map(([id, row]) => [id, row.sealed]));
    } finally {
      await store.close();
    }
  };
  const cli = (env: Record<string, string>) =>
    execFileAsync(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'secrets', 'rotate', '--json'], {
      env: { ...process.env, DATA_DIR: dataDir, DATABASE_URL: databaseUrl ?? '', REDIS_URL: '', SMARTPROC_SECRET_KEY: '', SMARTPROC_PREVIOUS_SECRET_KEYS: '', ...env },
    });

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-rotate-'));
    if (TEST_DATABASE_URL) {
      testStore = openTestStore();
      databaseUrl = testStore.databaseUrl;
      await testStore.store.close();
    }
    fake = await startFakeBitrix24({ users: [{ id: 1, name: 'Admin' }, { id: 7, name: 'Tester' }], limits: false, utcOffset: '+00:00' });
    fakeOAuth = await startFakeBitrix24({ users: [{ id: 1, name: 'Admin' }, { id: 7, name: 'Tester' }], limits: false, utcOffset: '+00:00' });
    // Two bitrix24 portals (a webhook and an OAuth application), sealed with the old key.
    const store = openData();
    const app = await buildApp({ config: { ...loadConfig({}), dataDir, databaseUrl, redisUrl: null }, store, logger: false, secretBox: new SecretBox(oldKey) });
    try {
      const { portals, keys } = app.services;
      const webhook = await portals.create({ kind: 'bitrix24', name: 'Webhook', timeZone: 'UTC', webhookUrl: fake.webhookUrl(7), limits: { burst: 1000, perSecond: 1000 } });
      const tokens = fakeOAuth.oauth.issueTokens({ userId: 7 });
      const oauth = await portals.create({
        kind: 'bitrix24',
        name: 'OAuth',
        timeZone: 'UTC',
        oauth: { clientId: fakeOAuth.oauth.clientId, clientSecret: fakeOAuth.oauth.clientSecret, clientEndpoint: tokens.client_endpoint, accessToken: tokens.access_token, refreshToken: tokens.refresh_token, expiresAt: tokens.expires, tokenUrl: fakeOAuth.oauth.tokenUrl },
        limits: { burst: 1000, perSecond: 1000 },
      });
      portalIds = [webhook.id, oauth.id];
      portalKey = (await keys.create({ kind: 'personal', portalId: oauth.id, scopes: ['crm'], userId: 7, requestsPerSecond: null }, null)).secret;
    } finally {
      await app.close();
      await store.close();
    }
    original = await sealedRows();
  });
  after(async () => {
    await fake?.close();
    await fakeOAuth?.close();
    await testStore?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses, changing nothing, when a value opens with none of the keys it is given', async () => {
    await assert.rejects(cli({ SMARTPROC_SECRET_KEY: newKey.toString('base64') }), (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.match(error.stderr, new RegExp(`portals ${portalIds.join(', ')} cannot be opened.*nothing was changed`));
      return true;
    });
    assert.deepEqual(await sealedRows(), original);
  });

  it('one value sealed with an unknown key: refused, and the others are not changed either (one transaction)', async () => {
    const store = openData();
    const stranger = new SecretBox(strangerKey);
    const [first, second] = portalIds;
    const credential = unseal(new SecretBox(oldKey), second, original.get(second)!);
    await store.write(({ repos }) => repos.bitrix24.reseal(second, seal(stranger, second, credential)));
    await store.close();
    const before = await sealedRows();
    await assert.rejects(cli({ SMARTPROC_SECRET_KEY: newKey.toString('base64'), SMARTPROC_PREVIOUS_SECRET_KEYS: oldKey.toString('hex') }), (error: { stderr: string }) => {
      assert.match(error.stderr, new RegExp(`portal ${second} cannot be opened`));
      assert.doesNotMatch(error.stderr, new RegExp(`portals? ${first}\\b`));
      return true;
    });
    assert.deepEqual(await sealedRows(), before, 'the first portal was not sealed again either');
    // Put it back as it was.
    const back = openData();
    await back.write(({ repos }) => repos.bitrix24.reseal(second, original.get(second)!));
    await back.close();
  });

  it('seals every credential again with the new key; the new key alone opens them, to the same credentials; running it again is harmless', async () => {
    const { stdout } = await cli({ SMARTPROC_SECRET_KEY: newKey.toString('base64'), SMARTPROC_PREVIOUS_SECRET_KEYS: `${strangerKey.toString('base64')},${oldKey.toString('base64')}` });
    assert.deepEqual(JSON.parse(stdout), { resealed: 2, keyId: new SecretBox(newKey).keyId });
    const rotated = await sealedRows();
    const oldBox = new SecretBox(oldKey);
    const newBox = new SecretBox(newKey);
    for (const id of portalIds) {
      assert.notEqual(rotated.get(id), original.get(id));
      assert.deepEqual(unseal(newBox, id, rotated.get(id)!), unseal(oldBox, id, original.get(id)!), `portal ${id}: the same credential`);
      assert.throws(() => unseal(oldBox, id, rotated.get(id)!), SecretBoxError, 'the old key no longer opens it');
    }
    const again = await cli({ SMARTPROC_SECRET_KEY: newKey.toString('hex') });
    assert.equal(JSON.parse(again.stdout).resealed, 2, 'without previous keys: every value already opens with the current one');
    for (const id of portalIds) assert.deepEqual(unseal(newBox, id, (await sealedRows()).get(id)!), unseal(oldBox, id, original.get(id)!));
  });

  it('a server with the new key alone serves the rotated portals (an OAuth call through the stored tokens)', async () => {
    const store = openData();
    const app = await buildApp({ config: { ...loadConfig({}), dataDir, databaseUrl, redisUrl: null }, store, logger: false, secretBox: new SecretBox(newKey) });
    try {
      const res = await app.inject({ method: 'GET', url: '/v1/smart-processes', headers: { 'x-api-key': portalKey } });
      assert.equal(res.statusCode, 200, res.body);
    } finally {
      await app.close();
      await store.close();
    }
  });

  it('SMARTPROC_PREVIOUS_SECRET_KEYS: read by every server and CLI; a malformed key is refused without echoing it', () => {
    const env = { SMARTPROC_SECRET_KEY: newKey.toString('base64'), SMARTPROC_PREVIOUS_SECRET_KEYS: oldKey.toString('base64') };
    const sealedOld = new SecretBox(oldKey).encrypt('value', 'ctx');
    assert.equal(loadSecretBox({ dataDir, env }).box.decrypt(sealedOld, 'ctx'), 'value');
    assert.throws(() => loadSecretBox({ dataDir, env: { ...env, SMARTPROC_PREVIOUS_SECRET_KEYS: 'not-a-key-at-all' } }), (error: Error) => error instanceof SecretBoxError && /SMARTPROC_PREVIOUS_SECRET_KEYS: key 1/.test(error.message) && !error.message.includes('not-a-key'));
  });
});
