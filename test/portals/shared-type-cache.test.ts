/**
 * Issue 11: cards and list pages of local portals cached per instance on PostgreSQL, checked
 * against a token per portal in Redis (src/portals/local/shared-type-cache.ts). A write
 * answered by one instance is never read stale from another instance's cache, also while
 * both are hammered, and also when the writing instance cannot reach Redis.
 *
 * Two `buildApp` on two stores (two pools) opened on one PostgreSQL schema, both with
 * REDIS_URL (as two servers of one deployment). Runs in the PostgreSQL pass of npm test.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { PortalTokens, SharedTypeCache } from '../../src/portals/local/shared-type-cache.js';
import { openStore, type Store } from '../../src/store/store.js';
import { FLAG_NAMES } from '../../src/domain/smart-process-type/fields.js';
import { MANAGEMENT_SCOPES } from '../../src/access/key-model.js';
import { openTestStore } from '../helpers/test-store.js';
import { redisProblem, TEST_REDIS_URL } from '../helpers/services.js';

const DATABASE_URL = process.env.SMARTPROC_TEST_DATABASE_URL || null;
const REDIS_SKIP = await redisProblem(TEST_REDIS_URL);
const SKIP: string | false = !DATABASE_URL
  ? 'needs PostgreSQL and Redis: runs in the PostgreSQL pass of npm test (SMARTPROC_TEST_DATABASE_URL is not set)'
  : REDIS_SKIP
    ? `needs Redis at ${TEST_REDIS_URL}: ${REDIS_SKIP}`
    : false;

interface Instance {
  app: FastifyInstance;
  /** The personal key of the portal both instances serve. */
  key: string;
  store: Store;
  call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown): Promise<{ status: number; json: any }>;
  cache(): SharedTypeCache;
}

