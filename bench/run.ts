/**
 * npm run bench: throughput, latency and memory of smartproc against a bare Fastify
 * ceiling, in one run. See bench/README.md.
 *
 * Env: BENCH_DURATION (s per scenario, default 10), BENCH_WARMUP (s of unmeasured load
 * before each scenario, default 2), BENCH_CONNECTIONS (default 32), BENCH_REDIS_URL
 * (default redis://127.0.0.1:6379), BENCH_DATABASE_URL (PostgreSQL rows; default
 * postgres://postgres@127.0.0.1:5432/test; "off" skips them).
 *
 * Exit code: 0 when everything ran (also with MISSes: it is a report), 1 when something
 * broke (a server did not start, non-2xx or socket errors in a scenario), 2 on the
 * overall time limit.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CpuMeter, describeProcess, freePort, killAllNow, lifetimePeakMb, ROOT, RssSampler, startServer, stopAll, type CpuFigures, type ServerProcess } from './children.js';
import { percentile, runLoad, Samples, type LoadResult, type LoadSpec } from './load.js';
import { parseRedisUrl, redisCommands } from './redis-probe.js';
import { findPgbench, pgbenchInit, pgbenchRun, scratchDatabase, type PgbenchResult } from './pgbench.js';
import pg from 'pg';
import crypto from 'node:crypto';
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { startFakeBitrix24 } from '../test/fakes/bitrix24/fake-portal.js';

// ---------------------------------------------------------------- settings

function numberFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    console.error(`${name} must be a number ${min}..${max}, got "${raw}"`);
    process.exit(1);
  }
  return value;
}

const DURATION = numberFromEnv('BENCH_DURATION', 10, 1, 600);
const WARMUP = numberFromEnv('BENCH_WARMUP', 2, 0, 60);
const CONNECTIONS = Math.round(numberFromEnv('BENCH_CONNECTIONS', 32, 1, 1024));
const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
/**
 * GET /v1/smart-processes?limit=50 before issue 11 (commit 13ae710), measured by this bench
 * on the 2-core reference machine, in one run: 2,188 req/s while the bare-Fastify ceiling
 * (0a) served 45,028 req/s, i.e. 0.0486 of the ceiling. Machines differ several-fold (the
 * ceiling has measured 16,000-45,000 req/s on machines of the same kind), so the 4x target
 * is taken against the ceiling measured in the same run: (c / 0a) / 0.0486 >= 4.
 */
const LIST_BEFORE = { rps: 2188, ceilingRps: 45028 };
const LIST_BEFORE_OF_CEILING = LIST_BEFORE.rps / LIST_BEFORE.ceilingRps;
const TYPE_COUNT = 50;
/** Proxy rows: the fake Bitrix24 portal's limits (a standard plan), the types seeded there, and the connections of the mixed row. */
const PROXY_LIMITS = { burst: 50, perSecond: 2 };
const PROXY_TYPES = 10;
/** The mixed row writes: its PATCHes wait for the portal's 2 requests/s; few connections keep the waits under the queue timeout. */
const PROXY_MIX_CONNECTIONS = 4;
/** The "limit so high it never refuses". */
const HIGH_LIMIT = 1_000_000;

const TARGET = {
  getCardOfCeiling: 0.5,
  patchOfCeiling: 0.25,
  getCardP99Ms: 10,
  peakRssMb: 200,
  limitedRatio: 0.9,
  listSpeedup: 4,
  pgGetCardOfCeiling: 0.35,
  pgPatchOfPgbench: 0.5,
  pgP99Ms: 20,
};

/** Rows that take turns do so in this many slices each (1 s each by default): short slices spread bursts of steal over all of them. */
const SLICES = Math.max(1, Math.min(10, Math.floor(DURATION)));
const SCENARIOS = 21;
/** Everything together must end within this (watchdog). */
const BUDGET_MS = (SCENARIOS * (DURATION + WARMUP + 20) + 180) * 1000;

// ---------------------------------------------------------------- bookkeeping

interface Row {
  id: string;
  /** The ceiling row this row is compared with (measured in turns with it, or row 0). */
  ceilingId: string;
  label: string;
  server: string;
  /** Average requests per second: completed requests / seconds. */
  rps: number;
  /** ms, from every response's own timing. */
  p50: number;
  p99: number;
  acP50: number;
  acP99: number;
  total: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** Peak RSS of the server during the row, MB. */
  rssMb: number;
  /** Server CPU as % of one core. */
  serverCpuPct: number;
  /** Server CPU time per completed request, microseconds. */
  serverUsPerRequest: number;
  /** This process (autocannon) as % of one core. */
  benchCpuPct: number;
  /** CPU used by other processes, % of the whole machine. */
  othersPct: number;
  /** CPU time taken by the hypervisor (steal), % of the whole machine. */
  stealPct: number;
  /** Proxy rows: connections used (when not CONNECTIONS), calls the fake portal received per completed client request (measured part). */
  connections?: number;
  upstreamPerRequest?: number;
}

const rows: Row[] = [];
/** pgbench in the same run: select-only and the built-in write transaction (null: skipped, see pgSkipReason). */
const pgbench: { selectOnly: PgbenchResult | null; write: PgbenchResult | null } = { selectOnly: null, write: null };
let pgSkipReason: string | null = null;
let pgbenchSkipReason: string | null = null;
/** Things that broke: any makes the exit code 1. */
const problems: string[] = [];
const notes: string[] = [];
const lifetimeRss: { server: string; mb: number | null }[] = [];
let tmpDir: string | null = null;
const loadBefore = os.loadavg();
let redisSkipReason: string | null = null;
let keys: Keys | null = null;
/** Proxy rows: what the fake Bitrix24 portal saw over the whole proxy part (setup, warm-ups and rows). */
let proxy: { restRequests: number; rejected503: number; maxBucketLevel: number; queueTimeouts: number } | null = null;

function removeTmp(): void {
  if (tmpDir) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    tmpDir = null;
  }
}

process.on('exit', () => {
  killAllNow();
  removeTmp();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping the servers`);
    killAllNow();
    removeTmp();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  console.error(`\nbench: still running after ${Math.round(BUDGET_MS / 1000)} s; killing the servers and giving up`);
  killAllNow();
  removeTmp();
  process.exit(2);
}, BUDGET_MS);
watchdog.unref();

const log = (message: string) => console.log(`[bench] ${message}`);

// ---------------------------------------------------------------- HTTP setup calls

interface Answer {
  status: number;
  json: any;
  headers: Headers;
}

/** A setup call; a 503 of load shedding (a busy machine) is tried again, up to 10 times, after the retryAfter it names. */
async function call(base: string, method: string, route: string, key: string | null, body?: unknown): Promise<Answer> {
  for (let attempt = 1; ; attempt++) {
    const answer = await callOnce(base, method, route, key, body);
    if (answer.status !== 503 || answer.json?.error?.code !== 'SERVICE_UNAVAILABLE' || attempt >= 10) return answer;
    await new Promise((resolve) => setTimeout(resolve, 1000 * (Number(answer.json.error.retryAfter) || 1)));
  }
}

async function callOnce(base: string, method: string, route: string, key: string | null, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (key) headers['x-api-key'] = key;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(base + route, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: response.status, json, headers: response.headers };
}

function expectStatus(answer: Answer, status: number, what: string): void {
  if (answer.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${answer.status}: ${JSON.stringify(answer.json).slice(0, 600)}`);
}

