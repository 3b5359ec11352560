import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { expectError, expectValidationError } from '../helpers/expect.js';
import { hashSecret } from '../../src/access/tokens.js';
import {
  createKeyViaApi, expectNoRateLimitHeaders, expectRateLimitHeaders, expectSuccess, mgmt, send, sleep, type CreatedKey,
} from './access-helpers.js';

/** Contract §5, /v1/keys: list, create, get, patch, delete, rotate; no secret ever shown twice; no escalation. */

const KEY_FIELDS = ['id', 'kind', 'name', 'portalId', 'keyPrefix', 'keySuffix', 'scopes', 'accessMode', 'expiresAt', 'requestsPerSecond', 'allowedIps', 'redirectUris', 'userId', 'createdByKeyId', 'createdAt', 'updatedAt'];
const PREFIX = { personal: 'vibe_api_', application: 'vibe_app_', management: 'vibe_live_' } as const;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

describe('/v1/keys', () => {
  let t: TestApp;
  const secrets: string[] = [];
  before(async () => {
    t = await createTestApp();
    secrets.push(t.key.secret, t.managementKey.secret);
  });
  after(() => t.close());

  const withKey = (secret: string) => ({ 'x-api-key': secret });
  const me = (secret: string, remoteAddress?: string) => send(t, 'GET', '/v1/me', { headers: withKey(secret), remoteAddress });
  const listTypes = (secret: string) => send(t, 'GET', '/v1/smart-processes', { headers: withKey(secret) });
  const create = async (body: Record<string, unknown>) => {
    const created = await createKeyViaApi(t, body);
    secrets.push(created.secret);
    return created;
  };

  /** No secret and no hash of one in an answer. */
  async function assertNoSecretsIn(body: string) {
    const hashes = (await t.app.services.store.db.selectFrom('key_secrets').select('hash').execute()).map((r) => r.hash);
    for (const secret of secrets) {
      assert.ok(!body.includes(secret), 'a secret is in the answer');
      assert.ok(!body.includes(secret.slice(secret.indexOf('_', 5) + 1)), 'the random part of a secret is in the answer');
    }
    for (const hash of hashes) assert.ok(!body.includes(hash), 'a secret hash is in the answer');
    assert.doesNotMatch(body, /"(secret|hash|secretHash|key_hash)"/);
  }

  describe('POST /v1/keys', () => {
    for (const kind of ['personal', 'application', 'management'] as const) {
      it(`creates a ${kind} key: 201, the secret (${PREFIX[kind]} + at least 32 base62 characters) once, and the defaults`, async () => {
        const body = kind === 'management' ? { kind, scopes: ['vibe:mgmt:keys'] } : { kind, portalId: t.portal.id };
        const res = await mgmt(t, 'POST', '/v1/keys', { name: `my ${kind} key`, ...body });
        assert.equal(res.statusCode, 201, res.body);
        const { success, data } = json(res);
        assert.equal(success, true);
        assert.deepEqual(Object.keys(data).sort(), [...KEY_FIELDS, 'secret'].sort());
        secrets.push(data.secret);
        assert.match(data.secret, new RegExp(`^${PREFIX[kind]}[A-Za-z0-9]{32,}$`));
        assert.equal(data.kind, kind);
        assert.equal(data.name, `my ${kind} key`);
        assert.equal(data.keyPrefix, data.secret.slice(0, PREFIX[kind].length + 4));
        assert.equal(data.keySuffix, data.secret.slice(-4));
        assert.equal(data.accessMode, 'READWRITE');
        assert.equal(data.expiresAt, null);
        assert.equal(data.requestsPerSecond, 10);
        assert.deepEqual(data.allowedIps, []);
        assert.deepEqual(data.scopes, kind === 'management' ? ['vibe:mgmt:keys'] : ['crm']);
        assert.equal(data.portalId, kind === 'management' ? null : t.portal.id);
        assert.equal(data.userId, kind === 'personal' ? 1 : null);
        assert.equal(data.createdByKeyId, t.managementKey.record.id);
        assert.match(data.createdAt, ISO_UTC);

        // The secret works, and it is never shown again.
        const who = await me(data.secret);
        assert.equal(who.statusCode, kind === 'application' ? 401 : 200, who.body);
        const again = await mgmt(t, 'GET', `/v1/keys/${data.id}`);
        assert.equal(again.statusCode, 200);
        assert.deepEqual(json(again).data, Object.fromEntries(Object.entries(data).filter(([k]) => k !== 'secret')));
        await assertNoSecretsIn(again.body);
      });
    }

    it('two keys never share a secret', async () => {
      const a = await create({ kind: 'personal', portalId: t.portal.id });
      const b = await create({ kind: 'personal', portalId: t.portal.id });
      assert.notEqual(a.secret, b.secret);
      assert.notEqual(a.id, b.id);
    });

    it('takes every property: name, scopes, READONLY, expiresAt, requestsPerSecond, allowedIps (IPv4, IPv6, CIDRs), userId', async () => {
      const expiresAt = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const body = {
        kind: 'personal', portalId: t.portal.id, name: 'full', scopes: ['crm', 'task', 'user'], accessMode: 'READONLY', expiresAt, requestsPerSecond: 3,
        allowedIps: ['203.0.113.7', '10.0.0.0/8', '2001:db8::1', '2001:db8:abcd::/48'], userId: 55,
      };
      const { data } = await create(body);
      for (const [field, value] of Object.entries(body)) if (field !== 'kind' && field !== 'portalId') assert.deepEqual(data[field], value, field);
      const who = json(await me(data.secret, '10.1.2.3')).data;
      assert.equal(who.currentUser.bitrixUserId, 55);
      assert.equal(who.expiresAt, expiresAt);
    });

    it('requestsPerSecond: null is allowed and means no limit (no X-RateLimit headers)', async () => {
      const { data, secret } = await create({ kind: 'personal', portalId: t.portal.id, requestsPerSecond: null });
      assert.equal(data.requestsPerSecond, null);
      for (let i = 0; i < 15; i++) {
        const res = await listTypes(secret);
        assert.equal(res.statusCode, 200);
        expectNoRateLimitHeaders(res);
      }
    });

    it('reports every problem at once: bad scopes, IPs, expiresAt and portalId, each in details', async () => {
      const res = await mgmt(t, 'POST', '/v1/keys', {
        kind: 'personal', portalId: 99999, scopes: ['crm', 'vibe:mgmt:keys', 'CRM!'], allowedIps: ['10.0.0.1', '300.1.1.1', '10.0.0.0/33', 'nope', '2001:db8::/129', '10.0.0.0/8/1'], expiresAt: 'tomorrow',
      });
      expectValidationError(res, 'body.portalId', 'body.scopes[1]', 'body.scopes[2]', 'body.allowedIps[1]', 'body.allowedIps[2]', 'body.allowedIps[3]', 'body.allowedIps[4]', 'body.allowedIps[5]', 'body.expiresAt');
      const locations = json(res).error.details.map((d: { location: string }) => d.location);
      assert.ok(!locations.includes('body.scopes[0]') && !locations.includes('body.allowedIps[0]'), 'valid entries are not reported');
    });

    it('refuses an expiresAt in the past, a portal key without a portal, a management key with a portal or a Bitrix24 scope, and a userId on a non-personal key', async () => {
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'personal', portalId: t.portal.id, expiresAt: '2001-01-01T00:00:00Z' }), 'body.expiresAt');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'personal' }), 'body.portalId');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'application', portalId: null }), 'body.portalId');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'management', portalId: t.portal.id, scopes: ['vibe:mgmt:keys'] }), 'body.portalId');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'management', scopes: ['crm'] }), 'body.scopes[0]');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'application', portalId: t.portal.id, userId: 5 }), 'body.userId');
    });

    it('refuses unknown fields and values of the wrong type (schema), naming each', async () => {
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'superuser', portalId: t.portal.id }), 'body.kind');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'personal', portalId: t.portal.id, requestsPerSecond: 0 }), 'body.requestsPerSecond');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'personal', portalId: t.portal.id, accessMode: 'WRITEONLY' }), 'body.accessMode');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'personal', portalId: t.portal.id, scopes: 'crm' }), 'body.scopes');
      expectValidationError(await mgmt(t, 'POST', '/v1/keys', { kind: 'personal', portalId: t.portal.id, secret: `vibe_api_${'a'.repeat(40)}` }), 'body.secret');
    });
  });

  describe('GET /v1/keys and GET /v1/keys/:id', () => {
    it('lists every key with its public fields, and never a secret or a hash', async () => {
      await create({ kind: 'application', portalId: t.portal.id });
      await create({ kind: 'management', scopes: ['vibe:mgmt:portals'] });
      const res = await mgmt(t, 'GET', '/v1/keys');
      assert.equal(res.statusCode, 200);
      const data = json(res).data as Record<string, unknown>[];
      const stored = await t.app.services.store.db.selectFrom('api_keys').select('id').execute();
      assert.deepEqual(data.map((k) => k.id).sort(), stored.map((r) => r.id).sort(), 'every key is listed');
      for (const key of data) assert.deepEqual(Object.keys(key).sort(), [...KEY_FIELDS].sort());
      await assertNoSecretsIn(res.body);
    });

    it('filters by portalId and kind', async () => {
      const other = await t.createPortal();
      const mine = await create({ kind: 'personal', portalId: other.id });
      const byPortal = json(await mgmt(t, 'GET', `/v1/keys?portalId=${other.id}`)).data;
      assert.deepEqual(byPortal.map((k: { id: string }) => k.id), [mine.id]);
      const management = json(await mgmt(t, 'GET', '/v1/keys?kind=management')).data;
      assert.ok(management.length >= 1 && management.every((k: { kind: string }) => k.kind === 'management'));
      expectValidationError(await mgmt(t, 'GET', '/v1/keys?kind=admin'), 'querystring.kind');
    });

    it('an unknown id is 404 ENTITY_NOT_FOUND', async () => {
      expectError(await mgmt(t, 'GET', '/v1/keys/key_doesnotexist'), 404, 'ENTITY_NOT_FOUND');
    });
  });

  describe('PATCH /v1/keys/:id', () => {
    it('narrowing the scopes takes effect on the next request (even with the key cached)', async () => {
      const k = await create({ kind: 'personal', portalId: t.portal.id, scopes: ['crm', 'task'] });
      assert.equal((await listTypes(k.secret)).statusCode, 200);
      const res = await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { scopes: ['task'] });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(json(res).data.scopes, ['task']);
      await assertNoSecretsIn(res.body);
      expectError(await listTypes(k.secret), 403, 'SCOPE_DENIED');
      assert.equal((await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { scopes: ['crm'] })).statusCode, 200);
      assert.equal((await listTypes(k.secret)).statusCode, 200, 'and widening too, for an operator');
    });

    it('accessMode, allowedIps, requestsPerSecond, expiresAt and userId take effect on the next request', async () => {
      const k = await create({ kind: 'personal', portalId: t.portal.id, userId: 3 });
      assert.equal((await listTypes(k.secret)).statusCode, 200);
      assert.equal((await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { accessMode: 'READONLY' })).statusCode, 200);
      expectError(await send(t, 'POST', '/v1/smart-processes', { headers: withKey(k.secret), body: { title: 'x' } }), 403, 'WRITE_BLOCKED_READONLY_KEY');

      assert.equal((await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { allowedIps: ['192.0.2.0/24'] })).statusCode, 200);
      expectError(await send(t, 'GET', '/v1/smart-processes', { headers: withKey(k.secret), remoteAddress: '198.51.100.1' }), 403, 'IP_NOT_ALLOWED');
      assert.equal((await send(t, 'GET', '/v1/smart-processes', { headers: withKey(k.secret), remoteAddress: '192.0.2.9' })).statusCode, 200);

      assert.equal((await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { allowedIps: [], requestsPerSecond: 4, userId: 8 })).statusCode, 200);
      const limited = await me(k.secret);
      expectRateLimitHeaders(limited, 4);
      assert.equal(json(limited).data.currentUser.bitrixUserId, 8);

      const patched = await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { requestsPerSecond: null });
      assert.equal(json(patched).data.requestsPerSecond, null, 'requestsPerSecond: null is allowed');
      expectNoRateLimitHeaders(await me(k.secret));

      const expiresAt = new Date(Date.now() + 1200).toISOString();
      assert.equal((await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { expiresAt })).statusCode, 200);
      assert.equal((await me(k.secret)).statusCode, 200);
      await sleep(1400);
      const error = expectError(await me(k.secret), 401, 'INVALID_API_KEY');
      assert.match(error.message, /expired/);
      assert.equal((await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { expiresAt: null })).statusCode, 200);
      assert.equal((await me(k.secret)).statusCode, 200, 'expiresAt: null means never');
    });

    it('validates like create, and an unknown id is 404', async () => {
      const k = await create({ kind: 'personal', portalId: t.portal.id });
      expectValidationError(await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { scopes: ['vibe:mgmt:portals'], allowedIps: ['x'], expiresAt: 'later', userId: null }), 'body.scopes[0]', 'body.allowedIps[0]', 'body.expiresAt', 'body.userId');
      expectValidationError(await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { kind: 'management' }), 'body.kind');
      expectValidationError(await mgmt(t, 'PATCH', `/v1/keys/${k.id}`, { portalId: 2 }), 'body.portalId');
      expectError(await mgmt(t, 'PATCH', '/v1/keys/key_doesnotexist', { name: 'x' }), 404, 'ENTITY_NOT_FOUND');
      assert.equal(json(await mgmt(t, 'GET', `/v1/keys/${k.id}`)).data.updatedAt, k.data.updatedAt, 'a refused patch changes nothing');
    });
  });

  describe('DELETE /v1/keys/:id', () => {
    it('answers 204 with an empty body, and the key is refused at once (INVALID_API_KEY), with its sessions', async () => {
      const k = await create({ kind: 'personal', portalId: t.portal.id });
      assert.equal((await listTypes(k.secret)).statusCode, 200, 'the key is cached');
      const res = await mgmt(t, 'DELETE', `/v1/keys/${k.id}`);
      assert.equal(res.statusCode, 204);
      assert.equal(res.body, '');
      expectError(await listTypes(k.secret), 401, 'INVALID_API_KEY');
      expectError(await mgmt(t, 'GET', `/v1/keys/${k.id}`), 404, 'ENTITY_NOT_FOUND');
      expectError(await mgmt(t, 'DELETE', `/v1/keys/${k.id}`), 404, 'ENTITY_NOT_FOUND');
    });

    it("deleting an application key ends its sessions", async () => {
      const app = await create({ kind: 'application', portalId: t.portal.id });
      const session = json(await mgmt(t, 'POST', '/v1/sessions', { keyId: app.id, userId: 4 })).data.token;
      const headers = { 'x-api-key': app.secret, authorization: `Bearer ${session}` };
      assert.equal((await send(t, 'GET', '/v1/smart-processes', { headers })).statusCode, 200);
      assert.equal((await mgmt(t, 'DELETE', `/v1/keys/${app.id}`)).statusCode, 204);
      expectError(await send(t, 'GET', '/v1/smart-processes', { headers }), 401, 'INVALID_API_KEY');
      const left = await t.app.services.store.db.selectFrom('sessions').select('id').where('key_id', '=', app.id).execute();
      assert.deepEqual(left, []);
    });
  });

  describe('POST /v1/keys/:id/rotate', () => {
    it('without a grace period: a new secret once, the old one refused at once, the key otherwise unchanged', async () => {
      const k = await create({ kind: 'personal', portalId: t.portal.id, scopes: ['crm', 'task'], userId: 12 });
      assert.equal((await listTypes(k.secret)).statusCode, 200, 'the old secret is cached');
      const before = Date.now();
      const res = await mgmt(t, 'POST', `/v1/keys/${k.id}/rotate`);
      assert.equal(res.statusCode, 200, res.body);
      const data = json(res).data;
      secrets.push(data.secret);
      assert.match(data.secret, /^vibe_api_[A-Za-z0-9]{32,}$/);
      assert.notEqual(data.secret, k.secret);
      assert.equal(data.id, k.id);
      assert.equal(data.keyPrefix, data.secret.slice(0, 13));
      assert.equal(data.keySuffix, data.secret.slice(-4));
      assert.deepEqual(data.scopes, ['crm', 'task']);
      assert.equal(data.userId, 12);
      assert.ok(Math.abs(Date.parse(data.previousSecretExpiresAt) - before) < 5000, 'the old secret ended now');

      const error = expectError(await listTypes(k.secret), 401, 'INVALID_API_KEY');
      assert.doesNotMatch(error.message, /expired/i, 'says rotated, not expired');
      assert.equal((await listTypes(data.secret)).statusCode, 200);
      assert.equal(json(await me(data.secret)).data.keyId, k.id);
      const shown = await mgmt(t, 'GET', `/v1/keys/${k.id}`);
      assert.equal(json(shown).data.keyPrefix, data.keyPrefix);
      await assertNoSecretsIn(shown.body);
    });

    it('with a grace period: both secrets work until it ends, then only the new one', async () => {
      const k = await create({ kind: 'personal', portalId: t.portal.id });
      assert.equal((await listTypes(k.secret)).statusCode, 200);
      const before = Date.now();
      const res = await mgmt(t, 'POST', `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: 2 });
      assert.equal(res.statusCode, 200, res.body);
      const { secret, previousSecretExpiresAt } = json(res).data;
      secrets.push(secret);
      assert.ok(Math.abs(Date.parse(previousSecretExpiresAt) - (before + 2000)) < 2000);
      assert.equal((await listTypes(k.secret)).statusCode, 200, 'old secret, within the grace period');
      assert.equal((await listTypes(secret)).statusCode, 200, 'new secret');
      await sleep(Date.parse(previousSecretExpiresAt) + 1100 - Date.now());
      expectError(await listTypes(k.secret), 401, 'INVALID_API_KEY');
      assert.equal((await listTypes(secret)).statusCode, 200);
    });

    it('a second rotation without grace ends every earlier secret, even one still in its grace period', async () => {
      const k = await create({ kind: 'application', portalId: t.portal.id });
      const first = json(await mgmt(t, 'POST', `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: 3600 })).data.secret;
      const second = json(await mgmt(t, 'POST', `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: 0 })).data.secret;
      secrets.push(first, second);
      assert.match(second, /^vibe_app_/);
      const session = json(await mgmt(t, 'POST', '/v1/sessions', { keyId: k.id, userId: 2 })).data.token;
      for (const old of [k.secret, first]) expectError(await send(t, 'GET', '/v1/smart-processes', { headers: { 'x-api-key': old, authorization: `Bearer ${session}` } }), 401, 'INVALID_API_KEY');
      assert.equal((await send(t, 'GET', '/v1/smart-processes', { headers: { 'x-api-key': second, authorization: `Bearer ${session}` } })).statusCode, 200);
    });

    it('refuses a bad grace period and an unknown key', async () => {
      const k = await create({ kind: 'personal', portalId: t.portal.id });
      expectValidationError(await mgmt(t, 'POST', `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: -1 }), 'body.gracePeriodSeconds');
      expectValidationError(await mgmt(t, 'POST', `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: 8 * 24 * 3600 }), 'body.gracePeriodSeconds');
      expectValidationError(await mgmt(t, 'POST', `/v1/keys/${k.id}/rotate`, { grace: 5 }), 'body.grace');
      expectError(await mgmt(t, 'POST', '/v1/keys/key_doesnotexist/rotate', {}), 404, 'ENTITY_NOT_FOUND');
      assert.equal((await listTypes(k.secret)).statusCode, 200, 'a refused rotation leaves the secret working');
    });
  });

  describe('no escalation', () => {
    let keysOnly: CreatedKey;
    let full: CreatedKey;
    before(async () => {
      keysOnly = await create({ kind: 'management', scopes: ['vibe:mgmt:keys'], requestsPerSecond: 50 });
      full = await create({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] });
    });
    const as = (secret: string, method: 'POST' | 'PATCH' | 'GET' | 'DELETE', url: string, body?: unknown, remoteAddress?: string) => send(t, method, url, { headers: withKey(secret), body, remoteAddress });
    const scopesOf = async (id: string) => json(await mgmt(t, 'GET', `/v1/keys/${id}`)).data.scopes;

    it('a management key with only vibe:mgmt:keys cannot create a key with vibe:mgmt:portals', async () => {
      const countBefore = json(await mgmt(t, 'GET', '/v1/keys')).data.length;
      const error = expectError(await as(keysOnly.secret, 'POST', '/v1/keys', { kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] }), 403, 'MANAGEMENT_SCOPE_REQUIRED');
      assert.match(error.message, /vibe:mgmt:portals/);
      assert.equal(json(await mgmt(t, 'GET', '/v1/keys')).data.length, countBefore, 'no key was created');
      const created = await as(keysOnly.secret, 'POST', '/v1/keys', { kind: 'management' });
      assert.equal(created.statusCode, 201, created.body);
      secrets.push(json(created).data.secret);
      assert.deepEqual(json(created).data.scopes, ['vibe:mgmt:keys'], 'a management key made without scopes gets those of its maker, not more');
    });

    it('nor add vibe:mgmt:portals to itself or to another key', async () => {
      const other = await create({ kind: 'management', scopes: ['vibe:mgmt:keys'] });
      expectError(await as(keysOnly.secret, 'PATCH', `/v1/keys/${keysOnly.id}`, { scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] }), 403, 'MANAGEMENT_SCOPE_REQUIRED');
      expectError(await as(keysOnly.secret, 'PATCH', `/v1/keys/${other.id}`, { scopes: ['vibe:mgmt:portals'] }), 403, 'MANAGEMENT_SCOPE_REQUIRED');
      assert.deepEqual(await scopesOf(keysOnly.id), ['vibe:mgmt:keys']);
      assert.deepEqual(await scopesOf(other.id), ['vibe:mgmt:keys']);
      expectError(await as(keysOnly.secret, 'GET', '/v1/portals'), 403, 'MANAGEMENT_SCOPE_REQUIRED');
    });

    it('nor obtain the secret of a key with more scopes by rotating it', async () => {
      const before = await mgmt(t, 'GET', `/v1/keys/${full.id}`);
      const res = await as(keysOnly.secret, 'POST', `/v1/keys/${full.id}/rotate`, {});
      expectError(res, 403, 'MANAGEMENT_SCOPE_REQUIRED');
      assert.equal((await as(full.secret, 'GET', '/v1/portals')).statusCode, 200, "the stronger key's secret still works");
      assert.equal((await mgmt(t, 'GET', `/v1/keys/${full.id}`)).body, before.body);
    });

    it('nor delete a management key with more rights than its own (the bootstrap key included)', async () => {
      const stronger = await create({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] });
      const freer = await create({ kind: 'management', scopes: ['vibe:mgmt:keys'], requestsPerSecond: null });
      for (const target of [stronger.id, freer.id, t.managementKey.record.id]) {
        const before = await mgmt(t, 'GET', `/v1/keys/${target}`);
        expectError(await as(keysOnly.secret, 'DELETE', `/v1/keys/${target}`), 403, 'MANAGEMENT_SCOPE_REQUIRED');
        assert.equal((await mgmt(t, 'GET', `/v1/keys/${target}`)).body, before.body, 'the stronger key is still there, unchanged');
      }
      assert.equal((await as(stronger.secret, 'GET', '/v1/portals')).statusCode, 200, "the stronger key's secret still works");
      const weaker = await create({ kind: 'management', scopes: ['vibe:mgmt:keys'], requestsPerSecond: 50 });
      assert.equal((await as(keysOnly.secret, 'DELETE', `/v1/keys/${weaker.id}`)).statusCode, 204, 'a key with no more rights may be deleted');
      const portalKey = await create({ kind: 'personal', portalId: t.portal.id, requestsPerSecond: null });
      assert.equal((await as(keysOnly.secret, 'DELETE', `/v1/keys/${portalKey.id}`)).statusCode, 204, 'portal keys are the operator\'s to delete');
      const self = await create({ kind: 'management', scopes: ['vibe:mgmt:keys'], requestsPerSecond: 5 });
      assert.equal((await as(self.secret, 'DELETE', `/v1/keys/${self.id}`)).statusCode, 204, 'a key may delete itself');
    });

    it('nor narrow, disable or rotate a key with more rights than its own: the key as it is now is checked, not only as it would be', async () => {
      const stronger = await create({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] });
      for (const [target, body] of [
        [stronger.id, { scopes: ['vibe:mgmt:keys'] }],
        [t.managementKey.record.id, { accessMode: 'READONLY' }],
        [t.managementKey.record.id, { allowedIps: ['10.0.0.1'], expiresAt: new Date(Date.now() + 60_000).toISOString() }],
      ] as const) {
        const before = await mgmt(t, 'GET', `/v1/keys/${target}`);
        expectError(await as(keysOnly.secret, 'PATCH', `/v1/keys/${target}`, body), 403, 'MANAGEMENT_SCOPE_REQUIRED');
        assert.equal((await mgmt(t, 'GET', `/v1/keys/${target}`)).body, before.body, 'unchanged');
      }
      // Every management scope, but limited: it may not take the secret of an unlimited key by rotating it.
      const limited = await create({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'], requestsPerSecond: 5, allowedIps: ['127.0.0.1'], expiresAt: new Date(Date.now() + 3600_000).toISOString() });
      const rotated = await as(limited.secret, 'POST', `/v1/keys/${t.managementKey.record.id}/rotate`, {});
      expectError(rotated, 403, 'MANAGEMENT_SCOPE_REQUIRED');
      assert.doesNotMatch(rotated.body, /vibe_live_/);
      assert.equal((await as(t.managementKey.secret, 'GET', '/v1/keys')).statusCode, 200, "the stronger key's secret still works");
    });

    it('a key may narrow its own rights but not widen its limits, expiry, allowed addresses or access mode', async () => {
      const self = await create({
        kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'], requestsPerSecond: 50, allowedIps: ['10.0.0.0/8'], expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      });
      const patchSelf = (body: unknown) => as(self.secret, 'PATCH', `/v1/keys/${self.id}`, body, '10.0.0.1');
      const stored = async () => json(await mgmt(t, 'GET', `/v1/keys/${self.id}`)).data;
      const before = await stored();
      for (const [body, field] of [
        [{ requestsPerSecond: 51 }, 'requestsPerSecond'],
        [{ requestsPerSecond: null }, 'requestsPerSecond'],
        [{ allowedIps: [] }, 'allowedIps'],
        [{ allowedIps: ['10.0.0.0/8', '192.0.2.1'] }, 'allowedIps'],
        [{ expiresAt: null }, 'expiresAt'],
        [{ expiresAt: new Date(Date.now() + 7200_000).toISOString() }, 'expiresAt'],
      ] as const) {
        const error = expectError(await patchSelf(body), 403, 'MANAGEMENT_SCOPE_REQUIRED');
        assert.ok(error.details?.some((d) => d.location === `body.${field}`), `names body.${field}: ${JSON.stringify(error.details)}`);
      }
      assert.deepEqual(await stored(), before, 'nothing was widened');
      const narrowed = await patchSelf({ requestsPerSecond: 20, scopes: ['vibe:mgmt:keys'], expiresAt: new Date(Date.now() + 1800_000).toISOString() });
      assert.equal(narrowed.statusCode, 200, narrowed.body);
      assert.equal(json(narrowed).data.requestsPerSecond, 20);
      expectRateLimitHeaders(await as(self.secret, 'GET', '/v1/keys', undefined, '10.0.0.1'), 20);
      const readonly = await patchSelf({ accessMode: 'READONLY' });
      assert.equal(readonly.statusCode, 200);
      expectError(await patchSelf({ accessMode: 'READWRITE' }), 403, 'WRITE_BLOCKED_READONLY_KEY');
    });

    it('a limited management key cannot make a management key freer than itself', async () => {
      const limited = await create({ kind: 'management', scopes: ['vibe:mgmt:keys'], requestsPerSecond: 50, allowedIps: ['10.0.0.0/8'], expiresAt: new Date(Date.now() + 3600_000).toISOString() });
      const asLimited = (method: 'POST' | 'PATCH', url: string, body: unknown) => as(limited.secret, method, url, body, '10.1.2.3');
      for (const [body, field] of [
        [{ kind: 'management', requestsPerSecond: null, allowedIps: ['10.0.0.0/8'], expiresAt: new Date(Date.now() + 1800_000).toISOString() }, 'requestsPerSecond'],
        [{ kind: 'management', requestsPerSecond: 10, expiresAt: new Date(Date.now() + 1800_000).toISOString() }, 'allowedIps'],
        [{ kind: 'management', requestsPerSecond: 10, allowedIps: ['10.1.0.0/16'] }, 'expiresAt'],
      ] as const) {
        const error = expectError(await asLimited('POST', '/v1/keys', body), 403, 'MANAGEMENT_SCOPE_REQUIRED');
        assert.ok(error.details?.some((d) => d.location === `body.${field}`), `names body.${field}: ${JSON.stringify(error.details)}`);
      }
      const within = await asLimited('POST', '/v1/keys', { kind: 'management', requestsPerSecond: 10, allowedIps: ['10.0.0.0/8'], expiresAt: new Date(Date.now() + 1800_000).toISOString() });
      assert.equal(within.statusCode, 201, within.body);
      secrets.push(json(within).data.secret);
      const other = json(within).data.id;
      expectError(await asLimited('PATCH', `/v1/keys/${other}`, { requestsPerSecond: null }), 403, 'MANAGEMENT_SCOPE_REQUIRED');
      const portalKey = await asLimited('POST', '/v1/keys', { kind: 'personal', portalId: t.portal.id, requestsPerSecond: null });
      assert.equal(portalKey.statusCode, 201, 'portal keys are the operator\'s to shape: management limits do not bind them');
      secrets.push(json(portalKey).data.secret);
    });

    it('an operator key with the scopes may change another key freely, including requestsPerSecond: null', async () => {
      const res = await as(full.secret, 'PATCH', `/v1/keys/${keysOnly.id}`, { requestsPerSecond: null });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(json(res).data.requestsPerSecond, null);
    });
  });

  it('a change racing a rotation is never undone by it (each reads and writes the key in one write)', async () => {
    for (let round = 0; round < 10; round++) {
      const target = await create({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] });
      const [narrowed, rotated] = await Promise.all([
        mgmt(t, 'PATCH', `/v1/keys/${target.id}`, { scopes: ['vibe:mgmt:keys'], accessMode: 'READONLY' }),
        mgmt(t, 'POST', `/v1/keys/${target.id}/rotate`, {}),
      ]);
      assert.deepEqual([narrowed.statusCode, rotated.statusCode], [200, 200]);
      secrets.push(json(rotated).data.secret);
      const stored = json(await mgmt(t, 'GET', `/v1/keys/${target.id}`)).data;
      assert.deepEqual([stored.scopes, stored.accessMode], [['vibe:mgmt:keys'], 'READONLY'], `round ${round}: the narrowing stands`);
    }
  });

  it('stores a key secret as its SHA-256 hash', async () => {
    const k = await create({ kind: 'personal', portalId: t.portal.id });
    const row = await t.app.services.store.db.selectFrom('key_secrets').select('hash').where('key_id', '=', k.id).executeTakeFirstOrThrow();
    assert.equal(row.hash, hashSecret(k.secret));
    expectSuccess(await listTypes(k.secret), 200);
  });
});
