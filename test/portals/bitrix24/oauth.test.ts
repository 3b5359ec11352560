import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import {
  credentialFromAnswer,
  exchangeAuthorizationCode,
  MemoryCredentialStore,
  NeedsAuthorizationError,
  OAuthError,
  RedisRefreshLock,
  refreshTokens,
  TokenManager,
  type CredentialStore,
  type OAuthCredential,
} from '../../../src/portals/bitrix24/oauth.js';
import { PortalBudget } from '../../../src/portals/bitrix24/budget.js';
import { Bitrix24Error, Bitrix24RestClient } from '../../../src/portals/bitrix24/rest-client.js';
import { reply, sleep, startStub, type Stub } from './http-stub.js';
import { client as redisClient, deleteByPrefix, freePort, redisProblem, testPrefix } from './redis-helper.js';

const CLIENT_SECRET = 'LJSl0lNB76B5YY6u0YVQ3AW0DrVADcRTwVr4y99PXU1BWQybWK';

/**
 * The authorization server and the portal, as the docs describe them: a refresh token
 * works once (then invalid_grant), the new pair replaces the old one, and the portal
 * answers 401 expired_token to any access token but the current one.
 */
class FakeBitrix {
  token!: Stub;
  portal!: Stub;
  generation = 0;
  validAccess = 'access-0';
  validRefresh = 'refresh-0';
  refreshes = 0;
  codeExchanges = 0;
  refreshDelayMs = 80;
  tokenFailure: null | { status: number; body: unknown } = null;
  /** Answer expired_token even to the current token (a portal that keeps refusing). */
  alwaysExpired = false;
  /** client_endpoint of token answers; default the portal stub's /rest/. */
  clientEndpoint: string | null = null;
  portalCalls: string[] = [];

  async start(): Promise<this> {
    this.token = await startStub(async (req, res) => {
      const url = new URL(req.url, 'http://x');
      const q = Object.fromEntries(url.searchParams);
      if (req.method !== 'GET' || url.pathname !== '/oauth/token/') return reply(res, 404, { error: 'invalid_request', error_description: 'wrong path' });
      if (q.client_id !== 'app.1' || q.client_secret !== CLIENT_SECRET) return reply(res, 401, { error: 'invalid_client', error_description: 'Invalid client' });
      if (this.tokenFailure) return reply(res, this.tokenFailure.status, this.tokenFailure.body);
      if (q.grant_type === 'authorization_code') {
        this.codeExchanges++;
        if (q.code !== 'good-code') return reply(res, 400, { error: 'invalid_grant', error_description: 'Invalid authorization code' });
        return reply(res, 200, this.issue());
      }
      if (q.grant_type !== 'refresh_token') return reply(res, 400, { error: 'invalid_request', error_description: 'grant_type' });
      this.refreshes++;
      const presented = q.refresh_token;
      await sleep(this.refreshDelayMs);
      if (presented !== this.validRefresh) return reply(res, 400, { error: 'invalid_grant', error_description: 'Invalid grant' });
      return reply(res, 200, this.issue());
    });
    this.portal = await startStub((req, res) => {
      const auth = req.json?.auth;
      this.portalCalls.push(auth);
      if (this.alwaysExpired || auth !== this.validAccess) return reply(res, 401, { error: 'expired_token', error_description: 'The access token provided has expired.' });
      return reply(res, 200, { result: { ok: true, id: req.json?.id } });
    });
    return this;
  }

  issue() {
    this.generation++;
    this.validAccess = `access-${this.generation}`;
    this.validRefresh = `refresh-${this.generation}`;
    return {
      access_token: this.validAccess,
      refresh_token: this.validRefresh,
      expires_in: 3600,
      expires: Math.floor(Date.now() / 1000) + 3600,
      client_endpoint: this.clientEndpoint ?? `${this.portal.base}/rest/`,
      server_endpoint: 'https://oauth.bitrix.info/rest/',
      domain: 'oauth.bitrix.info',
      member_id: 'a223c6b3710f85df22e9377d6c4f7553',
      scope: 'crm',
      user_id: 1,
      status: 'L',
    };
  }

  get tokenUrl() {
    return `${this.token.base}/oauth/token/`;
  }

  credential(overrides: Partial<OAuthCredential> = {}): OAuthCredential {
    return {
      clientId: 'app.1',
      clientSecret: CLIENT_SECRET,
      accessToken: 'access-stale',
      refreshToken: this.validRefresh,
      expiresAt: Date.now() + 3_600_000,
      clientEndpoint: `${this.portal.base}/rest/`,
      tokenUrl: this.tokenUrl,
      ...overrides,
    };
  }