/** Two instances on one PostgreSQL schema; `redisUrlOfA` lets instance A use another (or an unreachable) Redis. */
async function twoInstances(options: { redisUrlOfA?: string } = {}) {
  const testStore = openTestStore();
  const stores: Store[] = [testStore.store, openStore({ databaseUrl: testStore.databaseUrl, dataDir: '.' })];
  const apps: FastifyInstance[] = [];
  for (const [i, store] of stores.entries()) {
    const redisUrl = i === 0 && options.redisUrlOfA ? options.redisUrlOfA : TEST_REDIS_URL;
    // Load shedding off: a busy test machine must not turn reads into 503s here (not what this file is about).
    apps.push(await buildApp({ config: { ...loadConfig({}), redisUrl, maxEventLoopDelayMs: 0, maxEventLoopUtilization: 0 }, store, logger: false }));
  }
  const portal = await apps[0].services.portals.create({ name: 'Shared', timeZone: 'UTC' });
  const { secret } = await apps[0].services.keys.create({ kind: 'personal', portalId: portal.id, scopes: ['crm'], userId: 7, requestsPerSecond: null }, null);
  const instance = (app: FastifyInstance, store: Store): Instance => ({
    app,
    key: secret,
    store,
    async call(method, url, body) {
      const res = await app.inject({ method, url, headers: { 'x-api-key': secret, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });
      return { status: res.statusCode, json: res.body ? res.json() : null };
    },
    cache() {
      const cards = app.services.portalRegistry.cards;
      assert.ok(cards instanceof SharedTypeCache, 'PostgreSQL with REDIS_URL keeps a SharedTypeCache');
      return cards;
    },
  });
  return {
    a: instance(apps[0], stores[0]),
    b: instance(apps[1], stores[1]),
    async close() {
      for (const app of apps) await app.close();
      await stores[1].close();
      await testStore.drop();
    },
  };
}

/** Counts the reads of instance `i` that went to PostgreSQL (the rest came from its cache). */
function countStoreReads(store: Store) {
  const counts = { get: 0, list: 0 };
  const types = store.read.types;
  const get = types.get.bind(types);
  const list = types.list.bind(types);
  types.get = (...args) => (counts.get++, get(...args));
  types.list = (...args) => (counts.list++, list(...args));
  return counts;
}

describe('cards and list pages cached per instance on PostgreSQL + Redis', { skip: SKIP }, () => {
  it('a read on B is served from its cache until a write answered by A; the first read on B after that answer is the new card and list', { timeout: 60_000 }, async () => {
    const { a, b, close } = await twoInstances();
    try {
      const created = await a.call('POST', '/v1/smart-processes', { title: 'First', entityTypeId: 1050 });
      assert.equal(created.status, 201, JSON.stringify(created.json));
      const reads = countStoreReads(b.store);
      for (let i = 0; i < 5; i++) {
        assert.equal((await b.call('GET', '/v1/smart-processes/1050')).json.data.title, 'First');
        assert.deepEqual((await b.call('GET', '/v1/smart-processes?limit=50')).json.data.map((t: any) => t.title), ['First']);
      }
      assert.equal(reads.get, 1, 'B read the card from PostgreSQL once, then from its cache');
      assert.equal(reads.list, 1, 'B read the page from PostgreSQL once, then from its cache');

      assert.equal((await a.call('PATCH', '/v1/smart-processes/1050', { title: 'Second' })).status, 200);
      assert.equal((await b.call('GET', '/v1/smart-processes/1050')).json.data.title, 'Second');
      assert.deepEqual((await b.call('GET', '/v1/smart-processes?limit=50')).json.data.map((t: any) => t.title), ['Second']);

      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'Third', entityTypeId: 1052 })).status, 201);
      assert.deepEqual((await b.call('GET', '/v1/smart-processes?limit=50')).json.data.map((t: any) => t.title), ['Second', 'Third']);
      assert.equal((await a.call('DELETE', '/v1/smart-processes/1052')).status, 204);
      assert.equal((await b.call('GET', '/v1/smart-processes/1052')).status, 404);
      assert.deepEqual((await b.call('GET', '/v1/smart-processes?limit=50')).json.data.map((t: any) => t.title), ['Second']);
    } finally {
      await close();
    }
  });

  it('a PATCH written in one statement from the cached card records its audit entry with it, and a PATCH whose card moved on records none of its own', { timeout: 60_000 }, async () => {
    const { a, b, close } = await twoInstances();
    try {
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'Audited', entityTypeId: 1050 })).status, 201);
      assert.equal((await a.call('GET', '/v1/smart-processes/1050')).status, 200); // A keeps the card: its next PATCH starts from it
      const patched = await a.call('PATCH', '/v1/smart-processes/1050', { title: 'Audited again', isStagesEnabled: true });
      assert.equal(patched.status, 200, JSON.stringify(patched.json));
      const history = await b.call('GET', '/v1/smart-processes/1050/history');
      assert.equal(history.status, 200, JSON.stringify(history.json));
      const [latest] = history.json.data;
      assert.equal(latest.action, 'update');
      assert.deepEqual(latest.changes.title, { before: 'Audited', after: 'Audited again' });
      assert.deepEqual(latest.changes.isStagesEnabled, { before: false, after: true });
      assert.equal(history.json.data.length, 2, 'create and one update');
    } finally {
      await close();
    }
  });

  it('hammered: writers on both instances, readers on both; every read that starts after a write was answered shows that write or a later one', { timeout: 120_000 }, async () => {
    const { a, b, close } = await twoInstances();
    try {
      const ids = [1060, 1062];
      for (const id of ids) assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'v0', entityTypeId: id })).status, 201);
      // The highest version answered so far per type (titles carry the writer's sequence number).
      const answered = new Map(ids.map((id) => [id, 0]));
      const stale: string[] = [];
      let writing = true;
      const seq = (title: string) => Number(title.slice(1));
      const check = (id: number, title: string, floor: number, where: string) => {
        if (seq(title) < floor) stale.push(`${where}: type ${id} showed ${title} after v${floor} was answered`);
      };
      const writer = async (id: number, via: Instance, other: Instance, start: number) => {
        for (let n = start; n < start + 40; n++) {
          const res = await via.call('PATCH', `/v1/smart-processes/${id}`, { title: `v${n}` });
          assert.equal(res.status, 200, JSON.stringify(res.json));
          answered.set(id, Math.max(answered.get(id)!, n));
          // At once, on the other instance, and on this one.
          check(id, (await other.call('GET', `/v1/smart-processes/${id}`)).json.data.title, n, 'card on the other instance');
          const page = (await other.call('GET', '/v1/smart-processes?limit=50')).json.data;
          check(id, page.find((t: any) => t.entityTypeId === id).title, n, 'list on the other instance');
          check(id, (await via.call('GET', `/v1/smart-processes/${id}`)).json.data.title, n, 'card on the writing instance');
        }
      };
      const reader = async (via: Instance, name: string) => {
        while (writing) {
          const floors = new Map(answered);
          const id = ids[Math.floor(Math.random() * ids.length)];
          const res = await via.call('GET', `/v1/smart-processes/${id}`);
          assert.equal(res.status, 200);
          check(id, res.json.data.title, floors.get(id)!, `${name} card`);
          const page = (await via.call('GET', '/v1/smart-processes?limit=50')).json.data;
          for (const t of page) check(t.entityTypeId, t.title, floors.get(t.entityTypeId)!, `${name} list`);
        }
      };
      // Type 1060 written through A, 1062 through B (each type has one writer, so its sequence only grows).
      const readers = [reader(a, 'reader on A'), reader(b, 'reader on B'), reader(b, 'reader on B')];
      await Promise.all([writer(1060, a, b, 1), writer(1062, b, a, 1)]);
      writing = false;
      await Promise.all(readers);
      assert.deepEqual(stale, []);
      // The cache was in use (else this would prove nothing).
      const tokens = (b.cache() as unknown as { tokens: PortalTokens }).tokens;
      assert.ok(tokens.stats.reads > tokens.stats.batches, `reads shared Redis commands (${tokens.stats.reads} reads, ${tokens.stats.batches} commands)`);
    } finally {
      await close();
    }
  });

  it('PATCHes of one type from both instances at once, each from its cached card: none is lost, one version each', { timeout: 60_000 }, async () => {
    const { a, b, close } = await twoInstances();
    try {
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'Flags', entityTypeId: 1080 })).status, 201);
      const flags = FLAG_NAMES.filter((name) => name !== 'isSetOpenPermissions').slice(0, 12);
      // Both caches hold the card at version 1 first.
      await a.call('GET', '/v1/smart-processes/1080');
      await b.call('GET', '/v1/smart-processes/1080');
      const answers = await Promise.all(flags.map((name, i) => (i % 2 ? a : b).call('PATCH', '/v1/smart-processes/1080', { [name]: true })));
      for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.json));
      for (const via of [a, b]) {
        const card = (await via.call('GET', '/v1/smart-processes/1080')).json.data;
        assert.deepEqual(flags.filter((name) => card[name] !== true), [], 'every flag set by some PATCH is on');
      }
      const [row] = await a.store.db.selectFrom('smart_process_types').select('version').where('entity_type_id', '=', 1080).execute();
      assert.equal(row.version, 1 + flags.length, 'one version per PATCH');
    } finally {
      await close();
    }
  });

  it('a PATCH that starts from a cached card no longer current (the row moved on without the cache hearing of it) is not written from it: the answer shows the row as it is', { timeout: 60_000 }, async () => {
    const { a, b, close } = await twoInstances();
    try {
      const portalId = (await a.store.db.selectFrom('portals').select('id').executeTakeFirstOrThrow()).id;
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'X', entityTypeId: 1090 })).status, 201);
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'Y', entityTypeId: 1092 })).status, 201);
      assert.deepEqual((await b.call('GET', '/v1/smart-processes/1090')).json.data.relations.child, []);
      // Behind the caches' back (as SQL by hand would): an edge 1090 -> 1092, and both versions moved.
      await a.store.db.insertInto('type_relations').values({ portal_id: portalId, parent_entity_type_id: 1090, child_entity_type_id: 1092, is_children_list_enabled: 1 }).execute();
      await a.store.db.updateTable('smart_process_types').set((eb) => ({ version: eb('version', '+', 1) })).where('entity_type_id', 'in', [1090, 1092]).execute();
      assert.deepEqual((await b.call('GET', '/v1/smart-processes/1090')).json.data.relations.child, [], 'B still serves its card (within the cache lifetime)');
      const patched = await b.call('PATCH', '/v1/smart-processes/1090', { title: 'X bis' });
      assert.equal(patched.status, 200);
      assert.equal(patched.json.data.title, 'X bis');
      assert.deepEqual(patched.json.data.relations.child.map((r: { entityTypeId: number }) => r.entityTypeId), [1092], 'the relations as stored, not as cached');
      const [row] = await a.store.db.selectFrom('smart_process_types').select('version').where('entity_type_id', '=', 1090).execute();
      assert.equal(row.version, 3);
    } finally {
      await close();
    }
  });

  it('A cannot reach Redis: its writes wait out the cache lifetime before they answer, so B (which can) never serves what they changed', { timeout: 60_000 }, async () => {
    // Port 9 (discard) on this machine: nothing answers Redis there.
    const { a, b, close } = await twoInstances({ redisUrlOfA: 'redis://127.0.0.1:9' });
    try {
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'Old', entityTypeId: 1070 })).status, 201);
      const reads = countStoreReads(b.store);
      assert.equal((await b.call('GET', '/v1/smart-processes/1070')).json.data.title, 'Old');
      assert.equal((await b.call('GET', '/v1/smart-processes/1070')).json.data.title, 'Old');
      assert.equal(reads.get, 1, 'B keeps the card');
      const started = performance.now();
      assert.equal((await a.call('PATCH', '/v1/smart-processes/1070', { title: 'New' })).status, 200);
      const took = performance.now() - started;
      assert.ok(took >= b.cache().ttlMs - 50, `the write waited out the cache lifetime (${Math.round(took)} ms)`);
      assert.equal((await b.call('GET', '/v1/smart-processes/1070')).json.data.title, 'New');
      // A without a token reads PostgreSQL every time.
      assert.equal((await a.call('GET', '/v1/smart-processes/1070')).json.data.title, 'New');
    } finally {
      await close();
    }
  });

  it('tokens never repeat: a token Redis lost is made anew with another value, so a card kept under the old one is not served', { timeout: 30_000 }, async () => {
    const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true });
    await redis.connect();
    try {
      const prefix = `smartproc:test:types-token:${process.pid}:${Date.now()}:`;
      const one = new PortalTokens(redis, prefix);
      const two = new PortalTokens(redis, prefix);
      const first = await one.read(1);
      assert.ok(first);
      assert.equal(await two.read(1), first, 'both instances see the one token');
      await redis.del(`${prefix}1`);
      const second = await two.read(1);
      assert.ok(second && second !== first, 'a lost token comes back as a new value');
      assert.equal(await one.read(1), second);
      assert.ok(await one.bump(1));
      assert.notEqual(await two.read(1), second, 'a write makes a new token');
      await redis.del(`${prefix}1`);
    } finally {
      redis.disconnect();
    }
  });
});

