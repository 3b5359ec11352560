/**
 * The Prometheus metrics of one server (issue 11 item 1), with prom-client: one registry
 * per app (tests build many apps in one process), text format at GET /metrics.
 *
 * Cost on the hot path: a finished request is counted into plain numbers (three Map
 * lookups by route pattern, method and status, a count, a sum and one of six buckets: tens
 * of nanoseconds), handed to prom-client's registry in its counter and histogram shapes
 * when Prometheus scrapes. prom-client's own `histogram.labels(...).observe()` validates
 * and hashes the labels on every call: 0.4 µs on an idle core, 1.5 µs on the loaded
 * 2-core test machine, against a GET card of about 50 µs; so the per-request families
 * are kept this way, and every other histogram (per write batch, per upstream call) is a
 * plain prom-client Histogram. Label values come from the route pattern, never the URL,
 * so the number of series is bounded by the routes. Everything else is a plain number
 * the code keeps anyway (key cache hits, rate-limit refusals, conflict retries) and is
 * read when Prometheus scrapes.
 *
 * Families and labels are listed in docs/operations.md ("Metrics").
 */
import client from 'prom-client';

const { Counter, Gauge, Histogram, Registry } = client;

declare module 'fastify' {
  interface FastifyInstance {
    /** This server's metrics (GET /metrics). */
    metrics: Metrics;
  }
}
type Counter<T extends string> = client.Counter<T>;
type Histogram<T extends string> = client.Histogram<T>;

/** Request latency buckets (seconds): few, so that an observation stays cheap; a GET card takes about 0.05 ms. */
export const REQUEST_BUCKETS = [0.001, 0.005, 0.025, 0.1, 0.5, 2.5];
/** Writes per SQLite group-commit transaction: 1 to MAX_BATCH (64). */
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64];
/** How long a call waited for its portal's request budget (seconds); the queue allows 10 s by default. */
export const BUDGET_WAIT_BUCKETS = [0.01, 0.1, 0.5, 1, 2.5, 5, 10];

/** The label of requests that matched no route (404, 405): never the URL itself. */
export const UNMATCHED_ROUTE = '(unmatched)';

/** Plain counters kept by the code that is measured; read at scrape time. */
export interface CountSources {
  keyCache?: { hits: number; misses: number };
  sessionCache?: { hits: number; misses: number };
  rateLimitRefusals?: () => number;
  conflictRetries?: () => number;
}

/** The requests of one route pattern, method and status: a count, the sum of their times, and how many fell in each bucket (not cumulative). */
class RequestSeries {
  count = 0;
  sum = 0;
  readonly buckets = new Float64Array(REQUEST_BUCKETS.length);
}

type SeriesTable = Map<string, Map<string, Map<number, RequestSeries>>>;

/**
 * The request latency family in prom-client's histogram shape, from the table (a metric
 * object the registry formats: name, help, type and `get()`; prom-client's Metric interface).
 */