  async close() {
    await this.token.close();
    await this.portal.close();
  }
}

function renderings(error: unknown): string {
  return [String(error), (error as Error).message, (error as Error).stack, inspect(error, { depth: 5 }), JSON.stringify(error)].join('\n');
}

describe('OAuth token endpoint: refresh_token and authorization_code grants', () => {
  let fake: FakeBitrix;
  before(async () => {
    fake = await new FakeBitrix().start();
  });
  after(() => fake.close());

  it('refresh: GET tokenUrl?grant_type=refresh_token&client_id&client_secret&refresh_token; the documented answer', async () => {
    const before = fake.validRefresh;
    const answer = await refreshTokens({ clientId: 'app.1', clientSecret: CLIENT_SECRET, refreshToken: before, tokenUrl: fake.tokenUrl });
    const request = fake.token.requests.at(-1)!;
    assert.equal(request.method, 'GET');
    const q = new URL(request.url, 'http://x').searchParams;
    assert.deepEqual(Object.fromEntries(q), { grant_type: 'refresh_token', client_id: 'app.1', client_secret: CLIENT_SECRET, refresh_token: before });
    assert.equal(request.headers.accept, 'application/json');
    assert.equal(answer.access_token, fake.validAccess);
    assert.equal(answer.refresh_token, fake.validRefresh);
  });

  it('authorization_code exchange: GET with grant_type=authorization_code&code', async () => {
    const answer = await exchangeAuthorizationCode({ clientId: 'app.1', clientSecret: CLIENT_SECRET, code: 'good-code' }, { tokenUrl: fake.tokenUrl });
    assert.equal(answer.refresh_token, fake.validRefresh);
    assert.equal(new URL(fake.token.requests.at(-1)!.url, 'http://x').searchParams.get('grant_type'), 'authorization_code');
    await assert.rejects(exchangeAuthorizationCode({ clientId: 'app.1', clientSecret: CLIENT_SECRET, code: 'stale-code' }, { tokenUrl: fake.tokenUrl }), NeedsAuthorizationError);
  });

  it('credentialFromAnswer: expiry from expires_in, the new endpoint, and never the authorization server domain as the portal', () => {
    const next = credentialFromAnswer(fake.issue(), fake.credential(), 1_000_000);
    assert.equal(next.expiresAt, 1_000_000 + 3_600_000);
    assert.equal(next.clientEndpoint, `${fake.portal.base}/rest/`);
    assert.equal(next.memberId, 'a223c6b3710f85df22e9377d6c4f7553');
    assert.equal(next.userId, 1);
    assert.equal(next.clientSecret, CLIENT_SECRET);
    assert.ok(!('domain' in next));
  });

  it('a client_endpoint in a token answer is taken only when it is https (http for loopback) on the portal host the credential has; else the old one is kept and a line logged without secrets', () => {
    const lines: string[] = [];
    const log = (reason: string) => lines.push(reason);
    const previous = fake.credential({ clientEndpoint: 'https://acme.bitrix24.com/rest/' });
    const answerWith = (clientEndpoint: string) => ({ ...fake.issue(), client_endpoint: clientEndpoint });
    for (const hostile of ['https://evil.example/rest/', 'http://acme.bitrix24.com/rest/', 'https://acme.bitrix24.com.evil.example/rest/', 'ftp://acme.bitrix24.com/rest/', 'not a url', 'https://user:pw@acme.bitrix24.com/rest/']) {
      const answer = answerWith(hostile);
      const next = credentialFromAnswer(answer, previous, 1_000_000, log);
      assert.equal(next.clientEndpoint, 'https://acme.bitrix24.com/rest/', hostile);
      assert.equal(next.accessToken, answer.access_token, 'the new pair is kept (the old refresh token is spent)');
      assert.equal(next.refreshToken, answer.refresh_token);
    }
    assert.equal(lines.length, 6);
    for (const line of lines) for (const secret of [CLIENT_SECRET, fake.validAccess, fake.validRefresh]) assert.ok(!line.includes(secret));
    assert.equal(credentialFromAnswer(answerWith('https://acme.bitrix24.com/rest/'), previous, 1, log).clientEndpoint, 'https://acme.bitrix24.com/rest/');
    const loopback = fake.credential();
    assert.equal(credentialFromAnswer(answerWith(`${fake.portal.base}/rest/`), loopback, 1, log).clientEndpoint, `${fake.portal.base}/rest/`, 'http on a loopback host, as for portal URLs');
    assert.equal(lines.length, 6);
  });

  it('a refresh whose answer names another client_endpoint: the tokens go on to the portal they belong to, never to that host', async () => {
    const hostile = await startStub((_req, res) => reply(res, 200, { result: { stolen: true } }));
    const warnings: string[] = [];
    try {
      fake.clientEndpoint = `${hostile.base.replace('127.0.0.1', 'localhost')}/rest/`;
      const store = new MemoryCredentialStore(fake.credential());
      const tokens = new TokenManager({ store, lockName: 'endpoint', token: { tokenUrl: fake.tokenUrl }, onEndpointRefused: (reason) => warnings.push(reason) });
      const client = Bitrix24RestClient.oauth(fake.credential().clientEndpoint);
      const answer = await tokens.withToken((auth) => client.call<{ id: number }>('crm.type.get', { id: 5 }, { auth }));
      assert.equal(answer.result.id, 5, 'answered by the portal, after one refresh');
      assert.equal(hostile.requests.length, 0, 'nothing was sent to the other host');
      assert.equal((await store.load()).clientEndpoint, fake.credential().clientEndpoint);
      assert.equal(warnings.length, 1);
    } finally {
      fake.clientEndpoint = null;
      await hostile.close();
    }
  });

  it('failures are typed and never show the client secret or the refresh token', async () => {
    const cred = { clientId: 'app.1', clientSecret: CLIENT_SECRET, refreshToken: 'refresh-dead-0000', tokenUrl: fake.tokenUrl };
    const cases: [() => void, (e: unknown) => boolean][] = [
      [() => (fake.tokenFailure = null), (e) => e instanceof NeedsAuthorizationError && e.kind === 'needs_authorization' && e.code === 'invalid_grant'],
      [() => (fake.tokenFailure = { status: 402, body: { error: 'PAYMENT_REQUIRED', error_description: 'Payment required' } }), (e) => e instanceof OAuthError && e.kind === 'rejected' && e.code === 'PAYMENT_REQUIRED'],
      [() => (fake.tokenFailure = { status: 502, body: '<html>bad gateway</html>' }), (e) => e instanceof OAuthError && e.kind === 'unavailable'],
      [() => (fake.tokenFailure = { status: 200, body: { access_token: 'x' } }), (e) => e instanceof OAuthError && e.kind === 'unavailable' && e.code === 'UNEXPECTED_ANSWER'],
    ];
    for (const [arrange, check] of cases) {
      arrange();
      try {
        await refreshTokens(cred);
        assert.fail('expected a failure');
      } catch (error) {
        assert.ok(check(error), renderings(error));
        const text = renderings(error);
        assert.ok(!text.includes(CLIENT_SECRET) && !text.includes('refresh-dead-0000'), text);
      }
    }
    fake.tokenFailure = null;
    const wrongSecret = await refreshTokens({ ...cred, clientSecret: 'wrong-secret-value' }).catch((e) => e);
    assert.ok(wrongSecret instanceof OAuthError && wrongSecret.code === 'invalid_client' && wrongSecret.kind === 'rejected');
    assert.ok(!renderings(wrongSecret).includes('wrong-secret-value'));
  });

  it('an authorization server that does not answer: unavailable after the timeout', async () => {
    const silent = await startStub(() => {});
    try {
      const started = Date.now();
      const error = await refreshTokens({ clientId: 'a', clientSecret: CLIENT_SECRET, refreshToken: 'r-0000', tokenUrl: `${silent.base}/oauth/token/` }, { timeoutMs: 150 }).catch((e) => e);
      assert.ok(error instanceof OAuthError && error.kind === 'unavailable', renderings(error));
      assert.ok(Date.now() - started < 2000);
    } finally {
      await silent.close();
    }
  });
});

