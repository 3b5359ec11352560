import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { openStore, type Store } from '../../src/store/store.js';
import { SecretBox } from '../../src/store/secret-box.js';
import { openTestStore, type TestStore } from '../helpers/test-store.js';
import { redisProblem, TEST_REDIS_URL } from '../helpers/services.js';
import { expectError } from '../helpers/expect.js';

/**
 * Issue 10: the authorize, consent, callback and poll requests may land on different
 * instances (the flow lives in the store), and a revoked session is refused by every
 * instance at once (the invalidation bus, Redis). Two servers on one store: on PostgreSQL
 * each with its own connection pool, on SQLite sharing the one open store.
 */

const PUBLIC = 'https://smartproc.example.com';
const REDIRECT = 'https://app.example.com/oauth/done';
const redisSkip = await redisProblem(TEST_REDIS_URL);

describe('user authorization across two instances', () => {
  let testStore: TestStore;
  let storeB: Store;
  let A: FastifyInstance;
  let B: FastifyInstance;
  let appKey: string;

  before(async () => {
    testStore = openTestStore();
    storeB = testStore.databaseUrl ? openStore({ databaseUrl: testStore.databaseUrl, dataDir: '.' }) : testStore.store;
    // Sessions stay cached for a minute: only the bus can make the other instance drop a revoked one early.
    const config: Config = { ...loadConfig({}), redisUrl: redisSkip ? null : TEST_REDIS_URL, publicUrl: PUBLIC, maxEventLoopDelayMs: 0 };
    const secretBox = new SecretBox(crypto.randomBytes(32));
    A = await buildApp({ config, store: testStore.store, logger: false, keyCacheTtlMs: 60_000, secretBox });
    B = await buildApp({ config, store: storeB, logger: false, keyCacheTtlMs: 60_000, secretBox });
    const portal = await A.services.portals.create({ name: 'Shared', timeZone: 'UTC' });
    appKey = (await A.services.keys.create({ kind: 'application', portalId: portal.id, scopes: ['crm'], redirectUris: [REDIRECT], requestsPerSecond: null }, null)).secret;
  });
  after(async () => {
    await A?.close();
    await B?.close();
    if (storeB && storeB !== testStore.store) await storeB.close();
    await testStore?.drop();
  });

  const qs = (params: Record<string, string>) => new URLSearchParams(params).toString();
  const consent = (on: FastifyInstance, form: Record<string, string>) => on.inject({ method: 'POST', url: '/oauth/sandbox', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(form).toString() });
  const me = (on: FastifyInstance, token: string) => on.inject({ method: 'GET', url: '/v1/me', headers: { 'x-api-key': appKey, authorization: `Bearer ${token}` } });

  it('authorize on A, consent page on B, approval on A, polls on B: one session, usable on both', async () => {
    const state = 'two-instances-state-0001';
    const start = await A.inject({ method: 'GET', url: `/v1/oauth/authorize?${qs({ app_key: appKey, state })}` });
    const flow = new URL(start.headers.location as string).searchParams.get('flow')!;
    const page = await B.inject({ method: 'GET', url: `/oauth/sandbox?flow=${flow}` });
    assert.equal(page.statusCode, 200);
    assert.equal((await B.inject({ method: 'GET', url: `/v1/oauth/poll?${qs({ app_key: appKey, state })}` })).json().status, 'pending');
    assert.equal((await consent(A, { flow, decision: 'approve', userId: '17', name: 'Two' })).statusCode, 303);
    const grant = (await B.inject({ method: 'GET', url: `/v1/oauth/poll?${qs({ app_key: appKey, state })}` })).json();
    assert.equal(grant.status, 'complete');
    expectError(await A.inject({ method: 'GET', url: `/v1/oauth/poll?${qs({ app_key: appKey, state })}` }), 400, 'INVALID_STATE');
    assert.equal((await me(A, grant.access_token)).json().data.session.user.id, 17);
    assert.equal((await me(B, grant.access_token)).json().data.session.user.id, 17);
  });

  it('a code issued on B is exchanged on A, once', async () => {
    const state = 'two-instances-state-0002';
    const start = await B.inject({ method: 'GET', url: `/v1/oauth/authorize?${qs({ app_key: appKey, state, redirect_uri: REDIRECT })}` });
    const flow = new URL(start.headers.location as string).searchParams.get('flow')!;
    const code = new URL((await consent(B, { flow, decision: 'approve', userId: '18' })).headers.location as string).searchParams.get('code')!;
    const body = JSON.stringify({ app_key: appKey, code, redirect_uri: REDIRECT });
    const exchange = (on: FastifyInstance) => on.inject({ method: 'POST', url: '/v1/oauth/token', headers: { 'content-type': 'application/json' }, payload: body });
    const [onA, onB] = await Promise.all([exchange(A), exchange(B)]);
    assert.deepEqual([onA.statusCode, onB.statusCode].sort(), [200, 400]);
  });

  it('a session revoked through B is refused by A at once, though A had it cached for a minute', { skip: redisSkip ? `needs Redis at ${TEST_REDIS_URL}: ${redisSkip}` : false }, async () => {
    const state = 'two-instances-state-0003';
    const start = await A.inject({ method: 'GET', url: `/v1/oauth/authorize?${qs({ app_key: appKey, state })}` });
    await consent(A, { flow: new URL(start.headers.location as string).searchParams.get('flow')!, decision: 'approve', userId: '19' });
    const token = (await A.inject({ method: 'GET', url: `/v1/oauth/poll?${qs({ app_key: appKey, state })}` })).json().access_token;
    assert.equal((await me(A, token)).statusCode, 200, 'A has the session cached');
    const revoked = await B.inject({ method: 'POST', url: '/v1/oauth/revoke', headers: { authorization: `Bearer ${token}` } });
    assert.equal(revoked.statusCode, 200);
    expectError(await me(B, token), 401, 'INVALID_SESSION');
    // The bus message crosses Redis to A's subscriber: allow it a moment, far below the minute A would keep it otherwise.
    const deadline = Date.now() + 1000;
    let status = (await me(A, token)).statusCode;
    while (status === 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      status = (await me(A, token)).statusCode;
    }
    assert.equal(status, 401);
  });
});
