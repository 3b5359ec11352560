import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { countBy, faultSchema, FAULT_DATABASE_URL, percentile, postgresProblem, request, startServerProcess, type Answer, type ServerProcess } from '../helpers/server-process.js';

/**
 * Fault suite: PostgreSQL connections killed under load (issue 7, defect 1).
 *
 * A real server process reaches PostgreSQL through a TCP proxy of this test. Under a
 * bounded load of GET and PATCH, the server's backends are terminated
 * (pg_terminate_backend), then the proxy is cut (every connection closed, new ones
 * refused) for 4 s and restored. The process must never exit; while the store is away
 * it answers 503 SERVICE_UNAVAILABLE with retryAfter (never 500, never a hang), and
 * after the restore every request succeeds again.
 */

const SKIP = await postgresProblem();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const CLIENTS = 12;
const TERMINATE_AT = 3000;
const CUT_AT = 5000;
const RESTORE_AT = 9000;
const END_AT = 15_000;
/** pg's connectionTimeoutMillis (5 s) and some room: no answer may take longer. */
const LONGEST_ANSWER_MS = 7000;

interface Sample extends Answer {
  method: string;
  at: number;
}

/** The phase in which a request was answered. */
const phaseOf = (s: Sample) => {
  const at = s.at + s.ms;
  return at < TERMINATE_AT ? '1 before' : at < CUT_AT ? '2 backends terminated' : at < RESTORE_AT ? '3 proxy cut' : '4 restored';
};

/** Terminates the backends behind the proxy's connections: this server's only. */
async function terminateBackends(ports: number[]): Promise<number> {
  if (!ports.length) return 0;
  const admin = new pg.Client({ connectionString: FAULT_DATABASE_URL });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ done: boolean }>(
      `select pg_terminate_backend(pid) as done from pg_stat_activity where client_port = any($1::int[]) and client_addr = '127.0.0.1' and datname = current_database() and pid <> pg_backend_pid()`,
      [ports],
    );
    return rows.filter((r) => r.done).length;
  } finally {
    await admin.end();
  }
}