// ---------------------------------------------------------------- measuring

type Scenario = Omit<LoadSpec, 'title' | 'connections' | 'durationSec'>;

interface Spec {
  id: string;
  /** The ceiling row this row is compared with; default 0. */
  ceilingId?: string;
  label: string;
  scenario: Scenario;
  server: ServerProcess;
  serverLabel: string;
  /** Default CONNECTIONS. */
  connections?: number;
  /** Proxy rows: the upstream portal's request count so far (REST requests at the fake). */
  upstream?: () => number;
  /** Proxy rows: 504 QUEUE_TIMEOUT (the portal's budget) is an allowed answer, counted, not a problem. */
  allowQueueTimeout?: boolean;
  /** Two-instance rows: the same load on a second server at the same time, the connections split between both; CPU and requests add up. */
  split?: { server: ServerProcess; scenario: Scenario };
}

/** A measured row in the making: its slices add up. */
class Tally {
  readonly samples = new Samples();
  total = 0;
  durationSec = 0;
  non2xx = 0;
  errors = 0;
  timeouts = 0;
  statusCodes: Record<string, number> = {};
  acP50 = 0;
  acP99 = 0;
  rssMb = 0;
  serverCpuMs: number | null = 0;
  benchCpuMs = 0;
  othersCpuMs: number | null = 0;
  stealCpuMs: number | null = 0;
  machineCpuMs: number | null = 0;
  wallMs = 0;

  add(result: LoadResult, rssMb: number, cpu: CpuFigures): void {
    this.total += result.total;
    this.durationSec += result.durationSec;
    this.non2xx += result.non2xx;
    this.errors += result.errors;
    this.timeouts += result.timeouts;
    for (const [code, count] of Object.entries(result.statusCodes)) this.statusCodes[code] = (this.statusCodes[code] ?? 0) + count;
    this.acP50 = Math.max(this.acP50, result.acP50);
    this.acP99 = Math.max(this.acP99, result.acP99);
    this.rssMb = Math.max(this.rssMb, rssMb);
    const sum = (a: number | null, b: number | null) => (a === null || b === null ? null : a + b);
    this.serverCpuMs = sum(this.serverCpuMs, cpu.serverMs);
    this.benchCpuMs += cpu.benchMs;
    this.othersCpuMs = sum(this.othersCpuMs, cpu.othersMs);
    this.stealCpuMs = sum(this.stealCpuMs, cpu.stealMs);
    this.machineCpuMs = sum(this.machineCpuMs, cpu.machineMs);
    this.wallMs += cpu.wallMs;
  }

  row(spec: Spec, server: string): Row {
    const sorted = this.samples.sorted();
    return {
      id: spec.id,
      ceilingId: spec.ceilingId ?? '0',
      label: spec.label,
      server,
      rps: this.total / this.durationSec,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      acP50: this.acP50,
      acP99: this.acP99,
      total: this.total,
      non2xx: this.non2xx,
      errors: this.errors,
      timeouts: this.timeouts,
      statusCodes: this.statusCodes,
      rssMb: this.rssMb,
      serverCpuPct: this.serverCpuMs === null ? Number.NaN : (100 * this.serverCpuMs) / this.wallMs,
      serverUsPerRequest: this.serverCpuMs === null ? Number.NaN : (1000 * this.serverCpuMs) / this.total,
      benchCpuPct: (100 * this.benchCpuMs) / this.wallMs,
      othersPct: this.othersCpuMs === null || !this.machineCpuMs ? Number.NaN : (100 * this.othersCpuMs) / this.machineCpuMs,
      stealPct: this.stealCpuMs === null || !this.machineCpuMs ? Number.NaN : (100 * this.stealCpuMs) / this.machineCpuMs,
    };
  }
}

/**
 * Measures one or more scenarios (each on its own server). Each gets an unmeasured
 * warm-up, then DURATION seconds of load. With several scenarios and slices > 1 they
 * take turns (0a, a, d, 0a, a, d, ...) so that all see the same conditions on a machine
 * whose speed drifts; their figures add up over the slices. A server's RSS and CPU are
 * measured per slice.
 */
async function measure(specs: Spec[], slices = 1): Promise<Row[]> {
  const tallies = specs.map(() => new Tally());
  for (const spec of specs) {
    log(`${spec.id}. ${spec.label} [${spec.serverLabel}]: ${WARMUP ? `${WARMUP} s warm-up + ` : ''}${DURATION} s${slices > 1 ? ` in ${slices} slices taking turns with ${specs.filter((s) => s !== spec).map((s) => s.id).join(', ')}` : ''}, ${spec.connections ?? CONNECTIONS} connections`);
  }
  for (const spec of specs) if (WARMUP > 0) await runSpec(spec, WARMUP, `${spec.label} warm-up`);
  const upstream0 = specs.map((spec) => spec.upstream?.() ?? 0);
  for (let slice = 0; slice < slices; slice++) {
    for (const [i, spec] of specs.entries()) {
      const { server, serverLabel } = spec;
      const rss = new RssSampler(server.pid);
      const cpu = new CpuMeter(server.pid);
      const rss2 = spec.split ? new RssSampler(spec.split.server.pid) : null;
      const cpu2 = spec.split ? new CpuMeter(spec.split.server.pid) : null;
      rss.start();
      rss2?.start();
      cpu.start();
      cpu2?.start();
      const result = await runSpec(spec, DURATION / slices, spec.label, tallies[i].samples);
      const figures = cpu.stop();
      const second = cpu2?.stop();
      if (second) {
        // Both servers' CPU; "others" without the second server.
        figures.serverMs = figures.serverMs === null || second.serverMs === null ? null : figures.serverMs + second.serverMs;
        figures.othersMs = figures.othersMs === null || second.serverMs === null ? null : Math.max(0, figures.othersMs - second.serverMs);
      }
      tallies[i].add(result, Math.max(rss.stop().peakMb, rss2?.stop().peakMb ?? 0), figures);
      if (!server.alive) throw new Error(`${serverLabel} died during "${spec.label}"\n${server.tail()}`);
      if (spec.split && !spec.split.server.alive) throw new Error(`the second server died during "${spec.label}"\n${spec.split.server.tail()}`);
    }
  }
  return specs.map((spec, i) => {
    const row = tallies[i].row(spec, spec.serverLabel);
    if (spec.connections !== undefined) row.connections = spec.connections;
    if (spec.upstream) row.upstreamPerRequest = (spec.upstream() - upstream0[i]) / row.total;
    rows.push(row);
    const allowed = spec.allowQueueTimeout ? (row.statusCodes['504'] ?? 0) : 0;
    if (row.non2xx - allowed > 0 || row.errors > 0) {
      problems.push(`${row.id}. ${row.label} [${spec.serverLabel}]: ${row.non2xx} non-2xx, ${row.errors} socket errors (${row.timeouts} timeouts); status codes ${JSON.stringify(row.statusCodes)}`);
    }
    log(`   ${row.id}: ${fmt(row.rps, 0)} req/s, p50 ${fmt(row.p50, 2)} ms, p99 ${fmt(row.p99, 2)} ms, non-2xx ${row.non2xx}, server CPU ${fmt(row.serverCpuPct, 0)}% (${fmt(row.serverUsPerRequest, 0)} us/req), others ${fmt(row.othersPct, 0)}%, peak RSS ${fmt(row.rssMb, 1)} MB`);
    return row;
  });
}

