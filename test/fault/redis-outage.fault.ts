import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PrivateRedis } from '../helpers/redis-server.js';
import { countBy, faultSchema, percentile, postgresProblem, request, startServerProcess, type Answer, type ServerProcess } from '../helpers/server-process.js';

/**
 * Fault suite: Redis killed and restarted under load (issue 7, defect 2).
 *
 * Two server processes on one PostgreSQL store and a private redis-server of this
 * test. A key limited to 10 requests per second is called at 60 per second,
 * alternating the instances; Redis is killed (-9) and, 5 s later, started again on
 * the same port. The p99 of the key stays under 200 ms throughout, nothing answers
 * 5xx, each instance keeps enforcing the limit in memory while Redis is away, and once
 * it is back the limit is counted in Redis again: 10 per second across both.
 */

const SKIP = (await postgresProblem()) || PrivateRedis.unavailable;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const LIMIT = 10;
const RATE = 60;
const KILL_AT = 4000;
const RESTART_AT = 9000;
/** From here on both instances have reconnected (ioredis retries at most every 2 s). */
const SETTLED_AT = RESTART_AT + 3000;
const END_AT = 16_000;
const P99_BOUND_MS = 200;

interface Sample extends Answer {
  instance: string;
  at: number;
}

const phaseOf = (at: number) => (at < KILL_AT ? '1 before' : at < RESTART_AT ? '2 Redis down' : at < SETTLED_AT ? '3 reconnecting' : '4 back');

/** Allowed requests per second in [from, to): fixed 1-s windows back to back under continuous load. */
function allowedPerSecond(samples: Sample[], from: number, to: number): number {
  return samples.filter((s) => s.status === 200 && s.at >= from && s.at < to).length / ((to - from) / 1000);
}

