import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { KeyInput } from '../../src/access/keys-service.js';

import crypto from 'node:crypto';
import { openTestStore, type TestStore } from './test-store.js';
import { SecretBox } from '../../src/store/secret-box.js';
import { startFakeBitrix24, type FakeBitrix24Options } from '../fakes/bitrix24/fake-portal.js';
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
  /** portalKind 'bitrix24': the fake portal behind `portal`. */
  fake?: FakeBitrix24;
}

export type FakeBitrix24 = Awaited<ReturnType<typeof startFakeBitrix24>>;

/**
 * The kind of `portal`: 'local' by default; SMARTPROC_TEST_PORTAL_KIND=bitrix24 runs the
 * route specifications against a bitrix24 portal backed by the fake (test/fakes/bitrix24).
 */
export const TEST_PORTAL_KIND = process.env.SMARTPROC_TEST_PORTAL_KIND === 'bitrix24' ? 'bitrix24' : 'local';

export interface TestAppOptions {
  config?: Partial<Config>;
  keyCacheTtlMs?: number;
  /** PostgreSQL only: reach the store through this port of 127.0.0.1 (see test/helpers/tcp-proxy.ts). */
  storePort?: number;
  /** `portal` is a bitrix24 portal backed by a fake portal (created through POST /v1/portals with its webhook URL). */
  portalKind?: 'local' | 'bitrix24';
  /** For portalKind 'bitrix24': options of the fake (default: no bucket) and the portal's limits (default 1000/1000). */
  fake?: FakeBitrix24Options;
  limits?: { burst: number; perSecond: number };
  /** Default: no logging. */
  logger?: import('fastify').FastifyServerOptions['logger'];
}

export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const testStore = openTestStore({ port: options.storePort });
  // Load shedding is off unless a spec turns it on (test/server/under-pressure.test.ts): on a
  // loaded machine its first samples would answer 503 at random in specs about something else.
  const config: Config = { ...loadConfig({}), redisUrl: null, maxEventLoopDelayMs: 0, ...options.config };
  const secretBox = new SecretBox(crypto.randomBytes(32));
  const app = await buildApp({ config, store: testStore.store, logger: options.logger ?? false, keyCacheTtlMs: options.keyCacheTtlMs, secretBox });
  const { keys, portals } = app.services;
  let fake: FakeBitrix24 | undefined;
  let portal: PortalRecord;
  if ((options.portalKind ?? TEST_PORTAL_KIND) === 'bitrix24') {
    // User 7 is the user the test key acts as, so createdBy/updatedBy match a local portal's.
    fake = await startFakeBitrix24({ users: [{ id: 1, name: 'Admin' }, { id: 7, name: 'Tester' }], limits: false, utcOffset: '+00:00', ...options.fake });
    portal = await portals.create({ kind: 'bitrix24', name: 'Test portal', timeZone: 'UTC', webhookUrl: fake.webhookUrl(7), limits: options.limits ?? { burst: 1000, perSecond: 1000 } });
  } else {
    portal = await portals.create({ name: 'Test portal', timeZone: 'UTC' });
  }
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
    fake,
    async close() {
      await app.close();
      await fake?.close();
      await testStore.drop();
    },
  };
}

/** The parsed JSON body of an answer. */
export const json = (res: LightMyRequestResponse) => res.json() as { success: boolean; data?: any; meta?: any; error?: any };

/**
 * `{ skip }` for a specification that only a local portal can meet, with the reason a
 * bitrix24 portal differs (docs/bitrix24.md, "Differences from a local portal").
 */
export const localOnly = (reason: string): { skip: string | false } => ({ skip: TEST_PORTAL_KIND === 'bitrix24' ? `bitrix24 portal: ${reason}` : false });