/** A spec's load for `seconds`: on its server, or split across two servers at the same time (then the results add up). */
async function runSpec(spec: Spec, seconds: number, title: string, samples?: Samples): Promise<LoadResult> {
  const connections = spec.connections ?? CONNECTIONS;
  if (!spec.split) return runLoad({ ...spec.scenario, title, connections, durationSec: seconds }, samples);
  const half = Math.max(1, Math.floor(connections / 2));
  const [one, two] = await Promise.all([
    runLoad({ ...spec.scenario, title, connections: half, durationSec: seconds }, samples),
    runLoad({ ...spec.split.scenario, title, connections: connections - half || 1, durationSec: seconds }, samples),
  ]);
  const statusCodes = { ...one.statusCodes };
  for (const [code, count] of Object.entries(two.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + count;
  return {
    title,
    total: one.total + two.total,
    durationSec: Math.max(one.durationSec, two.durationSec),
    non2xx: one.non2xx + two.non2xx,
    errors: one.errors + two.errors,
    timeouts: one.timeouts + two.timeouts,
    statusCodes,
    acP50: Math.max(one.acP50, two.acP50),
    acP99: Math.max(one.acP99, two.acP99),
  };
}

/** One request before the load: it must succeed, and the rate-limit headers must show whether the limiter is in the path. */
async function probe(base: string, route: string, key: string, limited: boolean, what: string): Promise<void> {
  const answer = await call(base, 'GET', route, key);
  expectStatus(answer, 200, what);
  const header = answer.headers.get('x-ratelimit-limit');
  if (limited && header === null) throw new Error(`${what}: expected x-ratelimit-limit (the key has a limit), got none`);
  if (!limited && header !== null) throw new Error(`${what}: the unlimited key answered with x-ratelimit-limit: ${header}`);
}

// ---------------------------------------------------------------- smartproc

interface Keys {
  management: string;
  portalId: number;
  unlimited: string;
  limited: string;
  limitedId: string;
  limit: number;
}

function smartprocEnv(port: number, dataDir: string, redisUrl: string | null, databaseUrl: string | null): Record<string, string> {
  return {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    // Nothing from the caller's environment may redirect the store or the limiter.
    DATABASE_URL: databaseUrl ?? '',
    REDIS_URL: redisUrl ?? '',
    SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY: '',
    TRUST_PROXY: '',
  };
}

async function startSmartproc(name: string, dataDir: string, redisUrl: string | null, databaseUrl: string | null = null): Promise<ServerProcess> {
  const port = await freePort();
  const server = await startServer({ name, entry: 'dist/src/cli/bin.js', nodeFlags: NODE_FLAGS, args: ['serve'], env: smartprocEnv(port, dataDir, redisUrl, databaseUrl), port, readyPath: '/health' });
  log(`${name} ready at ${server.url} (${describeProcess(server.pid)})`);
  return server;
}

async function createKeys(base: string, dataDir: string): Promise<Keys> {
  const file = path.join(dataDir, 'bootstrap-keys.json');
  const bootstrap = JSON.parse(fs.readFileSync(file, 'utf8')) as { managementKey: string; personalKey: string; portal: { id: number } };
  const portalId = bootstrap.portal.id;
  const personal = (requestsPerSecond: number | null) => ({ kind: 'personal', portalId, scopes: ['crm'], userId: 1, requestsPerSecond, name: `bench ${requestsPerSecond ?? 'unlimited'}` });

  const unlimited = await call(base, 'POST', '/v1/keys', bootstrap.managementKey, personal(null));
  expectStatus(unlimited, 201, 'POST /v1/keys (unlimited key)');

  let limit = HIGH_LIMIT;
  let limited = await call(base, 'POST', '/v1/keys', bootstrap.managementKey, personal(limit));
  if (limited.status === 400) {
    // The key schema caps requestsPerSecond; take the largest value it allows.
    const detail = JSON.stringify(limited.json?.error?.details ?? limited.json?.error?.message ?? limited.json);
    const maximum = Number(/must be <= (\d+)/.exec(detail)?.[1] ?? 100_000);
    notes.push(`POST /v1/keys refused requestsPerSecond ${HIGH_LIMIT} (400 ${detail.slice(0, 200)}); the "high limit" key uses ${maximum}, the largest the API accepts, still far above the load.`);
    limit = maximum;
    limited = await call(base, 'POST', '/v1/keys', bootstrap.managementKey, personal(limit));
  }
  expectStatus(limited, 201, `POST /v1/keys (key with ${limit} rps)`);
  return { management: bootstrap.managementKey, portalId, unlimited: unlimited.json.data.secret, limited: limited.json.data.secret, limitedId: limited.json.data.id, limit };
}

async function seedTypes(base: string, key: string): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 1; i <= TYPE_COUNT; i++) {
    const created = await call(base, 'POST', '/v1/smart-processes', key, { title: `Bench type ${i}`, isStagesEnabled: i % 2 === 0 });
    expectStatus(created, 201, `POST /v1/smart-processes #${i}`);
    ids.push(created.json.data.entityTypeId);
  }
  const list = await call(base, 'GET', `/v1/smart-processes?limit=${TYPE_COUNT}`, key);
  expectStatus(list, 200, 'GET /v1/smart-processes');
  if (list.json.data.length !== TYPE_COUNT) throw new Error(`expected ${TYPE_COUNT} types in the list, got ${list.json.data.length}`);
  return ids;
}

