/**
 * Logs (issue 11 item 6): one line per request with the request id, key id, portal,
 * route, status and time; and no secret in any log line at `trace` level across a run
 * that handles keys, sessions, a local portal and a bitrix24 portal on the fake (webhook,
 * then OAuth with a token refresh), with failures on the way. Secrets: API keys, session
 * tokens, the webhook URL's secret, OAuth access and refresh tokens, the client secret and
 * the SecretBox key. Fields that hold secrets are censored by pino's `redact`.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { unseal } from '../../src/portals/bitrix24/portal-credentials.js';
import { parseWebhookUrl } from '../../src/portals/bitrix24/rest-client.js';
import { SecretBox } from '../../src/store/secret-box.js';
import { LOG_REDACT_PATHS, maskPath } from '../../src/observability/request-log.js';
import { startFakeBitrix24 } from '../fakes/bitrix24/fake-portal.js';
import { openTestStore, type TestStore } from '../helpers/test-store.js';

type Fake = Awaited<ReturnType<typeof startFakeBitrix24>>;

describe('request log and redaction at trace level', () => {
  const lines: string[] = [];
  const secrets = new Set<string>();
  const answered: { method: string; url: string; status: number; requestId: string }[] = [];
  let app: FastifyInstance;
  let testStore: TestStore;
  let fake: Fake;
  let box: SecretBox;
  let ids: { localPortal: number; b24Portal: number; personalKey: string; appKey: string; b24Key: string };

  async function call(method: InjectOptions['method'], url: string, secret?: string, body?: unknown, extra: Record<string, string> = {}) {
    const res = await app.inject({
      method,
      url,
      headers: { ...(secret ? { 'x-api-key': secret } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...extra },
      ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
    });
    answered.push({ method: String(method), url, status: res.statusCode, requestId: String(res.headers['x-request-id']) });
    return res;
  }
  const data = (res: { body: string }) => JSON.parse(res.body).data;

  before(async () => {
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const key = crypto.randomBytes(32);
    box = new SecretBox(key);
    for (const text of [key.toString('base64'), key.toString('hex'), key.toString('base64url')]) secrets.add(text);
    fake = await startFakeBitrix24({ users: [{ id: 1, name: 'Admin' }, { id: 7, name: 'Tester' }], limits: false, utcOffset: '+00:00' });
    testStore = openTestStore();
    app = await buildApp({ config: { ...loadConfig({}), redisUrl: null, maxEventLoopDelayMs: 0 }, store: testStore.store, logger: { level: 'trace', stream } as never, secretBox: box, keyCacheTtlMs: 50 });
    const management = await app.services.keys.create({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'], requestsPerSecond: null }, null);
    const mgmt = management.secret;
    secrets.add(mgmt);

    // A local portal, keys of each kind, a rotation, sessions.
    const local = await call('POST', '/v1/portals', mgmt, { name: 'Local', timeZone: 'UTC' });
    assert.equal(local.statusCode, 201, local.body);
    const localPortal = data(local).id;
    const personal = data(await call('POST', '/v1/keys', mgmt, { kind: 'personal', portalId: localPortal, scopes: ['crm'], userId: 7, requestsPerSecond: 2 }));
    const application = data(await call('POST', '/v1/keys', mgmt, { kind: 'application', portalId: localPortal, scopes: ['crm'] }));
    const otherManagement = data(await call('POST', '/v1/keys', mgmt, { kind: 'management', scopes: ['vibe:mgmt:keys'] }));
    for (const k of [personal, application, otherManagement]) secrets.add(k.secret);
    const rotated = data(await call('POST', `/v1/keys/${personal.id}/rotate`, mgmt, { gracePeriodSeconds: 60 }));
    secrets.add(rotated.secret);
    const session = data(await call('POST', '/v1/sessions', mgmt, { keyId: application.id, userId: 3 }));
    secrets.add(session.token);

    // Use them: successes, refusals (rate limit, wrong session, unknown key), a secret sent where it does not belong.
    const created = await call('POST', '/v1/smart-processes', rotated.secret, { title: 'Logged' });
    assert.equal(created.statusCode, 201, created.body);
    for (let i = 0; i < 3; i++) await call('GET', `/v1/smart-processes/${data(created).entityTypeId}`, personal.secret);
    await call('GET', '/v1/smart-processes', application.secret, undefined, { authorization: `Bearer ${session.token}` });
    await call('GET', '/v1/smart-processes', application.secret, undefined, { authorization: 'Bearer vibe_session_0000000000000000000000000000000000000000' });
    const unknownKey = `vibe_api_${'Z'.repeat(40)}`;
    secrets.add(unknownKey);
    await call('GET', '/v1/me', unknownKey);
    await call('GET', `/v1/no-such-route/${personal.secret}?apiKey=${personal.secret}`, undefined);
    await call('GET', '/v1/me', undefined, undefined, { authorization: `Bearer ${otherManagement.secret}` });
    await call('DELETE', `/v1/keys/${otherManagement.id}`, mgmt);

    // A bitrix24 portal: webhook first.
    const webhookUrl = fake.webhookUrl(7);
    secrets.add(webhookUrl);
    secrets.add(parseWebhookUrl(webhookUrl).secret);
    const b24 = await call('POST', '/v1/portals', mgmt, { kind: 'bitrix24', name: 'Bitrix24', timeZone: 'UTC', webhookUrl, limits: { burst: 1000, perSecond: 1000 } });
    assert.equal(b24.statusCode, 201, b24.body);
    const b24Portal = data(b24).id;
    const b24Key = data(await call('POST', '/v1/keys', mgmt, { kind: 'personal', portalId: b24Portal, scopes: ['crm'], userId: 7 }));
    secrets.add(b24Key.secret);
    const b24Type = await call('POST', '/v1/smart-processes', b24Key.secret, { title: 'Upstream' });
    assert.equal(b24Type.statusCode, 201, b24Type.body);
    const b24Id = data(b24Type).entityTypeId;
    fake.inject.internalError('crm.type.getByEntityTypeId', 5);
    await call('GET', `/v1/smart-processes/${b24Id}`, b24Key.secret);
    fake.inject.drop('crm.type.list', 5);
    await call('GET', '/v1/smart-processes?limit=5', b24Key.secret);

    // Then OAuth, with an expired access token (a refresh) and a refused refresh token.
    const tokens = fake.oauth.issueTokens({ userId: 7 });
    const oauth = { clientId: fake.oauth.clientId, clientSecret: fake.oauth.clientSecret, clientEndpoint: tokens.client_endpoint, accessToken: tokens.access_token, refreshToken: tokens.refresh_token, expiresAt: tokens.expires, tokenUrl: fake.oauth.tokenUrl };
    for (const s of [oauth.clientSecret, oauth.accessToken, oauth.refreshToken]) secrets.add(s);
    const patched = await call('PATCH', `/v1/portals/${b24Portal}`, mgmt, { oauth });
    assert.equal(patched.statusCode, 200, patched.body);
    await call('GET', `/v1/smart-processes/${b24Id}`, b24Key.secret);
    fake.oauth.expireAccessTokens();
    await call('PATCH', `/v1/smart-processes/${b24Id}`, b24Key.secret, { title: 'Refreshed' });
    const row = await app.services.store.read.bitrix24.get(b24Portal);
    const refreshed = unseal(box, b24Portal, row!.sealed);
    assert.equal(refreshed.type, 'oauth');
    if (refreshed.type === 'oauth') {
      assert.notEqual(refreshed.accessToken, oauth.accessToken, 'the tokens were refreshed during the run');
      secrets.add(refreshed.accessToken);
      secrets.add(refreshed.refreshToken);
    }
    fake.oauth.expireAccessTokens();
    fake.oauth.revokeRefreshTokens();
    await call('GET', `/v1/smart-processes/${b24Id}`, b24Key.secret);
    // An invalid OAuth credential, refused at the credential check.
    await call('PATCH', `/v1/portals/${b24Portal}`, mgmt, { oauth: { ...oauth, clientSecret: `${oauth.clientSecret}x`, accessToken: `${oauth.accessToken}x`, refreshToken: `${oauth.refreshToken}x` } });
    for (const s of [`${oauth.clientSecret}x`]) secrets.add(s);
    // Anything else a careless caller could log: fields that hold secrets are censored.
    app.log.info({ headers: { 'x-api-key': mgmt, authorization: `Bearer ${session.token}` }, webhookUrl, oauth, credential: { clientSecret: oauth.clientSecret, accessToken: oauth.accessToken, refreshToken: oauth.refreshToken }, secret: mgmt, token: session.token }, 'a careless log line');
    ids = { localPortal, b24Portal, personalKey: personal.id, appKey: application.id, b24Key: b24Key.id };
    await app.close();
  });
  after(async () => {
    await testStore?.drop();
    await fake?.close();
  });

  it('logs at trace level, and no line holds any secret of the run', () => {
    assert.ok(lines.length > answered.length, `${lines.length} lines for ${answered.length} requests`);
    assert.ok(secrets.size >= 15, `${secrets.size} secrets collected`);
    for (const secret of secrets) assert.ok(secret.length >= 16, 'a secret long enough to be found only where it is');
    for (const line of lines) {
      for (const secret of secrets) assert.ok(!line.includes(secret), `a log line holds a secret (${secret.slice(0, 9)}...): ${line.slice(0, 400)}`);
    }
  });

  it('one line per request, written when it is answered: request id, key id, portal, route pattern, method, status and time', () => {
    const entries = lines.map((l) => JSON.parse(l));
    const requestLines = entries.filter((e) => e.msg === 'request' || e.msg === 'request errored');
    assert.equal(requestLines.length, answered.length, 'as many request lines as requests');
    assert.equal(entries.filter((e) => e.msg === 'incoming request' || e.msg === 'request completed').length, 0, "no Fastify request lines besides ours");
    for (const [i, sent] of answered.entries()) {
      const line = requestLines.find((e) => e.reqId === sent.requestId);
      assert.ok(line, `a line for request ${i} ${sent.method} ${sent.url}`);
      assert.equal(line.status, sent.status);
      assert.equal(line.method, sent.method);
      assert.equal(typeof line.responseTime, 'number');
      assert.ok(line.route, 'a route');
      assert.ok('keyId' in line && 'portal' in line);
    }
    const cards = requestLines.filter((e) => e.route === '/v1/smart-processes/:entityTypeId');
    assert.ok(cards.some((e) => e.keyId === ids.personalKey && e.portal === ids.localPortal && e.status === 200), 'the key id and portal of the caller');
    assert.ok(cards.some((e) => e.status === 429 && e.keyId === null && e.portal === null), 'a request the access check refused names no key');
    const withSession = requestLines.find((e) => e.keyId === ids.appKey && e.status === 200);
    assert.ok(withSession?.sessionId, 'an application key call names its session by id');
    assert.ok(requestLines.some((e) => e.portal === ids.b24Portal && e.keyId === ids.b24Key), 'bitrix24 portal calls too');
    const unmatched = requestLines.find((e) => e.route === '(unmatched)');
    assert.match(unmatched?.path ?? '', /^\/v1\/no-such-route\/vibe_api_\*\*\*$/, 'an unmatched path is logged without its query and with tokens masked');
  });

  it('pino redact censors the fields that hold secrets', () => {
    const careless = lines.map((l) => JSON.parse(l)).find((e) => e.msg === 'a careless log line');
    assert.ok(careless);
    assert.equal(careless.headers['x-api-key'], '[redacted]');
    assert.equal(careless.headers.authorization, '[redacted]');
    assert.equal(careless.webhookUrl, '[redacted]');
    assert.equal(careless.oauth, '[redacted]');
    assert.deepEqual(careless.credential, { clientSecret: '[redacted]', accessToken: '[redacted]', refreshToken: '[redacted]' });
    assert.equal(careless.secret, '[redacted]');
    assert.equal(careless.token, '[redacted]');
    assert.ok(LOG_REDACT_PATHS.includes('req.headers["x-api-key"]'));
    assert.equal(maskPath('/rest/7/abcdefgh12345678/crm.type.list.json?x=1'), '/rest/7/***/crm.type.list.json');
  });
});