describe('Fault: Redis killed and restarted under load', () => {
  it('p99 of a rate-limited key stays under 200 ms, no 5xx, the limit holds in memory while Redis is away and is counted in Redis again after', { skip: SKIP, timeout: 180_000 }, async () => {
    const redis = await PrivateRedis.start();
    const schema = faultSchema('fault_redis');
    const servers: ServerProcess[] = [];
    const check = redis.client();
    try {
      const env = { DATABASE_URL: schema.url(), REDIS_URL: redis.url };
      servers.push(await startServerProcess('redis-a', env)); // first: migrates and bootstraps
      servers.push(await startServerProcess('redis-b', env));
      const [A, B] = servers;
      const { managementKey } = A.bootstrapKeys()!;
      const portalId = (await request(A.base, 'GET', '/v1/portals', managementKey)).body.data[0].id;
      const createKey = async (requestsPerSecond: number | null) => {
        const res = await request(A.base, 'POST', '/v1/keys', managementKey, { kind: 'personal', portalId, scopes: ['crm'], requestsPerSecond });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        return res.body.data as { id: string; secret: string };
      };
      const limited = await createKey(LIMIT);
      const warm = await createKey(null);
      for (let round = 0; round < 3; round++) await Promise.all([A, B].flatMap((s) => Array.from({ length: 20 }, () => request(s.base, 'GET', '/v1/smart-processes/fields', warm.secret))));
      const linesBefore = servers.map((s) => s.output.length);
      const counter = `smartproc:rl:${LIMIT}:${limited.id}`;

      const samples: Sample[] = [];
      const counterSeen: { at: number; value: string | null }[] = [];
      const events: string[] = [];
      const t0 = performance.now();
      const now = () => performance.now() - t0;
      const load = (async () => {
        const pending: Promise<void>[] = [];
        for (let i = 0; (i * 1000) / RATE < END_AT; i++) {
          const wait = (i * 1000) / RATE - now();
          if (wait > 0) await sleep(wait);
          const instance = i % 2 === 0 ? A : B;
          const at = now();
          pending.push(request(instance.base, 'GET', '/v1/smart-processes/fields', limited.secret, undefined, 10_000).then((answer) => void samples.push({ ...answer, instance: instance.name, at })));
        }
        await Promise.all(pending);
      })();
      const probe = (async () => {
        while (now() < END_AT) {
          const at = now();
          counterSeen.push({ at, value: redis.running ? await check.get(counter).catch(() => null) : null });
          await sleep(250);
        }
      })();
      const script = (async () => {
        await sleep(KILL_AT - now());
        await redis.kill();
        events.push(`${now().toFixed(0)} ms: redis-server killed (-9)`);
        await sleep(RESTART_AT - now());
        await redis.restart();
        events.push(`${now().toFixed(0)} ms: redis-server started again on port ${redis.port} (empty)`);
      })();
      await Promise.all([load, probe, script]);

      // Figures
      console.log(`\n[redis-outage] ${samples.length} requests at ${RATE}/s on a key limited to ${LIMIT}/s, alternating 2 instances; events:\n  ${events.join('\n  ')}`);
      console.log(`[redis-outage] status counts: ${JSON.stringify(countBy(samples, (s) => String(s.status || s.failure)))}`);
      const phases = [
        ['1 before', 0, KILL_AT],
        ['2 Redis down', KILL_AT, RESTART_AT],
        ['3 reconnecting', RESTART_AT, SETTLED_AT],
        ['4 back', SETTLED_AT, END_AT],
      ] as const;
      for (const [phase, from, to] of phases) {
        const inPhase = samples.filter((s) => phaseOf(s.at) === phase);
        const ms = inPhase.map((s) => s.ms);
        console.log(
          `[redis-outage]   ${phase}: ${inPhase.length} requests, ${JSON.stringify(countBy(inPhase, (s) => String(s.status || s.failure)))}, p50 ${percentile(ms, 50).toFixed(1)} ms, p99 ${percentile(ms, 99).toFixed(1)} ms, max ${Math.max(...ms).toFixed(0)} ms, allowed ${allowedPerSecond(samples, from, to).toFixed(2)}/s`,
        );
      }
      const seenAfter = counterSeen.filter((c) => c.at >= RESTART_AT && c.value !== null);
      console.log(`[redis-outage] counter ${counter.replace(limited.id, '<key id>')} seen in Redis: ${counterSeen.filter((c) => c.at < KILL_AT && c.value !== null).length}x before the kill, ${seenAfter.length}x after the restart (first at ${seenAfter[0] ? (seenAfter[0].at - RESTART_AT).toFixed(0) + ' ms after it' : 'never'})`);
      const redisLines = servers.map((s, n) => s.output.slice(linesBefore[n]).filter((l) => /redis/i.test(l)));
      servers.forEach((s, n) => console.log(`[redis-outage] ${s.name}: ${redisLines[n].length} log line(s) about Redis${redisLines[n].length ? `: ${redisLines[n].map((l) => JSON.parse(l).msg).join(' | ')}` : ''}; process ${s.exited() ?? 'still running'}`));

      for (const s of servers) assert.equal(s.exited(), null, `${s.name} exited:\n${s.output.join('\n')}`);
      assert.deepEqual(samples.filter((s) => s.failure).map((s) => `${s.instance} at ${s.at.toFixed(0)}: ${s.failure}`), [], 'every request was answered');
      const other = samples.filter((s) => s.status !== 200 && s.status !== 429);
      assert.deepEqual(other.map((s) => `${s.instance} ${s.status} ${JSON.stringify(s.body)}`), [], 'only 200 and 429: no 5xx');
      for (const s of samples.filter((x) => x.status === 429)) assert.equal(s.body.error.code, 'RATE_LIMITED');
      for (const [phase] of phases) {
        const ms = samples.filter((s) => phaseOf(s.at) === phase).map((s) => s.ms);
        assert.ok(percentile(ms, 99) < P99_BOUND_MS, `${phase}: p99 ${percentile(ms, 99).toFixed(1)} ms`);
      }
      const before = allowedPerSecond(samples, 0, KILL_AT);
      assert.ok(before >= 7 && before <= 13, `before: ${before.toFixed(2)} allowed per second across both instances (counted in Redis)`);
      const down = allowedPerSecond(samples, KILL_AT, RESTART_AT);
      assert.ok(down <= 2 * LIMIT + 3, `Redis down: ${down.toFixed(2)} allowed per second; each instance still enforces ${LIMIT}/s in memory`);
      const back = allowedPerSecond(samples, SETTLED_AT, END_AT);
      assert.ok(back >= 7 && back <= 13, `back: ${back.toFixed(2)} allowed per second across both instances: counted in Redis again`);
      assert.ok(seenAfter.length > 0, 'the counter of the key is in Redis again after the restart');
      for (const [n, lines] of redisLines.entries()) assert.ok(lines.length >= 1 && lines.length <= 3, `${servers[n].name}: ${lines.length} log lines about Redis (one when it went, not one per retry)`);
    } finally {
      check.disconnect();
      for (const s of servers) await s.stop();
      await redis.stop();
      await schema.drop();
    }
  });
});
