/**
 * GET /metrics (issue 11 item 1): the Prometheus text format (prom-client), never open by
 * default: on the main port to management keys only; without a key only on METRICS_PORT
 * (off unless set). The families and their labels, each shown to count what it says.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { createKeyViaApi, mintSession, send } from '../access/access-helpers.js';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { parsePrometheus, valueOf, type Sample } from '../helpers/prometheus.js';
import { openTestStore, TEST_DIALECT } from '../helpers/test-store.js';

async function scrape(t: TestApp): Promise<Sample[]> {
  const res = await send(t, 'GET', '/metrics', { headers: { 'x-api-key': t.managementKey.secret } });
  assert.equal(res.statusCode, 200, res.body);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(res.body).samples;
}

/** Load shedding off: on a busy test machine it would answer 503 where these specs count answers. */
const NOT_SHED = { config: { maxEventLoopDelayMs: 0 } };
const CARD_ROUTE = '/v1/smart-processes/:entityTypeId';

describe('GET /metrics', () => {
  it('is never open by default: 401 without a key, 403 for a portal key, 200 for a management key; METRICS_PORT is off unless set', async () => {
    const t = await createTestApp(NOT_SHED);
    try {
      const none = await send(t, 'GET', '/metrics');
      assert.equal(none.statusCode, 401, none.body);
      assert.equal(json(none).error.code, 'MISSING_API_KEY');
      const portalKey = await send(t, 'GET', '/metrics', { headers: { 'x-api-key': t.key.secret } });
      assert.equal(portalKey.statusCode, 403, portalKey.body);
      assert.equal(json(portalKey).error.code, 'MANAGEMENT_SCOPE_REQUIRED');
      await scrape(t);
    } finally {
      await t.close();
    }
    assert.equal(loadConfig({}).metricsPort, null);
    assert.equal(loadConfig({ METRICS_PORT: '9464' }).metricsPort, 9464);
    assert.equal(loadConfig({ METRICS_PORT: '9464', HOST: '0.0.0.0' }).metricsHost, '0.0.0.0');
    assert.equal(loadConfig({ METRICS_PORT: '9464', HOST: '0.0.0.0', METRICS_HOST: '10.0.0.5' }).metricsHost, '10.0.0.5');
    assert.throws(() => loadConfig({ METRICS_PORT: '70000' }), ConfigError);
  });

  it('requests by route pattern, method and status, and latency histograms by route and method: label values from the route, never the URL', async () => {
    const t = await createTestApp(NOT_SHED);
    try {
      const created = await t.call('POST', '/v1/smart-processes', { title: 'Counted' });
      assert.equal(created.statusCode, 201, created.body);
      const id = json(created).data.entityTypeId;
      for (let i = 0; i < 3; i++) assert.equal((await t.call('GET', `/v1/smart-processes/${id}`)).statusCode, 200);
      assert.equal((await t.call('GET', '/v1/smart-processes/9998')).statusCode, 404);
      assert.equal((await t.call('GET', '/no/such/route/4711')).statusCode, 404);
      const samples = await scrape(t);
      const requests = (labels: Record<string, string>) => valueOf(samples, 'smartproc_http_requests_total', labels);
      assert.equal(requests({ route: CARD_ROUTE, method: 'GET', status: '200' }), 3);
      assert.equal(requests({ route: CARD_ROUTE, method: 'GET', status: '404' }), 1);
      assert.equal(requests({ route: '(unmatched)', method: 'GET', status: '404' }), 1);
      assert.equal(samples.filter((s) => s.name === 'smartproc_http_requests_total' && s.labels.method === 'POST' && s.labels.status === '201').length, 1);
      const routes = new Set(samples.filter((s) => s.name.startsWith('smartproc_http_')).map((s) => s.labels.route));
      for (const route of routes) assert.doesNotMatch(route, /4711|9998|\d{4,}/, `route label ${route} is a pattern, not a URL`);

      const card = { route: CARD_ROUTE, method: 'GET' };
      assert.equal(valueOf(samples, 'smartproc_http_request_duration_seconds_count', card), 4, 'the histogram counts every GET of the route, whatever its status');
      const buckets = samples.filter((s) => s.name === 'smartproc_http_request_duration_seconds_bucket' && s.labels.route === CARD_ROUTE && s.labels.method === 'GET');
      assert.deepEqual(buckets.map((b) => b.labels.le), ['0.001', '0.005', '0.025', '0.1', '0.5', '2.5', '+Inf'], 'few buckets');
      assert.equal(buckets.at(-1)!.value, 4);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative');
      assert.ok(valueOf(samples, 'smartproc_http_request_duration_seconds_sum', card) > 0);
      const info = samples.find((s) => s.name === 'smartproc_info');
      assert.equal(info?.labels.store, TEST_DIALECT);
      assert.ok(samples.some((s) => s.name === 'process_cpu_seconds_total'), 'process metrics too');
    } finally {
      await t.close();
    }
  });

  it('rate-limit refusals count every 429, and key-cache lookups count hits and misses of keys and sessions', async () => {
    const t = await createTestApp({ ...NOT_SHED, keyCacheTtlMs: 60_000 });
    try {
      const limited = await createKeyViaApi(t, { kind: 'personal', portalId: t.portal.id, scopes: ['crm'], requestsPerSecond: 1 });
      const before = await scrape(t); // the management key: a miss when it was first used above, a hit now
      let refused = 0;
      for (let i = 0; i < 4; i++) if ((await send(t, 'GET', '/v1/smart-processes', { headers: { 'x-api-key': limited.secret } })).statusCode === 429) refused++;
      assert.ok(refused >= 2, `at most 2 of 4 requests within a second or two pass a limit of 1/s; ${refused} were refused`);
      const application = await createKeyViaApi(t, { kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
      const { token } = await mintSession(t, application.id, 3);
      for (let i = 0; i < 2; i++) assert.equal((await send(t, 'GET', '/v1/smart-processes', { headers: { 'x-api-key': application.secret, authorization: `Bearer ${token}` } })).statusCode, 200);
      const after = await scrape(t);
      const delta = (name: string, labels: Record<string, string> = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
      assert.equal(delta('smartproc_rate_limit_refusals_total'), refused);
      // Keys: the limited key (1 miss, 3 hits), the application key (1 miss, 1 hit), the management key (3 hits: create, session, this scrape).
      assert.equal(delta('smartproc_key_cache_lookups_total', { cache: 'key', result: 'miss' }), 2);
      assert.equal(delta('smartproc_key_cache_lookups_total', { cache: 'key', result: 'hit' }), 3 + 1 + 3);
      assert.equal(delta('smartproc_key_cache_lookups_total', { cache: 'session', result: 'miss' }), 1);
      assert.equal(delta('smartproc_key_cache_lookups_total', { cache: 'session', result: 'hit' }), 1);
    } finally {
      await t.close();
    }
  });

  it('store errors by kind: a store that is unavailable answers 503 and counts under kind="unavailable"', async () => {
    const t = await createTestApp(NOT_SHED);
    try {
      const before = await scrape(t);
      const db = t.app.services.store.db as unknown as { selectFrom: unknown };
      const selectFrom = db.selectFrom;
      db.selectFrom = () => {
        throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      };
      const res = await t.call('GET', '/v1/smart-processes');
      db.selectFrom = selectFrom;
      assert.equal(res.statusCode, 503, res.body);
      const after = await scrape(t);
      assert.equal(valueOf(after, 'smartproc_store_errors_total', { kind: 'unavailable' }) - valueOf(before, 'smartproc_store_errors_total', { kind: 'unavailable' }), 1);
      assert.ok(after.some((s) => s.name === 'smartproc_store_conflict_retries_total'));
    } finally {
      await t.close();
    }
  });

  it('write-batch sizes (SQLite): one observation per group-commit transaction, summing to the writes; none on PostgreSQL', async () => {
    const t = await createTestApp(NOT_SHED);
    try {
      const before = await scrape(t);
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => t.call('POST', '/v1/smart-processes', { title: `Batched ${i}` })));
      for (const res of results) assert.equal(res.statusCode, 201, res.body);
      const after = await scrape(t);
      const delta = (name: string) => valueOf(after, name) - valueOf(before, name);
      if (TEST_DIALECT === 'sqlite') {
        assert.equal(delta('smartproc_store_write_batch_size_sum'), 6, 'every write is in one batch');
        const batches = delta('smartproc_store_write_batch_size_count');
        assert.ok(batches >= 1 && batches <= 6, `${batches} transactions for 6 writes`);
      } else {
        assert.equal(valueOf(after, 'smartproc_store_write_batch_size_count'), 0);
      }
    } finally {
      await t.close();
    }
  });

  it('bitrix24 portals: upstream calls and errors by portal and method, budget queue length and wait, cache lookups and hit ratio per portal', async () => {
    const t = await createTestApp({ ...NOT_SHED, portalKind: 'bitrix24' });
    try {
      const portal = String(t.portal.id);
      const created = await t.call('POST', '/v1/smart-processes', { title: 'Upstream' });
      assert.equal(created.statusCode, 201, created.body);
      const id = json(created).data.entityTypeId;
      const before = await scrape(t);
      for (let i = 0; i < 3; i++) assert.equal((await t.call('GET', '/v1/smart-processes')).statusCode, 200);
      t.fake!.inject.internalError('crm.type.getByEntityTypeId', 1);
      assert.equal((await t.call('GET', `/v1/smart-processes/${id}`)).statusCode, 200, 'the read is repeated after the server error');
      const after = await scrape(t);
      const delta = (name: string, labels: Record<string, string>) => valueOf(after, name, labels) - valueOf(before, name, labels);
      const listCalls = t.fake!.calls.filter((c) => c.method === 'crm.type.list').length;
      assert.ok(listCalls >= 1);
      assert.equal(valueOf(after, 'smartproc_bitrix24_calls_total', { portal, method: 'crm.type.list' }), listCalls, 'every crm.type.list the fake saw');
      assert.equal(delta('smartproc_bitrix24_calls_total', { portal, method: 'crm.type.getByEntityTypeId' }), 2, 'the failed call and its repetition');
      assert.equal(delta('smartproc_bitrix24_errors_total', { portal, method: 'crm.type.getByEntityTypeId', kind: 'server' }), 1);
      // The list: one miss (read from the portal), then two hits.
      assert.equal(delta('smartproc_bitrix24_cache_lookups_total', { portal, result: 'miss' }), 2, 'the list once, the card once');
      assert.equal(delta('smartproc_bitrix24_cache_lookups_total', { portal, result: 'hit' }), 2);
      const hits = valueOf(after, 'smartproc_bitrix24_cache_lookups_total', { portal, result: 'hit' });
      const misses = valueOf(after, 'smartproc_bitrix24_cache_lookups_total', { portal, result: 'miss' });
      assert.equal(valueOf(after, 'smartproc_bitrix24_cache_hit_ratio', { portal }), hits / (hits + misses));
      assert.equal(valueOf(after, 'smartproc_bitrix24_budget_queue_length', { portal }), 0, 'nothing waits now');
      const waits = valueOf(after, 'smartproc_bitrix24_budget_wait_seconds_count', { portal });
      const calls = after.filter((s) => s.name === 'smartproc_bitrix24_calls_total' && s.labels.portal === portal).reduce((sum, s) => sum + s.value, 0);
      assert.ok(waits >= 1 && waits <= calls, `one wait per call that went through the budget (${waits} of ${calls})`);
    } finally {
      await t.close();
    }
  });

  it('METRICS_PORT: GET /metrics without a key on its own port (anything else 404), closed with the server; the main port still wants a management key', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-metrics-'));
    const testStore = openTestStore();
    await testStore.store.close();
    const config = { ...loadConfig({}), port: 0, host: '127.0.0.1', dataDir, databaseUrl: testStore.databaseUrl, redisUrl: null, metricsPort: 0, metricsHost: '127.0.0.1' };
    const server = await startServer(config, { logger: false });
    try {
      assert.ok(server.metricsUrl, 'the metrics port is listening');
      const res = await fetch(server.metricsUrl!);
      assert.equal(res.status, 200);
      const { types } = parsePrometheus(await res.text());
      assert.equal(types.get('smartproc_http_requests_total'), 'counter');
      assert.equal(types.get('smartproc_http_request_duration_seconds'), 'histogram');
      assert.equal((await fetch(new URL('/v1/smart-processes', server.metricsUrl!))).status, 404);
      assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
    } finally {
      await server.app.close();
      await testStore.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
    await assert.rejects(fetch(server.metricsUrl!), 'closed with the server');
  });

  it('every family has HELP and TYPE, with the documented labels', async () => {
    const t = await createTestApp(NOT_SHED);
    try {
      const res = await send(t, 'GET', '/metrics', { headers: { 'x-api-key': t.managementKey.secret } });
      const { types, help } = parsePrometheus(res.body);
      const families: Record<string, string> = {
        smartproc_info: 'gauge',
        smartproc_http_requests_total: 'counter',
        smartproc_http_request_duration_seconds: 'histogram',
        smartproc_rate_limit_refusals_total: 'counter',
        smartproc_key_cache_lookups_total: 'counter',
        smartproc_store_errors_total: 'counter',
        smartproc_store_conflict_retries_total: 'counter',
        smartproc_store_write_batch_size: 'histogram',
        smartproc_patch_group_size: 'histogram',
        smartproc_bitrix24_calls_total: 'counter',
        smartproc_bitrix24_errors_total: 'counter',
        smartproc_bitrix24_budget_queue_length: 'gauge',
        smartproc_bitrix24_budget_wait_seconds: 'histogram',
        smartproc_bitrix24_cache_lookups_total: 'counter',
        smartproc_bitrix24_cache_hit_ratio: 'gauge',
      };
      for (const [name, type] of Object.entries(families)) {
        assert.equal(types.get(name), type, `${name} is a ${type}`);
        assert.ok(help.get(name), `${name} has HELP`);
      }
      const docs = fs.readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
      for (const name of Object.keys(families)) assert.ok(docs.includes(`\`${name}\``), `docs/operations.md documents ${name}`);
    } finally {
      await t.close();
    }
  });
});
