/**
 * SealedCredentialStore: the compare-and-set of a refreshed OAuth pair is on the refresh
 * token it was refreshed from, not on the row's version (which a limits PATCH or another
 * change of the row also moves).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { SealedCredentialStore, seal, unseal, type Credential } from '../../../src/portals/bitrix24/portal-credentials.js';
import { SecretBox } from '../../../src/store/secret-box.js';
import { migrate, type Store } from '../../../src/store/store.js';
import { openTestStore } from '../../helpers/test-store.js';

const oauth = (refreshToken: string): Credential => ({ type: 'oauth', clientId: 'app.1', clientSecret: 'secret-1', accessToken: `access-${refreshToken}`, refreshToken, expiresAt: 0, clientEndpoint: 'https://acme.bitrix24.com/rest/' });

/** The store, with a hook run right after the next read of the bitrix24 row or before the next write, whichever comes first (another writer getting in between). */
function interleaved(store: Store) {
  let hook: (() => Promise<void>) | null = null;
  const bitrix24 = new Proxy(store.read.bitrix24, {
    get(target, prop) {
      if (prop !== 'get') return Reflect.get(target, prop, target);
      return async (...args: Parameters<typeof target.get>) => {
        const row = await target.get(...args);
        const h = hook;
        hook = null;
        if (h) await h();
        return row;
      };
    },
  });
  const read = new Proxy(store.read, { get: (target, prop) => (prop === 'bitrix24' ? bitrix24 : Reflect.get(target, prop, target)) });
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === 'read') return read;
      if (prop === 'write') {
        return async (...args: Parameters<Store['write']>) => {
          const h = hook;
          hook = null;
          if (h) await h();
          return (target.write as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store: proxy as Store, afterNextRead: (fn: () => Promise<void>) => (hook = fn) };
}

describe('SealedCredentialStore: compare-and-set on the refresh token', () => {
  it('a limits change between the read and the write of a refreshed pair: the new pair is stored (replace answers true)', async () => {
    const testStore = openTestStore();
    const { store } = testStore;
    try {
      await migrate(store);
      const box = new SecretBox(crypto.randomBytes(32));
      const portalId = await store.write(async ({ repos }) => {
        const portal = await repos.portals.create({ kind: 'bitrix24', name: 'P', domain: 'acme.bitrix24.com', timeZone: 'UTC' });
        await repos.bitrix24.insert(portal.id, { credentialType: 'oauth', sealed: seal(box, portal.id, oauth('r1')), userId: null, domain: 'acme.bitrix24.com', memberId: null, burst: 50, perSecond: 2 });
        return portal.id;
      });
      const { store: racing, afterNextRead } = interleaved(store);
      const credentials = new SealedCredentialStore(racing, box, portalId, () => {});
      const { type: _t, ...next } = oauth('r2') as Credential & { type: 'oauth' };
      afterNextRead(() => store.write(({ repos }) => repos.bitrix24.update(portalId, { burst: 250, perSecond: 5 })));
      assert.equal(await credentials.replace('r1', next), true, 'stored despite the limits change');
      const row = await store.read.bitrix24.get(portalId);
      const stored = unseal(box, portalId, row!.sealed);
      assert.equal(stored.type === 'oauth' && stored.refreshToken, 'r2');
      assert.equal(Number(row!.burst), 250, 'the limits change is kept too');
      // a replace from a refresh token that is no longer the stored one still loses
      const { type: _t2, ...other } = oauth('r3') as Credential & { type: 'oauth' };
      assert.equal(await credentials.replace('r1', other), false);
    } finally {
      await testStore.drop();
    }
  });
});
