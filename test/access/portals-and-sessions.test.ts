import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { expectError, expectValidationError } from '../helpers/expect.js';
import { appHeaders, createKeyViaApi, mgmt, mintSession, send, setSessionExpiry, type CreatedKey } from './access-helpers.js';

/** Contract §5: /v1/portals, POST /v1/sessions and GET /v1/me. */

const PORTAL_FIELDS = ['id', 'kind', 'name', 'domain', 'timeZone', 'createdAt', 'updatedAt'];
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

describe('/v1/portals', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  const createPortal = async (body: Record<string, unknown>) => {
    const res = await mgmt(t, 'POST', '/v1/portals', body);
    assert.equal(res.statusCode, 201, res.body);
    return json(res).data;
  };
  const keyOf = (portalId: number, extra: Record<string, unknown> = {}) => createKeyViaApi(t, { kind: 'personal', portalId, scopes: ['crm'], ...extra });
  const asKey = (k: CreatedKey, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) => send(t, method, url, { headers: { 'x-api-key': k.secret }, body });

  it('lists the portals with their public fields only', async () => {
    const res = await mgmt(t, 'GET', '/v1/portals');
    assert.equal(res.statusCode, 200);
    const data = json(res).data;
    const mine = data.find((p: { id: number }) => p.id === t.portal.id);
    assert.deepEqual(Object.keys(mine).sort(), [...PORTAL_FIELDS].sort());
    assert.deepEqual({ ...mine, createdAt: undefined, updatedAt: undefined }, { id: t.portal.id, kind: 'local', name: 'Test portal', domain: t.portal.domain, timeZone: 'UTC', createdAt: undefined, updatedAt: undefined });
    assert.match(mine.createdAt, ISO_UTC);
  });

  it('creates a local portal: 201, time zone UTC by default, a domain of its own', async () => {
    const a = await createPortal({});
    const b = await createPortal({ name: 'Second', timeZone: 'America/New_York' });
    assert.deepEqual(Object.keys(a).sort(), [...PORTAL_FIELDS].sort());
    assert.equal(a.kind, 'local');
    assert.equal(a.timeZone, 'UTC');
    assert.equal(b.timeZone, 'America/New_York');
    assert.equal(b.name, 'Second');
    assert.ok(a.domain && b.domain && a.domain !== b.domain);
    assert.deepEqual(json(await mgmt(t, 'GET', `/v1/portals/${b.id}`)).data, b);
  });

  it('validates the time zone and the body', async () => {
    const before = (await mgmt(t, 'GET', '/v1/portals')).body;
    expectValidationError(await mgmt(t, 'POST', '/v1/portals', { timeZone: 'Mars/Olympus_Mons' }), 'body.timeZone');
    expectValidationError(await mgmt(t, 'POST', '/v1/portals', { timeZone: '+03:00x' }), 'body.timeZone');
    expectValidationError(await mgmt(t, 'POST', '/v1/portals', { timeZone: 3 }), 'body.timeZone');
    expectValidationError(await mgmt(t, 'POST', '/v1/portals', { name: 'x', colour: 'red' }), 'body.colour');
    expectValidationError(await mgmt(t, 'POST', '/v1/portals', { kind: 'other' }), 'body.kind');
    assert.equal((await mgmt(t, 'GET', '/v1/portals')).body, before, 'nothing was created');
  });

  it("a portal with Europe/Moscow shows +03:00 times on its types; a time zone change shows on the next request", async () => {
    const portal = await createPortal({ timeZone: 'Europe/Moscow' });
    const k = await keyOf(portal.id);
    const created = await asKey(k, 'POST', '/v1/smart-processes', { title: 'In Moscow' });
    assert.equal(created.statusCode, 201, created.body);
    const { entityTypeId, createdTime, updatedTime } = json(created).data;
    assert.match(createdTime, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+03:00$/);
    assert.match(updatedTime, /\+03:00$/);
    const utcHour = new Date(Date.parse(createdTime)).getUTCHours();
    assert.equal(Number(createdTime.slice(11, 13)), (utcHour + 3) % 24, 'the wall time is 3 hours ahead of UTC');
    assert.match(json(await asKey(k, 'GET', '/v1/smart-processes')).data[0].createdTime, /\+03:00$/);

    const patched = await mgmt(t, 'PATCH', `/v1/portals/${portal.id}`, { timeZone: 'Asia/Tokyo' });
    assert.equal(patched.statusCode, 200, patched.body);
    const after = json(await asKey(k, 'GET', `/v1/smart-processes/${entityTypeId}`)).data;
    assert.match(after.createdTime, /\+09:00$/);
    assert.equal(Date.parse(after.createdTime), Date.parse(createdTime), 'the same instant');
    assert.equal(json(await asKey(k, 'GET', '/v1/me')).data.portal.timeZone, 'Asia/Tokyo');
  });

  it('GET /v1/portals/:id: unknown is 404 ENTITY_NOT_FOUND, not a number is 400', async () => {
    expectError(await mgmt(t, 'GET', '/v1/portals/99999'), 404, 'ENTITY_NOT_FOUND');
    expectValidationError(await mgmt(t, 'GET', '/v1/portals/abc'), 'params.id');
  });

  it('PATCH renames and changes the time zone; validates; an unknown id is 404', async () => {
    const portal = await createPortal({ name: 'Before' });
    const res = await mgmt(t, 'PATCH', `/v1/portals/${portal.id}`, { name: 'After', timeZone: 'Europe/Berlin' });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(json(res).data.name, 'After');
    assert.equal(json(res).data.timeZone, 'Europe/Berlin');
    assert.equal(json(res).data.domain, portal.domain);
    expectValidationError(await mgmt(t, 'PATCH', `/v1/portals/${portal.id}`, { timeZone: 'Nowhere/City' }), 'body.timeZone');
    expectValidationError(await mgmt(t, 'PATCH', `/v1/portals/${portal.id}`, { domain: 'evil.example' }), 'body.domain');
    expectError(await mgmt(t, 'PATCH', '/v1/portals/99999', { name: 'x' }), 404, 'ENTITY_NOT_FOUND');
    assert.equal(json(await mgmt(t, 'GET', `/v1/portals/${portal.id}`)).data.timeZone, 'Europe/Berlin');
  });

  describe('DELETE /v1/portals/:id', () => {
    it('an empty portal: 204 with an empty body, then 404', async () => {
      const portal = await createPortal({});
      const res = await mgmt(t, 'DELETE', `/v1/portals/${portal.id}`);
      assert.equal(res.statusCode, 204);
      assert.equal(res.body, '');
      expectError(await mgmt(t, 'GET', `/v1/portals/${portal.id}`), 404, 'ENTITY_NOT_FOUND');
      expectError(await mgmt(t, 'DELETE', `/v1/portals/${portal.id}`), 404, 'ENTITY_NOT_FOUND');
    });

    it('a portal with keys is 409 PORTAL_NOT_EMPTY (also with ?force=false) and stays, keys working', async () => {
      const portal = await createPortal({});
      const k = await keyOf(portal.id);
      for (const query of ['', '?force=false']) {
        const error = expectError(await mgmt(t, 'DELETE', `/v1/portals/${portal.id}${query}`), 409, 'PORTAL_NOT_EMPTY');
        assert.match(error.message, /1 key/);
        assert.ok(error.hint);
      }
      assert.equal((await mgmt(t, 'GET', `/v1/portals/${portal.id}`)).statusCode, 200);
      assert.equal((await asKey(k, 'GET', '/v1/smart-processes')).statusCode, 200);
    });

    it('a portal with types but no keys is 409 PORTAL_NOT_EMPTY too', async () => {
      const portal = await createPortal({});
      const k = await keyOf(portal.id);
      assert.equal((await asKey(k, 'POST', '/v1/smart-processes', { title: 'Left behind' })).statusCode, 201);
      assert.equal((await mgmt(t, 'DELETE', `/v1/keys/${k.id}`)).statusCode, 204);
      const error = expectError(await mgmt(t, 'DELETE', `/v1/portals/${portal.id}`), 409, 'PORTAL_NOT_EMPTY');
      assert.match(error.message, /1 smart process type/);
      assert.equal((await mgmt(t, 'DELETE', `/v1/portals/${portal.id}?force=true`)).statusCode, 204);
    });

    it('?force=true deletes the portal with its keys, sessions and types; its keys stop working at once, other portals are untouched', async () => {
      const portal = await createPortal({});
      const personal = await keyOf(portal.id);
      const app = await createKeyViaApi(t, { kind: 'application', portalId: portal.id, scopes: ['crm'] });
      const session = (await mintSession(t, app.id, 5)).token;
      assert.equal((await asKey(personal, 'POST', '/v1/smart-processes', { title: 'Doomed', entityTypeId: 1050 })).statusCode, 201);
      assert.equal((await send(t, 'GET', '/v1/smart-processes', { headers: appHeaders(app.secret, session) })).statusCode, 200, 'keys are cached');
      assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Survivor', entityTypeId: 1050 })).statusCode, 201);

      const res = await mgmt(t, 'DELETE', `/v1/portals/${portal.id}?force=true`);
      assert.equal(res.statusCode, 204, res.body);
      expectError(await asKey(personal, 'GET', '/v1/smart-processes'), 401, 'INVALID_API_KEY');
      expectError(await send(t, 'GET', '/v1/smart-processes', { headers: appHeaders(app.secret, session) }), 401, 'INVALID_API_KEY');
      assert.deepEqual(json(await mgmt(t, 'GET', `/v1/keys?portalId=${portal.id}`)).data, []);
      const db = t.app.services.store.db;
      assert.deepEqual(await db.selectFrom('sessions').select('id').where('portal_id', '=', portal.id).execute(), []);
      assert.deepEqual(await db.selectFrom('smart_process_types').select('id').where('portal_id', '=', portal.id).execute(), []);
      assert.equal(json(await t.call('GET', '/v1/smart-processes/1050')).data.title, 'Survivor');
      await t.call('DELETE', '/v1/smart-processes/1050');
    });

    it('?force accepts only true or false', async () => {
      const portal = await createPortal({});
      expectValidationError(await mgmt(t, 'DELETE', `/v1/portals/${portal.id}?force=yes`), 'querystring.force');
      assert.equal((await mgmt(t, 'GET', `/v1/portals/${portal.id}`)).statusCode, 200);
    });
  });
});