describe('Fault: PostgreSQL connections killed under load', () => {
  it('the server never exits; while the store is away it answers 503 SERVICE_UNAVAILABLE with retryAfter (no 500, no hang); after the restore every request succeeds', { skip: SKIP, timeout: 180_000 }, async () => {
    const target = new URL(FAULT_DATABASE_URL);
    const proxy = await TcpProxy.start({ host: target.hostname || '127.0.0.1', port: Number(target.port || 5432) });
    const schema = faultSchema('fault_pg');
    let server: ServerProcess | null = null;
    try {
      server = await startServerProcess('pg-outage', { DATABASE_URL: schema.url(proxy.port), REDIS_URL: '' });
      const srv = server;
      const { managementKey } = srv.bootstrapKeys()!;
      const portals = await request(srv.base, 'GET', '/v1/portals', managementKey);
      const portalId = portals.body.data[0].id;
      const created = await request(srv.base, 'POST', '/v1/keys', managementKey, { kind: 'personal', portalId, scopes: ['crm'], requestsPerSecond: null });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const key = created.body.data.secret as string;
      const ids: number[] = [];
      for (let i = 0; i < 8; i++) {
        const type = await request(srv.base, 'POST', '/v1/smart-processes', key, { title: `Outage ${i}` });
        assert.equal(type.status, 201, JSON.stringify(type.body));
        ids.push(type.body.data.entityTypeId);
      }
      const linesBefore = srv.output.length;

      const samples: Sample[] = [];
      const t0 = performance.now();
      const now = () => performance.now() - t0;
      let exitedDuring: string | null = null;
      const client = async (n: number) => {
        for (let i = 0; now() < END_AT; i++) {
          const id = ids[(n + i) % ids.length];
          const at = now();
          const answer = i % 3 === 2 ? await request(srv.base, 'PATCH', `/v1/smart-processes/${id}`, key, { title: `Outage ${id} by ${n}.${i}` }) : await request(srv.base, 'GET', `/v1/smart-processes/${id}`, key);
          samples.push({ ...answer, method: i % 3 === 2 ? 'PATCH' : 'GET', at });
          exitedDuring ??= srv.exited();
          if (answer.status !== 200) await sleep(20); // a client that got 503 does not spin
        }
      };
      const events: string[] = [];
      const script = (async () => {
        await sleep(TERMINATE_AT - now());
        const terminated = await terminateBackends(proxy.upstreamPorts());
        events.push(`${now().toFixed(0)} ms: pg_terminate_backend on ${terminated} backend(s) of the server`);
        await sleep(CUT_AT - now());
        const open = proxy.connections;
        await proxy.cut();
        events.push(`${now().toFixed(0)} ms: proxy cut (${open} connection(s) closed, new ones refused)`);
        await sleep(RESTORE_AT - now());
        await proxy.restore();
        events.push(`${now().toFixed(0)} ms: proxy restored`);
      })();
      await Promise.all([script, ...Array.from({ length: CLIENTS }, (_, n) => client(n))]);

      // Figures
      const restoredAt = RESTORE_AT;
      const firstOkAfter = samples.filter((s) => s.at >= restoredAt && s.status === 200).sort((a, b) => a.at - b.at)[0];
      const recovery = firstOkAfter ? firstOkAfter.at + firstOkAfter.ms - restoredAt : NaN;
      const logLines = srv.output.slice(linesBefore);
      console.log(`\n[postgres-outage] ${samples.length} requests by ${CLIENTS} clients in ${(END_AT / 1000).toFixed(0)} s; events:\n  ${events.join('\n  ')}`);
      console.log(`[postgres-outage] status counts: ${JSON.stringify(countBy(samples, (s) => String(s.status || s.failure)))}`);
      for (const [phase, count] of Object.entries(countBy(samples, phaseOf)).sort()) {
        const inPhase = samples.filter((s) => phaseOf(s) === phase);
        const ms = inPhase.map((s) => s.ms);
        console.log(`[postgres-outage]   ${phase}: ${count} answers, ${JSON.stringify(countBy(inPhase, (s) => `${s.method} ${s.status || s.failure}`))}, p50 ${percentile(ms, 50).toFixed(1)} ms, p99 ${percentile(ms, 99).toFixed(1)} ms, max ${Math.max(...ms).toFixed(0)} ms`);
      }
      for (const line of logLines) console.log(`[postgres-outage] log: ${line.slice(0, 400)}`);
      console.log(`[postgres-outage] recovery: first 200 answered ${recovery.toFixed(0)} ms after the proxy was restored; ${logLines.length} log line(s) during the load; process ${srv.exited() ?? 'still running'}`);

      // The process never exited.
      assert.equal(exitedDuring, null, `the server exited during the load:\n${srv.output.join('\n')}`);
      assert.equal(srv.exited(), null, `the server exited:\n${srv.output.join('\n')}`);
      // Only 200 or 503 SERVICE_UNAVAILABLE with retryAfter; no 500, no request without an answer, none slow.
      const failures = samples.filter((s) => s.failure);
      assert.deepEqual(failures.map((s) => `${s.method} at ${s.at.toFixed(0)} ms: ${s.failure}`), [], 'every request was answered');
      const other = samples.filter((s) => s.status !== 200 && s.status !== 503);
      assert.deepEqual(other.map((s) => `${s.method} ${s.status} ${JSON.stringify(s.body)}`), [], 'no answer but 200 and 503');
      for (const s of samples.filter((x) => x.status === 503)) {
        assert.equal(s.body?.error?.code, 'SERVICE_UNAVAILABLE', JSON.stringify(s.body));
        assert.ok(s.body.error.retryAfter >= 1, `503 with retryAfter: ${JSON.stringify(s.body)}`);
      }
      const slowest = samples.reduce((a, s) => (s.ms > a.ms ? s : a));
      assert.ok(slowest.ms < LONGEST_ANSWER_MS, `no answer took over ${LONGEST_ANSWER_MS} ms; the slowest: ${slowest.method} ${slowest.status} after ${slowest.ms.toFixed(0)} ms at ${slowest.at.toFixed(0)} ms`);
      assert.ok(samples.some((s) => phaseOf(s) === '3 proxy cut' && s.status === 503), 'the cut was felt: some 503 while the proxy was cut');
      // After the restore: back by itself, every request succeeds.
      assert.ok(recovery < 2000, `recovered ${recovery.toFixed(0)} ms after the restore`);
      const late = samples.filter((s) => s.at >= restoredAt + 1000);
      assert.ok(late.length > 100, `${late.length} requests after the restore`);
      assert.deepEqual(late.filter((s) => s.status !== 200).map((s) => `${s.method} ${s.status} at ${s.at.toFixed(0)} ms`), [], 'every request from 1 s after the restore succeeded');
      // Logs tell of the outage without a line per request.
      assert.ok(logLines.length <= 20, `${logLines.length} log lines during the load:\n${logLines.slice(0, 40).join('\n')}`);
    } finally {
      await proxy.restore().catch(() => {});
      await server?.stop();
      await proxy.close();
      await schema.drop();
    }
  });
});
