/**
 * OAuth refreshes of one credential inside one process (no Redis): the token manager is
 * one per credential per process and survives the Portal object being rebuilt (every
 * write publishes the portal and the registry builds a new object).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../../helpers/app.js';

const mgmt = (t: TestApp) => ({ 'x-api-key': t.managementKey.secret });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function oauthPortal(t: TestApp) {
  const fake = t.fake!;
  const tokens = fake.oauth.issueTokens({ userId: 7 });
  const oauth = { clientId: fake.oauth.clientId, clientSecret: fake.oauth.clientSecret, clientEndpoint: tokens.client_endpoint, accessToken: tokens.access_token, refreshToken: tokens.refresh_token, expiresAt: tokens.expires, tokenUrl: fake.oauth.tokenUrl };
  const res = await t.app.inject({ method: 'PATCH', url: `/v1/portals/${t.portal.id}`, headers: mgmt(t), payload: { oauth } });
  assert.equal(res.statusCode, 200, res.body);
  return oauth;
}

describe('bitrix24 OAuth refresh in one process', () => {
  it('tokens expired, a write rebuilds the Portal object while a refresh is running, then more requests: exactly one call at the token endpoint; all succeed', async () => {
    const t = await createTestApp({ portalKind: 'bitrix24' });
    try {
      await oauthPortal(t);
      assert.equal((await t.call('GET', '/v1/smart-processes/9990')).statusCode, 404);
      t.fake!.oauth.expireAccessTokens();
      t.fake!.inject.latency('oauth.token', 400, 1);
      const before = t.fake!.stats.tokenRequests;
      const first = t.call('GET', '/v1/smart-processes/9992'); // on the old Portal object: expired_token, refresh (slow)
      await sleep(150);
      const patch = await t.app.inject({ method: 'PATCH', url: `/v1/portals/${t.portal.id}`, headers: mgmt(t), payload: { limits: { burst: 900, perSecond: 900 } } });
      assert.equal(patch.statusCode, 200, patch.body);
      const later = await Promise.all([9994, 9996, 9998].map((id) => t.call('GET', `/v1/smart-processes/${id}`))); // on the new object
      for (const res of [await first, ...later]) assert.equal(res.statusCode, 404, res.body);
      assert.equal(t.fake!.stats.tokenRequests - before, 1, 'exactly one request at the token endpoint');
      assert.equal(t.fake!.stats.invalidGrant, 0, 'no refresh token used twice');
    } finally {
      await t.close();
    }
  });
});

describe('bitrix24 OAuth refresh and a limits PATCH', () => {
  it('a limits PATCH between the start of a refresh and its write: the new pair is stored and used; later refreshes work (no invalid_grant)', async () => {
    const t = await createTestApp({ portalKind: 'bitrix24' });
    try {
      await oauthPortal(t);
      assert.equal((await t.call('GET', '/v1/smart-processes/9990')).statusCode, 404);
      t.fake!.oauth.expireAccessTokens();
      t.fake!.inject.latency('oauth.token', 400, 1);
      const before = { refreshed: t.fake!.stats.tokensRefreshed, invalidGrant: t.fake!.stats.invalidGrant };
      const first = t.call('GET', '/v1/smart-processes/9992'); // expired_token, refresh (slow)
      await sleep(150);
      const patch = await t.app.inject({ method: 'PATCH', url: `/v1/portals/${t.portal.id}`, headers: mgmt(t), payload: { limits: { burst: 900, perSecond: 900 } } });
      assert.equal(patch.statusCode, 200, patch.body);
      const res = await first;
      assert.equal(res.statusCode, 404, res.body);
      assert.equal(t.fake!.stats.tokensRefreshed - before.refreshed, 1, 'one refresh');
      assert.equal((await t.call('GET', '/v1/smart-processes/9994')).statusCode, 404);
      // the stored refresh token is the new one: the next refresh works
      t.fake!.oauth.expireAccessTokens();
      const again = await t.call('GET', '/v1/smart-processes/9996');
      assert.equal(again.statusCode, 404, again.body);
      assert.equal(t.fake!.stats.tokensRefreshed - before.refreshed, 2);
      assert.equal(t.fake!.stats.invalidGrant - before.invalidGrant, 0, 'no invalid_grant');
    } finally {
      await t.close();
    }
  });
});
