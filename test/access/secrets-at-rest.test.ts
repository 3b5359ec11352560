import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { hashSecret } from '../../src/access/tokens.js';
import { createKeyViaApi, mgmt, mintSession, send } from './access-helpers.js';

/** Contract §5: the server stores only a SHA-256 hash of each key and session token, plus a display prefix/suffix. */

const PREFIXES = ['vibe_api_', 'vibe_app_', 'vibe_live_', 'vibe_session_'];
const randomPart = (secret: string) => secret.slice(PREFIXES.find((p) => secret.startsWith(p))!.length);

describe('Secrets at rest', () => {
  let t: TestApp;
  const secrets: string[] = [];
  let dump: Map<string, string[]>;

  /** Every row of every table of the store (the migration bookkeeping included), each as text. */
  async function dumpStore(): Promise<Map<string, string[]>> {
    const { store } = t.app.services;
    const tables = (await store.db.introspection.getTables({ withInternalKyselyTables: true }))
      .filter((table) => !table.isView)
      .filter((table) => (store.dialect === 'postgres' ? table.schema === store.schema : true));
    const out = new Map<string, string[]>();
    for (const table of tables) {
      const ref = store.dialect === 'postgres' ? sql.table(`${table.schema}.${table.name}`) : sql.table(table.name);
      const { rows } = await sql<Record<string, unknown>>`select * from ${ref}`.execute(store.db);
      out.set(table.name, rows.map((row) => Object.values(row).map((v) => (v === null ? 'null' : Buffer.isBuffer(v) ? v.toString('latin1') + v.toString('hex') : String(v))).join('\u0001')));
    }
    return out;
  }

  before(async () => {
    t = await createTestApp();
    secrets.push(t.key.secret, t.managementKey.secret);
    const personal = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, name: 'personal', scopes: ['crm', 'task'], allowedIps: ['10.0.0.0/8'] });
    const app = await createKeyViaApi(t, { kind: 'application', portalId: t.portal.id, name: 'application' });
    const management = await createKeyViaApi(t, { kind: 'management', name: 'management', scopes: ['vibe:mgmt:keys'] });
    secrets.push(personal.secret, app.secret, management.secret);
    for (const userId of [1, 2]) secrets.push((await mintSession(t, app.id, userId)).token);

    // Rotations: with a grace period (old and new secret both stored) and without.
    const rotatedWithGrace = await mgmt(t, 'POST', `/v1/keys/${personal.id}/rotate`, { gracePeriodSeconds: 3600 });
    assert.equal(rotatedWithGrace.statusCode, 200, rotatedWithGrace.body);
    secrets.push(json(rotatedWithGrace).data.secret);
    const rotated = await mgmt(t, 'POST', `/v1/keys/${app.id}/rotate`);
    assert.equal(rotated.statusCode, 200, rotated.body);
    secrets.push(json(rotated).data.secret);
    secrets.push((await mintSession(t, app.id, 3)).token);

    // Use them all, so that nothing a request might record is missed.
    for (const secret of secrets.filter((s) => !s.startsWith('vibe_session_') && !s.startsWith('vibe_app_'))) await send(t, 'GET', '/v1/me', { headers: { 'x-api-key': secret } });
    const created = await send(t, 'POST', '/v1/smart-processes', { headers: { 'x-api-key': json(rotatedWithGrace).data.secret }, body: { title: 'Some data' }, remoteAddress: '10.0.0.1' });
    assert.equal(created.statusCode, 201, created.body);
    dump = await dumpStore();
  });
  after(() => t.close());

  it('scans every table of the store, and finds the rows the test wrote', () => {
    for (const table of ['portals', 'smart_process_types', 'api_keys', 'key_secrets', 'sessions', 'settings']) assert.ok(dump.has(table), `table ${table} was scanned; got ${[...dump.keys()].join(', ')}`);
    assert.ok([...dump.keys()].some((name) => name.startsWith('kysely_migration')), 'the migration tables were scanned');
    assert.equal(dump.get('api_keys')!.length, 5);
    assert.equal(dump.get('sessions')!.length, 3);
  });

  it('no table holds a secret it was given, nor the random part after the prefix', () => {
    assert.equal(secrets.length, 10);
    for (const [table, rows] of dump) {
      const text = rows.join('\n');
      for (const secret of secrets) {
        assert.ok(!text.includes(secret), `${table} holds a secret (${secret.slice(0, 12)}...)`);
        assert.ok(!text.includes(randomPart(secret)), `${table} holds the random part of a secret (${secret.slice(0, 12)}...)`);
        // A long stretch of the random part would be as bad: 16 characters would leave too little to guess.
        for (let i = 0; i + 16 <= randomPart(secret).length; i += 8) assert.ok(!text.includes(randomPart(secret).slice(i, i + 16)), `${table} holds 16 characters of a secret`);
      }
    }
  });

  it('what is stored is the SHA-256 of each secret and token, and a display prefix and suffix', () => {
    const everything = [...dump.values()].flat().join('\n');
    for (const secret of secrets) assert.ok(everything.includes(hashSecret(secret)), `the hash of ${secret.slice(0, 12)}... is stored`);
    const keys = dump.get('api_keys')!.join('\n');
    assert.ok(keys.includes(t.key.record.keyPrefix) && keys.includes(t.key.record.keySuffix));
  });
});
