import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp, type TestKey } from '../helpers/app.js';
import { captureLogs } from '../helpers/log-capture.js';
import { expectError, expectValidationError } from '../helpers/expect.js';
import { hashSecret } from '../../src/access/tokens.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { publicUrlOf } from '../../src/http/public-url.js';

/**
 * Issue 10: user authorization of application keys on a local portal (the sandbox consent
 * page), both completions, every parameter rule, error code, expiry and single-use rule.
 * Runs on SQLite and (SMARTPROC_TEST_DATABASE_URL) PostgreSQL.
 */

const PUBLIC = 'https://smartproc.example.com';
const REDIRECT = 'https://app.example.com/oauth/done';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

let counter = 0;
/** A fresh state of 24 characters. */
const newState = () => `state-${String(++counter).padStart(4, '0')}-abcdefghijkl`;

describe('user authorization (local portal: sandbox consent)', () => {
  let t: TestApp;
  let appKey: TestKey;
  const { lines: logLines, logger } = captureLogs('trace');
  before(async () => {
    t = await createTestApp({ portalKind: 'local', config: { publicUrl: PUBLIC, maxEventLoopDelayMs: 0 /* load shedding is not under test: a busy test machine must not answer 503 */ }, logger });
    appKey = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'], name: 'Sales dashboard', redirectUris: [REDIRECT] });
  });
  after(() => t.close());

  const get = (url: string, headers: Record<string, string> = {}) => t.app.inject({ method: 'GET', url, headers });
  const qs = (params: Record<string, string | undefined>) => new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined)).toString();
  const authorize = (params: Record<string, string | undefined>) => get(`/v1/oauth/authorize?${qs(params)}`);
  const poll = (state: string, key = appKey.secret) => get(`/v1/oauth/poll?${qs({ app_key: key, state })}`);
  const exchange = (body: Record<string, unknown>) => t.app.inject({ method: 'POST', url: '/v1/oauth/token', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  const consent = (form: Record<string, string>) => t.app.inject({ method: 'POST', url: '/oauth/sandbox', headers: FORM, payload: new URLSearchParams(form).toString() });
  const withSession = (token: string, key = appKey.secret) => ({ 'x-api-key': key, authorization: `Bearer ${token}` });

  /** GET /v1/oauth/authorize → the sandbox page's flow secret. */
  async function start(state: string, extra: Record<string, string> = {}): Promise<string> {
    const res = await authorize({ app_key: appKey.secret, state, ...extra });
    assert.equal(res.statusCode, 302, res.body);
    const location = new URL(res.headers.location as string);
    assert.equal(`${location.origin}${location.pathname}`, `${PUBLIC}/oauth/sandbox`);
    return location.searchParams.get('flow')!;
  }

  /** The whole sandbox flow without redirect_uri: the session grant. */
  async function authorizeAs(user: { userId: string; name?: string; email?: string }, state = newState()) {
    const flow = await start(state);
    const approved = await consent({ flow, decision: 'approve', ...user });
    assert.equal(approved.statusCode, 303, approved.body);
    const res = await poll(state);
    assert.equal(res.statusCode, 200, res.body);
    return res.json();
  }

  describe('redirectUris on application keys (/v1/keys)', () => {
    it('are set on create and on PATCH, shown, and must be absolute https URLs (http only for loopback) without fragment', async () => {
      const mgmt = { 'x-api-key': t.managementKey.secret, 'content-type': 'application/json' };
      const created = await t.app.inject({ method: 'POST', url: '/v1/keys', headers: mgmt, payload: JSON.stringify({ kind: 'application', portalId: t.portal.id, redirectUris: ['https://a.example/cb', 'http://localhost:8080/cb'] }) });
      assert.equal(created.statusCode, 201, created.body);
      assert.deepEqual(json(created).data.redirectUris, ['https://a.example/cb', 'http://localhost:8080/cb']);
      const id = json(created).data.id;
      const patched = await t.app.inject({ method: 'PATCH', url: `/v1/keys/${id}`, headers: mgmt, payload: JSON.stringify({ redirectUris: ['https://b.example/cb'] }) });
      assert.deepEqual(json(patched).data.redirectUris, ['https://b.example/cb']);
      assert.deepEqual(json(await t.app.inject({ method: 'GET', url: `/v1/keys/${id}`, headers: mgmt })).data.redirectUris, ['https://b.example/cb']);
      const bad = await t.app.inject({ method: 'PATCH', url: `/v1/keys/${id}`, headers: mgmt, payload: JSON.stringify({ redirectUris: ['http://app.example/cb', 'https://a.example/cb#x', 'not a url'] }) });
      expectValidationError(bad, 'body.redirectUris[0]', 'body.redirectUris[1]', 'body.redirectUris[2]');
      const personal = await t.app.inject({ method: 'POST', url: '/v1/keys', headers: mgmt, payload: JSON.stringify({ kind: 'personal', portalId: t.portal.id, redirectUris: ['https://a.example/cb'] }) });
      expectValidationError(personal, 'body.redirectUris');
    });
  });

  describe('GET /v1/oauth/authorize', () => {
    it('a local portal sends the person to the sandbox consent page at PUBLIC_URL', async () => {
      const flow = await start(newState());
      assert.match(flow, /^[A-Za-z0-9]{40}$/);
    });

    it('app_key missing, unknown, malformed or not an application key: 401 INVALID_APP_KEY (JSON, no redirect)', async () => {
      for (const app_key of [undefined, 'vibe_app_' + 'x'.repeat(40), 'vibe_app_short', t.key.secret, t.managementKey.secret]) {
        const res = await authorize({ app_key, state: newState() });
        expectError(res, 401, 'INVALID_APP_KEY');
        assert.equal(res.headers.location, undefined);
      }
    });

    it('state missing or shorter than 16 characters: 400 INVALID_STATE; 16 characters are enough', async () => {
      expectError(await authorize({ app_key: appKey.secret }), 400, 'INVALID_STATE');
      expectError(await authorize({ app_key: appKey.secret, state: 'x'.repeat(15) }), 400, 'INVALID_STATE');
      assert.equal((await authorize({ app_key: appKey.secret, state: 'y'.repeat(16) })).statusCode, 302);
    });

    it('redirect_uri not registered on the key: 400 INVALID_REDIRECT_URI as JSON (never a redirect to it)', async () => {
      for (const redirect_uri of ['https://evil.example/cb', `${REDIRECT}/`, `${REDIRECT}?x=1`]) {
        const res = await authorize({ app_key: appKey.secret, state: newState(), redirect_uri });
        expectError(res, 400, 'INVALID_REDIRECT_URI');
        assert.equal(res.headers.location, undefined);
      }
    });

    it('with a registered redirect_uri, later refusals go back to it: U?error=INVALID_STATE&state=S', async () => {
      const res = await authorize({ app_key: appKey.secret, state: 'short', redirect_uri: REDIRECT });
      assert.equal(res.statusCode, 302);
      const location = new URL(res.headers.location as string);
      assert.equal(`${location.origin}${location.pathname}`, REDIRECT);
      assert.equal(location.searchParams.get('error'), 'INVALID_STATE');
      assert.equal(location.searchParams.get('state'), 'short');
    });

    it('an expired application key: 401 KEY_EXPIRED; a rotated-out secret: 403 KEY_INACTIVE', async () => {
      const expiring = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
      await t.app.services.store.db.updateTable('api_keys').set({ expires_at: Date.now() - 1000 }).where('id', '=', expiring.record.id).execute();
      expectError(await authorize({ app_key: expiring.secret, state: newState() }), 401, 'KEY_EXPIRED');
      expectError(await poll(newState(), expiring.secret), 401, 'KEY_EXPIRED');
      const rotated = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
      await t.app.services.keys.rotate(rotated.record.id, 0);
      expectError(await authorize({ app_key: rotated.secret, state: newState() }), 403, 'KEY_INACTIVE');
    });
  });

  describe('the sandbox consent page', () => {
    it('is plain HTML (no script, no external resource), names the application and cannot be framed', async () => {
      const flow = await start(newState());
      const res = await get(`/oauth/sandbox?flow=${flow}`);
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^text\/html/);
      assert.match(res.body, /Sales dashboard/);
      assert.match(res.body, /<form method="post" action="\/oauth\/sandbox">/);
      assert.doesNotMatch(res.body, /<script|https?:\/\/(?!smartproc)/i);
      assert.equal(res.headers['x-frame-options'], 'DENY');
      assert.match(String(res.headers['content-security-policy']), /default-src 'none'/);
      assert.equal(res.headers['referrer-policy'], 'no-referrer');
    });

    it('an unknown flow is a 400 page with INVALID_STATE', async () => {
      const res = await get('/oauth/sandbox?flow=' + 'A'.repeat(40));
      assert.equal(res.statusCode, 400);
      assert.match(res.body, /INVALID_STATE/);
    });

    it('a user id that is not a positive whole number, or a bad e-mail, shows the form again (400); nothing completes', async () => {
      const state = newState();
      const flow = await start(state);
      for (const form of [{ userId: '0' }, { userId: 'abc' }, { userId: '5', email: 'not-an-address' }] as Record<string, string>[]) {
        const res = await consent({ flow, decision: 'approve', ...form });
        assert.equal(res.statusCode, 400);
        assert.match(res.body, /id="problem"/);
      }
      assert.deepEqual((await poll(state)).json(), { success: true, status: 'pending' });
    });

    it('approve sends the person to PUBLIC_URL/oauth/complete?status=success, a page saying they can close it; a second answer is refused', async () => {
      const flow = await start(newState());
      const res = await consent({ flow, decision: 'approve', userId: '12' });
      assert.equal(res.statusCode, 303);
      assert.equal(res.headers.location, `${PUBLIC}/oauth/complete?status=success`);
      const done = await get('/oauth/complete?status=success');
      assert.equal(done.statusCode, 200);
      assert.match(done.body, /close this window/);
      const again = await consent({ flow, decision: 'approve', userId: '13' });
      assert.equal(again.statusCode, 400);
      assert.match(again.body, /INVALID_STATE/);
    });
  });

  describe('completion without redirect_uri: GET /v1/oauth/poll', () => {
    it('pending (also before authorize was reached), then once complete with access_token, user and expires_in 86400', async () => {
      const state = newState();
      assert.deepEqual((await poll(state)).json(), { success: true, status: 'pending' });
      const flow = await start(state);
      const pending = await poll(state);
      assert.deepEqual(pending.json(), { success: true, status: 'pending' });
      assert.equal(pending.headers['access-control-allow-origin'], '*');
      await consent({ flow, decision: 'approve', userId: '21', name: 'Ann Lee', email: 'ann@example.com' });
      const complete = (await poll(state)).json();
      assert.equal(complete.success, true);
      assert.equal(complete.status, 'complete');
      assert.match(complete.access_token, /^vibe_session_[A-Za-z0-9]{40}$/);
      assert.deepEqual(complete.user, { id: 21, name: 'Ann Lee', email: 'ann@example.com' });
      assert.equal(complete.expires_in, 86400);
      expectError(await poll(state), 400, 'INVALID_STATE');
    });

    it('the session acts as that user: /v1/me shows the user, and a PATCH records the user as updatedBy', async () => {
      const grant = await authorizeAs({ userId: '34', name: 'Bo', email: 'bo@example.com' });
      const me = json(await get('/v1/me', withSession(grant.access_token))).data;
      assert.equal(me.currentUser.bitrixUserId, 34);
      assert.deepEqual(me.session.user, { id: 34, name: 'Bo', email: 'bo@example.com' });
      assert.ok(!JSON.stringify(me).includes(grant.access_token));
      const created = await t.call('POST', '/v1/smart-processes', { title: 'Made by the owner' });
      const id = json(created).data.entityTypeId;
      const patched = await t.app.inject({ method: 'PATCH', url: `/v1/smart-processes/${id}`, headers: { ...withSession(grant.access_token), 'content-type': 'application/json' }, payload: JSON.stringify({ title: 'Changed by Bo' }) });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.equal(json(patched).data.updatedBy, 34);
    });

    it('declined: the person sees status=error, the poll answers 403 AUTHORIZATION_DENIED once, then INVALID_STATE', async () => {
      const state = newState();
      const flow = await start(state);
      const res = await consent({ flow, decision: 'deny' });
      assert.equal(res.headers.location, `${PUBLIC}/oauth/complete?status=error&error=AUTHORIZATION_DENIED`);
      expectError(await poll(state), 403, 'AUTHORIZATION_DENIED');
      expectError(await poll(state), 400, 'INVALID_STATE');
    });

    it('the result is kept 10 minutes; a pending authorization waits 10 minutes; after that INVALID_STATE', async () => {
      const db = t.app.services.store.db;
      const state = newState();
      const before = Date.now();
      const flow = await start(state);
      const pendingRow = await db.selectFrom('oauth_flows').selectAll().where('flow_hash', '=', hashSecret(flow)).executeTakeFirstOrThrow();
      assert.ok(Math.abs(Number(pendingRow.expires_at) - (before + 600_000)) < 5_000);
      await consent({ flow, decision: 'approve', userId: '3' });
      const doneRow = await db.selectFrom('oauth_flows').selectAll().where('id', '=', pendingRow.id).executeTakeFirstOrThrow();
      assert.ok(Math.abs(Number(doneRow.expires_at) - (Date.now() + 600_000)) < 5_000);
      await db.updateTable('oauth_flows').set({ expires_at: Date.now() - 1 }).where('id', '=', pendingRow.id).execute();
      expectError(await poll(state), 400, 'INVALID_STATE');

      const late = newState();
      const lateFlow = await start(late);
      await db.updateTable('oauth_flows').set({ expires_at: Date.now() - 1 }).where('flow_hash', '=', hashSecret(lateFlow)).execute();
      expectError(await poll(late), 400, 'INVALID_STATE');
      const page = await consent({ flow: lateFlow, decision: 'approve', userId: '3' });
      assert.equal(page.statusCode, 400);
      assert.match(page.body, /expired/);
    });

    it('single use under concurrency: of 10 simultaneous polls exactly one gets the session', async () => {
      const state = newState();
      const flow = await start(state);
      await consent({ flow, decision: 'approve', userId: '8' });
      const answers = await Promise.all(Array.from({ length: 10 }, () => poll(state)));
      assert.equal(answers.filter((r) => r.statusCode === 200 && r.json().status === 'complete').length, 1);
      for (const r of answers.filter((r) => r.statusCode !== 200)) expectError(r, 400, 'INVALID_STATE');
      const sessions = await t.app.services.store.db.selectFrom('sessions').select('id').where('user_id', '=', 8).execute();
      assert.equal(sessions.length, 1);
    });

    it('a state belongs to its application key: another key polling it sees nothing of it', async () => {
      const other = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
      const state = newState();
      const flow = await start(state);
      await consent({ flow, decision: 'approve', userId: '9' });
      assert.deepEqual((await poll(state, other.secret)).json(), { success: true, status: 'pending' });
      assert.equal((await poll(state)).json().status, 'complete');
    });

    it('a flow that returns through redirect_uri cannot be polled (INVALID_STATE)', async () => {
      const state = newState();
      await start(state, { redirect_uri: REDIRECT });
      expectError(await poll(state), 400, 'INVALID_STATE');
    });
  });

  describe('completion with redirect_uri: U?code=...&state=S and POST /v1/oauth/token', () => {
    async function codeFor(userId: string, state = newState()): Promise<{ code: string; state: string }> {
      const flow = await start(state, { redirect_uri: REDIRECT });
      const res = await consent({ flow, decision: 'approve', userId, name: 'Cy' });
      assert.equal(res.statusCode, 303);
      const location = new URL(res.headers.location as string);
      assert.equal(`${location.origin}${location.pathname}`, REDIRECT);
      assert.equal(location.searchParams.get('state'), state);
      return { code: location.searchParams.get('code')!, state };
    }

    it('the code is exchanged once for the same answer as a completed poll', async () => {
      const { code } = await codeFor('55');
      const res = await exchange({ app_key: appKey.secret, code, redirect_uri: REDIRECT });
      assert.equal(res.statusCode, 200, res.body);
      const grant = res.json();
      assert.equal(grant.status, 'complete');
      assert.match(grant.access_token, /^vibe_session_/);
      assert.deepEqual(grant.user, { id: 55, name: 'Cy', email: null });
      assert.equal(grant.expires_in, 86400);
      assert.equal(json(await get('/v1/me', withSession(grant.access_token))).data.currentUser.bitrixUserId, 55);
      expectError(await exchange({ app_key: appKey.secret, code, redirect_uri: REDIRECT }), 400, 'INVALID_CODE');
    });

    it('a wrong redirect_uri is INVALID_REDIRECT_URI, another key or an unknown code INVALID_CODE, a bad key INVALID_APP_KEY; none uses the code up', async () => {
      const { code } = await codeFor('56');
      const other = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'], redirectUris: [REDIRECT] });
      expectError(await exchange({ app_key: appKey.secret, code, redirect_uri: 'https://app.example.com/other' }), 400, 'INVALID_REDIRECT_URI');
      expectError(await exchange({ app_key: appKey.secret, code }), 400, 'INVALID_REDIRECT_URI');
      expectError(await exchange({ app_key: other.secret, code, redirect_uri: REDIRECT }), 400, 'INVALID_CODE');
      expectError(await exchange({ app_key: appKey.secret, code: 'X'.repeat(40), redirect_uri: REDIRECT }), 400, 'INVALID_CODE');
      expectError(await exchange({ app_key: t.key.secret, code, redirect_uri: REDIRECT }), 401, 'INVALID_APP_KEY');
      assert.equal((await exchange({ app_key: appKey.secret, code, redirect_uri: REDIRECT })).statusCode, 200);
    });

    it('the code lives 5 minutes', async () => {
      const before = Date.now();
      const { code } = await codeFor('57');
      const row = await t.app.services.store.db.selectFrom('oauth_flows').selectAll().where('code_hash', '=', hashSecret(code)).executeTakeFirstOrThrow();
      assert.ok(Math.abs(Number(row.expires_at) - (before + 300_000)) < 5_000);
      await t.app.services.store.db.updateTable('oauth_flows').set({ expires_at: Date.now() - 1 }).where('id', '=', row.id).execute();
      expectError(await exchange({ app_key: appKey.secret, code, redirect_uri: REDIRECT }), 400, 'INVALID_CODE');
    });

    it('single use under concurrency: of 10 simultaneous exchanges exactly one gets the session', async () => {
      const { code } = await codeFor('58');
      const answers = await Promise.all(Array.from({ length: 10 }, () => exchange({ app_key: appKey.secret, code, redirect_uri: REDIRECT })));
      assert.equal(answers.filter((r) => r.statusCode === 200).length, 1);
      for (const r of answers.filter((r) => r.statusCode !== 200)) expectError(r, 400, 'INVALID_CODE');
    });

    it('declined: U?error=AUTHORIZATION_DENIED&state=S, and no code', async () => {
      const state = newState();
      const flow = await start(state, { redirect_uri: REDIRECT });
      const res = await consent({ flow, decision: 'deny' });
      const location = new URL(res.headers.location as string);
      assert.equal(location.searchParams.get('error'), 'AUTHORIZATION_DENIED');
      assert.equal(location.searchParams.get('state'), state);
      assert.equal(location.searchParams.get('code'), null);
    });

    it('bad bodies: 400 VALIDATION_ERROR', async () => {
      expectValidationError(await exchange({ app_key: appKey.secret, code: 'x', redirect_uri: REDIRECT, extra: 1 }), 'body.extra');
    });
  });

  describe('POST /v1/oauth/revoke', () => {
    it('ends the session at once; without a Bearer 401 TOKEN_MISSING; malformed or ended 401 INVALID_SESSION', async () => {
      const grant = await authorizeAs({ userId: '77' });
      assert.equal((await get('/v1/me', withSession(grant.access_token))).statusCode, 200);
      expectError(await t.app.inject({ method: 'POST', url: '/v1/oauth/revoke' }), 401, 'TOKEN_MISSING');
      expectError(await t.app.inject({ method: 'POST', url: '/v1/oauth/revoke', headers: { authorization: 'Bearer vibe_session_nope' } }), 401, 'INVALID_SESSION');
      const res = await t.app.inject({ method: 'POST', url: '/v1/oauth/revoke', headers: { authorization: `Bearer ${grant.access_token}` } });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { success: true, revoked: true });
      expectError(await get('/v1/me', withSession(grant.access_token)), 401, 'INVALID_SESSION');
      expectError(await t.app.inject({ method: 'POST', url: '/v1/oauth/revoke', headers: { authorization: `Bearer ${grant.access_token}` } }), 401, 'INVALID_SESSION');
    });
  });

  it('POST /v1/sessions keeps an optional name and e-mail, shown by /v1/me', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/sessions', headers: { 'x-api-key': t.managementKey.secret, 'content-type': 'application/json' }, payload: JSON.stringify({ keyId: appKey.record.id, userId: 4, name: 'Dee', email: 'dee@example.com' }) });
    assert.equal(res.statusCode, 201, res.body);
    const me = json(await get('/v1/me', withSession(json(res).data.token))).data;
    assert.deepEqual(me.session.user, { id: 4, name: 'Dee', email: 'dee@example.com' });
  });

  it('deleting an application key (or its portal) takes its flows and sessions with it', async () => {
    const doomed = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
    const state = newState();
    const res = await authorize({ app_key: doomed.secret, state });
    await consent({ flow: new URL(res.headers.location as string).searchParams.get('flow')!, decision: 'approve', userId: '66' });
    const token = (await poll(state, doomed.secret)).json().access_token;
    await authorize({ app_key: doomed.secret, state: newState() });
    const deleted = await t.app.inject({ method: 'DELETE', url: `/v1/keys/${doomed.record.id}`, headers: { 'x-api-key': t.managementKey.secret } });
    assert.equal(deleted.statusCode, 204, deleted.body);
    assert.equal((await t.app.services.store.db.selectFrom('oauth_flows').select('id').where('key_id', '=', doomed.record.id).execute()).length, 0);
    expectError(await get('/v1/me', withSession(token, doomed.secret)), 401, 'INVALID_API_KEY');
  });

  it('PUBLIC_URL: an absolute http(s) URL (trailing slash dropped); default http://HOST:PORT of the listening socket', () => {
    assert.equal(loadConfig({ PUBLIC_URL: 'https://smartproc.example.com/' }).publicUrl, 'https://smartproc.example.com');
    assert.equal(loadConfig({ PUBLIC_URL: 'https://example.com/smartproc/' }).publicUrl, 'https://example.com/smartproc');
    assert.equal(loadConfig({}).publicUrl, null);
    for (const bad of ['smartproc.example.com', 'ftp://x.example', 'https://x.example/?a=1', 'https://u:p@x.example']) assert.throws(() => loadConfig({ PUBLIC_URL: bad }), ConfigError);
    assert.equal(publicUrlOf({ publicUrl: null, host: '127.0.0.1', port: 3000 }, null), 'http://127.0.0.1:3000');
    assert.equal(publicUrlOf({ publicUrl: null, host: '127.0.0.1', port: 0 }, { address: '127.0.0.1', family: 'IPv4', port: 41234 }), 'http://127.0.0.1:41234');
    assert.equal(publicUrlOf({ publicUrl: null, host: '0.0.0.0', port: 8080 }, null), 'http://localhost:8080');
    assert.equal(publicUrlOf({ publicUrl: 'https://p.example', host: '127.0.0.1', port: 3000 }, null), 'https://p.example');
  });

  it('the OpenAPI document describes the flow', async () => {
    const doc = (await get('/v1/openapi.json')).json();
    for (const path of ['/v1/oauth/authorize', '/v1/oauth/poll', '/v1/oauth/token', '/v1/oauth/revoke', '/oauth/sandbox', '/oauth/callback', '/oauth/complete']) assert.ok(doc.paths[path], `${path} is described`);
    assert.ok(doc.paths['/v1/oauth/authorize'].get.responses['302']);
    assert.ok(doc.paths['/v1/oauth/token'].post.responses['400']);
    assert.match(JSON.stringify(doc.paths['/v1/oauth/poll'].get.responses['400']), /INVALID_STATE/);
  });

  it('secrets at rest: the flow secret and the code are stored only as hashes', async () => {
    const state = newState();
    const flow = await start(state, { redirect_uri: REDIRECT });
    const res = await consent({ flow, decision: 'approve', userId: '90' });
    const code = new URL(res.headers.location as string).searchParams.get('code')!;
    const rows = JSON.stringify(await t.app.services.store.db.selectFrom('oauth_flows').selectAll().execute());
    assert.ok(!rows.includes(flow) && !rows.includes(code));
    assert.ok(rows.includes(hashSecret(flow)) && rows.includes(hashSecret(code)));
  });

  it('no token, code, flow secret or key in any log line (trace level)', async () => {
    const secrets = [appKey.secret, t.key.secret, t.managementKey.secret];
    const flowSecrets: string[] = [];
    const state = newState();
    const flow = await start(state);
    flowSecrets.push(flow);
    await get(`/oauth/sandbox?flow=${flow}`);
    await consent({ flow, decision: 'approve', userId: '91' });
    const grant = (await poll(state)).json();
    secrets.push(grant.access_token);
    const redirected = newState();
    const flow2 = await start(redirected, { redirect_uri: REDIRECT });
    flowSecrets.push(flow2);
    const code = new URL((await consent({ flow: flow2, decision: 'approve', userId: '92' })).headers.location as string).searchParams.get('code')!;
    await exchange({ app_key: appKey.secret, code: 'wrong' + code.slice(5), redirect_uri: REDIRECT });
    const grant2 = (await exchange({ app_key: appKey.secret, code, redirect_uri: REDIRECT })).json();
    await get('/v1/me', withSession(grant2.access_token));
    await t.app.inject({ method: 'POST', url: '/v1/oauth/revoke', headers: { authorization: `Bearer ${grant2.access_token}` } });
    secrets.push(code, grant2.access_token, ...flowSecrets);
    const text = logLines.join('');
    assert.ok(logLines.length > 10, 'trace logging captured lines');
    assert.match(text, /"route":"\/v1\/oauth\/authorize"/, 'the request line is logged (its route, never its query string)');
    for (const secret of secrets) assert.ok(!text.includes(secret), `a secret (${secret.slice(0, 12)}...) is in the logs`);
  });
});