const apiHeaders = (key: string) => ({ 'x-api-key': key });

// ---------------------------------------------------------------- proxy rows (a bitrix24 portal)

/**
 * p1/p2: smartproc as a proxy in front of a Bitrix24 portal. The fake portal of
 * test/fakes/bitrix24 (written from the Bitrix24 docs, limits 50/2 like a standard plan)
 * runs in this process; the smartproc child gets a bitrix24 portal for it through
 * POST /v1/portals with a webhook URL, a personal key for that portal, and types seeded
 * at the fake directly (as if made in Bitrix24). p1 reads one card; p2 is 90 % reads of
 * that card and 10 % PATCHes of another type (titles alternating, so each one writes).
 */
async function proxyRows(server: ServerProcess, managementKey: string): Promise<void> {
  const fake = await startFakeBitrix24({ limits: PROXY_LIMITS });
  try {
    const ids: number[] = [];
    for (let i = 1; i <= PROXY_TYPES; i++) ids.push(Number(fake.state.seedType({ title: `Proxy type ${i}`, isStagesEnabled: i % 2 === 0 }).entityTypeId));
    const portal = await call(server.url, 'POST', '/v1/portals', managementKey, { kind: 'bitrix24', name: 'Bench Bitrix24', webhookUrl: fake.webhookUrl(1), limits: PROXY_LIMITS });
    expectStatus(portal, 201, 'POST /v1/portals (bitrix24, webhook of the fake portal)');
    const key = await call(server.url, 'POST', '/v1/keys', managementKey, { kind: 'personal', portalId: portal.json.data.id, scopes: ['crm'], userId: 1, requestsPerSecond: null, name: 'bench bitrix24' });
    expectStatus(key, 201, 'POST /v1/keys (bitrix24 portal)');
    const secret = key.json.data.secret as string;
    const [cardId, patchId] = [ids[0], ids[ids.length - 1]];
    log(`bitrix24 portal ${portal.json.data.id} -> fake portal ${fake.url} (limits ${PROXY_LIMITS.burst}/${PROXY_LIMITS.perSecond}), ${ids.length} types seeded there; GET card uses ${cardId}, PATCH uses ${patchId}`);
    await probe(server.url, `/v1/smart-processes/${cardId}`, secret, false, 'GET card, bitrix24 portal');
    const on = { server, serverLabel: 'SQLite+memory', upstream: () => fake.stats.restRequests };
    const card = `${server.url}/v1/smart-processes/${cardId}`;
    const [p1] = await measure([{ id: 'p1', label: `proxy: GET card /v1/smart-processes/${cardId}, bitrix24 portal`, scenario: { url: card, headers: apiHeaders(secret) }, ...on }]);

    const headers = apiHeaders(secret);
    const patchHeaders = { ...headers, 'content-type': 'application/json' };
    const read = { method: 'GET' as const, path: `/v1/smart-processes/${cardId}`, headers };
    const patch = (title: string) => ({ method: 'PATCH' as const, path: `/v1/smart-processes/${patchId}`, headers: patchHeaders, body: JSON.stringify({ title }) });
    const requests = [...Array(9).fill(read), patch('Proxy A'), ...Array(9).fill(read), patch('Proxy B')];
    const [p2] = await measure([{ id: 'p2', label: `proxy: 90 % GET card ${cardId} / 10 % PATCH ${patchId}, bitrix24 portal`, scenario: { url: card, requests }, connections: PROXY_MIX_CONNECTIONS, allowQueueTimeout: true, ...on }]);
    const queueTimeouts = p2.statusCodes['504'] ?? 0;
    proxy = { restRequests: fake.stats.restRequests, rejected503: fake.stats.queryLimitExceeded, maxBucketLevel: fake.stats.maxBucketLevel, queueTimeouts };
    notes.push(
      `proxy rows (p1, p2): the fake Bitrix24 portal (test/fakes/bitrix24, limits ${PROXY_LIMITS.burst}/${PROXY_LIMITS.perSecond}) runs in the bench process, next to autocannon (its CPU is in gen CPU%). ` +
        `Upstream calls per client request (measured part): p1 ${fmt(p1.upstreamPerRequest ?? Number.NaN, 4)}, p2 ${fmt(p2.upstreamPerRequest ?? Number.NaN, 4)}; ` +
        `the fake got ${fake.stats.restRequests} REST requests in all (setup and warm-ups included), its bucket peaked at ${fmt(fake.stats.maxBucketLevel, 1)}, it sent ${fake.stats.queryLimitExceeded} × 503 QUERY_LIMIT_EXCEEDED. ` +
        `p2 uses ${PROXY_MIX_CONNECTIONS} connections (its PATCHes wait for the portal's budget; each costs a fresh read, crm.type.update and drops the cache); 504 QUEUE_TIMEOUT answers there: ${queueTimeouts} (allowed: the budget's answer).`,
    );
  } finally {
    await fake.close();
  }
}

// ---------------------------------------------------------------- PostgreSQL rows

/**
 * g1-g3: smartproc on PostgreSQL (a fresh schema of BENCH_DATABASE_URL) with Redis: GET
 * card (in turns with ceiling 0c), PATCH, list of 50. h1-h3: the same on two instances
 * sharing that PostgreSQL schema and Redis, the connections split between both. Then
 * pgbench select-only and its write transaction on a scratch database. The schema and the
 * database are dropped afterwards.
 */
