import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TEST_DIALECT } from '../helpers/test-store.js';

/**
 * `npm start` as a person runs it (README's set-up): prestart compiles only a stale build,
 * and SIGTERM sent to the process `npm start` started (npm itself) stops the server gracefully.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = path.join(ROOT, 'scripts', 'build-if-stale.mjs');
const run = TEST_DIALECT === 'sqlite' ? {} : { skip: 'npm start is exercised once, on the SQLite default' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm start', run, () => {
  it('prestart compiles only when the build is stale: a current build starts without compiling', { timeout: 300_000 }, () => {
    // Make the build current (compiles if it is not), then start again: nothing is compiled.
    const first = spawnSync(process.execPath, [SCRIPT], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(first.status, 0, first.stdout + first.stderr);
    const built = fs.statSync(path.join(ROOT, 'dist/src/cli/bin.js')).mtimeMs;
    const started = performance.now();
    const second = spawnSync(process.execPath, [SCRIPT], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(second.status, 0);
    assert.match(second.stdout, /the build in dist\/ is current; not compiling/);
    assert.ok(performance.now() - started < 10_000, 'no compile: well under the seconds tsc takes');
    assert.equal(fs.statSync(path.join(ROOT, 'dist/src/cli/bin.js')).mtimeMs, built, 'dist/ untouched');
  });

  it('a change to any source file, or to the tsconfig, makes the build stale', () => {
    // A copy of what the build is made of, with the current build's stamp.
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-build-'));
    try {
      fs.cpSync(path.join(ROOT, 'src'), path.join(copy, 'src'), { recursive: true });
      for (const file of ['tsconfig.json', 'tsconfig.build.json', 'scripts/build-if-stale.mjs', 'dist/.build-hash', 'dist/src/cli/bin.js']) {
        fs.mkdirSync(path.dirname(path.join(copy, file)), { recursive: true });
        fs.copyFileSync(path.join(ROOT, file), path.join(copy, file));
      }
      fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
      const check = () => spawnSync(process.execPath, [path.join(copy, 'scripts/build-if-stale.mjs'), '--check'], { cwd: copy, encoding: 'utf8' });
      assert.equal(check().stdout.trim(), 'current');
      const errors = path.join(copy, 'src/errors.ts');
      const original = fs.readFileSync(errors, 'utf8');
      fs.writeFileSync(errors, original + '\n// changed\n');
      assert.deepEqual([check().status, check().stdout.trim()], [1, 'stale'], 'a changed source file');
      fs.writeFileSync(errors, original);
      assert.equal(check().stdout.trim(), 'current', 'back as built');
      fs.appendFileSync(path.join(copy, 'tsconfig.build.json'), ' ');
      assert.equal(check().stdout.trim(), 'stale', 'a changed tsconfig');
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });

  it('SIGTERM to the npm process stops the server gracefully: a request in flight is answered, then everything exits 0', { timeout: 300_000 }, async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-npm-start-'));
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY: '', DATABASE_URL: '', REDIS_URL: '', MAX_EVENT_LOOP_DELAY_MS: '0' };
    delete env.NODE_TEST_CONTEXT;
    const npm = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    npm.stdout!.on('data', (chunk) => (output += chunk));
    npm.stderr!.on('data', (chunk) => (output += chunk));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => npm.once('exit', (code, signal) => resolve({ code, signal })));
    let serverPid = 0;
    try {
      const deadline = Date.now() + 240_000;
      while (!/listening on (http:\/\/\S+)/.test(output) && Date.now() < deadline && npm.exitCode === null) await sleep(100);
      const base = /listening on (http:\/\/\S+)/.exec(output)?.[1];
      assert.ok(base, `npm start printed its address:\n${output}`);
      serverPid = Number(/"pid":(\d+)/.exec(output)?.[1]);
      assert.ok(serverPid && serverPid !== npm.pid, 'the server logs its pid');
      const key = JSON.parse(fs.readFileSync(path.join(dataDir, 'bootstrap-keys.json'), 'utf8')).personalKey as string;

      // A request whose body is still arriving when the signal comes.
      const body = JSON.stringify({ title: 'Supply contracts', entityTypeId: 1050 });
      const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(`${base}/v1/smart-processes`, { method: 'POST', agent: false, headers: { 'x-api-key': key, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
          let text = '';
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on('error', reject);
        req.write(body.slice(0, 10));
        setTimeout(() => {
          npm.kill('SIGTERM');
          setTimeout(() => req.end(body.slice(10)), 1000);
        }, 1500);
      });
      const inFlight = await answer;
      assert.equal(inFlight.status, 201, inFlight.body);
      const { code, signal } = await exited;
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, output);
      assert.match(output, /"signal":"SIGTERM","msg":"closing"/, 'the server closed on the signal');
      for (let i = 0; i < 50 && alive(serverPid); i++) await sleep(100);
      assert.equal(alive(serverPid), false, 'the server process is gone, not left running without npm');
      await assert.rejects(fetch(`${base}/health`), 'nothing listens any more');
    } finally {
      if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
      if (serverPid && alive(serverPid)) process.kill(serverPid, 'SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
