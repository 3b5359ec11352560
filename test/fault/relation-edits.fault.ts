import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { relationLockStats } from '../../src/portals/local/local-portal.js';
import { openStore, type Store } from '../../src/store/store.js';
import { endsDisagree, orphanEdges, randomFrom, type CardRelations } from '../helpers/relations.js';
import { postgresProblem } from '../helpers/services.js';

/**
 * Fault suite: concurrent relation edits on PostgreSQL (issue 7, defects 3 and 4).
 *
 * Two app instances, each with its own store (its own pool of connections), on one
 * PostgreSQL schema. 16 editors on 10 types, each for a bounded number of operations,
 * alternate between the instances and mix: parent and child sets, both sides at once,
 * scalar PATCHes, PATCHes with If-Match, reads, and deleting a type then creating it
 * again (with relations), which races every edit naming it. Afterwards: no 5xx, no edge
 * to a missing type, and both ends of every edge agree (read through both instances).
 */

const DATABASE_URL = process.env.SMARTPROC_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const EDITORS = 16;
const TYPES = 10;
const OPERATIONS_PER_EDITOR = 250;
/** Editors stop starting operations after this long, whatever is left. */
const TIME_LIMIT_MS = 60_000;

const SKIP = await postgresProblem(DATABASE_URL);

