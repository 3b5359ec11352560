import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { expectError } from '../helpers/expect.js';
import { PortalsRepository } from '../../src/store/repositories/portals-repository.js';
import { appHeaders, createKeyViaApi, mintSession, send, type CreatedKey } from './access-helpers.js';

/**
 * Check-order row 6 (contract §5): a portal that cannot serve calls — a `bitrix24`
 * portal without usable credentials — refuses its portal routes with 401 TOKEN_MISSING,
 * inside the access check at its place in the order (after the session, before scope
 * and read-only), and /v1/me lists none of its portal routes (the same check decides).
 */
describe('check order row 6: a portal that cannot serve calls', () => {
  let t: TestApp;
  let personal: CreatedKey;
  let noCrm: CreatedKey;
  let readonly: CreatedKey;
  let app: CreatedKey;
  before(async () => {
    t = await createTestApp();
    // A portal of a kind this server has no credentials for (created below the API, as an upgrade could leave one).
    const portal = await new PortalsRepository(t.app.services.store.db).create({ kind: 'bitrix24', name: 'Remote', domain: 'acme.bitrix24.com', timeZone: 'UTC' });
    personal = await createKeyViaApi(t, { kind: 'personal', portalId: portal.id, requestsPerSecond: null });
    noCrm = await createKeyViaApi(t, { kind: 'personal', portalId: portal.id, scopes: ['task'], requestsPerSecond: null });
    readonly = await createKeyViaApi(t, { kind: 'personal', portalId: portal.id, accessMode: 'READONLY', requestsPerSecond: null });
    app = await createKeyViaApi(t, { kind: 'application', portalId: portal.id, requestsPerSecond: null });
  });
  after(() => t.close());

  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, headers: Record<string, string>, body?: unknown) => send(t, method, url, { headers, body });

  it('every portal route answers 401 TOKEN_MISSING ("The API key has no configured tokens") with a hint', async () => {
    for (const [method, url, body] of [
      ['GET', '/v1/smart-processes'],
      ['POST', '/v1/smart-processes/search', {}],
      ['GET', '/v1/smart-processes/fields'],
      ['GET', '/v1/smart-processes/1050'],
      ['POST', '/v1/smart-processes', { title: 'x' }],
      ['PATCH', '/v1/smart-processes/1050', {}],
      ['DELETE', '/v1/smart-processes/1050'],
    ] as const) {
      const error = expectError(await call(method, url, { 'x-api-key': personal.secret }, body), 401, 'TOKEN_MISSING');
      assert.equal(error.message, 'The API key has no configured tokens');
      assert.ok(error.hint);
    }
  });

  it('row 5 before row 6: an application key without a session is told about the session', async () => {
    const error = expectError(await call('GET', '/v1/smart-processes', { 'x-api-key': app.secret }), 401, 'TOKEN_MISSING');
    assert.match(error.message, /session/);
    const session = await mintSession(t, app.id, 5);
    const withSession = expectError(await call('GET', '/v1/smart-processes', appHeaders(app.secret, session.token)), 401, 'TOKEN_MISSING');
    assert.equal(withSession.message, 'The API key has no configured tokens');
  });

  it('row 6 before rows 7 and 8: no crm scope, or a read-only key writing, still hears about the tokens', async () => {
    expectError(await call('GET', '/v1/smart-processes', { 'x-api-key': noCrm.secret }), 401, 'TOKEN_MISSING');
    expectError(await call('POST', '/v1/smart-processes', { 'x-api-key': readonly.secret }, { title: 'x' }), 401, 'TOKEN_MISSING');
  });

  it('/v1/me answers, and lists none of the portal routes the key cannot call now', async () => {
    const res = await call('GET', '/v1/me', { 'x-api-key': personal.secret });
    assert.equal(res.statusCode, 200, res.body);
    const routes = json(res).data.routes.map((r: { method: string; path: string }) => `${r.method} ${r.path}`);
    assert.ok(!routes.some((r: string) => r.includes('/v1/smart-processes')), JSON.stringify(routes));
    assert.ok(routes.includes('GET /v1/me'));
  });
});