describe('POST /v1/sessions', () => {
  let t: TestApp;
  let app: CreatedKey;
  before(async () => {
    t = await createTestApp();
    app = await createKeyViaApi(t, { kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
  });
  after(() => t.close());

  it('mints a vibe_session_ token for an application key and a user, valid 24 hours, shown once', async () => {
    const before = Date.now();
    const res = await mgmt(t, 'POST', '/v1/sessions', { keyId: app.id, userId: 42 });
    assert.equal(res.statusCode, 201, res.body);
    const data = json(res).data;
    assert.deepEqual(Object.keys(data).sort(), ['expiresAt', 'id', 'keyId', 'portalId', 'token', 'userId']);
    assert.match(data.token, /^vibe_session_[A-Za-z0-9]{32,}$/);
    assert.equal(data.keyId, app.id);
    assert.equal(data.portalId, t.portal.id);
    assert.equal(data.userId, 42);
    const lifetime = Date.parse(data.expiresAt) - before;
    assert.ok(Math.abs(lifetime - 24 * 3600_000) < 5000, `24 h lifetime, got ${lifetime} ms`);
    const me = json(await send(t, 'GET', '/v1/me', { headers: appHeaders(app.secret, data.token) })).data;
    assert.deepEqual(me.session, { id: data.id, expiresAt: data.expiresAt, user: { id: 42, name: null, email: null } });
    const stored = await t.app.services.store.db.selectFrom('sessions').selectAll().where('id', '=', data.id).executeTakeFirstOrThrow();
    assert.ok(!JSON.stringify(stored).includes(data.token.slice('vibe_session_'.length)), 'only a hash is stored');
  });

  it('each session is a new token', async () => {
    const a = await mintSession(t, app.id, 42);
    const b = await mintSession(t, app.id, 42);
    assert.notEqual(a.token, b.token);
  });

  it('only for application keys: a personal or management key, or an unknown key, is 400 on body.keyId', async () => {
    for (const keyId of [t.key.record.id, t.managementKey.record.id, 'key_doesnotexist']) {
      const error = expectValidationError(await mgmt(t, 'POST', '/v1/sessions', { keyId, userId: 1 }), 'body.keyId');
      assert.ok(error.details?.length);
    }
  });

  it('validates the body', async () => {
    expectValidationError(await mgmt(t, 'POST', '/v1/sessions', { keyId: app.id }), 'body.userId');
    expectValidationError(await mgmt(t, 'POST', '/v1/sessions', { keyId: app.id, userId: 0 }), 'body.userId');
    expectValidationError(await mgmt(t, 'POST', '/v1/sessions', { keyId: app.id, userId: '5' }), 'body.userId');
    expectValidationError(await mgmt(t, 'POST', '/v1/sessions', { userId: 5 }), 'body.keyId');
    expectValidationError(await mgmt(t, 'POST', '/v1/sessions', { keyId: app.id, userId: 5, ttl: 3 }), 'body.ttl');
  });

  it("the session's user becomes createdBy and updatedBy of a type written through it", async () => {
    const first = await mintSession(t, app.id, 42);
    const second = await mintSession(t, app.id, 43);
    const created = await send(t, 'POST', '/v1/smart-processes', { headers: appHeaders(app.secret, first.token), body: { title: 'By user 42' } });
    assert.equal(created.statusCode, 201, created.body);
    const card = json(created).data;
    assert.equal(card.createdBy, 42);
    assert.equal(card.updatedBy, 42);
    const patched = await send(t, 'PATCH', `/v1/smart-processes/${card.entityTypeId}`, { headers: appHeaders(app.secret, second.token), body: { title: 'By user 43' } });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(json(patched).data.createdBy, 42);
    assert.equal(json(patched).data.updatedBy, 43);
    const viaPersonal = json(await t.call('PATCH', `/v1/smart-processes/${card.entityTypeId}`, { title: 'By the personal key' })).data;
    assert.equal(viaPersonal.updatedBy, 7, 'a personal key acts as its own user');
  });

  it('a session past its 24 hours is TOKEN_EXPIRED', async () => {
    const session = await mintSession(t, app.id, 42);
    await setSessionExpiry(t, session.data.id, Date.now() - 1000);
    const error = expectError(await send(t, 'GET', '/v1/smart-processes', { headers: appHeaders(app.secret, session.token) }), 401, 'TOKEN_EXPIRED');
    assert.ok(error.hint);
  });
});

describe('GET /v1/me', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  const me = async (headers: Record<string, string>) => {
    const res = await send(t, 'GET', '/v1/me', { headers });
    assert.equal(res.statusCode, 200, res.body);
    return json(res).data;
  };
  const routeSet = (routes: { method: string; path: string }[]) => new Set(routes.map((r) => `${r.method} ${r.path}`));
  const PORTAL_READS = ['GET /v1/smart-processes', 'POST /v1/smart-processes/search', 'GET /v1/smart-processes/fields', 'GET /v1/smart-processes/:entityTypeId'];
  const PORTAL_WRITES = ['POST /v1/smart-processes', 'PATCH /v1/smart-processes/:entityTypeId', 'DELETE /v1/smart-processes/:entityTypeId'];
  const KEY_ROUTES = ['GET /v1/keys', 'POST /v1/keys', 'GET /v1/keys/:id', 'PATCH /v1/keys/:id', 'DELETE /v1/keys/:id', 'POST /v1/keys/:id/rotate', 'POST /v1/sessions'];
  const PORTAL_ADMIN = ['GET /v1/portals', 'POST /v1/portals', 'GET /v1/portals/:id', 'PATCH /v1/portals/:id', 'DELETE /v1/portals/:id'];

  function assertRoutes(routes: { method: string; path: string }[], allowed: string[], denied: string[]) {
    const set = routeSet(routes);
    for (const r of allowed) assert.ok(set.has(r), `routes should list ${r}; got ${[...set].join(', ')}`);
    for (const r of denied) assert.ok(!set.has(r), `routes should not list ${r}`);
    assert.ok(set.has('GET /v1/me'));
    assert.equal(set.size, routes.length, 'no duplicates');
  }

  it('a personal key: every field of the contract', async () => {
    const expiresAt = new Date(Date.now() + 86400_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const k = await createKeyViaApi(t, {
      kind: 'personal', portalId: t.portal.id, name: 'My key', scopes: ['crm', 'task'], expiresAt, requestsPerSecond: 25, allowedIps: ['127.0.0.1', '::1', '10.0.0.0/8'], userId: 31,
    });
    const data = await me({ 'x-api-key': k.secret });
    assert.equal(data.kind, 'personal');
    assert.equal(data.keyPrefix, k.secret.slice(0, 'vibe_api_'.length + 4));
    assert.equal(data.keySuffix, k.secret.slice(-4));
    assert.equal(data.name, 'My key');
    assert.deepEqual(data.portal, { id: t.portal.id, kind: 'local', domain: t.portal.domain, timeZone: 'UTC' });
    assert.deepEqual(data.scopes, ['crm', 'task']);
    assert.equal(data.accessMode, 'READWRITE');
    assert.equal(data.expiresAt, expiresAt);
    assert.deepEqual(data.rateLimit, { requestsPerSecond: 25 });
    assert.deepEqual(data.allowedIps, ['127.0.0.1', '::1', '10.0.0.0/8']);
    assert.deepEqual(data.currentUser, { bitrixUserId: 31 });
    assert.equal(data.session, null);
    assert.equal(data.keyId, k.id);
    assert.ok(!JSON.stringify(data).includes(k.secret.slice(9)), 'never the secret');
    assertRoutes(data.routes, [...PORTAL_READS, ...PORTAL_WRITES], [...KEY_ROUTES, ...PORTAL_ADMIN]);
  });

  it('a READONLY key: its routes have no writes (no PATCH), but do have POST /search', async () => {
    const k = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, accessMode: 'READONLY' });
    const data = await me({ 'x-api-key': k.secret });
    assert.equal(data.accessMode, 'READONLY');
    assertRoutes(data.routes, PORTAL_READS, [...PORTAL_WRITES, ...KEY_ROUTES, ...PORTAL_ADMIN]);
    assert.ok(!data.routes.some((r: { method: string }) => r.method === 'PATCH'));
  });

  it('a key without crm: no /v1/smart-processes routes', async () => {
    const k = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['task'] });
    assertRoutes((await me({ 'x-api-key': k.secret })).routes, [], [...PORTAL_READS, ...PORTAL_WRITES]);
  });

  it('an application key with a session: the user of the session, and the session', async () => {
    const app = await createKeyViaApi(t, { kind: 'application', portalId: t.portal.id, name: 'My app', requestsPerSecond: null });
    const session = await mintSession(t, app.id, 77);
    const data = await me(appHeaders(app.secret, session.token));
    assert.equal(data.kind, 'application');
    assert.equal(data.keyPrefix, app.secret.slice(0, 'vibe_app_'.length + 4));
    assert.equal(data.keySuffix, app.secret.slice(-4));
    assert.equal(data.name, 'My app');
    assert.deepEqual(data.portal, { id: t.portal.id, kind: 'local', domain: t.portal.domain, timeZone: 'UTC' });
    assert.deepEqual(data.scopes, ['crm']);
    assert.equal(data.accessMode, 'READWRITE');
    assert.equal(data.expiresAt, null);
    assert.deepEqual(data.rateLimit, { requestsPerSecond: null });
    assert.deepEqual(data.allowedIps, []);
    assert.deepEqual(data.currentUser, { bitrixUserId: 77 });
    assert.deepEqual(data.session, { id: session.data.id, expiresAt: session.data.expiresAt, user: { id: 77, name: null, email: null } });
    assertRoutes(data.routes, [...PORTAL_READS, ...PORTAL_WRITES], [...KEY_ROUTES, ...PORTAL_ADMIN]);
  });

  it('an application key without a session, or with a bad one, is refused as on any route', async () => {
    const app = await createKeyViaApi(t, { kind: 'application', portalId: t.portal.id });
    expectError(await send(t, 'GET', '/v1/me', { headers: { 'x-api-key': app.secret } }), 401, 'TOKEN_MISSING');
    expectError(await send(t, 'GET', '/v1/me', { headers: appHeaders(app.secret, 'vibe_session_nope') }), 401, 'INVALID_SESSION');
  });

  it('a management key: no portal, no user, and the management routes of its scopes', async () => {
    const full = await createKeyViaApi(t, { kind: 'management', name: 'Ops', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] });
    const data = await me({ 'x-api-key': full.secret });
    assert.equal(data.kind, 'management');
    assert.equal(data.keyPrefix, full.secret.slice(0, 'vibe_live_'.length + 4));
    assert.equal(data.keySuffix, full.secret.slice(-4));
    assert.equal(data.name, 'Ops');
    assert.equal(data.portal, null);
    assert.deepEqual(data.scopes, ['vibe:mgmt:keys', 'vibe:mgmt:portals']);
    assert.equal(data.accessMode, 'READWRITE');
    assert.equal(data.expiresAt, null);
    assert.deepEqual(data.rateLimit, { requestsPerSecond: null });
    assert.deepEqual(data.allowedIps, []);
    assert.equal(data.currentUser, null);
    assertRoutes(data.routes, [...KEY_ROUTES, ...PORTAL_ADMIN], [...PORTAL_READS, ...PORTAL_WRITES]);

    const keysOnly = await createKeyViaApi(t, { kind: 'management', scopes: ['vibe:mgmt:keys'], accessMode: 'READONLY' });
    assertRoutes((await me({ 'x-api-key': keysOnly.secret })).routes, ['GET /v1/keys', 'GET /v1/keys/:id'], [...PORTAL_ADMIN, 'POST /v1/keys', 'PATCH /v1/keys/:id', 'POST /v1/sessions', ...PORTAL_READS]);
  });

  it('works with a personal or management key as Bearer; no key is MISSING_API_KEY', async () => {
    assert.equal((await me({ authorization: `Bearer ${t.key.secret}` })).kind, 'personal');
    assert.equal((await me({ authorization: `Bearer ${t.managementKey.secret}` })).kind, 'management');
    expectError(await send(t, 'GET', '/v1/me'), 401, 'MISSING_API_KEY');
  });
});
