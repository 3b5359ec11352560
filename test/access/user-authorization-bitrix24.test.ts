import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp, type TestKey } from '../helpers/app.js';
import { captureLogs } from '../helpers/log-capture.js';
import { expectError } from '../helpers/expect.js';
import { startFakeBitrix24 } from '../fakes/bitrix24/fake-portal.js';
import type { PortalRecord } from '../../src/domain/records.js';

/**
 * Issue 10 against the fake Bitrix24 portal (test/fakes/bitrix24, written from the Bitrix24
 * OAuth docs): the consent redirect, the callback, the code exchange, calls made with the
 * user's own token, the user's token refreshed once, a user whose token the portal rejects.
 */

type Fake = Awaited<ReturnType<typeof startFakeBitrix24>>;
const PUBLIC = 'https://smartproc.example.com';
const REDIRECT = 'https://app.example.com/oauth/done';
let counter = 0;
const newState = () => `b24-state-${String(++counter).padStart(4, '0')}-abcdefgh`;

describe('user authorization (bitrix24 portal, fake)', () => {
  let t: TestApp;
  let fake: Fake;
  let portal: PortalRecord;
  let appKey: TestKey;
  let adminKey: TestKey;
  const { lines: logLines, logger } = captureLogs('trace');

  before(async () => {
    t = await createTestApp({ portalKind: 'local', config: { publicUrl: PUBLIC, maxEventLoopDelayMs: 0 /* a busy test machine must not answer 503 */ }, logger });
    fake = await startFakeBitrix24({
      users: [{ id: 1, name: 'Admin' }, { id: 5, name: 'Bea', lastName: 'Brown', email: 'bea@example.com' }, { id: 6, name: 'Cal', lastName: 'Cole', email: 'cal@example.com' }],
      limits: false,
      utcOffset: '+00:00',
    });
    // The application's redirect URI is its setting in Bitrix24 (never sent with the request).
    fake.oauth.redirectUri = `${PUBLIC}/oauth/callback`;
    const tokens = fake.oauth.issueTokens({ userId: 1 });
    portal = await t.app.services.portals.create({
      kind: 'bitrix24', name: 'Fake', timeZone: 'UTC',
      oauth: { clientId: fake.oauth.clientId, clientSecret: fake.oauth.clientSecret, clientEndpoint: tokens.client_endpoint, accessToken: tokens.access_token, refreshToken: tokens.refresh_token, tokenUrl: fake.oauth.tokenUrl },
      limits: { burst: 1000, perSecond: 1000 },
    });
    appKey = await t.createKey({ kind: 'application', portalId: portal.id, scopes: ['crm'], redirectUris: [REDIRECT] });
    adminKey = await t.createKey({ kind: 'personal', portalId: portal.id, scopes: ['crm'], userId: 1 });
  });
  after(async () => {
    await t.close();
    await fake.close();
  });

  const get = (url: string, headers: Record<string, string> = {}) => t.app.inject({ method: 'GET', url, headers });
  const qs = (params: Record<string, string>) => new URLSearchParams(params).toString();
  const withSession = (token: string) => ({ 'x-api-key': appKey.secret, authorization: `Bearer ${token}` });
  const poll = (state: string) => get(`/v1/oauth/poll?${qs({ app_key: appKey.secret, state })}`);

  /** authorize → the portal's consent (as `userId`) → back at smartproc's callback: the callback's answer. */
  async function throughPortal(state: string, userId: number, extra: Record<string, string> = {}) {
    const start = await get(`/v1/oauth/authorize?${qs({ app_key: appKey.secret, state, ...extra })}`);
    assert.equal(start.statusCode, 302, start.body);
    const consent = new URL(start.headers.location as string);
    fake.oauth.authorizingUserId = userId;
    const atPortal = await fetch(consent, { redirect: 'manual' });
    assert.equal(atPortal.status, 302, 'the portal sends the person back to the redirect URI of its application');
    const back = new URL(atPortal.headers.get('location')!);
    assert.equal(`${back.origin}${back.pathname}`, `${PUBLIC}/oauth/callback`);
    return { consent, back, callback: await get(back.pathname + back.search) };
  }

  async function sessionOf(userId: number) {
    const state = newState();
    const { callback } = await throughPortal(state, userId);
    assert.equal(callback.statusCode, 303, callback.body);
    const grant = (await poll(state)).json();
    assert.equal(grant.status, 'complete', JSON.stringify(grant));
    return grant;
  }

  it("authorize sends the person to the portal's consent page with the portal application's client_id and a state of smartproc's own", async () => {
    const state = newState();
    const res = await get(`/v1/oauth/authorize?${qs({ app_key: appKey.secret, state })}`);
    assert.equal(res.statusCode, 302);
    const consent = new URL(res.headers.location as string);
    assert.equal(`${consent.origin}${consent.pathname}`, `${fake.url}/oauth/authorize/`);
    assert.equal(consent.searchParams.get('client_id'), fake.oauth.clientId);
    assert.match(consent.searchParams.get('state')!, /^[A-Za-z0-9]{40}$/);
    assert.notEqual(consent.searchParams.get('state'), state, "the application's state is not what Bitrix24 sees");
    assert.equal(consent.searchParams.get('redirect_uri'), null, 'Bitrix24 takes the redirect URI from the application settings');
  });

  it("the callback exchanges the code (grant_type=authorization_code), asks user.current with the user's token, and completes: the poll hands out the session of that user", async () => {
    const before = { codes: fake.stats.codesExchanged, calls: fake.calls.length };
    const state = newState();
    const { back, callback } = await throughPortal(state, 5);
    assert.ok(back.searchParams.get('code'));
    assert.equal(callback.statusCode, 303, callback.body);
    assert.equal(callback.headers.location, `${PUBLIC}/oauth/complete?status=success`);
    assert.equal(fake.stats.codesExchanged, before.codes + 1);
    const exchange = fake.oauth.calls.at(-1)!;
    assert.equal(exchange.grantType, 'authorization_code');
    assert.equal(exchange.userId, 5);
    const asked = fake.calls.slice(before.calls).find((c) => c.method === 'user.current');
    assert.ok(asked, 'user.current was called');
    assert.equal(asked!.userId, 5);
    assert.ok(fake.oauth.tokensOf(5).some((tk) => tk.tokenId === asked!.tokenId && tk.grant === 'authorization_code'), "with the user's own token");
    const grant = (await poll(state)).json();
    assert.deepEqual(grant.user, { id: 5, name: 'Bea Brown', email: 'bea@example.com' });
    assert.equal(grant.expires_in, 86400);
    const me = json(await get('/v1/me', withSession(grant.access_token))).data;
    assert.deepEqual(me.session.user, { id: 5, name: 'Bea Brown', email: 'bea@example.com' });
    assert.equal(me.currentUser.bitrixUserId, 5);
  });

  it("calls made with the session run with the user's own token (the portal sees user 5 and that token), past the portal's cache; a PATCH records user 5", async () => {
    const created = await t.app.inject({ method: 'POST', url: '/v1/smart-processes', headers: { 'x-api-key': adminKey.secret, 'content-type': 'application/json' }, payload: JSON.stringify({ title: 'Made by the admin' }) });
    assert.equal(created.statusCode, 201, created.body);
    const id = json(created).data.entityTypeId;
    const grant = await sessionOf(5);
    const mark = fake.calls.length;
    const read = await get(`/v1/smart-processes/${id}`, withSession(grant.access_token));
    assert.equal(read.statusCode, 200, read.body);
    const patched = await t.app.inject({ method: 'PATCH', url: `/v1/smart-processes/${id}`, headers: { ...withSession(grant.access_token), 'content-type': 'application/json' }, payload: JSON.stringify({ title: 'Changed by Bea' }) });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(json(patched).data.updatedBy, 5);
    const seen = fake.calls.slice(mark).filter((c) => c.method.startsWith('crm.type.'));
    assert.ok(seen.length >= 2);
    const userTokens = new Set(fake.oauth.tokensOf(5).map((tk) => tk.tokenId));
    for (const call of seen) {
      assert.equal(call.userId, 5, `${call.method} ran as user 5`);
      assert.ok(userTokens.has(call.tokenId!), `${call.method} carried the user's token`);
    }
    // The portal's own key still runs as the portal's credential (user 1).
    const mark2 = fake.calls.length;
    assert.equal((await t.app.inject({ method: 'GET', url: `/v1/smart-processes`, headers: { 'x-api-key': adminKey.secret } })).statusCode, 200);
    for (const call of fake.calls.slice(mark2)) assert.equal(call.userId, 1);
  });

  it("the user's token is refreshed once when it expires, however many calls need it at the same moment", async () => {
    const grant = await sessionOf(6);
    assert.equal((await get('/v1/smart-processes', withSession(grant.access_token))).statusCode, 200);
    const refreshesBefore = fake.oauth.calls.filter((c) => c.grantType === 'refresh_token' && c.userId === 6).length;
    fake.oauth.expireAccessTokensOf(6);
    const answers = await Promise.all(Array.from({ length: 8 }, () => get('/v1/smart-processes', withSession(grant.access_token))));
    for (const res of answers) assert.equal(res.statusCode, 200, res.body);
    const refreshes = fake.oauth.calls.filter((c) => c.grantType === 'refresh_token' && c.userId === 6 && c.status === 200).length;
    assert.equal(refreshes - refreshesBefore, 1);
    const mark = fake.calls.length;
    assert.equal((await get('/v1/smart-processes', withSession(grant.access_token))).statusCode, 200);
    const last = fake.calls.slice(mark).find((c) => c.method === 'crm.type.list');
    assert.ok(fake.oauth.tokensOf(6).some((tk) => tk.tokenId === last!.tokenId && tk.grant === 'refresh_token'), 'the refreshed token is used');
  });

  it('a user whose token the portal rejects gets a clear 401 (TOKEN_EXPIRED naming the user, hint: authorize again); the portal itself keeps working', async () => {
    const grant = await sessionOf(5);
    fake.oauth.revokeTokensOf(5);
    const res = await get('/v1/smart-processes', withSession(grant.access_token));
    expectError(res, 401, 'TOKEN_EXPIRED');
    assert.match(json(res).error.message, /user 5/);
    assert.match(json(res).error.hint, /\/v1\/oauth\/authorize/);
    // expired and the refresh token dead: the same answer
    const again = await sessionOf(5);
    fake.oauth.expireAccessTokensOf(5);
    fake.oauth.revokeTokensOf(5);
    expectError(await get('/v1/smart-processes', withSession(again.access_token)), 401, 'TOKEN_EXPIRED');
    const portalCall = await t.app.inject({ method: 'GET', url: '/v1/smart-processes', headers: { 'x-api-key': adminKey.secret } });
    assert.equal(portalCall.statusCode, 200, 'the portal is not marked as needing authorization');
  });

  it('with redirect_uri: the callback sends the browser to U?code=...&state=S and the code is exchanged once', async () => {
    const state = newState();
    const { callback } = await throughPortal(state, 6, { redirect_uri: REDIRECT });
    const location = new URL(callback.headers.location as string);
    assert.equal(`${location.origin}${location.pathname}`, REDIRECT);
    assert.equal(location.searchParams.get('state'), state);
    const body = { app_key: appKey.secret, code: location.searchParams.get('code'), redirect_uri: REDIRECT };
    const res = await t.app.inject({ method: 'POST', url: '/v1/oauth/token', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json().user, { id: 6, name: 'Cal Cole', email: 'cal@example.com' });
    expectError(await t.app.inject({ method: 'POST', url: '/v1/oauth/token', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) }), 400, 'INVALID_CODE');
  });

  it('the authorization server refusing the code: the person sees status=error, the poll answers the error once (422 BITRIX_ERROR)', async () => {
    const state = newState();
    fake.inject.error('oauth.token', 400, 'invalid_grant', 'Invalid grant');
    const { callback } = await throughPortal(state, 5);
    assert.equal(callback.headers.location, `${PUBLIC}/oauth/complete?status=error&error=BITRIX_ERROR`);
    expectError(await poll(state), 422, 'BITRIX_ERROR');
    expectError(await poll(state), 400, 'INVALID_STATE');
  });

  it('an unknown, replayed or missing callback state is a 400 page (nowhere safe to redirect)', async () => {
    const unknown = await get('/oauth/callback?code=abc&state=' + 'Z'.repeat(40));
    assert.equal(unknown.statusCode, 400);
    assert.match(unknown.body, /INVALID_STATE/);
    const state = newState();
    const { back } = await throughPortal(state, 6);
    const replay = await get(back.pathname + back.search);
    assert.equal(replay.statusCode, 400);
    assert.match(replay.body, /already answered/);
    assert.equal((await get('/oauth/callback')).statusCode, 400);
  });

  it('a bitrix24 portal with only a webhook refuses user authorization: 401 INVALID_APP_KEY with a hint about the OAuth application', async () => {
    const hooked = await startFakeBitrix24({ limits: false });
    try {
      const webhookPortal = await t.app.services.portals.create({ kind: 'bitrix24', name: 'Hooked', webhookUrl: hooked.webhookUrl(1), limits: { burst: 1000, perSecond: 1000 } });
      const key = await t.createKey({ kind: 'application', portalId: webhookPortal.id, scopes: ['crm'] });
      const res = await get(`/v1/oauth/authorize?${qs({ app_key: key.secret, state: newState() })}`);
      expectError(res, 401, 'INVALID_APP_KEY');
      assert.match(json(res).error.message, /webhook/);
      assert.match(json(res).error.hint, /OAuth application/);
    } finally {
      await hooked.close();
    }
  });

  it("secrets: the user's tokens are sealed at rest, the session row has none, and no token, code or secret is in any log line or answer", async () => {
    const grant = await sessionOf(6);
    await get('/v1/me', withSession(grant.access_token));
    const db = t.app.services.store.db;
    const rows = JSON.stringify([await db.selectFrom('bitrix24_user_tokens').selectAll().execute(), await db.selectFrom('oauth_flows').selectAll().execute(), await db.selectFrom('sessions').selectAll().execute()]);
    const portalSecrets = fake.oauth.issuedSecrets();
    for (const secret of [...portalSecrets, grant.access_token]) assert.ok(!rows.includes(secret), 'a secret is stored in plain text');
    assert.match(rows, /"sealed":"v1:/);
    const logs = logLines.join('');
    assert.ok(logLines.length > 20);
    for (const secret of [...portalSecrets, appKey.secret, adminKey.secret, grant.access_token]) assert.ok(!logs.includes(secret), `a secret (${secret.slice(0, 6)}...) is in the logs`);
    const me = (await get('/v1/me', withSession(grant.access_token))).body;
    for (const secret of portalSecrets) assert.ok(!me.includes(secret));
  });

  it("revoking a bitrix24 session deletes the user's tokens with it, at once", async () => {
    const grant = await sessionOf(6);
    const db = t.app.services.store.db;
    const session = await db.selectFrom('sessions').select('id').orderBy('created_at', 'desc').executeTakeFirstOrThrow();
    assert.ok(await db.selectFrom('bitrix24_user_tokens').select('session_id').where('session_id', '=', session.id).executeTakeFirst());
    assert.equal((await get('/v1/smart-processes', withSession(grant.access_token))).statusCode, 200);
    const res = await t.app.inject({ method: 'POST', url: '/v1/oauth/revoke', headers: { authorization: `Bearer ${grant.access_token}` } });
    assert.equal(res.statusCode, 200);
    assert.equal(await db.selectFrom('bitrix24_user_tokens').select('session_id').where('session_id', '=', session.id).executeTakeFirst(), undefined);
    expectError(await get('/v1/smart-processes', withSession(grant.access_token)), 401, 'INVALID_SESSION');
  });
});