describe('TokenManager: one refresh per credential, then the call again', () => {
  let fake: FakeBitrix;
  before(async () => {
    fake = await new FakeBitrix().start();
  });
  after(() => fake.close());

  const call = (tokens: TokenManager, id: number) => {
    const client = Bitrix24RestClient.oauth('http://127.0.0.1:1/rest/');
    return tokens.withToken((auth) => client.call<{ ok: boolean; id: number }>('crm.type.get', { id }, { auth }));
  };

  it('50 concurrent calls with an expired token -> exactly one refresh; all succeed; the new pair is stored', async () => {
    const store = new MemoryCredentialStore(fake.credential());
    const tokens = new TokenManager({ store, lockName: 'portal:1', token: { tokenUrl: fake.tokenUrl } });
    const refreshesBefore = fake.refreshes;
    const callsBefore = fake.portalCalls.length;
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => call(tokens, i)));
    assert.deepEqual(answers.map((a) => a.result.id), Array.from({ length: 50 }, (_, i) => i));
    assert.equal(fake.refreshes - refreshesBefore, 1, 'exactly one refresh');
    assert.equal(tokens.stats.refreshes, 1);
    const stored = await store.load();
    assert.equal(stored.accessToken, fake.validAccess);
    assert.equal(stored.refreshToken, fake.validRefresh);
    assert.ok(stored.expiresAt > Date.now() + 3_500_000);
    // Each call: at most one refused try and one repeat.
    assert.ok(fake.portalCalls.length - callsBefore <= 100);
    // Later calls go straight through.
    const refreshes = fake.refreshes;
    await call(tokens, 99);
    assert.equal(fake.refreshes, refreshes);
  });

  it('a passed expiry refreshes before the call (the portal never sees the stale token)', async () => {
    const store = new MemoryCredentialStore(fake.credential({ accessToken: fake.validAccess, expiresAt: Date.now() - 1000 }));
    const tokens = new TokenManager({ store, lockName: 'portal:2', token: { tokenUrl: fake.tokenUrl } });
    const callsBefore = fake.portalCalls.length;
    const refreshesBefore = fake.refreshes;
    await Promise.all(Array.from({ length: 10 }, (_, i) => call(tokens, i)));
    assert.equal(fake.refreshes - refreshesBefore, 1);
    assert.deepEqual(new Set(fake.portalCalls.slice(callsBefore)), new Set([fake.validAccess]));
  });

  it('still expired after the refresh: no loop; the expired_token error comes out (-> 401 TOKEN_EXPIRED)', async () => {
    const store = new MemoryCredentialStore(fake.credential());
    const tokens = new TokenManager({ store, lockName: 'portal:3', token: { tokenUrl: fake.tokenUrl } });
    fake.alwaysExpired = true;
    try {
      const refreshesBefore = fake.refreshes;
      const error = await call(tokens, 1).catch((e) => e);
      assert.ok(error instanceof Bitrix24Error && error.kind === 'expired_token');
      assert.equal(fake.refreshes - refreshesBefore, 1);
    } finally {
      fake.alwaysExpired = false;
    }
  });

  it('invalid_grant -> NeedsAuthorizationError, the store is told, and the dead token is not sent again', async () => {
    const store = new MemoryCredentialStore(fake.credential({ refreshToken: 'refresh-revoked' }));
    const tokens = new TokenManager({ store, lockName: 'portal:4', invalidGrantGraceMs: 100, token: { tokenUrl: fake.tokenUrl } });
    const refreshesBefore = fake.refreshes;
    const errors = await Promise.all(Array.from({ length: 5 }, (_, i) => call(tokens, i).catch((e) => e)));
    for (const error of errors) assert.ok(error instanceof NeedsAuthorizationError, renderings(error));
    assert.equal(store.needsAuthorization, true);
    await assert.rejects(call(tokens, 9), NeedsAuthorizationError);
    assert.equal(fake.refreshes - refreshesBefore, 1, 'one try at the token server in all');
  });

  it('another instance refreshed earlier: the stored credential is taken over, no refresh', async () => {
    const stale = fake.credential();
    const store = new MemoryCredentialStore(stale);
    const tokens = new TokenManager({ store, lockName: 'portal:5', token: { tokenUrl: fake.tokenUrl } });
    await tokens.current(); // holds the stale pair in memory
    const next = credentialFromAnswer(await refreshTokens(stale), stale); // "the other instance"
    assert.equal(await store.replace(stale.refreshToken, next), true);
    const refreshesBefore = fake.refreshes;
    const answer = await call(tokens, 7);
    assert.equal(answer.result.id, 7);
    assert.equal(fake.refreshes, refreshesBefore);
    assert.equal(tokens.stats.adopted, 1);
  });

  it('a store that fails to save: the new pair is kept in memory and stored on the next call', async () => {
    const inner = new MemoryCredentialStore(fake.credential());
    let failSave = true;
    const store: CredentialStore = {
      load: () => inner.load(),
      replace: async (previous, next) => {
        if (failSave) throw new Error('store down');
        return inner.replace(previous, next);
      },
    };
    const tokens = new TokenManager({ store, lockName: 'portal:6', token: { tokenUrl: fake.tokenUrl } });
    assert.equal((await call(tokens, 1)).result.id, 1);
    assert.equal((await inner.load()).accessToken, 'access-stale');
    failSave = false;
    await call(tokens, 2);
    assert.equal((await inner.load()).refreshToken, fake.validRefresh);
  });

  it('composed with the budget (tokens outside, budget inside): the repeated call takes its own slot', async () => {
    const store = new MemoryCredentialStore(fake.credential());
    const tokens = new TokenManager({ store, lockName: 'portal:8', token: { tokenUrl: fake.tokenUrl } });
    const budget = new PortalBudget({ portalKey: 'portal:8', limits: { burst: 100, perSecond: 50 } });
    const client = Bitrix24RestClient.oauth('http://127.0.0.1:1/rest/');
    const refreshesBefore = fake.refreshes;
    const callsBefore = fake.portalCalls.length;
    await Promise.all(Array.from({ length: 50 }, (_, i) => tokens.withToken((auth) => budget.run('crm.type.get', () => client.call('crm.type.get', { id: i }, { auth })))));
    assert.equal(fake.refreshes - refreshesBefore, 1);
    assert.equal(budget.stats.admitted, fake.portalCalls.length - callsBefore, 'every request the portal saw went through the budget');
  });

  it('the manager and the store do not show tokens when inspected', async () => {
    const store = new MemoryCredentialStore(fake.credential());
    const tokens = new TokenManager({ store, lockName: 'portal:7', token: { tokenUrl: fake.tokenUrl } });
    await tokens.current();
    for (const text of [inspect(tokens, { depth: 5 }), inspect(store, { depth: 5 }), JSON.stringify(tokens)]) {
      assert.ok(!text.includes(CLIENT_SECRET) && !text.includes('access-stale'), text);
    }
  });
});

