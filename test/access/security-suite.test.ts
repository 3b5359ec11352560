import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { expectError } from '../helpers/expect.js';
import {
  appHeaders, base62, createKeyViaApi, expectNoRateLimitHeaders, expectRateLimitHeaders, expectSuccess, mgmt, mintSession, send, setKeyExpiry, setSessionExpiry, sleep,
  type CreatedKey, type SendOptions,
} from './access-helpers.js';

/**
 * Contract §5: every portal route crossed with every row of the check-order table,
 * first failure wins; a refused write writes nothing.
 */

const ETID = 1050;
const GUARDED_TITLE = 'Guarded type';
const CREATED_ETID = 1090;

interface PortalRoute {
  method: InjectOptions['method'];
  path: string;
  url: string;
  body?: unknown;
  write: boolean;
}

const PORTAL_ROUTES: PortalRoute[] = [
  { method: 'GET', path: '/v1/smart-processes', url: '/v1/smart-processes', write: false },
  { method: 'POST', path: '/v1/smart-processes/search', url: '/v1/smart-processes/search', body: { filter: { title: GUARDED_TITLE } }, write: false },
  { method: 'GET', path: '/v1/smart-processes/fields', url: '/v1/smart-processes/fields', write: false },
  { method: 'GET', path: '/v1/smart-processes/:entityTypeId', url: `/v1/smart-processes/${ETID}`, write: false },
  { method: 'POST', path: '/v1/smart-processes', url: '/v1/smart-processes', body: { title: 'Created by the request', entityTypeId: CREATED_ETID }, write: true },
  { method: 'PATCH', path: '/v1/smart-processes/:entityTypeId', url: `/v1/smart-processes/${ETID}`, body: { title: 'Changed by the request', isStagesEnabled: true }, write: true },
  { method: 'DELETE', path: '/v1/smart-processes/:entityTypeId', url: `/v1/smart-processes/${ETID}`, write: true },
  { method: 'POST', path: '/v1/smart-processes/batch (get)', url: '/v1/smart-processes/batch', body: { action: 'get', items: [{ entityTypeId: ETID }] }, write: false },
  { method: 'POST', path: '/v1/smart-processes/batch (update)', url: '/v1/smart-processes/batch', body: { action: 'update', items: [{ entityTypeId: ETID, title: 'Changed by the request', isStagesEnabled: true }] }, write: true },
];
const READ_ROUTES = PORTAL_ROUTES.filter((r) => !r.write);
const WRITE_ROUTES = PORTAL_ROUTES.filter((r) => r.write);
const routeName = (r: PortalRoute) => `${r.method} ${r.path}`;

const callRoute = (t: TestApp, route: PortalRoute, options: SendOptions) => send(t, route.method, route.url, { body: route.body, ...options });

/** Everything a write to the portal could have changed, read with the test app's own key. */
async function snapshot(t: TestApp) {
  const list = await t.call('GET', '/v1/smart-processes?limit=5000');
  const card = await t.call('GET', `/v1/smart-processes/${ETID}`);
  const created = await t.call('GET', `/v1/smart-processes/${CREATED_ETID}`);
  return { list: list.body, card: card.body, createdStatus: created.statusCode };
}

/** Undoes what an allowed write did, so that every test starts from the guarded type alone. */
async function restore(t: TestApp) {
  await t.call('DELETE', `/v1/smart-processes/${CREATED_ETID}`);
  const card = await t.call('GET', `/v1/smart-processes/${ETID}`);
  if (card.statusCode === 404) {
    const created = await t.call('POST', '/v1/smart-processes', { title: GUARDED_TITLE, entityTypeId: ETID });
    assert.equal(created.statusCode, 201, created.body);
  } else {
    await t.call('PATCH', `/v1/smart-processes/${ETID}`, { title: GUARDED_TITLE, isStagesEnabled: false });
  }
}

/** Asserts the route lets this caller through (2xx), then undoes a write. */
async function expectAllowed(t: TestApp, route: PortalRoute, options: SendOptions) {
  const res = await callRoute(t, route, options);
  expectSuccess(res);
  if (route.write) await restore(t);
  return res;
}

interface Fixtures {
  deleted: CreatedKey;
  expired: CreatedKey;
  expiredFromIp: CreatedKey;
  ipv4: CreatedKey;
  ipv6: CreatedKey;
  cidr4: CreatedKey;
  cidr6: CreatedKey;
  management: CreatedKey;
  managementFromIp: CreatedKey;
  app: CreatedKey;
  appSession: string;
  app2: CreatedKey;
  app2Session: string;
  appExpiredSession: string;
  appNoCrm: CreatedKey;
  appNoCrmSession: string;
  appFromIp: CreatedKey;
  appFromIpSession: string;
  appReadonly: CreatedKey;
  appReadonlySession: string;
  noCrm: CreatedKey;
  readonly: CreatedKey;
  readonlyNoCrm: CreatedKey;
}

interface RefusalRow {
  condition: string;
  status: number;
  code: string;
  message?: RegExp;
  /** Only for writes (read-only rows). */
  writesOnly?: boolean;
  /** Each variant is one way of being in this row; every one must get the same answer. */
  variants: (fx: Fixtures) => SendOptions[];
}

const key = (k: CreatedKey | string, extra: Record<string, string> = {}): Record<string, string> => ({ 'x-api-key': typeof k === 'string' ? k : k.secret, ...extra });

