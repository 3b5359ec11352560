#!/usr/bin/env node
// `npm start`'s prestart: compiles src/ to dist/ (npm run build) only when the build is not current.
// Current = dist/.build-hash holds the hash of what the build is made of: every file under src/, the two
// tsconfig files, and the TypeScript version. Contents are hashed, not times, so a checkout or a copy
// that keeps times does not fool it. `npm run build` always compiles (and records the hash too);
// `--check` only says whether a build is needed.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stampFile = path.join(root, 'dist', '.build-hash');
const entry = path.join(root, 'dist', 'src', 'cli', 'bin.js');

/** The hash of what a build of `dir` is made of (src/, the tsconfig files, the TypeScript version). */
export function buildHash(dir = root) {
  const hash = crypto.createHash('sha256');
  const files = fs.readdirSync(path.join(dir, 'src'), { recursive: true }).map((f) => path.join('src', String(f))).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
  for (const file of [...files, 'tsconfig.json', 'tsconfig.build.json']) {
    hash.update(`${file}\0`).update(fs.readFileSync(path.join(dir, file))).update('\0');
  }
  const typescript = JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', 'typescript', 'package.json'), 'utf8')).version;
  return hash.update(`typescript ${typescript}`).digest('hex');
}

function build(hash) {
  const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);
  fs.writeFileSync(stampFile, `${hash}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const hash = buildHash();
  const force = process.argv.includes('--force');
  const current = !force && fs.existsSync(entry) && fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8').trim() === hash;
  if (process.argv.includes('--check')) {
    // Only say: exit 0 when current, 1 when a build is needed.
    console.log(current ? 'current' : 'stale');
    process.exit(current ? 0 : 1);
  }
  if (current) {
    console.log('smartproc: the build in dist/ is current; not compiling');
  } else {
    console.log(force ? 'smartproc: compiling src/ to dist/' : 'smartproc: src/ changed since the last build; compiling to dist/');
    build(hash);
  }
}