const redisSkip = await redisProblem();

describe('TokenManager across instances (Redis lock + one credential store)', { skip: redisSkip ? `needs Redis: ${redisSkip}` : false }, () => {
  let fake: FakeBitrix;
  let redisA: Redis;
  let redisB: Redis;
  const prefix = testPrefix('oauth');
  before(async () => {
    fake = await new FakeBitrix().start();
    redisA = redisClient();
    redisB = redisClient();
  });
  after(async () => {
    await deleteByPrefix(redisA, prefix);
    redisA.disconnect();
    redisB.disconnect();
    await fake.close();
  });

  it('two managers, 50 concurrent calls with an expired token -> exactly one refresh; all succeed', async () => {
    fake.refreshDelayMs = 150;
    const store = new MemoryCredentialStore(fake.credential());
    const make = (redis: Redis) => new TokenManager({ store, lock: new RedisRefreshLock(redis, { prefix }), lockName: 'portal:42', pollMs: 20, token: { tokenUrl: fake.tokenUrl } });
    const a = make(redisA);
    const b = make(redisB);
    const client = Bitrix24RestClient.oauth('http://127.0.0.1:1/rest/');
    const refreshesBefore = fake.refreshes;
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).withToken((auth) => client.call<{ id: number }>('crm.type.get', { id: i }, { auth }))),
    );
    assert.equal(answers.length, 50);
    assert.equal(fake.refreshes - refreshesBefore, 1, 'exactly one refresh at the token endpoint');
    assert.equal(a.stats.refreshes + b.stats.refreshes, 1);
    assert.equal(a.stats.adopted + b.stats.adopted, 1, 'the other instance took the stored pair over');
    assert.equal((await store.load()).refreshToken, fake.validRefresh);
    assert.equal(await redisA.exists(`${prefix}:refresh-lock:{portal:42}`), 0, 'the lock was released');
    fake.refreshDelayMs = 80;
  });

  it('the lock is released only by its holder', async () => {
    const lock = new RedisRefreshLock(redisA, { prefix });
    const release = await lock.tryAcquire('portal:43', 200);
    assert.ok(release);
    assert.equal(await lock.tryAcquire('portal:43', 200), null);
    await sleep(250); // expired; another instance takes it
    const other = await new RedisRefreshLock(redisB, { prefix }).tryAcquire('portal:43', 5000);
    assert.ok(other);
    await release(); // the first holder's late release must not free the second's lock
    assert.equal(await lock.tryAcquire('portal:43', 200), null);
    await other();
    assert.ok(await lock.tryAcquire('portal:43', 200));
  });
});

