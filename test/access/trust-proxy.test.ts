import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectError } from '../helpers/expect.js';

const get = (t: TestApp, secret: string, forwardedFor?: string) =>
  t.app.inject({ method: 'GET', url: '/v1/smart-processes', remoteAddress: '127.0.0.1', headers: { 'x-api-key': secret, ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) } });

describe('the client address behind a proxy (allowedIps)', () => {
  let behindProxy: TestApp;
  let direct: TestApp;
  let proxied: string;
  let plain: string;
  before(async () => {
    behindProxy = await createTestApp({ config: { trustProxy: ['127.0.0.1', '10.0.0.0/8'] } });
    direct = await createTestApp();
    proxied = (await behindProxy.createKey({ kind: 'personal', portalId: behindProxy.portal.id, scopes: ['crm'], allowedIps: ['203.0.113.7'] })).secret;
    plain = (await direct.createKey({ kind: 'personal', portalId: direct.portal.id, scopes: ['crm'], allowedIps: ['203.0.113.7'] })).secret;
  });
  after(async () => {
    await behindProxy.close();
    await direct.close();
  });

  it('with TRUST_PROXY, the first untrusted hop of X-Forwarded-For is the client', async () => {
    assert.equal((await get(behindProxy, proxied, '203.0.113.7')).statusCode, 200);
    assert.equal((await get(behindProxy, proxied, '203.0.113.7, 10.1.2.3')).statusCode, 200, 'trusted hops are skipped');
    expectError(await get(behindProxy, proxied, '198.51.100.1'), 403, 'IP_NOT_ALLOWED');
  });

  it('a client cannot spoof its address by prepending to X-Forwarded-For', async () => {
    expectError(await get(behindProxy, proxied, '203.0.113.7, 198.51.100.9'), 403, 'IP_NOT_ALLOWED');
  });

  it('without TRUST_PROXY, X-Forwarded-For is ignored: the socket address counts', async () => {
    expectError(await get(direct, plain, '203.0.113.7'), 403, 'IP_NOT_ALLOWED');
  });
});
