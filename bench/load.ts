/** One load run with autocannon (in this process), plus latency percentiles at 0.01 ms resolution. */
import autocannon from 'autocannon';

export interface LoadSpec {
  title: string;
  url: string;
  connections: number;
  durationSec: number;
  method?: autocannon.Request['method'];
  headers?: Record<string, string>;
  body?: string;
  /** Sequence each connection cycles through (overrides method/body/headers per request). */
  requests?: autocannon.Request[];
}

/** One autocannon run. */
export interface LoadResult {
  title: string;
  /** Completed requests. */
  total: number;
  /** Seconds the run took. */
  durationSec: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** autocannon's own (whole-millisecond) percentiles, for reference. */
  acP50: number;
  acP99: number;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

/** A growable array of response times (ms); several runs may add to one. */
export class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;

  push(value: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = value;
  }

  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
}

/** Runs the load; every response's time (ms) goes into `samples`. */
export function runLoad(spec: LoadSpec, samples = new Samples()): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const options: autocannon.Options = { title: spec.title, url: spec.url, connections: spec.connections, duration: spec.durationSec, timeout: 10 };
    // autocannon refuses keys that are present but undefined (e.g. method: undefined)
    if (spec.method) options.method = spec.method;
    if (spec.headers) options.headers = spec.headers;
    if (spec.body !== undefined) options.body = spec.body;
    if (spec.requests) options.requests = spec.requests;
    const instance = autocannon(
      options,
      (error, result) => {
        if (error) return reject(error instanceof Error ? error : new Error(String(error)));
        const statusCodes: Record<string, number> = {};
        for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stats.count ?? 0;
        resolve({
          title: spec.title,
          total: result.requests.total,
          durationSec: result.duration,
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          statusCodes,
          acP50: result.latency.p50,
          acP99: result.latency.p99,
        });
      },
    );
    instance.on('response', (_client, _statusCode, _bytes, responseTime) => samples.push(responseTime));
  });
}