describe('TokenManager without a lock (Redis down on both instances)', () => {
  it('two managers refresh the same token at once: the loser (invalid_grant) takes the winner\'s stored pair, nobody is told to re-authorize', async () => {
    const fake = await new FakeBitrix().start();
    try {
      fake.refreshDelayMs = 0;
      const store = new MemoryCredentialStore(fake.credential());
      // The store is slow to save, so the loser's invalid_grant comes before the winner's pair is stored.
      const slowStore: CredentialStore = {
        load: () => store.load(),
        replace: async (previous, next) => {
          await sleep(150);
          return store.replace(previous, next);
        },
        markNeedsAuthorization: () => store.markNeedsAuthorization(),
      };
      const make = () => new TokenManager({ store: slowStore, lockName: 'portal:50', pollMs: 20, token: { tokenUrl: fake.tokenUrl } });
      const [a, b] = [make(), make()];
      const client = Bitrix24RestClient.oauth('http://127.0.0.1:1/rest/');
      const answers = await Promise.all([a, b].map((m, i) => m.withToken((auth) => client.call<{ id: number }>('crm.type.get', { id: i }, { auth }))));
      assert.deepEqual(answers.map((x) => x.result.id), [0, 1]);
      assert.equal(fake.refreshes, 2, 'both tried (no lock)');
      assert.equal(store.needsAuthorization, false);
      assert.equal(a.stats.adopted + b.stats.adopted, 1);
    } finally {
      await fake.close();
    }
  });
});

