#!/usr/bin/env node
// npm test: type-check, then the whole suite once on SQLite and once on PostgreSQL.
// PostgreSQL: SMARTPROC_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test.
// Arguments narrow the files: npm test -- test/domain
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const filters = process.argv.slice(2);
const files = fs
  .readdirSync(path.join(root, 'test'), { recursive: true })
  .map((f) => path.join('test', String(f)))
  .filter((f) => f.endsWith('.test.ts'))
  .filter((f) => !filters.length || filters.some((x) => f.includes(x)))
  .sort();

const tsc = spawnSync(path.join(root, 'node_modules/.bin/tsc'), ['--noEmit', '-p', root], { stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error('type check failed');
  process.exit(1);
}

function run(label, env, list = files) {
  return new Promise((resolve) => {
    console.log(`\n=== ${label}: ${list.length} test files ===`);
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...list], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      process.stdout.write(chunk);
    });
    child.on('close', (code) => {
      const count = (name) => Number((out.match(new RegExp(`^[ℹ#] ${name} (\\d+)`, 'm')) ?? [])[1] ?? 0);
      resolve({ label, code, pass: count('pass'), fail: count('fail'), skipped: count('skipped') + count('todo') });
    });
  });
}

async function postgresReachable(url) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
    return null;
  } catch (error) {
    return error.message || String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

const results = [await run('SQLite pass', { SMARTPROC_TEST_DATABASE_URL: '' })];
const pgUrl = process.env.SMARTPROC_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
// SMARTPROC_TEST_STORES=sqlite: the SQLite passes only (.ci/oldest-node: the PostgreSQL passes run on the machine's Node).
const sqliteOnly = process.env.SMARTPROC_TEST_STORES === 'sqlite';
const unreachable = sqliteOnly ? 'SMARTPROC_TEST_STORES=sqlite' : await postgresReachable(pgUrl);
if (sqliteOnly) {
  console.log('\n=== PostgreSQL pass SKIPPED: SMARTPROC_TEST_STORES=sqlite (the PostgreSQL passes run in the other npm test of .ci/run) ===');
} else if (unreachable) {
  console.log(`\n=== PostgreSQL pass SKIPPED: cannot reach ${pgUrl.replace(/:[^:@/]*@/, ':***@')} (${unreachable}). Start PostgreSQL or set SMARTPROC_TEST_DATABASE_URL to run it. ===`);
} else {
  results.push(await run('PostgreSQL pass', { SMARTPROC_TEST_DATABASE_URL: pgUrl }));
}

// The route specifications once more against a bitrix24 portal backed by the fake portal (issue 9), on each store.
const routeSpecs = files.filter((f) => f.startsWith(path.join('test', 'http', 'smart-processes')));
if (routeSpecs.length) {
  results.push(await run('SQLite pass, bitrix24 portal', { SMARTPROC_TEST_DATABASE_URL: '', SMARTPROC_TEST_PORTAL_KIND: 'bitrix24' }, routeSpecs));
  if (!unreachable) results.push(await run('PostgreSQL pass, bitrix24 portal', { SMARTPROC_TEST_DATABASE_URL: pgUrl, SMARTPROC_TEST_PORTAL_KIND: 'bitrix24' }, routeSpecs));
}

console.log('\n=== summary ===');
for (const r of results) console.log(`${r.label}: ${r.pass} passed, ${r.fail} failed, ${r.skipped} skipped (exit ${r.code})`);
const total = results.reduce((a, r) => ({ pass: a.pass + r.pass, fail: a.fail + r.fail, skipped: a.skipped + r.skipped }), { pass: 0, fail: 0, skipped: 0 });
console.log(`${total.pass} passed, ${total.fail} failed, ${total.skipped} skipped`);
process.exit(results.every((r) => r.code === 0) ? 0 : 1);