function requestDurationFamily(table: SeriesTable) {
  const name = 'smartproc_http_request_duration_seconds';
  const help = 'Time from the request to the end of the answer (seconds), by route pattern and method';
  return {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    async get() {
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      for (const [route, byMethod] of table) {
        for (const [method, byStatus] of byMethod) {
          const buckets = new Float64Array(REQUEST_BUCKETS.length);
          let count = 0;
          let sum = 0;
          for (const series of byStatus.values()) {
            count += series.count;
            sum += series.sum;
            for (let i = 0; i < buckets.length; i++) buckets[i] += series.buckets[i];
          }
          let cumulative = 0;
          for (let i = 0; i < buckets.length; i++) {
            cumulative += buckets[i];
            values.push({ labels: { le: REQUEST_BUCKETS[i], route, method }, value: cumulative, metricName: `${name}_bucket` });
          }
          values.push({ labels: { le: '+Inf', route, method }, value: count, metricName: `${name}_bucket` });
          values.push({ labels: { route, method }, value: sum, metricName: `${name}_sum` });
          values.push({ labels: { route, method }, value: count, metricName: `${name}_count` });
        }
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
  };
}

/** What the bitrix24 adapter reports (src/portals/bitrix24/bitrix24-portal.ts), per portal id. */
export interface Bitrix24Observer {
  call(portalId: number, method: string): void;
  error(portalId: number, method: string, kind: string): void;
  /** A call started (+1) or stopped (-1) waiting for the portal's request budget. */
  queued(portalId: number, delta: 1 | -1): void;
  waited(portalId: number, seconds: number): void;
  cache(portalId: number, hit: boolean): void;
}

/**
 * Process figures (CPU, memory, event-loop delay, GC) under their usual names, for the
 * usual dashboards: once per process, shared by every app in it (collectDefaultMetrics
 * starts an event-loop delay monitor that is never stopped: one per app would pile up in
 * a process that builds many apps, as the tests do).
 */
let processRegistry: client.Registry | null = null;
function processMetrics(): client.Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    client.collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export class Metrics implements Bitrix24Observer {
  /** This app's families. */
  readonly registry = new Registry();
  /** What GET /metrics shows: this app's families and the process's. */
  private readonly exposed: client.Registry;
  private readonly requests: SeriesTable = new Map();
  private readonly storeErrors: Counter<'kind'>;
  private readonly batchSizes: Histogram<string>;
  private readonly patchGroups: Histogram<string>;
  private readonly b24Calls: Counter<'portal' | 'method'>;
  private readonly b24Errors: Counter<'portal' | 'method' | 'kind'>;
  private readonly b24Queue: client.Gauge<'portal'>;
  private readonly b24Wait: Histogram<'portal'>;
  private readonly b24Cache: Counter<'portal' | 'result'>;
  /** Cache lookups per portal id, for the hit ratio. */
  private readonly b24CacheCounts = new Map<number, { hits: number; misses: number }>();
  private sources: CountSources = {};

  constructor(info: { version: string; store: string }) {
    const registers = [this.registry];
    new Gauge({ name: 'smartproc_info', help: 'Always 1: the version and the store of this instance', labelNames: ['version', 'store'], registers }).set(info, 1);
    const requests = this.requests;
    new Counter({
      name: 'smartproc_http_requests_total',
      help: 'Requests answered, by route pattern, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
      collect() {
        this.reset();
        for (const [route, byMethod] of requests) for (const [method, byStatus] of byMethod) for (const [status, series] of byStatus) this.inc({ route, method, status: String(status) }, series.count);
      },
    });
    this.registry.registerMetric(requestDurationFamily(requests) as unknown as client.Metric);
    const sources = () => this.sources;
    new Counter({
      name: 'smartproc_rate_limit_refusals_total',
      help: 'Requests refused with 429 RATE_LIMITED (per-key limits)',
      registers,
      collect() {
        this.reset();
        this.inc(sources().rateLimitRefusals?.() ?? 0);
      },
    });
    new Counter({
      name: 'smartproc_key_cache_lookups_total',
      help: 'Lookups of API keys and session tokens in the per-instance cache, by cache (key, session) and result (hit, miss)',
      labelNames: ['cache', 'result'],
      registers,
      collect() {
        this.reset();
        const { keyCache, sessionCache } = sources();
        for (const [cache, counts] of [['key', keyCache], ['session', sessionCache]] as const) {
          if (!counts) continue;
          this.inc({ cache, result: 'hit' }, counts.hits);
          this.inc({ cache, result: 'miss' }, counts.misses);
        }
      },
    });
    this.storeErrors = new Counter({ name: 'smartproc_store_errors_total', help: 'Requests that failed in the store, by kind (unavailable, unique, foreign_key, conflict, lock_not_available)', labelNames: ['kind'], registers });
    new Counter({
      name: 'smartproc_store_conflict_retries_total',
      help: 'Writes run again after a deadlock or serialization conflict (PostgreSQL)',
      registers,
      collect() {
        this.reset();
        this.inc(sources().conflictRetries?.() ?? 0);
      },
    });
    this.batchSizes = new Histogram({ name: 'smartproc_store_write_batch_size', help: 'Writes per group-commit transaction (SQLite only)', buckets: BATCH_BUCKETS, registers });
    this.patchGroups = new Histogram({ name: 'smartproc_patch_group_size', help: "PATCHes of one type's own fields written by one statement (PostgreSQL with Redis: PATCHes of a type are grouped per instance)", buckets: BATCH_BUCKETS, registers });
    this.b24Calls = new Counter({ name: 'smartproc_bitrix24_calls_total', help: 'Calls sent to Bitrix24 portals, by portal id and REST method', labelNames: ['portal', 'method'], registers });
    this.b24Errors = new Counter({ name: 'smartproc_bitrix24_errors_total', help: 'Failed Bitrix24 calls, by portal id, REST method and kind (query_limit, server, network, answer_lost, queue_timeout, ...)', labelNames: ['portal', 'method', 'kind'], registers });
    this.b24Queue = new Gauge({ name: 'smartproc_bitrix24_budget_queue_length', help: "Calls waiting for their portal's request budget now, by portal id", labelNames: ['portal'], registers });
    this.b24Wait = new Histogram({ name: 'smartproc_bitrix24_budget_wait_seconds', help: "How long calls waited for their portal's request budget (seconds), by portal id", labelNames: ['portal'], buckets: BUDGET_WAIT_BUCKETS, registers });
    this.b24Cache = new Counter({ name: 'smartproc_bitrix24_cache_lookups_total', help: 'Reads of a bitrix24 portal served from the cache (hit) or from the portal (miss), by portal id', labelNames: ['portal', 'result'], registers });
    const counts = this.b24CacheCounts;
    new Gauge({
      name: 'smartproc_bitrix24_cache_hit_ratio',
      help: 'Hits / lookups of the bitrix24 cache since the start, by portal id',
      labelNames: ['portal'],
      registers,
      collect() {
        this.reset();
        for (const [portal, { hits, misses }] of counts) if (hits + misses > 0) this.set({ portal: String(portal) }, hits / (hits + misses));
      },
    });
    this.exposed = Registry.merge([this.registry, processMetrics()]);
  }

  /** Where the plain counters are read at scrape time. */
  watch(sources: CountSources): void {
    this.sources = { ...this.sources, ...sources };
  }

  /** One finished request; `route` is the route pattern (or UNMATCHED_ROUTE). */
  request(route: string, method: string, status: number, seconds: number): void {
    let byMethod = this.requests.get(route);
    if (!byMethod) this.requests.set(route, (byMethod = new Map()));
    let byStatus = byMethod.get(method);
    if (!byStatus) byMethod.set(method, (byStatus = new Map()));
    let series = byStatus.get(status);
    if (!series) byStatus.set(status, (series = new RequestSeries()));
    series.count++;
    series.sum += seconds;
    for (let i = 0; i < REQUEST_BUCKETS.length; i++) {
      if (seconds <= REQUEST_BUCKETS[i]) {
        series.buckets[i]++;
        break;
      }
    }
  }

  storeError(kind: string): void {
    this.storeErrors.inc({ kind });
  }

  writeBatch(size: number): void {
    this.batchSizes.observe(size);
  }

  patchGroup(size: number): void {
    this.patchGroups.observe(size);
  }

  // Bitrix24Observer
  call(portalId: number, method: string): void {
    this.b24Calls.inc({ portal: String(portalId), method });
  }
  error(portalId: number, method: string, kind: string): void {
    this.b24Errors.inc({ portal: String(portalId), method, kind });
  }
  queued(portalId: number, delta: 1 | -1): void {
    this.b24Queue.inc({ portal: String(portalId) }, delta);
  }
  waited(portalId: number, seconds: number): void {
    this.b24Wait.observe({ portal: String(portalId) }, seconds);
  }
  cache(portalId: number, hit: boolean): void {
    let counts = this.b24CacheCounts.get(portalId);
    if (!counts) this.b24CacheCounts.set(portalId, (counts = { hits: 0, misses: 0 }));
    if (hit) counts.hits++;
    else counts.misses++;
    this.b24Cache.inc({ portal: String(portalId), result: hit ? 'hit' : 'miss' });
  }

  /** The text format for Prometheus. */
  text(): Promise<string> {
    return this.exposed.metrics();
  }

  get contentType(): string {
    return this.exposed.contentType;
  }
}