async function postgresRows(ceilingSpec: (id: string) => Spec, redisOk: boolean): Promise<void> {
  if (DATABASE_URL === 'off') {
    pgSkipReason = 'BENCH_DATABASE_URL=off';
    return;
  }
  const admin = new URL(DATABASE_URL);
  admin.search = '';
  try {
    const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 3000 });
    await client.connect();
    await client.end();
  } catch (error) {
    pgSkipReason = `${admin.host}: ${(error as Error).message}`;
    log(`PostgreSQL rows skipped: ${pgSkipReason}`);
    return;
  }
  if (!redisOk) {
    pgSkipReason = `they need Redis (cards are cached per instance with a token per portal in Redis), and ${REDIS_URL} did not answer`;
    log(`PostgreSQL rows skipped: ${pgSkipReason}`);
    return;
  }
  const schema = `bench_${crypto.randomBytes(5).toString('hex')}`;
  const url = new URL(admin.toString());
  url.searchParams.set('schema', schema);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-bench-pg-'));
  const servers: ServerProcess[] = [];
  try {
    const one = await startSmartproc('smartproc (PostgreSQL + Redis) #1', dataDir, REDIS_URL, url.toString());
    servers.push(one);
    const pgKeys = await createKeys(one.url, dataDir);
    const ids = await seedTypes(one.url, pgKeys.unlimited);
    const [cardId, patchId] = [ids[0], ids[ids.length - 1]];
    const headers = apiHeaders(pgKeys.unlimited);
    const patchHeaders = { ...headers, 'content-type': 'application/json' };
    const patchRequests = [
      { method: 'PATCH' as const, headers: patchHeaders, body: JSON.stringify({ title: 'Bench A', isStagesEnabled: true }) },
      { method: 'PATCH' as const, headers: patchHeaders, body: JSON.stringify({ title: 'Bench B', isStagesEnabled: false }) },
    ];
    const scenarios = (server: ServerProcess) => ({
      card: { url: `${server.url}/v1/smart-processes/${cardId}`, headers },
      patch: { url: `${server.url}/v1/smart-processes/${patchId}`, requests: patchRequests },
      list: { url: `${server.url}/v1/smart-processes?limit=${TYPE_COUNT}`, headers },
    });
    const on1 = { server: one, serverLabel: 'PostgreSQL+Redis' };
    await probe(one.url, `/v1/smart-processes/${cardId}`, pgKeys.unlimited, false, 'GET card (PostgreSQL)');
    await measure([ceilingSpec('0c'), { id: 'g1', ceilingId: '0c', label: `PostgreSQL: GET card /v1/smart-processes/${cardId}`, scenario: scenarios(one).card, ...on1 }], SLICES);
    await measure([{ id: 'g2', label: `PostgreSQL: PATCH /v1/smart-processes/${patchId}, A/B alternating`, scenario: scenarios(one).patch, ...on1 }]);
    await measure([{ id: 'g3', label: `PostgreSQL: GET list ?limit=${TYPE_COUNT}`, scenario: scenarios(one).list, ...on1 }]);
    lifetimeRss.push({ server: 'smartproc PostgreSQL+Redis #1', mb: lifetimePeakMb(one.pid) });

    const two = await startSmartproc('smartproc (PostgreSQL + Redis) #2', dataDir, REDIS_URL, url.toString());
    servers.push(two);
    await probe(two.url, `/v1/smart-processes/${cardId}`, pgKeys.unlimited, false, 'GET card (PostgreSQL, second instance)');
    const both = { server: one, serverLabel: '2 x PostgreSQL+Redis' };
    await measure([{ id: 'h1', label: `2 instances: GET card ${cardId}, load split`, scenario: scenarios(one).card, split: { server: two, scenario: scenarios(two).card }, ...both }]);
    await measure([{ id: 'h2', label: `2 instances: PATCH ${patchId}, load split`, scenario: scenarios(one).patch, split: { server: two, scenario: scenarios(two).patch }, ...both }]);
    await measure([{ id: 'h3', label: `2 instances: GET list ?limit=${TYPE_COUNT}, load split`, scenario: scenarios(one).list, split: { server: two, scenario: scenarios(two).list }, ...both }]);
    // The two instances agree on the card after all those PATCHes (each answers what the other wrote last).
    const [seen1, seen2] = await Promise.all([call(one.url, 'GET', `/v1/smart-processes/${patchId}`, pgKeys.unlimited), call(two.url, 'GET', `/v1/smart-processes/${patchId}`, pgKeys.unlimited)]);
    if (seen1.headers.get('etag') !== seen2.headers.get('etag')) problems.push(`after the two-instance rows the instances answer different versions of type ${patchId}: ${seen1.headers.get('etag')} and ${seen2.headers.get('etag')}`);
    else notes.push(`two instances (h1-h3): after the rows both answer type ${patchId} at version ${seen1.headers.get('etag')}; a PATCH answered by one is never served stale by the other (test/portals/shared-type-cache.test.ts).`);
    lifetimeRss.push({ server: 'smartproc PostgreSQL+Redis #2', mb: lifetimePeakMb(two.pid) });
  } finally {
    for (const server of servers) await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    const client = new pg.Client({ connectionString: admin.toString() });
    try {
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    } catch (error) {
      problems.push(`could not drop the bench schema ${schema}: ${(error as Error).message}`);
    } finally {
      await client.end().catch(() => {});
    }
  }

  const binary = findPgbench();
  if (!binary) {
    pgbenchSkipReason = 'pgbench not found (on PATH or in /usr/lib/postgresql/*/bin)';
    log(`pgbench rows skipped: ${pgbenchSkipReason}`);
    return;
  }
  const scratch = await scratchDatabase(DATABASE_URL);
  try {
    log(`pgbench: ${binary} -i on scratch database ${scratch.name}; then ${CONNECTIONS} clients, ${DURATION} s each, select-only and the built-in write transaction`);
    await pgbenchInit(binary, scratch);
    const options = { clients: CONNECTIONS, threads: 2, seconds: DURATION };
    pgbench.selectOnly = await pgbenchRun(binary, scratch, { ...options, selectOnly: true });
    pgbench.write = await pgbenchRun(binary, scratch, { ...options, selectOnly: false });
    log(`   pgbench -S: ${fmt(pgbench.selectOnly.tps, 0)} tps (latency avg ${fmt(pgbench.selectOnly.latencyMs, 2)} ms); write: ${fmt(pgbench.write.tps, 0)} tps (latency avg ${fmt(pgbench.write.latencyMs, 2)} ms)`);
  } catch (error) {
    problems.push(`pgbench: ${(error as Error).message}`);
  } finally {
    await scratch.drop().catch((error: unknown) => problems.push(`could not drop ${scratch.name}: ${(error as Error).message}`));
  }
}

// ---------------------------------------------------------------- report