const ROWS: RefusalRow[] = [
  {
    condition: 'no key at all (also: an empty X-Api-Key, an application key or a session as Bearer alone, another auth scheme)',
    status: 401, code: 'MISSING_API_KEY', message: /^The X-Api-Key header was not passed$/,
    variants: (fx): SendOptions[] => [
      {},
      { headers: { 'x-api-key': '' } },
      { headers: { authorization: `Bearer ${fx.app.secret}` } },
      { headers: { authorization: `Bearer ${fx.appSession}` } },
      { headers: { authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` } },
    ],
  },
  {
    condition: 'an unknown key (well formed, of each kind; also as Bearer)',
    status: 401, code: 'INVALID_API_KEY',
    variants: () => [
      { headers: key(`vibe_api_${base62()}`) },
      { headers: key(`vibe_app_${base62()}`) },
      { headers: key(`vibe_live_${base62()}`) },
      { headers: { authorization: `Bearer vibe_api_${base62()}` } },
    ],
  },
  {
    condition: 'a malformed key',
    status: 401, code: 'INVALID_API_KEY', message: /malformed/,
    variants: () => [
      { headers: key('not-a-key') },
      { headers: key('vibe_api_short') },
      { headers: key(`vibe_api_${base62(39)}!`) },
      { headers: key(`vibe_api_${'a'.repeat(200)}`) },
      { headers: key(`vibe_xyz_${base62()}`) },
      { headers: key(`vibe_session_${base62()}`) },
    ],
  },
  {
    condition: 'a deleted key (that the server had seen and cached)',
    status: 401, code: 'INVALID_API_KEY',
    variants: (fx) => [{ headers: key(fx.deleted) }],
  },
  {
    condition: 'an expired key',
    status: 401, code: 'INVALID_API_KEY', message: /^API key has expired$/,
    variants: (fx) => [{ headers: key(fx.expired) }],
  },
  {
    condition: 'an IPv4 caller outside allowedIps (single address)',
    status: 403, code: 'IP_NOT_ALLOWED',
    variants: (fx) => [
      { headers: key(fx.ipv4), remoteAddress: '198.51.100.1' },
      { headers: key(fx.ipv4), remoteAddress: '::ffff:198.51.100.1' },
      { headers: key(fx.ipv4), remoteAddress: '203.0.113.8' },
      { headers: key(fx.ipv4), remoteAddress: '2001:db8::1' },
    ],
  },
  {
    condition: 'an IPv6 caller outside allowedIps (single address)',
    status: 403, code: 'IP_NOT_ALLOWED',
    variants: (fx) => [
      { headers: key(fx.ipv6), remoteAddress: '2001:db8::2' },
      { headers: key(fx.ipv6), remoteAddress: '203.0.113.7' },
    ],
  },
  {
    condition: 'a caller outside an IPv4 or IPv6 CIDR of allowedIps',
    status: 403, code: 'IP_NOT_ALLOWED',
    variants: (fx) => [
      { headers: key(fx.cidr4), remoteAddress: '11.0.0.1' },
      { headers: key(fx.cidr4), remoteAddress: '9.255.255.255' },
      { headers: key(fx.cidr6), remoteAddress: '2001:db8:abce::1' },
      { headers: key(fx.cidr6), remoteAddress: '2001:db9::1' },
    ],
  },
  {
    condition: 'a management key on a portal route (also as Bearer)',
    status: 403, code: 'MANAGEMENT_KEY_NO_ENTITY_ACCESS',
    variants: (fx) => [{ headers: key(fx.management) }, { headers: { authorization: `Bearer ${fx.management.secret}` } }],
  },
  {
    condition: 'an application key without a session',
    status: 401, code: 'TOKEN_MISSING',
    variants: (fx) => [{ headers: key(fx.app) }, { headers: key(fx.app, { authorization: 'Bearer' }) }],
  },
  {
    condition: 'an application key with a malformed or unknown session',
    status: 401, code: 'INVALID_SESSION',
    variants: (fx) => [
      { headers: appHeaders(fx.app.secret, 'garbage') },
      { headers: appHeaders(fx.app.secret, 'vibe_session_short') },
      { headers: appHeaders(fx.app.secret, fx.app.secret) },
      { headers: appHeaders(fx.app.secret, `vibe_session_${base62()}`) },
    ],
  },
  {
    condition: 'an application key with an expired session',
    status: 401, code: 'TOKEN_EXPIRED',
    variants: (fx) => [{ headers: appHeaders(fx.app.secret, fx.appExpiredSession) }],
  },
  {
    condition: 'an application key with the session of another application key',
    status: 403, code: 'SESSION_APP_MISMATCH',
    variants: (fx) => [{ headers: appHeaders(fx.app.secret, fx.app2Session) }, { headers: appHeaders(fx.app2.secret, fx.appSession) }],
  },
  {
    condition: 'a key without the crm scope (personal, or application with a valid session)',
    status: 403, code: 'SCOPE_DENIED', message: /crm/,
    variants: (fx) => [{ headers: key(fx.noCrm) }, { headers: appHeaders(fx.appNoCrm.secret, fx.appNoCrmSession) }],
  },
  {
    condition: 'a READONLY key writing (personal, or application with a valid session)',
    status: 403, code: 'WRITE_BLOCKED_READONLY_KEY', writesOnly: true,
    variants: (fx) => [{ headers: key(fx.readonly) }, { headers: appHeaders(fx.appReadonly.secret, fx.appReadonlySession) }],
  },
  // Combinations: the earlier row wins.
  {
    condition: 'an expired key from a disallowed IP (row 2 before row 3)',
    status: 401, code: 'INVALID_API_KEY', message: /expired/,
    variants: (fx) => [{ headers: key(fx.expiredFromIp), remoteAddress: '198.51.100.1' }],
  },
  {
    condition: 'a deleted or unknown key from any IP (row 2 before row 3)',
    status: 401, code: 'INVALID_API_KEY',
    variants: (fx) => [{ headers: key(fx.deleted), remoteAddress: '198.51.100.1' }, { headers: key(`vibe_api_${base62()}`), remoteAddress: '2001:db8::99' }],
  },
  {
    condition: 'a management key from a disallowed IP (row 3 before row 4)',
    status: 403, code: 'IP_NOT_ALLOWED',
    variants: (fx) => [{ headers: key(fx.managementFromIp), remoteAddress: '198.51.100.1' }],
  },
  {
    condition: 'an application key without a session, or with a foreign one, from a disallowed IP (row 3 before row 5)',
    status: 403, code: 'IP_NOT_ALLOWED',
    variants: (fx) => [{ headers: key(fx.appFromIp), remoteAddress: '198.51.100.1' }, { headers: appHeaders(fx.appFromIp.secret, fx.app2Session), remoteAddress: '198.51.100.1' }],
  },
  {
    condition: 'a management key with an application session (row 4 before row 5)',
    status: 403, code: 'MANAGEMENT_KEY_NO_ENTITY_ACCESS',
    variants: (fx) => [{ headers: appHeaders(fx.management.secret, fx.appSession) }],
  },
  {
    condition: 'an application key without a session and without the crm scope (row 5 before row 7)',
    status: 401, code: 'TOKEN_MISSING',
    variants: (fx) => [{ headers: key(fx.appNoCrm) }],
  },
  {
    condition: 'an application key without crm and with an unknown session (row 5 before row 7)',
    status: 401, code: 'INVALID_SESSION',
    variants: (fx) => [{ headers: appHeaders(fx.appNoCrm.secret, `vibe_session_${base62()}`) }],
  },
  {
    condition: 'a READONLY key without the crm scope writing (row 7 before row 8)',
    status: 403, code: 'SCOPE_DENIED', message: /crm/, writesOnly: true,
    variants: (fx) => [{ headers: key(fx.readonlyNoCrm) }],
  },
];

describe('Access to the portal routes (contract §5, check order)', () => {
  let t: TestApp;
  const fx = {} as Fixtures;
  const expiredAt = () => Date.now() - 60_000;

  before(async () => {
    t = await createTestApp();
    const created = await t.call('POST', '/v1/smart-processes', { title: GUARDED_TITLE, entityTypeId: ETID });
    assert.equal(created.statusCode, 201, created.body);
    const portalId = t.portal.id;
    const personal = (extra: Record<string, unknown> = {}) => createKeyViaApi(t, { kind: 'personal', portalId, scopes: ['crm'], userId: 7, ...extra });
    const application = (extra: Record<string, unknown> = {}) => createKeyViaApi(t, { kind: 'application', portalId, scopes: ['crm'], ...extra });

    fx.deleted = await personal({ name: 'soon deleted' });
    expectSuccess(await send(t, 'GET', '/v1/smart-processes/fields', { headers: key(fx.deleted) }));
    expectSuccess(await mgmt(t, 'DELETE', `/v1/keys/${fx.deleted.id}`), 204);

    fx.expired = await personal({ name: 'expired' });
    await setKeyExpiry(t, fx.expired.id, expiredAt());
    fx.expiredFromIp = await personal({ name: 'expired, with allowedIps', allowedIps: ['203.0.113.7'] });
    await setKeyExpiry(t, fx.expiredFromIp.id, expiredAt());

    fx.ipv4 = await personal({ allowedIps: ['203.0.113.7'] });
    fx.ipv6 = await personal({ allowedIps: ['2001:db8::1'] });
    fx.cidr4 = await personal({ allowedIps: ['10.0.0.0/8'] });
    fx.cidr6 = await personal({ allowedIps: ['2001:db8:abcd::/48'] });

    fx.management = await createKeyViaApi(t, { kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] });
    fx.managementFromIp = await createKeyViaApi(t, { kind: 'management', scopes: ['vibe:mgmt:keys'], allowedIps: ['203.0.113.7'] });

    fx.app = await application({ name: 'app one' });
    fx.appSession = (await mintSession(t, fx.app.id, 42)).token;
    fx.app2 = await application({ name: 'app two' });
    fx.app2Session = (await mintSession(t, fx.app2.id, 43)).token;
    const expiring = await mintSession(t, fx.app.id, 44);
    await setSessionExpiry(t, expiring.data.id, expiredAt());
    fx.appExpiredSession = expiring.token;
    fx.appNoCrm = await application({ scopes: ['task'] });
    fx.appNoCrmSession = (await mintSession(t, fx.appNoCrm.id, 42)).token;
    fx.appFromIp = await application({ allowedIps: ['203.0.113.7'] });
    fx.appFromIpSession = (await mintSession(t, fx.appFromIp.id, 46)).token;
    fx.appReadonly = await application({ accessMode: 'READONLY' });
    fx.appReadonlySession = (await mintSession(t, fx.appReadonly.id, 42)).token;

    fx.noCrm = await personal({ scopes: ['task', 'user'] });
    fx.readonly = await personal({ accessMode: 'READONLY' });
    fx.readonlyNoCrm = await personal({ accessMode: 'READONLY', scopes: ['task'] });
  });
  after(() => t.close());

  for (const row of ROWS) {
    describe(`${row.status} ${row.code} for ${row.condition}`, () => {
      for (const route of row.writesOnly ? WRITE_ROUTES : PORTAL_ROUTES) {
        it(`${routeName(route)} is refused${route.write ? ' and writes nothing' : ''}`, async () => {
          for (const variant of row.variants(fx)) {
            const before = await snapshot(t);
            const res = await callRoute(t, route, variant);
            const error = expectError(res, row.status, row.code);
            if (row.message) assert.match(error.message, row.message);
            assert.deepEqual(await snapshot(t), before, 'a refused request changes nothing');
          }
        });
      }
    });
  }

  describe('the same callers are let through once the condition is lifted (the refusals above are caused by the condition)', () => {
    const controls: { caller: string; options: (fx: Fixtures) => SendOptions[]; readsOnly?: boolean }[] = [
      { caller: 'a personal key with crm', options: () => [{ headers: key(t.key.secret) }] },
      { caller: 'a personal key sent as Authorization: Bearer without X-Api-Key', options: () => [{ headers: { authorization: `Bearer ${t.key.secret}` } }] },
      { caller: 'X-Api-Key, which wins over a Bearer key', options: () => [{ headers: key(t.key.secret, { authorization: `Bearer vibe_api_${base62()}` }) }] },
      { caller: 'application keys with their own sessions', options: (f) => [{ headers: appHeaders(f.app.secret, f.appSession) }, { headers: appHeaders(f.app2.secret, f.app2Session) }] },
      {
        caller: 'keys with allowedIps, from allowed addresses (IPv4, IPv4-mapped IPv6, IPv6, CIDRs)',
        options: (f) => [
          { headers: key(f.ipv4), remoteAddress: '203.0.113.7' },
          { headers: key(f.ipv4), remoteAddress: '::ffff:203.0.113.7' },
          { headers: key(f.ipv6), remoteAddress: '2001:db8::1' },
          { headers: key(f.ipv6), remoteAddress: '2001:0db8:0000::0001' },
          { headers: key(f.cidr4), remoteAddress: '10.200.3.4' },
          { headers: key(f.cidr6), remoteAddress: '2001:db8:abcd:12::9' },
          { headers: appHeaders(f.appFromIp.secret, f.appFromIpSession), remoteAddress: '203.0.113.7' },
        ],
      },
      { caller: 'READONLY keys reading (POST /search included)', options: (f) => [{ headers: key(f.readonly) }, { headers: appHeaders(f.appReadonly.secret, f.appReadonlySession) }], readsOnly: true },
    ];
    for (const control of controls) {
      it(`${control.caller}: every ${control.readsOnly ? 'read ' : ''}route answers 2xx`, async () => {
        for (const options of control.options(fx)) {
          for (const route of control.readsOnly ? READ_ROUTES : PORTAL_ROUTES) await expectAllowed(t, route, options);
        }
      });
    }
  });

  it('a key that expires while cached is refused from its expiry on', async () => {
    const soon = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['crm'], expiresAt: new Date(Date.now() + 1500).toISOString() });
    expectSuccess(await send(t, 'GET', '/v1/smart-processes', { headers: key(soon) }), 200);
    await sleep(1700);
    const error = expectError(await send(t, 'GET', '/v1/smart-processes', { headers: key(soon) }), 401, 'INVALID_API_KEY');
    assert.equal(error.message, 'API key has expired');
  });

  it('a session that expires while cached is refused with TOKEN_EXPIRED', async () => {
    const session = await mintSession(t, fx.app.id, 45);
    expectSuccess(await send(t, 'GET', '/v1/smart-processes', { headers: appHeaders(fx.app.secret, session.token) }), 200);
    await setSessionExpiry(t, session.data.id, Date.now() - 1);
    await sleep(1100); // the session cache lives at most 1 s
    expectError(await send(t, 'GET', '/v1/smart-processes', { headers: appHeaders(fx.app.secret, session.token) }), 401, 'TOKEN_EXPIRED');
  });
});

describe('Rate limits (row 9) and the X-RateLimit headers', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: GUARDED_TITLE, entityTypeId: ETID })).statusCode, 201);
  });
  after(() => t.close());

  const limited = (requestsPerSecond: number, extra: Record<string, unknown> = {}) =>
    createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['crm'], requestsPerSecond, ...extra });

  /** Calls GET /v1/me (any valid key, counted) until the key is refused with 429; returns that answer. */
  async function exhaust(headers: Record<string, string>, limit: number): Promise<LightMyRequestResponse> {
    for (let i = 0; i < limit * 4 + 4; i++) {
      const res = await send(t, 'GET', '/v1/me', { headers });
      if (res.statusCode === 429) return res;
      expectSuccess(res, 200);
      expectRateLimitHeaders(res, limit);
    }
    assert.fail('the key was never rate limited');
  }

  for (const route of PORTAL_ROUTES) {
    it(`${routeName(route)} over requestsPerSecond is 429 RATE_LIMITED with retryAfter, Retry-After and the X-RateLimit headers${route.write ? ', and writes nothing' : ''}`, async () => {
      const headers = key(await limited(2));
      for (let attempt = 0; attempt < 5; attempt++) {
        const before = await snapshot(t);
        await exhaust(headers, 2);
        const res = await callRoute(t, route, { headers });
        if (res.statusCode !== 429) {
          // The 1-second window ended between the exhaustion and this request: undo and try again.
          expectSuccess(res);
          await restore(t);
          continue;
        }
        const error = expectError(res, 429, 'RATE_LIMITED');
        assert.ok(Number.isInteger(error.retryAfter) && error.retryAfter! >= 1 && error.retryAfter! <= 2, `retryAfter ${error.retryAfter}`);
        assert.equal(res.headers['retry-after'], String(error.retryAfter));
        assert.equal(expectRateLimitHeaders(res, 2).remaining, 0);
        assert.deepEqual(await snapshot(t), before, 'a rate-limited request changes nothing');
        return;
      }
      assert.fail('could not get a 429 within the same window in 5 attempts');
    });
  }

  it('every answer of a limited key carries the X-RateLimit headers: successes on every route, and 400, 404, 405 and 422 after the access checks', async () => {
    const headers = key(await limited(1000));
    for (const route of PORTAL_ROUTES) expectRateLimitHeaders(await expectAllowed(t, route, { headers }), 1000);
    const afterAccess: [LightMyRequestResponse, number, string][] = [
      [await send(t, 'GET', '/v1/smart-processes/99999', { headers }), 404, 'SMART_PROCESS_NOT_FOUND'],
      [await send(t, 'GET', '/v1/smart-processes/abc', { headers }), 400, 'VALIDATION_ERROR'],
      [await send(t, 'PATCH', `/v1/smart-processes/${ETID}`, { headers, body: { isStageEnabled: true } }), 400, 'VALIDATION_ERROR'],
      [await send(t, 'GET', '/v1/smart-processes/search', { headers }), 405, 'METHOD_NOT_ALLOWED'],
      [await send(t, 'POST', '/v1/smart-processes', { headers, body: { title: 'Out of range', entityTypeId: 5 } }), 422, 'BITRIX_ERROR'],
    ];
    for (const [res, status, code] of afterAccess) {
      expectError(res, status, code);
      expectRateLimitHeaders(res, 1000);
    }
    expectRateLimitHeaders(await send(t, 'GET', '/v1/me', { headers }), 1000);
  });

  it('X-RateLimit-Remaining counts down within a window, and the count is per key', async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const headers = key(await limited(3));
      const remaining: number[] = [];
      for (let i = 0; i < 3; i++) remaining.push(expectRateLimitHeaders(await send(t, 'GET', '/v1/smart-processes/fields', { headers }), 3).remaining);
      const refused = await send(t, 'GET', '/v1/smart-processes/fields', { headers });
      if (refused.statusCode !== 429) continue; // a window boundary fell inside: try with a fresh key
      assert.deepEqual(remaining, [2, 1, 0]);
      expectError(refused, 429, 'RATE_LIMITED');
      const other = await limited(3);
      const res = await send(t, 'GET', '/v1/smart-processes/fields', { headers: key(other) });
      assert.equal(res.statusCode, 200, 'another key with the same limit is not affected');
      assert.equal(expectRateLimitHeaders(res, 3).remaining, 2);
      return;
    }
    assert.fail('could not stay within one window in 5 attempts');
  });

  it('a HEAD request is checked once: it counts once against the limit, like its GET', async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const headers = key(await limited(3));
      const head = await t.app.inject({ method: 'HEAD', url: '/v1/smart-processes', headers });
      const get = await send(t, 'GET', '/v1/smart-processes', { headers });
      const [first, second] = [expectRateLimitHeaders(head, 3).remaining, expectRateLimitHeaders(get, 3).remaining];
      if (second > first) continue; // a window boundary fell between them: try with a fresh key
      assert.deepEqual([head.statusCode, first, second], [200, 2, 1]);
      return;
    }
    assert.fail('could not stay within one window in 5 attempts');
  });

  it('the limit applies again in the next window', async () => {
    const headers = key(await limited(1));
    await exhaust(headers, 1);
    await sleep(1100);
    expectSuccess(await send(t, 'GET', '/v1/smart-processes', { headers }), 200);
  });

  it('a key created without requestsPerSecond is limited to 10 per second', async () => {
    const res = await mgmt(t, 'POST', '/v1/keys', { kind: 'personal', portalId: t.portal.id, scopes: ['crm'] });
    assert.equal(res.statusCode, 201);
    assert.equal(json(res).data.requestsPerSecond, 10);
    const headers = key(json(res).data.secret);
    expectRateLimitHeaders(await send(t, 'GET', '/v1/smart-processes/fields', { headers }), 10);
    await exhaust(headers, 10);
  });

  it('a key without a limit gets no X-RateLimit headers on any answer, however many requests it sends', async () => {
    const headers = key(t.key.secret);
    for (let i = 0; i < 40; i++) {
      const res = await send(t, 'GET', '/v1/smart-processes/fields', { headers });
      assert.equal(res.statusCode, 200);
      expectNoRateLimitHeaders(res);
    }
    for (const route of PORTAL_ROUTES) expectNoRateLimitHeaders(await expectAllowed(t, route, { headers }));
    expectNoRateLimitHeaders(expectErrorRes(await send(t, 'GET', '/v1/smart-processes/99999', { headers }), 404, 'SMART_PROCESS_NOT_FOUND'));
    expectNoRateLimitHeaders(expectErrorRes(await send(t, 'PATCH', `/v1/smart-processes/${ETID}`, { headers, body: { bogus: 1 } }), 400, 'VALIDATION_ERROR'));
    expectNoRateLimitHeaders(await send(t, 'GET', '/v1/me', { headers }));
  });

  it('refusals before the limiter do not count against it', async () => {
    const headers = key(await limited(2, { accessMode: 'READONLY' }));
    for (let i = 0; i < 5; i++) expectError(await send(t, 'DELETE', `/v1/smart-processes/${ETID}`, { headers }), 403, 'WRITE_BLOCKED_READONLY_KEY');
    const first = await send(t, 'GET', '/v1/smart-processes', { headers });
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(expectRateLimitHeaders(first, 2).remaining, 1);
  });

  it('a READONLY key over its limit writing is WRITE_BLOCKED_READONLY_KEY, not RATE_LIMITED (row 8 before row 9)', async () => {
    const headers = key(await limited(1, { accessMode: 'READONLY' }));
    for (let attempt = 0; attempt < 5; attempt++) {
      const before = await snapshot(t);
      await exhaust(headers, 1);
      for (const route of WRITE_ROUTES) expectError(await callRoute(t, route, { headers }), 403, 'WRITE_BLOCKED_READONLY_KEY');
      // Still refused for the rate: the writes above were all made while the key was over its limit.
      if ((await send(t, 'GET', '/v1/me', { headers })).statusCode === 429) {
        assert.deepEqual(await snapshot(t), before);
        return;
      }
    }
    assert.fail('could not stay within one window in 5 attempts');
  });

  it('a key without the crm scope over its limit is SCOPE_DENIED, not RATE_LIMITED (row 7 before row 9)', async () => {
    const headers = key(await limited(1, { scopes: ['task'] }));
    for (let attempt = 0; attempt < 5; attempt++) {
      await exhaust(headers, 1);
      for (const route of PORTAL_ROUTES) expectError(await callRoute(t, route, { headers }), 403, 'SCOPE_DENIED');
      if ((await send(t, 'GET', '/v1/me', { headers })).statusCode === 429) return;
    }
    assert.fail('could not stay within one window in 5 attempts');
  });

  it('an application key over its limit with a bad session is INVALID_SESSION, not RATE_LIMITED (row 5 before row 9)', async () => {
    const app = await createKeyViaApi(t, { kind: 'application', portalId: t.portal.id, scopes: ['crm'], requestsPerSecond: 1 });
    const session = (await mintSession(t, app.id, 5)).token;
    const headers = appHeaders(app.secret, session);
    for (let attempt = 0; attempt < 5; attempt++) {
      await exhaust(headers, 1);
      expectError(await send(t, 'GET', '/v1/smart-processes', { headers: appHeaders(app.secret, `vibe_session_${base62()}`) }), 401, 'INVALID_SESSION');
      if ((await send(t, 'GET', '/v1/me', { headers })).statusCode === 429) return;
    }
    assert.fail('could not stay within one window in 5 attempts');
  });
});

function expectErrorRes(res: LightMyRequestResponse, status: number, code: string): LightMyRequestResponse {
  expectError(res, status, code);
  return res;
}

describe("A key never sees another portal's data", () => {
  let t: TestApp;
  let other: CreatedKey;
  let otherApp: CreatedKey;
  let otherSession: string;
  before(async () => {
    t = await createTestApp();
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Portal A type', entityTypeId: ETID, code: 'a_type' })).statusCode, 201);
    const portalB = await t.createPortal();
    other = await createKeyViaApi(t, { kind: 'personal', portalId: portalB.id, scopes: ['crm'] });
    otherApp = await createKeyViaApi(t, { kind: 'application', portalId: portalB.id, scopes: ['crm'] });
    otherSession = (await mintSession(t, otherApp.id, 3)).token;
  });
  after(() => t.close());

  const callersOfB = () => [{ headers: key(other) }, { headers: appHeaders(otherApp.secret, otherSession) }];
  const portalA = () => t.call('GET', `/v1/smart-processes/${ETID}`);

  it('GET, PATCH and DELETE of a type of portal A with a key of portal B are 404, exactly as for an id that does not exist, and change nothing', async () => {
    const before = (await portalA()).body;
    for (const options of callersOfB()) {
      for (const [method, body] of [['GET', undefined], ['PATCH', { title: 'Hijacked' }], ['DELETE', undefined]] as const) {
        const res = await send(t, method, `/v1/smart-processes/${ETID}`, { ...options, body });
        const error = expectError(res, 404, 'SMART_PROCESS_NOT_FOUND');
        assert.equal(error.message, `Smart process with entityTypeId=${ETID} not found`);
        const unknown = expectError(await send(t, method, '/v1/smart-processes/1998', { ...options, body }), 404, 'SMART_PROCESS_NOT_FOUND');
        assert.deepEqual(Object.keys(error).sort(), Object.keys(unknown).sort(), 'the same shape as for a type that does not exist');
        assert.equal(error.hint, unknown.hint);
      }
    }
    assert.equal((await portalA()).body, before);
  });

  it("the list and the search of portal B do not show portal A's types", async () => {
    for (const options of callersOfB()) {
      const list = json(await send(t, 'GET', '/v1/smart-processes', options));
      assert.deepEqual(list.data, []);
      assert.equal(list.meta.total, 0);
      const filtered = json(await send(t, 'GET', `/v1/smart-processes?filter[entityTypeId]=${ETID}`, options));
      assert.equal(filtered.meta.total, 0);
      const search = json(await send(t, 'POST', '/v1/smart-processes/search', { ...options, body: { filter: { title: 'Portal A type' } } }));
      assert.equal(search.meta.total, 0);
    }
    assert.equal(json(await t.call('GET', '/v1/smart-processes')).meta.total, 1, 'portal A does see its type');
  });

  it('portal B may use the same entityTypeId and code for its own type; each key sees only its own', async () => {
    const created = await send(t, 'POST', '/v1/smart-processes', { headers: key(other), body: { title: 'Portal B type', entityTypeId: ETID, code: 'a_type' } });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(json(await send(t, 'GET', `/v1/smart-processes/${ETID}`, { headers: key(other) })).data.title, 'Portal B type');
    assert.equal(json(await portalA()).data.title, 'Portal A type');
    expectSuccess(await send(t, 'DELETE', `/v1/smart-processes/${ETID}`, { headers: key(other) }), 204);
    assert.equal(json(await portalA()).data.title, 'Portal A type', "deleting B's type leaves A's");
  });
});

describe('Access to the management routes (/v1/keys, /v1/portals, /v1/sessions)', () => {
  let t: TestApp;
  const ids = { victimKey: '', victimPortal: 0, appKey: '' };
  const k = {} as Record<'app' | 'readonlyMgmt' | 'readonlyMgmtKeysOnly' | 'keysOnly' | 'portalsOnly' | 'noScopes' | 'expiredMgmt' | 'mgmtFromIp' | 'readonlyPersonal', CreatedKey>;
  let appSession = '';

  interface MgmtRoute { method: InjectOptions['method']; path: string; scope: 'vibe:mgmt:keys' | 'vibe:mgmt:portals'; write: boolean; url: () => string; body?: () => unknown }
  const MGMT_ROUTES: MgmtRoute[] = [
    { method: 'GET', path: '/v1/keys', scope: 'vibe:mgmt:keys', write: false, url: () => '/v1/keys' },
    { method: 'POST', path: '/v1/keys', scope: 'vibe:mgmt:keys', write: true, url: () => '/v1/keys', body: () => ({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'] }) },
    { method: 'GET', path: '/v1/keys/:id', scope: 'vibe:mgmt:keys', write: false, url: () => `/v1/keys/${ids.victimKey}` },
    { method: 'PATCH', path: '/v1/keys/:id', scope: 'vibe:mgmt:keys', write: true, url: () => `/v1/keys/${ids.victimKey}`, body: () => ({ name: 'renamed', scopes: ['crm', 'task'] }) },
    { method: 'DELETE', path: '/v1/keys/:id', scope: 'vibe:mgmt:keys', write: true, url: () => `/v1/keys/${ids.victimKey}` },
    { method: 'POST', path: '/v1/keys/:id/rotate', scope: 'vibe:mgmt:keys', write: true, url: () => `/v1/keys/${ids.victimKey}/rotate`, body: () => ({}) },
    { method: 'GET', path: '/v1/portals', scope: 'vibe:mgmt:portals', write: false, url: () => '/v1/portals' },
    { method: 'POST', path: '/v1/portals', scope: 'vibe:mgmt:portals', write: true, url: () => '/v1/portals', body: () => ({ name: 'Created by the request' }) },
    { method: 'GET', path: '/v1/portals/:id', scope: 'vibe:mgmt:portals', write: false, url: () => `/v1/portals/${ids.victimPortal}` },
    { method: 'PATCH', path: '/v1/portals/:id', scope: 'vibe:mgmt:portals', write: true, url: () => `/v1/portals/${ids.victimPortal}`, body: () => ({ name: 'renamed', timeZone: 'Asia/Tokyo' }) },
    { method: 'DELETE', path: '/v1/portals/:id', scope: 'vibe:mgmt:portals', write: true, url: () => `/v1/portals/${ids.victimPortal}?force=true` },
    { method: 'POST', path: '/v1/sessions', scope: 'vibe:mgmt:keys', write: true, url: () => '/v1/sessions', body: () => ({ keyId: ids.appKey, userId: 5 }) },
  ];
  const call = (route: MgmtRoute, options: SendOptions) => send(t, route.method, route.url(), { body: route.body?.(), ...options });

  /** Everything a management write could have changed. */
  async function mgmtSnapshot() {
    const db = t.app.services.store.db;
    const count = async (table: 'sessions' | 'key_secrets' | 'api_keys' | 'portals') => Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    return {
      keys: (await mgmt(t, 'GET', '/v1/keys')).body,
      portals: (await mgmt(t, 'GET', '/v1/portals')).body,
      sessions: await count('sessions'),
      secrets: await count('key_secrets'),
    };
  }

  before(async () => {
    t = await createTestApp();
    const victimPortal = await t.createPortal();
    ids.victimPortal = victimPortal.id;
    ids.victimKey = (await createKeyViaApi(t, { kind: 'personal', portalId: victimPortal.id, scopes: ['crm'] })).id;
    k.app = await createKeyViaApi(t, { kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
    ids.appKey = k.app.id;
    appSession = (await mintSession(t, k.app.id, 9)).token;
    const management = (extra: Record<string, unknown>) => createKeyViaApi(t, { kind: 'management', ...extra });
    k.readonlyMgmt = await management({ scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'], accessMode: 'READONLY' });
    k.readonlyMgmtKeysOnly = await management({ scopes: ['vibe:mgmt:keys'], accessMode: 'READONLY' });
    k.keysOnly = await management({ scopes: ['vibe:mgmt:keys'] });
    k.portalsOnly = await management({ scopes: ['vibe:mgmt:portals'] });
    k.noScopes = await management({ scopes: [] });
    k.expiredMgmt = await management({ scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] });
    await setKeyExpiry(t, k.expiredMgmt.id, Date.now() - 1000);
    k.mgmtFromIp = await management({ scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'], allowedIps: ['203.0.113.0/24'] });
    k.readonlyPersonal = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['crm'], accessMode: 'READONLY' });
  });
  after(() => t.close());

  const mgmtRows: { condition: string; status: number; code: string; message?: RegExp; applies: (r: MgmtRoute) => boolean; variants: () => SendOptions[] }[] = [
    { condition: 'no key', status: 401, code: 'MISSING_API_KEY', applies: () => true, variants: (): SendOptions[] => [{}, { headers: { authorization: `Bearer ${k.app.secret}` } }] },
    { condition: 'an unknown or expired key', status: 401, code: 'INVALID_API_KEY', applies: () => true, variants: () => [{ headers: key(`vibe_live_${base62()}`) }, { headers: key(k.expiredMgmt) }] },
    { condition: 'a management key from a disallowed IP', status: 403, code: 'IP_NOT_ALLOWED', applies: () => true, variants: () => [{ headers: key(k.mgmtFromIp), remoteAddress: '198.51.100.1' }] },
    {
      condition: 'a personal key (also READONLY, also as Bearer) or an application key with its session',
      status: 403, code: 'MANAGEMENT_SCOPE_REQUIRED', applies: () => true,
      variants: () => [{ headers: key(t.key.secret) }, { headers: { authorization: `Bearer ${t.key.secret}` } }, { headers: key(k.readonlyPersonal) }, { headers: appHeaders(k.app.secret, appSession) }],
    },
    { condition: 'a management key without any scope', status: 403, code: 'MANAGEMENT_SCOPE_REQUIRED', applies: () => true, variants: () => [{ headers: key(k.noScopes) }] },
    {
      condition: 'a management key with vibe:mgmt:portals only, on a route that needs vibe:mgmt:keys',
      status: 403, code: 'MANAGEMENT_SCOPE_REQUIRED', message: /vibe:mgmt:keys/, applies: (r) => r.scope === 'vibe:mgmt:keys',
      variants: () => [{ headers: key(k.portalsOnly) }],
    },
    {
      condition: 'a management key with vibe:mgmt:keys only (also READONLY), on a route that needs vibe:mgmt:portals',
      status: 403, code: 'MANAGEMENT_SCOPE_REQUIRED', message: /vibe:mgmt:portals/, applies: (r) => r.scope === 'vibe:mgmt:portals',
      variants: () => [{ headers: key(k.keysOnly) }, { headers: key(k.readonlyMgmtKeysOnly) }],
    },
    { condition: 'a READONLY management key writing', status: 403, code: 'WRITE_BLOCKED_READONLY_KEY', applies: (r) => r.write, variants: () => [{ headers: key(k.readonlyMgmt) }] },
  ];

  for (const row of mgmtRows) {
    describe(`${row.status} ${row.code} for ${row.condition}`, () => {
      for (const route of MGMT_ROUTES.filter(row.applies)) {
        it(`${route.method} ${route.path} is refused${route.write ? ' and writes nothing' : ''}`, async () => {
          for (const variant of row.variants()) {
            const before = await mgmtSnapshot();
            const error = expectError(await call(route, variant), row.status, row.code);
            if (row.message) assert.match(error.message, row.message);
            assert.deepEqual(await mgmtSnapshot(), before, 'a refused request changes nothing');
          }
        });
      }
    });
  }

  it('READONLY management keys read; scoped management keys read and write on the routes of their scope', async () => {
    for (const route of MGMT_ROUTES.filter((r) => !r.write)) {
      expectSuccess(await call(route, { headers: key(k.readonlyMgmt) }), 200);
      expectSuccess(await call(route, { headers: key(route.scope === 'vibe:mgmt:keys' ? k.keysOnly : k.portalsOnly) }), 200);
      expectSuccess(await call(route, { headers: key(k.mgmtFromIp), remoteAddress: '203.0.113.200' }), 200);
    }
    expectSuccess(await send(t, 'POST', '/v1/keys', { headers: key(k.keysOnly), body: { kind: 'personal', portalId: t.portal.id, scopes: ['crm'] } }), 201);
    expectSuccess(await send(t, 'POST', '/v1/sessions', { headers: key(k.keysOnly), body: { keyId: ids.appKey, userId: 5 } }), 201);
    expectSuccess(await send(t, 'POST', '/v1/portals', { headers: key(k.portalsOnly), body: { name: 'By the portals-only key' } }), 201);
    expectSuccess(await send(t, 'PATCH', `/v1/portals/${ids.victimPortal}`, { headers: { authorization: `Bearer ${k.portalsOnly.secret}` }, body: { name: 'Renamed through Bearer' } }), 200);
  });
});
