/**
 * CPU cost of one PATCH on SQLite, in process (app.inject, no sockets): rounds of 32
 * concurrent PATCHes (so that they share group-commit batches, as under load), each
 * changing the title. Prints CPU µs per PATCH (user + system) for several runs; the
 * minimum is the least disturbed by other processes on a shared machine.
 *
 *   npx tsx bench/patch-cpu.ts [patches per run, default 20000] [runs, default 7]
 */
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { openStore } from '../src/store/store.js';

const perRun = Number(process.argv[2] ?? 20_000);
const runs = Number(process.argv[3] ?? 7);
const CONCURRENCY = 32;

const store = openStore({ databaseUrl: null, dataDir: '.', sqliteFile: ':memory:' });
// Load shedding off: a busy shared machine must not turn PATCHes into 503s.
const app = await buildApp({ config: { ...loadConfig({}), redisUrl: null, maxEventLoopDelayMs: 0 }, store, logger: false });
const portal = await app.services.portals.create({ name: 'Bench', timeZone: 'UTC' });
const { secret } = await app.services.keys.create({ kind: 'personal', portalId: portal.id, scopes: ['crm'], requestsPerSecond: null }, null);
const headers = { 'x-api-key': secret, 'content-type': 'application/json' };
const created = await app.inject({ method: 'POST', url: '/v1/smart-processes', headers, payload: JSON.stringify({ title: 'Bench' }) });
const entityTypeId = created.json().data.entityTypeId as number;

let n = 0;
async function patches(count: number): Promise<void> {
  for (let done = 0; done < count; done += CONCURRENCY) {
    await Promise.all(
      Array.from({ length: CONCURRENCY }, () => {
        n++;
        return app.inject({ method: 'PATCH', url: `/v1/smart-processes/${entityTypeId}`, headers, payload: `{"title":"Bench ${n}"}` }).then((res) => {
          if (res.statusCode !== 200) throw new Error(`PATCH answered ${res.statusCode}: ${res.body}`);
        });
      }),
    );
  }
}

await patches(4000); // warm-up (JIT, statement cache)
const results: number[] = [];
for (let run = 0; run < runs; run++) {
  const before = process.cpuUsage();
  await patches(perRun);
  const used = process.cpuUsage(before);
  results.push((used.user + used.system) / perRun);
}
const sorted = [...results].sort((a, b) => a - b);
console.log(`CPU per PATCH (µs), ${runs} runs of ${perRun}: ${results.map((r) => r.toFixed(1)).join(' ')}`);
console.log(`min ${sorted[0].toFixed(1)}  median ${sorted[Math.floor(sorted.length / 2)].toFixed(1)}  max ${sorted[sorted.length - 1].toFixed(1)}`);
await app.close();