/** A PATCH with headers of its own (If-Match, X-Request-Id). */
function patchWith(instance: Instance, url: string, body: unknown, headers: Record<string, string>) {
  return instance.app.inject({ method: 'PATCH', url, headers: { ...headers, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
}

describe('PATCHes of one type grouped per instance on PostgreSQL + Redis (src/portals/local/patch-group.ts)', { skip: SKIP }, () => {
  it('sent at once to one instance: written in fewer statements than PATCHes, each answered with its own version, one audit entry each, chained', { timeout: 60_000 }, async () => {
    const { a, close } = await twoInstances();
    try {
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'T', entityTypeId: 1100 })).status, 201);
      let statements = 0;
      const write = a.store.write.bind(a.store);
      a.store.write = ((work, committed, options) => (options?.singleStatement && statements++, write(work, committed, options))) as Store['write'];
      const titles = Array.from({ length: 24 }, (_, i) => `Title ${i}`);
      const answers = await Promise.all(titles.map((title) => a.call('PATCH', '/v1/smart-processes/1100', { title })));
      for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.json));
      answers.forEach((answer, i) => assert.equal(answer.json.data.title, titles[i], 'each PATCH is answered with its own change'));
      assert.ok(statements < titles.length, `grouped: ${statements} statements for ${titles.length} PATCHes`);
      const metrics = await a.app.inject({ method: 'GET', url: '/metrics', headers: { 'x-api-key': await managementKeyOf(a) } });
      assert.equal(metrics.statusCode, 200);
      assert.match(metrics.body, new RegExp(`^smartproc_patch_group_size_sum ${titles.length}$`, 'm'), 'GET /metrics: every PATCH counted in a group');
      assert.match(metrics.body, new RegExp(`^smartproc_patch_group_size_count ${statements}$`, 'm'), 'GET /metrics: one observation per statement');

      const [row] = await a.store.db.selectFrom('smart_process_types').select(['version', 'title']).where('entity_type_id', '=', 1100).execute();
      assert.equal(row.version, 1 + titles.length, 'one version per PATCH');
      const history = (await a.call('GET', '/v1/smart-processes/1100/history?limit=100')).json.data as { action: string; changes: { title: { before: string; after: string } } }[];
      const updates = history.filter((entry) => entry.action === 'update').reverse();
      assert.equal(updates.length, titles.length, 'one audit entry per PATCH');
      assert.equal(updates[0].changes.title.before, 'T');
      for (let i = 1; i < updates.length; i++) assert.equal(updates[i].changes.title.before, updates[i - 1].changes.title.after, 'each entry starts where the previous one ended');
      assert.equal(updates.at(-1)!.changes.title.after, row.title, 'the row holds the last PATCH');
      assert.deepEqual(new Set(updates.map((u) => u.changes.title.after)), new Set(titles));
    } finally {
      await close();
    }
  });

  it('reads of one card (or page) that hold the same token share one store read; a read after a write answered gets the new card', { timeout: 60_000 }, async () => {
    const { a, b, close } = await twoInstances();
    try {
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'Shared read', entityTypeId: 1106 })).status, 201);
      const reads = countStoreReads(b.store);
      const cards = await Promise.all(Array.from({ length: 12 }, () => b.call('GET', '/v1/smart-processes/1106')));
      const pages = await Promise.all(Array.from({ length: 12 }, () => b.call('GET', '/v1/smart-processes?limit=50')));
      for (const card of cards) assert.equal(card.json.data.title, 'Shared read');
      for (const page of pages) assert.deepEqual(page.json.data.map((t: { title: string }) => t.title), ['Shared read']);
      assert.equal(reads.get, 1, 'twelve concurrent reads of the card, one store read');
      assert.equal(reads.list, 1, 'twelve concurrent reads of the page, one store read');
      assert.equal((await a.call('PATCH', '/v1/smart-processes/1106', { title: 'Shared read 2' })).status, 200);
      const after = await Promise.all(Array.from({ length: 6 }, () => b.call('GET', '/v1/smart-processes/1106')));
      for (const card of after) assert.equal(card.json.data.title, 'Shared read 2');
      assert.equal(reads.get, 2);
    } finally {
      await close();
    }
  });

  it('sent at once to both instances: every PATCH answered 200 with its own change, one version each, and the audit entries form one chain (no gap, no fork)', { timeout: 60_000 }, async () => {
    const { a, b, close } = await twoInstances();
    try {
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'Both', entityTypeId: 1108 })).status, 201);
      const titles = Array.from({ length: 40 }, (_, i) => `Both ${i}`);
      for (let round = 0; round < 2; round++) {
        const batch = titles.slice(round * 20, round * 20 + 20);
        const answers = await Promise.all(batch.map((title, i) => (i % 2 ? a : b).call('PATCH', '/v1/smart-processes/1108', { title })));
        answers.forEach((answer, i) => {
          assert.equal(answer.status, 200, JSON.stringify(answer.json));
          assert.equal(answer.json.data.title, batch[i]);
        });
      }
      const [row] = await a.store.db.selectFrom('smart_process_types').select(['version', 'title']).where('entity_type_id', '=', 1108).execute();
      assert.equal(row.version, 1 + titles.length, 'one version per PATCH');
      const entries = await a.store.db.selectFrom('audit_log').select(['changes']).where('resource_id', '=', '1108').where('action', '=', 'update').orderBy('id').execute();
      const chain = entries.map((e) => JSON.parse(e.changes).title as { before: string; after: string });
      assert.equal(chain.length, titles.length, 'one entry per PATCH');
      assert.equal(chain[0].before, 'Both');
      for (let i = 1; i < chain.length; i++) assert.equal(chain[i].before, chain[i - 1].after, `entry ${i} starts where entry ${i - 1} ended`);
      assert.equal(chain.at(-1)!.after, row.title);
    } finally {
      await close();
    }
  });

  it('If-Match inside a group: of PATCHes sent at once with the same ETag exactly one is written, the others are 412', { timeout: 60_000 }, async () => {
    const { a, close } = await twoInstances();
    try {
      const created = await a.app.inject({ method: 'POST', url: '/v1/smart-processes', headers: { 'x-api-key': a.key, 'content-type': 'application/json' }, payload: JSON.stringify({ title: 'Guarded', entityTypeId: 1102 }) });
      assert.equal(created.statusCode, 201);
      const etag = String(created.headers.etag);
      const key = a.key;
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => patchWith(a, '/v1/smart-processes/1102', { title: `Guarded ${i}` }, { 'x-api-key': key, 'if-match': etag })));
      const statuses = answers.map((answer) => answer.statusCode).sort();
      assert.deepEqual(statuses, [200, ...Array(9).fill(412)], JSON.stringify(answers.map((answer) => answer.json())));
      const [row] = await a.store.db.selectFrom('smart_process_types').select('version').where('entity_type_id', '=', 1102).execute();
      assert.equal(row.version, 2);
    } finally {
      await close();
    }
  });

  it('a group whose statement is refused: nothing of it is stored, then each PATCH runs alone, so only the one at fault fails; the row and the audit trail hold exactly the PATCHes answered 200', { timeout: 60_000 }, async () => {
    const { a, close } = await twoInstances();
    try {
      assert.equal((await a.call('POST', '/v1/smart-processes', { title: 'Poisoned', entityTypeId: 1104 })).status, 201);
      // An audit entry with this request id cannot be stored: the statement that carries it fails as a whole.
      await sqlOn(a.store, `alter table audit_log add constraint no_poison check (request_id is distinct from 'poison')`);
      const key = a.key;
      const answers = await Promise.all(
        Array.from({ length: 16 }, (_, i) => patchWith(a, '/v1/smart-processes/1104', { title: `Poisoned ${i}` }, { 'x-api-key': key, 'x-request-id': i === 5 ? 'poison' : `req-${i}` })),
      );
      assert.notEqual(answers[5].statusCode, 200, 'the PATCH whose entry cannot be stored fails');
      answers.forEach((answer, i) => i !== 5 && assert.equal(answer.statusCode, 200, `PATCH ${i} is not at fault: ${answer.body}`));
      const ok = answers.filter((answer) => answer.statusCode === 200);
      const [row] = await a.store.db.selectFrom('smart_process_types').select(['version', 'title']).where('entity_type_id', '=', 1104).execute();
      assert.equal(row.version, 1 + ok.length, 'one version per PATCH answered 200, none for the failed ones');
      const entries = await a.store.db.selectFrom('audit_log').select(['request_id']).where('resource', '=', 'type').where('resource_id', '=', '1104').where('action', '=', 'update').execute();
      assert.deepEqual(entries.map((e) => e.request_id).sort(), ok.map((answer) => String(answer.headers['x-request-id'])).sort(), 'an audit entry for each PATCH answered 200, and only for those');
      if (ok.length) assert.ok(ok.some((answer) => answer.json().data.title === row.title), 'the row holds a PATCH that was answered 200');
      else assert.equal(row.title, 'Poisoned');
    } finally {
      await sqlOn(a.store, 'alter table audit_log drop constraint if exists no_poison').catch(() => undefined);
      await close();
    }
  });
});

/** A management key of the instance (every management scope). */
async function managementKeyOf(instance: Instance): Promise<string> {
  return (await instance.app.services.keys.create({ kind: 'management', name: 'metrics', scopes: [...MANAGEMENT_SCOPES], requestsPerSecond: null }, null)).secret;
}

async function sqlOn(store: Store, text: string): Promise<void> {
  const { sql } = await import('kysely');
  await sql.raw(text).execute(store.db);
}