function percentile(values: number[], p: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface Sample {
  kind: string;
  instance: number;
  status: number;
  ms: number;
  body?: string;
}

describe('Fault: concurrent relation edits on PostgreSQL', () => {
  it(`${EDITORS} editors on ${TYPES} types across two instances: 0 × 5xx, no orphan edge, both ends agree`, { skip: SKIP, timeout: 180_000 }, async () => {
    const schema = `fault_rel_${crypto.randomBytes(5).toString('hex')}`;
    const url = new URL(DATABASE_URL);
    url.searchParams.set('schema', schema);
    const stores: Store[] = [];
    const apps: FastifyInstance[] = [];
    try {
      const config = { ...loadConfig({}), databaseUrl: url.toString(), redisUrl: null };
      for (let i = 0; i < 2; i++) {
        const store = openStore({ databaseUrl: url.toString(), dataDir: '.' });
        stores.push(store);
        apps.push(await buildApp({ config, store, logger: process.env.FAULT_LOG ? { level: 'error' } : false }));
      }
      const portal = await apps[0].services.portals.create({ name: 'Fault portal', timeZone: 'UTC' });
      const { secret } = await apps[0].services.keys.create({ kind: 'personal', portalId: portal.id, scopes: ['crm'], userId: 1, requestsPerSecond: null }, null);
      const call = (instance: number, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> =>
        apps[instance].inject({
          method,
          url: `/v1/smart-processes${path}`,
          headers: { 'x-api-key': secret, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
          ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
        });

      const types = Array.from({ length: TYPES }, (_, i) => 3000 + 2 * i);
      for (const entityTypeId of types) assert.equal((await call(0, 'POST', '', { title: `Fault ${entityTypeId}`, entityTypeId })).statusCode, 201);

      const samples: Sample[] = [];
      const restartsBefore = relationLockStats.restarts;
      const started = performance.now();
      const editor = async (seed: number) => {
        const random = randomFrom(seed);
        const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)];
        const others = (self: number) =>
          types
            .filter((x) => x !== self && random() < 0.25)
            .slice(0, 3)
            .map((entityTypeId) => ({ entityTypeId, isChildrenListEnabled: random() < 0.5 }));
        const timed = async (kind: string, instance: number, run: () => Promise<LightMyRequestResponse>) => {
          const t0 = performance.now();
          const res = await run();
          samples.push({ kind, instance, status: res.statusCode, ms: performance.now() - t0, ...(res.statusCode >= 500 || res.statusCode === 422 ? { body: res.body } : {}) });
          return res;
        };
        for (let op = 0; op < OPERATIONS_PER_EDITOR && performance.now() - started < TIME_LIMIT_MS; op++) {
          const self = pick(types);
          const instance = (seed + op) % 2;
          const kind = random();
          if (kind < 0.22) await timed('child', instance, () => call(instance, 'PATCH', `/${self}`, { relations: { child: others(self) } }));
          else if (kind < 0.42) await timed('parent', instance, () => call(instance, 'PATCH', `/${self}`, { relations: { parent: random() < 0.2 ? [{ entityTypeId: 2 }, ...others(self)] : others(self) } }));
          else if (kind < 0.5) await timed('both', instance, () => call(instance, 'PATCH', `/${self}`, { title: `Both ${seed}.${op}`, relations: { parent: others(self), child: others(self) } }));
          else if (kind < 0.64) await timed('scalar', instance, () => call(instance, 'PATCH', `/${self}`, { title: `Editor ${seed}.${op}` }));
          else if (kind < 0.78) {
            const current = await timed('get', instance, () => call(instance, 'GET', `/${self}`));
            const body = random() < 0.5 ? { title: `Careful ${seed}.${op}` } : { relations: { child: others(self) } };
            await timed('if-match', 1 - instance, () => call(1 - instance, 'PATCH', `/${self}`, body, { 'if-match': String(current.headers.etag ?? '"0"') }));
          } else if (kind < 0.9) await timed('get', instance, () => call(instance, 'GET', `/${self}`));
          else {
            // Delete and create again (with relations): races every edit that names this type.
            const deleted = await timed('delete', instance, () => call(instance, 'DELETE', `/${self}`));
            if (deleted.statusCode !== 204) continue;
            const created = await timed('create', 1 - instance, () => call(1 - instance, 'POST', '', { title: `Again ${seed}.${op}`, entityTypeId: self, relations: { parent: others(self) } }));
            // 422 when a parent named was being deleted too: then without relations (only this editor creates this type again).
            if (created.statusCode === 422) await timed('create', instance, () => call(instance, 'POST', '', { title: `Again ${seed}.${op}`, entityTypeId: self }));
          }
        }
      };
      await Promise.all(Array.from({ length: EDITORS }, (_, i) => editor(7000 + i)));
      const seconds = (performance.now() - started) / 1000;

      const statusCounts: Record<string, number> = {};
      const kindCounts: Record<string, Record<string, number>> = {};
      for (const s of samples) {
        statusCounts[s.status] = (statusCounts[s.status] ?? 0) + 1;
        (kindCounts[s.kind] ??= {})[s.status] = (kindCounts[s.kind][s.status] ?? 0) + 1;
      }
      const writes = samples.filter((s) => s.kind !== 'get').map((s) => s.ms);
      const all = samples.map((s) => s.ms);
      const cardsByInstance = await Promise.all(
        [0, 1].map(async (instance) => {
          const cards: CardRelations[] = [];
          for (const etid of types) {
            const res = await call(instance, 'GET', `/${etid}`);
            if (res.statusCode === 200) cards.push(res.json().data);
          }
          return cards;
        }),
      );
      const orphans = await orphanEdges(stores[0]);
      const disagreements = [...endsDisagree(cardsByInstance[0]), ...endsDisagree(cardsByInstance[1])];
      const edgeCount = (await stores[0].db.selectFrom('type_relations').select('portal_id').where('portal_id', '=', portal.id).execute()).length;

      console.log(`relation edits on PostgreSQL: ${EDITORS} editors, ${TYPES} types, 2 instances, ${samples.length} requests (${writes.length} writes) in ${seconds.toFixed(1)} s (${(samples.length / seconds).toFixed(0)}/s)`);
      console.log(`  status counts: ${JSON.stringify(statusCounts)}`);
      console.log(`  by kind: ${JSON.stringify(kindCounts)}`);
      console.log(`  latency ms, all: p50 ${percentile(all, 50).toFixed(1)}, p99 ${percentile(all, 99).toFixed(1)}, max ${Math.max(...all).toFixed(1)}; writes: p50 ${percentile(writes, 50).toFixed(1)}, p99 ${percentile(writes, 99).toFixed(1)}`);
      const refusals: Record<string, number> = {};
      for (const s of samples) if (s.status === 422) {
        const message = String(JSON.parse(s.body!).error.message).replace(/\d+/g, 'N');
        refusals[message] = (refusals[message] ?? 0) + 1;
      }
      console.log(`  422 answers by message: ${JSON.stringify(refusals)}`);
      console.log(`  lock-order restarts: ${relationLockStats.restarts - restartsBefore} (at most ${relationLockStats.mostRuns} runs for one write); edges at the end: ${edgeCount}; types at the end: ${cardsByInstance[0].length}; orphan edges: ${orphans.length}; disagreements: ${disagreements.length}`);

      const fiveHundreds = samples.filter((s) => s.status >= 500);
      assert.equal(fiveHundreds.length, 0, `5xx answers: ${fiveHundreds.slice(0, 3).map((s) => `${s.kind} ${s.status} ${s.body}`).join('\n')}`);
      const unexpected = Object.keys(statusCounts).filter((s) => ![200, 201, 204, 404, 412, 422].includes(Number(s)));
      assert.deepEqual(unexpected, [], JSON.stringify(statusCounts));
      assert.deepEqual(orphans, [], 'no edge to a missing type');
      assert.deepEqual(disagreements, [], 'both ends agree');
      const conflictRetries = stores.reduce((sum, store) => sum + store.stats.conflictRetries, 0);
      console.log(`  writes PostgreSQL aborted for a deadlock or serialization conflict and the store ran again: ${conflictRetries}`);
      assert.equal(conflictRetries, 0, 'no deadlock: the locks are taken in one order, not retried');
      assert.deepEqual(cardsByInstance[0], cardsByInstance[1], 'both instances give the same cards');
      assert.equal(cardsByInstance[0].length, TYPES, 'every type deleted was created again');
    } finally {
      for (const app of apps) await app.close();
      for (const store of stores) await store.close().catch(() => {});
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      try {
        if (process.env.FAULT_LOG) console.log((await admin.query(`select c.oid, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1`, [schema])).rows);
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await admin.end();
      }
    }
  });
});