function fmt(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

function table(header: string[], body: string[][], alignLeft: number[] = [0, 1]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (alignLeft.includes(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

const verdict = (pass: boolean) => (pass ? 'PASS' : 'MISS');
/** Other processes using more than this share of the machine make a row's req/s unreliable. */
const BUSY_MACHINE_PCT = 10;

function report(): void {
  const row = (id: string) => rows.find((r) => r.id === id);
  /** A row's req/s over its ceiling's (the ceiling measured in turns with it, else row 0). */
  const ceilingOf = (r: Row) => row(r.ceilingId) ?? row('0');
  const ofCeiling = (r: Row | undefined) => (r ? r.rps / (ceilingOf(r)?.rps ?? Number.NaN) : null);
  const cpus = os.cpus();
  console.log('\n' + '='.repeat(110));
  console.log(`smartproc benchmark, ${new Date().toISOString()}`);
  console.log(`node ${process.version}, ${cpus.length} x ${cpus[0]?.model.trim() ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`${CONNECTIONS} connections, ${DURATION} s per row after ${WARMUP} s warm-up; autocannon runs in the bench process on the same machine; 0a/a/d, 0b/b and r1/r2 take turns in slices`);
  console.log('='.repeat(110));
  console.log(
    table(
      ['#', 'scenario', 'server', 'req/s', 'p50 ms', 'p99 ms', 'x ceiling', 'of row', 'non-2xx', 'errors', 'srv CPU%', 'srv us/req', 'gen CPU%', 'others%', 'steal%', 'peak RSS MB'],
      rows.map((r) => [
        r.id,
        r.label,
        r.server,
        fmt(r.rps, 0),
        fmt(r.p50, 2),
        fmt(r.p99, 2),
        fmt(ofCeiling(r) ?? Number.NaN, 3),
        r.id.startsWith('0') ? '' : ceilingOf(r)?.id ?? '-',
        String(r.non2xx),
        String(r.errors),
        fmt(r.serverCpuPct, 0),
        fmt(r.serverUsPerRequest, 0),
        fmt(r.benchCpuPct, 0),
        fmt(r.othersPct, 0) + (r.othersPct > BUSY_MACHINE_PCT ? '*' : ''),
        fmt(r.stealPct, 0) + (r.stealPct > BUSY_MACHINE_PCT ? '*' : ''),
        fmt(r.rssMb, 1),
      ]),
      [0, 1, 2],
    ),
  );
  if (rows.some((r) => r.othersPct > BUSY_MACHINE_PCT || r.stealPct > BUSY_MACHINE_PCT)) {
    console.log(`* other processes (others%) or the hypervisor (steal%: CPU time this virtual machine was ready for but did not get) took more than ${BUSY_MACHINE_PCT}% of the machine during the row: its req/s and latencies understate the server; "srv us/req" is the steadier figure.`);
  }
  if (redisSkipReason) console.log(`\nRedis rows skipped: ${redisSkipReason}`);
  const proxied = rows.filter((r) => r.upstreamPerRequest !== undefined);
  if (proxied.length && proxy) {
    console.log(`\nProxy rows: a bitrix24 portal in front of the fake Bitrix24 portal (limits ${PROXY_LIMITS.burst}/${PROXY_LIMITS.perSecond})`);
    console.log(
      table(
        ['#', 'connections', 'client req/s', 'upstream calls / client request', '504 QUEUE_TIMEOUT'],
        proxied.map((r) => [r.id, String(r.connections ?? CONNECTIONS), fmt(r.rps, 0), fmt(r.upstreamPerRequest!, 4), String(r.statusCodes['504'] ?? 0)]),
        [0],
      ),
    );
    console.log(`503 QUERY_LIMIT_EXCEEDED sent by the fake portal: ${proxy.rejected503} (its bucket peaked at ${fmt(proxy.maxBucketLevel, 1)} of ${PROXY_LIMITS.burst}; ${proxy.restRequests} REST requests in all, setup and warm-ups included)`);
  }

  if (pgSkipReason) console.log(`\nPostgreSQL rows skipped: ${pgSkipReason}`);
  if (pgbenchSkipReason) console.log(`\npgbench rows skipped: ${pgbenchSkipReason}`);
  if (pgbench.selectOnly || pgbench.write) {
    console.log(`\npgbench on a scratch database (scale 1, ${CONNECTIONS} clients, 2 threads, ${DURATION} s), same run: this machine's PostgreSQL limit`);
    console.log(
      table(
        ['#', 'transaction', 'tps', 'latency avg ms', 'transactions', 'failed'],
        ([['pg-S', 'select-only (-S)', pgbench.selectOnly], ['pg-W', 'built-in write (TPC-B like)', pgbench.write]] as const)
          .filter(([, , r]) => r)
          .map(([id, what, r]) => [id, what, fmt(r!.tps, 0), fmt(r!.latencyMs, 2), String(r!.transactions), String(r!.failed)]),
        [0, 1],
      ),
    );
  }

  const targets: string[][] = [];
  const add = (name: string, wanted: string, value: number | null, digits: number, pass: boolean | null, suffix = '') =>
    targets.push([name, wanted, value === null || !Number.isFinite(value) ? '-' : fmt(value, digits) + suffix, pass === null ? 'n/a' : verdict(pass)]);
  const a = row('a');
  const b = row('b');
  const d = row('d');
  const aRatio = ofCeiling(a);
  const bRatio = ofCeiling(b);
  add(`GET card (a) req/s / ceiling (${a ? ceilingOf(a)?.id : '-'})`, `>= ${TARGET.getCardOfCeiling}`, aRatio, 3, aRatio === null ? null : aRatio >= TARGET.getCardOfCeiling);
  add(`PATCH (b) req/s / ceiling (${b ? ceilingOf(b)?.id : '-'})`, `>= ${TARGET.patchOfCeiling}`, bRatio, 3, bRatio === null ? null : bRatio >= TARGET.patchOfCeiling);
  add('p99 of GET card (a)', `< ${TARGET.getCardP99Ms} ms`, a ? a.p99 : null, 2, a ? a.p99 < TARGET.getCardP99Ms : null, ' ms');
  for (const { server, mb } of lifetimeRss) add(`peak RSS ${server} (whole life)`, `< ${TARGET.peakRssMb} MB`, mb, 1, mb === null ? null : mb < TARGET.peakRssMb, ' MB');
  add('limited/unlimited GET card, memory (d/a)', `>= ${TARGET.limitedRatio}`, a && d ? d.rps / a.rps : null, 3, a && d ? d.rps / a.rps >= TARGET.limitedRatio : null);
  const r1 = row('r1');
  const r2 = row('r2');
  if (r1 && r2) {
    const ratio = r2.rps / r1.rps;
    targets.push(['limited/unlimited GET card, Redis (r2/r1)', 'reported', fmt(ratio, 3), `info (${ratio >= TARGET.limitedRatio ? 'would pass' : 'would miss'} ${TARGET.limitedRatio})`]);
  } else {
    targets.push(['limited/unlimited GET card, Redis (r2/r1)', 'reported', '-', 'skipped']);
  }
  const c = row('c');
  const c2 = row('c2');
  const a0 = a ? ceilingOf(a) : undefined;
  const listSpeedup = c && a0 ? c.rps / a0.rps / LIST_BEFORE_OF_CEILING : null;
  add(`list of ${TYPE_COUNT} (c): (c / ceiling ${a0?.id ?? '-'}) / ${fmt(LIST_BEFORE_OF_CEILING, 4)} (before issue 11)`, `>= ${TARGET.listSpeedup}`, listSpeedup, 2, listSpeedup === null ? null : listSpeedup >= TARGET.listSpeedup);
  add('list with select=id,title (c2) us/req < whole items (c) us/req', '< 1', c && c2 ? c2.serverUsPerRequest / c.serverUsPerRequest : null, 3, c && c2 ? c2.serverUsPerRequest < c.serverUsPerRequest : null);
  const g1 = row('g1');
  const g2 = row('g2');
  const g1Ratio = ofCeiling(g1);
  add(`PostgreSQL GET card (g1) req/s / ceiling (${g1 ? ceilingOf(g1)?.id : '-'})`, `>= ${TARGET.pgGetCardOfCeiling}`, g1Ratio, 3, g1Ratio === null ? null : g1Ratio >= TARGET.pgGetCardOfCeiling);
  const patchOfPgbench = g2 && pgbench.write ? g2.rps / pgbench.write.tps : null;
  add('PostgreSQL PATCH (g2) req/s / pgbench write tps (pg-W)', `>= ${TARGET.pgPatchOfPgbench}`, patchOfPgbench, 3, patchOfPgbench === null ? null : patchOfPgbench >= TARGET.pgPatchOfPgbench);
  add('p99 of PostgreSQL GET card (g1)', `< ${TARGET.pgP99Ms} ms`, g1 ? g1.p99 : null, 2, g1 ? g1.p99 < TARGET.pgP99Ms : null, ' ms');
  add('p99 of PostgreSQL PATCH (g2)', `< ${TARGET.pgP99Ms} ms`, g2 ? g2.p99 : null, 2, g2 ? g2.p99 < TARGET.pgP99Ms : null, ' ms');
  add('503s sent by the fake Bitrix24 portal (p1, p2)', '0', proxy ? proxy.rejected503 : null, 0, proxy ? proxy.rejected503 === 0 : null);
  // The same two throughput ratios from CPU cost per request, which other load on the machine disturbs much less.
  const costRatio = (r: Row | undefined) => (r && ceilingOf(r) ? ceilingOf(r)!.serverUsPerRequest / r.serverUsPerRequest : null);
  targets.push(['info: GET card (a) by CPU cost: ceiling us/req / a us/req', `(${TARGET.getCardOfCeiling})`, fmt(costRatio(a) ?? Number.NaN, 3), 'info']);
  targets.push(['info: PATCH (b) by CPU cost: ceiling us/req / b us/req', `(${TARGET.patchOfCeiling})`, fmt(costRatio(b) ?? Number.NaN, 3), 'info']);
  if (c && a0) targets.push([`info: list (c) req/s as a share of the ceiling (${a0.id}); before issue 11: ${fmt(LIST_BEFORE_OF_CEILING, 4)}`, 'reported', fmt(c.rps / a0.rps, 4), 'info']);
  targets.push(['info: PostgreSQL GET card (g1) by CPU cost: ceiling us/req / g1 us/req', `(${TARGET.pgGetCardOfCeiling})`, fmt(costRatio(g1) ?? Number.NaN, 3), 'info']);
  const h1 = row('h1');
  const h2 = row('h2');
  if (g1 && h1) targets.push(['info: two instances / one, GET card (h1 / g1 req/s)', 'reported', fmt(h1.rps / g1.rps, 3), 'info']);
  if (g2 && h2) targets.push(['info: two instances / one, PATCH (h2 / g2 req/s)', 'reported', fmt(h2.rps / g2.rps, 3), 'info']);
  if (pgbench.selectOnly && g1) targets.push(['info: PostgreSQL GET card (g1) req/s / pgbench select-only tps', 'reported', fmt(g1.rps / pgbench.selectOnly.tps, 3), 'info']);
  if (a && d) targets.push(['info: limited/unlimited by CPU cost (a us/req / d us/req)', `(${TARGET.limitedRatio})`, fmt(a.serverUsPerRequest / d.serverUsPerRequest, 3), 'info']);
  console.log('\nTargets');
  console.log(table(['target', 'wanted', 'measured', 'verdict'], targets, [0, 1, 3]));

  if (keys) notes.push(`high-limit key: requestsPerSecond ${keys.limit}; before rows d and r2 a request showed x-ratelimit-* headers (the limiter is in the path), the unlimited key's did not.`);
  notes.push(`p50/p99: every response's own time (0.01 ms resolution). autocannon's whole-ms p50/p99 (worst slice): ${rows.map((r) => `${r.id} ${r.acP50}/${r.acP99}`).join(', ')}.`);
  notes.push('srv CPU%: server process CPU (user+sys) as % of one core; srv us/req: that CPU time per completed request; gen CPU%: the bench process (autocannon); others%: everything else, % of all cores; steal%: time the hypervisor gave this machine CPUs to other guests, % of all cores.');
  notes.push('peak RSS per row: the kernel high-water mark (VmHWM, reset before the row) and 100 ms VmRSS samples of the server process; the RSS target uses VmHWM over the server\'s whole life (start, seeding, every row).');
  console.log('\nNotes');
  for (const note of notes) console.log(`- ${note}`);
  if (problems.length) {
    console.log('\nPROBLEMS (exit code 1)');
    for (const problem of problems) console.log(`- ${problem}`);
  }
  console.log('');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const started = Date.now();
  // smartproc runs as `npm start` runs it: the compiled build.
  const build = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error('npm run build failed');

  // 0. the ceiling: the bare server runs for the whole bench; besides its own row it
  // takes turns with the target rows (0a with a/d, 0b with b), so that each target
  // ratio compares figures measured over the same minutes.
  const ceilingPort = await freePort();
  // The ceiling runs with the same V8 flags as smartproc: they change a small server's speed too.
  const baseline = await startServer({ name: 'baseline (bare Fastify)', entry: 'bench/baseline-server.ts', nodeFlags: NODE_FLAGS, env: { PORT: String(ceilingPort) }, port: ceilingPort, readyPath: '/' });
  log(`baseline ready at ${baseline.url} (${describeProcess(baseline.pid)})`);
  const ceilingSpec = (id: string): Spec => ({ id, label: 'ceiling: GET / fixed JSON', scenario: { url: `${baseline.url}/` }, server: baseline, serverLabel: 'bare Fastify' });
  await measure([ceilingSpec('0')]);

  // 1. smartproc, SQLite, in-memory limiter
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-bench-'));
  const dataDir = tmpDir;
  let cardId = 0;
  {
    const server = await startSmartproc('smartproc (SQLite, memory limiter)', dataDir, null);
    const on = { server, serverLabel: 'SQLite+memory' };
    try {
      keys = await createKeys(server.url, dataDir);
      const ids = await seedTypes(server.url, keys.unlimited);
      cardId = ids[0];
      const patchId = ids[ids.length - 1];
      log(`seeded ${ids.length} types (${ids[0]}..${ids[ids.length - 1]}); GET card uses ${cardId}, PATCH uses ${patchId}`);

      const card = `${server.url}/v1/smart-processes/${cardId}`;
      await probe(server.url, `/v1/smart-processes/${cardId}`, keys.unlimited, false, 'GET card, unlimited key');
      await probe(server.url, `/v1/smart-processes/${cardId}`, keys.limited, true, 'GET card, high-limit key');
      await measure([
        ceilingSpec('0a'),
        { id: 'a', ceilingId: '0a', label: `GET card /v1/smart-processes/${cardId}, unlimited key`, scenario: { url: card, headers: apiHeaders(keys.unlimited) }, ...on },
        { id: 'd', ceilingId: '0a', label: `GET card, key limited to ${keys.limit} rps`, scenario: { url: card, headers: apiHeaders(keys.limited) }, ...on },
      ], SLICES);

      const before = await call(server.url, 'GET', `/v1/smart-processes/${patchId}`, keys.unlimited);
      expectStatus(before, 200, 'GET the PATCH target');
      const patchHeaders = { ...apiHeaders(keys.unlimited), 'content-type': 'application/json' };
      const bodyA = { title: 'Bench A', isStagesEnabled: true };
      const bodyB = { title: 'Bench B', isStagesEnabled: false };
      expectStatus(await call(server.url, 'PATCH', `/v1/smart-processes/${patchId}`, keys.unlimited, bodyA), 200, 'PATCH probe');
      const [, patch] = await measure([
        ceilingSpec('0b'),
        {
          id: 'b',
          ceilingId: '0b',
          label: `PATCH /v1/smart-processes/${patchId}, A/B alternating`,
          scenario: {
            url: `${server.url}/v1/smart-processes/${patchId}`,
            requests: [
              { method: 'PATCH', headers: patchHeaders, body: JSON.stringify(bodyA) },
              { method: 'PATCH', headers: patchHeaders, body: JSON.stringify(bodyB) },
            ],
          },
          ...on,
        },
      ], SLICES);
      const after = await call(server.url, 'GET', `/v1/smart-processes/${patchId}`, keys.unlimited);
      expectStatus(after, 200, 'GET the PATCH target');
      const version = (answer: Answer) => Number(answer.headers.get('etag')?.replace(/\D/g, ''));
      notes.push(`PATCH (b): the type went from version ${version(before)} to ${version(after)} over ${patch.total} measured requests (+ warm-up); a PATCH that repeats the current values changes nothing and keeps the version.`);

      await probe(server.url, `/v1/smart-processes?limit=${TYPE_COUNT}`, keys.unlimited, false, 'GET list');
      await measure([{ id: 'c', label: `GET list /v1/smart-processes?limit=${TYPE_COUNT}`, scenario: { url: `${server.url}/v1/smart-processes?limit=${TYPE_COUNT}`, headers: apiHeaders(keys.unlimited) }, ...on }]);
      await probe(server.url, `/v1/smart-processes?limit=${TYPE_COUNT}&select=id,title`, keys.unlimited, false, 'GET list with select');
      await measure([{ id: 'c2', label: `GET list ?limit=${TYPE_COUNT}&select=id,title`, scenario: { url: `${server.url}/v1/smart-processes?limit=${TYPE_COUNT}&select=id,title`, headers: apiHeaders(keys.unlimited) }, ...on }]);

      await proxyRows(server, keys.management);
      lifetimeRss.push({ server: 'smartproc SQLite+memory', mb: lifetimePeakMb(server.pid) });
    } finally {
      await server.stop();
    }
  }

  // 2. the same store, a second process with the Redis limiter
  const target = parseRedisUrl(REDIS_URL);
  if ('problem' in target) redisSkipReason = `${REDIS_URL}: ${target.problem}`;
  else {
    try {
      const [pong] = await redisCommands(target, [['PING']], 1_500);
      if (pong !== '+PONG') redisSkipReason = `${REDIS_URL} answered PING with ${pong}`;
    } catch (error) {
      redisSkipReason = `${REDIS_URL} is not reachable (${(error as Error).message || String(error)})`;
    }
  }
  if (redisSkipReason) log(`Redis rows skipped: ${redisSkipReason}`);
  else if (keys && !('problem' in target)) {
    let server: ServerProcess | null = null;
    try {
      server = await startSmartproc('smartproc (SQLite, Redis limiter)', dataDir, REDIS_URL);
      const on = { server, serverLabel: 'SQLite+Redis' };
      const card = `${server.url}/v1/smart-processes/${cardId}`;
      await probe(server.url, `/v1/smart-processes/${cardId}`, keys.unlimited, false, 'GET card, unlimited key (Redis server)');
      await probe(server.url, `/v1/smart-processes/${cardId}`, keys.limited, true, 'GET card, high-limit key (Redis server)');
      const [pttl] = await redisCommands(target, [['PTTL', `smartproc:rl:${keys.limit}:${keys.limitedId}`]]);
      notes.push(
        pttl.startsWith(':') && Number(pttl.slice(1)) >= 0
          ? `Redis limiter in use: right after a request, Redis held the window of the high-limit key (PTTL ${pttl.slice(1)} ms).`
          : `Redis did not hold the window of the high-limit key after a request (PTTL ${pttl}); the server may have fallen back to its in-memory insurance limiter.`,
      );
      await measure([
        { id: 'r1', label: `GET card /v1/smart-processes/${cardId}, unlimited key`, scenario: { url: card, headers: apiHeaders(keys.unlimited) }, ...on },
        { id: 'r2', label: `GET card, key limited to ${keys.limit} rps`, scenario: { url: card, headers: apiHeaders(keys.limited) }, ...on },
      ], SLICES);
      lifetimeRss.push({ server: 'smartproc SQLite+Redis', mb: lifetimePeakMb(server.pid) });
    } catch (error) {
      // The memory rows are in; report them and say what broke here.
      problems.push(`Redis server: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      await server?.stop();
    }
  }

  // 3. PostgreSQL: one instance, two instances sharing PostgreSQL and Redis, and pgbench.
  await postgresRows(ceilingSpec, redisSkipReason === null);

  const baselineMb = lifetimePeakMb(baseline.pid);
  notes.push(`reference: the bare Fastify child (run through tsx; smartproc runs compiled) peaked at ${baselineMb === null ? '?' : fmt(baselineMb, 1)} MB RSS over its life.`);
  await baseline.stop();

  report();
  log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
  return problems.length ? 1 : 0;
}

main()
  .then(async (code) => {
    await stopAll();
    removeTmp();
    process.exit(code);
  })
  .catch(async (error: unknown) => {
    problems.push(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
    if (rows.length) report();
    else console.error(`\nbench failed: ${error instanceof Error ? error.message : String(error)}`);
    await stopAll();
    removeTmp();
    process.exit(1);
  });