describe('TokenManager with an unreachable Redis', () => {
  it('the lock fails within ~100 ms and the refresh goes on (once) without it', async () => {
    const fake = await new FakeBitrix().start();
    const { Redis } = await import('ioredis');
    const dead = new Redis(`redis://127.0.0.1:${await freePort()}`, { maxRetriesPerRequest: 2, enableOfflineQueue: true, retryStrategy: () => 200 });
    dead.on('error', () => {});
    try {
      const store = new MemoryCredentialStore(fake.credential());
      const tokens = new TokenManager({ store, lock: new RedisRefreshLock(dead, { opTimeoutMs: 100 }), lockName: 'portal:44', token: { tokenUrl: fake.tokenUrl } });
      const client = Bitrix24RestClient.oauth('http://127.0.0.1:1/rest/');
      const started = Date.now();
      await Promise.all(Array.from({ length: 10 }, (_, i) => tokens.withToken((auth) => client.call('crm.type.get', { id: i }, { auth }))));
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
      assert.equal(fake.refreshes, 1);
    } finally {
      dead.disconnect();
      await fake.close();
    }
  });
});

describe('TokenManager with a slow Redis', () => {
  it('a lock that answers after the op timeout on a connected Redis is not "Redis down": no refresh without the lock; the other holder\'s stored pair is taken over', async () => {
    const fake = await new FakeBitrix().start();
    try {
      const stale = fake.credential();
      const store = new MemoryCredentialStore(stale);
      // A connected Redis whose SET NX answers after 300 ms: the lock is held by another instance.
      const slow = { status: 'ready', set: async () => (await sleep(300), null), eval: async () => 0 } as unknown as Redis;
      const tokens = new TokenManager({ store, lock: new RedisRefreshLock(slow, { opTimeoutMs: 100 }), lockName: 'portal:45', pollMs: 20, token: { tokenUrl: fake.tokenUrl } });
      await tokens.current();
      const refreshesBefore = fake.refreshes;
      const client = Bitrix24RestClient.oauth('http://127.0.0.1:1/rest/');
      const calls = Promise.all(Array.from({ length: 5 }, (_, i) => tokens.withToken((auth) => client.call<{ id: number }>('crm.type.get', { id: i }, { auth }))));
      await sleep(150);
      // "the other instance" (the lock's holder) refreshes and stores the new pair
      const next = credentialFromAnswer(await refreshTokens(stale), stale);
      assert.equal(await store.replace(stale.refreshToken, next), true);
      const answers = await calls;
      assert.deepEqual(answers.map((a) => a.result.id), [0, 1, 2, 3, 4]);
      assert.equal(fake.refreshes - refreshesBefore, 1, 'only the holder refreshed');
      assert.equal(tokens.stats.refreshes, 0);
    } finally {
      await fake.close();
    }
  });
});
