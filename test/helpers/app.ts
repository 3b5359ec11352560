import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { KeyInput } from '../../src/access/keys-service.js';

import { openTestStore, type TestStore } from './test-store.js';
import type { KeyRecord, PortalRecord } from '../../src/domain/records.js';

export interface TestKey {
  secret: string;
  record: KeyRecord;
}

export interface TestApp {
  app: FastifyInstance;
  testStore: TestStore;
  portal: PortalRecord;
  /** Personal key of `portal`: scope crm, user 7, no rate limit. */
  key: TestKey;
  /** Management key with every management scope, no rate limit. */
  managementKey: TestKey;
  createPortal(timeZone?: string): Promise<PortalRecord>;
  createKey(input: KeyInput): Promise<TestKey>;
  /** app.inject with the personal key unless headers say otherwise. */
  call(method: InjectOptions['method'], url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  config?: Partial<Config>;
  keyCacheTtlMs?: number;
  /** PostgreSQL only: reach the store through this port of 127.0.0.1 (see test/helpers/tcp-proxy.ts). */
  storePort?: number;
}

export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const testStore = openTestStore({ port: options.storePort });
  const config: Config = { ...loadConfig({}), redisUrl: null, ...options.config };
  const app = await buildApp({ config, store: testStore.store, logger: false, keyCacheTtlMs: options.keyCacheTtlMs });
  const { keys, portals } = app.services;
  const portal = await portals.create({ name: 'Test portal', timeZone: 'UTC' });
  const createKey = async (input: KeyInput): Promise<TestKey> => {
    const { key, secret } = await keys.create({ requestsPerSecond: null, ...input }, null);
    return { secret, record: key };
  };
  const key = await createKey({ kind: 'personal', portalId: portal.id, scopes: ['crm'], userId: 7 });
  const managementKey = await createKey({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals'] });
  return {
    app,
    testStore,
    portal,
    key,
    managementKey,
    createKey,
    createPortal: (timeZone = 'UTC') => portals.create({ name: 'Another portal', timeZone }),
    call(method, url, body, headers) {
      return app.inject({
        method,
        url,
        headers: { 'x-api-key': key.secret, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
    },
    async close() {
      await app.close();
      await testStore.drop();
    },
  };
}

/** The parsed JSON body of an answer. */
export const json = (res: LightMyRequestResponse) => res.json() as { success: boolean; data?: any; meta?: any; error?: any };
