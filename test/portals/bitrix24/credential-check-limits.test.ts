/**
 * The credential check of POST /v1/portals (and PATCH with a new credential) against a
 * portal over its limits: the error table's answer for limits (504 QUEUE_TIMEOUT with
 * retryAfter), never 422 "rejected the credentials"; nothing is saved.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../../helpers/app.js';
import { expectError } from '../../helpers/expect.js';
import { startFakeBitrix24 } from '../../fakes/bitrix24/fake-portal.js';

describe('bitrix24 credential check over the portal limits', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp({ portalKind: 'bitrix24', config: { bitrix24QueueTimeoutMs: 300 } });
  });
  after(() => t.close());
  const post = (payload: object) => t.app.inject({ method: 'POST', url: '/v1/portals', headers: { 'x-api-key': t.managementKey.secret }, payload });

  it('503 QUERY_LIMIT_EXCEEDED on the check call (bucket full): 504 QUEUE_TIMEOUT with retryAfter, not 422; nothing saved', async () => {
    const fake = await startFakeBitrix24({ users: [{ id: 1 }], limits: { burst: 50, perSecond: 2 } });
    try {
      const before = (await t.app.services.portals.list()).length;
      fake.inject.fillBucket();
      const error = expectError(await post({ kind: 'bitrix24', webhookUrl: fake.webhookUrl(1) }), 504, 'QUEUE_TIMEOUT');
      assert.ok(typeof error.retryAfter === 'number' && error.retryAfter > 0, JSON.stringify(error));
      assert.equal((await t.app.services.portals.list()).length, before, 'nothing saved');
    } finally {
      await fake.close();
    }
  });

  it('429 OPERATION_TIME_LIMIT on the check call: 504 QUEUE_TIMEOUT with retryAfter, not 422; nothing saved', async () => {
    const fake = await startFakeBitrix24({ users: [{ id: 1 }], limits: false });
    try {
      const before = (await t.app.services.portals.list()).length;
      fake.inject.exhaustOperating('scope');
      const error = expectError(await post({ kind: 'bitrix24', webhookUrl: fake.webhookUrl(1) }), 504, 'QUEUE_TIMEOUT');
      assert.ok(typeof error.retryAfter === 'number' && error.retryAfter > 0, JSON.stringify(error));
      assert.equal((await t.app.services.portals.list()).length, before, 'nothing saved');
    } finally {
      await fake.close();
    }
  });

  it('an OAuth check whose authorization server cannot be reached (a refresh was needed): 502 BITRIX_UNAVAILABLE, not 422 "refused"; nothing saved', async () => {
    const fake = await startFakeBitrix24({ users: [{ id: 1 }], limits: false });
    try {
      const before = (await t.app.services.portals.list()).length;
      const tokens = fake.oauth.issueTokens({ userId: 1 });
      const oauth = { clientId: fake.oauth.clientId, clientSecret: fake.oauth.clientSecret, clientEndpoint: tokens.client_endpoint, accessToken: tokens.access_token, refreshToken: tokens.refresh_token, expiresAt: Date.now() - 60_000, tokenUrl: 'http://127.0.0.1:1/oauth/token/' };
      fake.oauth.expireAccessTokens(); // the check call answers expired_token: a refresh is needed
      expectError(await post({ kind: 'bitrix24', oauth }), 502, 'BITRIX_UNAVAILABLE');
      assert.equal((await t.app.services.portals.list()).length, before, 'nothing saved');
    } finally {
      await fake.close();
    }
  });
});
