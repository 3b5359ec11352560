import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadSecretBox, parseSecretKey, SecretBox, SecretBoxError, SECRET_KEY_FILE } from '../../src/store/secret-box.js';

const KEY = crypto.randomBytes(32);
const PLAIN = 'w3bh00k-s3cr3t-значение';

function expectBoxError(fn: () => unknown, code: string, ...mustNotContain: string[]): SecretBoxError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof SecretBoxError, `expected SecretBoxError, got ${inspect(error)}`);
    assert.equal(error.code, code, error.message);
    for (const text of mustNotContain) assert.ok(!String(error).includes(text) && !inspect(error).includes(text), `leaked in ${error.message}`);
    return error;
  }
  assert.fail(`expected ${code}`);
}

describe('SecretBox: AES-256-GCM, v1:<iv>:<tag>:<ciphertext>', () => {
  const box = new SecretBox(KEY);

  it('round trip; a random 12-byte IV per value; the documented text format', () => {
    const a = box.encrypt(PLAIN);
    const b = box.encrypt(PLAIN);
    assert.notEqual(a, b);
    assert.equal(box.decrypt(a), PLAIN);
    assert.equal(box.decrypt(b), PLAIN);
    const [version, iv, tag, ciphertext] = a.split(':');
    assert.equal(version, 'v1');
    assert.equal(Buffer.from(iv, 'base64').length, 12);
    assert.equal(Buffer.from(tag, 'base64').length, 16);
    assert.equal(Buffer.from(ciphertext, 'base64').length, Buffer.byteLength(PLAIN));
    assert.ok(!a.includes(PLAIN));
    assert.ok(SecretBox.isSealed(a));
    assert.ok(!SecretBox.isSealed(PLAIN));
    assert.equal(box.decrypt(box.encrypt('')), '');
  });

  it('a wrong key is a clear error, never garbage', () => {
    const sealed = box.encrypt(PLAIN);
    expectBoxError(() => new SecretBox(crypto.randomBytes(32)).decrypt(sealed), 'DECRYPT_FAILED', PLAIN);
  });

  it('a tampered IV, tag or ciphertext, or a truncated value, is refused', () => {
    const sealed = box.encrypt(PLAIN);
    const [v, iv, tag, ct] = sealed.split(':');
    const flip = (b64: string) => {
      const bytes = Buffer.from(b64, 'base64');
      bytes[0] ^= 1;
      return bytes.toString('base64');
    };
    expectBoxError(() => box.decrypt([v, flip(iv), tag, ct].join(':')), 'DECRYPT_FAILED');
    expectBoxError(() => box.decrypt([v, iv, flip(tag), ct].join(':')), 'DECRYPT_FAILED');
    expectBoxError(() => box.decrypt([v, iv, tag, flip(ct)].join(':')), 'DECRYPT_FAILED');
    expectBoxError(() => box.decrypt([v, iv, tag, ct.slice(0, -4)].join(':')), 'DECRYPT_FAILED');
    expectBoxError(() => box.decrypt([v, iv, tag.slice(0, 8), ct].join(':')), 'MALFORMED');
    expectBoxError(() => box.decrypt([v, iv, tag, `${ct}!`].join(':')), 'MALFORMED');
    expectBoxError(() => box.decrypt(sealed.split(':').slice(0, 3).join(':')), 'MALFORMED');
    expectBoxError(() => box.decrypt(PLAIN), 'MALFORMED', PLAIN);
    expectBoxError(() => box.decrypt(sealed.replace(/^v1:/, 'v2:')), 'UNSUPPORTED_VERSION');
  });

  it('a context binds the value to its place', () => {
    const sealed = box.encrypt(PLAIN, 'portal:1:webhookSecret');
    assert.equal(box.decrypt(sealed, 'portal:1:webhookSecret'), PLAIN);
    expectBoxError(() => box.decrypt(sealed, 'portal:2:webhookSecret'), 'DECRYPT_FAILED');
    expectBoxError(() => box.decrypt(sealed), 'DECRYPT_FAILED');
  });

  it('previous keys still open older values (room for rotation); new values use the current key', () => {
    const old = new SecretBox(KEY);
    const sealedOld = old.encrypt(PLAIN);
    const rotated = new SecretBox(crypto.randomBytes(32), { previousKeys: [KEY] });
    assert.equal(rotated.decrypt(sealedOld), PLAIN);
    expectBoxError(() => old.decrypt(rotated.encrypt(PLAIN)), 'DECRYPT_FAILED');
    assert.notEqual(rotated.keyId, old.keyId);
  });

  it('the box does not show its key when inspected or serialized', () => {
    for (const text of [inspect(box, { showHidden: true, depth: 5 }), JSON.stringify(box)]) {
      assert.ok(!text.includes(KEY.toString('hex')) && !text.includes(KEY.toString('base64')), text);
    }
    expectBoxError(() => new SecretBox(crypto.randomBytes(16)), 'BAD_KEY');
  });
});

describe('SMARTPROC_SECRET_KEY: 32 bytes as hex or base64', () => {
  it('accepts 64 hex characters, base64 and base64url, padded or not', () => {
    assert.deepEqual(parseSecretKey(KEY.toString('hex')), KEY);
    assert.deepEqual(parseSecretKey(KEY.toString('hex').toUpperCase()), KEY);
    assert.deepEqual(parseSecretKey(KEY.toString('base64')), KEY);
    assert.deepEqual(parseSecretKey(` ${KEY.toString('base64')}\n`), KEY);
    assert.deepEqual(parseSecretKey(KEY.toString('base64url')), KEY);
    assert.deepEqual(parseSecretKey(KEY.toString('base64').replace(/=+$/, '')), KEY);
  });

  it('refuses other lengths and texts without echoing them', () => {
    for (const bad of [crypto.randomBytes(16).toString('hex'), crypto.randomBytes(31).toString('base64'), crypto.randomBytes(33).toString('base64'), 'correct horse battery staple', '']) {
      expectBoxError(() => parseSecretKey(bad), 'BAD_KEY', ...(bad ? [bad] : []));
    }
  });
});

describe('the key: env, or a generated owner-only key file in DATA_DIR', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-secret-box-'));
    dirs.push(dir);
    return dir;
  };
  after(() => {
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('SMARTPROC_SECRET_KEY wins; no file is created', () => {
    const dir = tempDir();
    const loaded = loadSecretBox({ dataDir: dir, env: { SMARTPROC_SECRET_KEY: KEY.toString('base64') } });
    assert.equal(loaded.source, 'env');
    assert.equal(loaded.box.decrypt(new SecretBox(KEY).encrypt(PLAIN)), PLAIN);
    assert.deepEqual(fs.readdirSync(dir), []);
    expectBoxError(() => loadSecretBox({ dataDir: dir, env: { SMARTPROC_SECRET_KEY: 'too-short' } }), 'BAD_KEY', 'too-short');
  });

  it('unset: a key file is created with mode 0600 and reused on the next start', { skip: process.platform === 'win32' ? 'POSIX modes' : false }, () => {
    const dir = path.join(tempDir(), 'data'); // DATA_DIR need not exist yet
    const first = loadSecretBox({ dataDir: dir, env: {} });
    assert.equal(first.source, 'created');
    const file = path.join(dir, SECRET_KEY_FILE);
    assert.equal(first.keyFile, file);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(first.warnings, []);
    assert.equal(parseSecretKey(fs.readFileSync(file, 'utf8')).length, 32);
    assert.deepEqual(fs.readdirSync(dir), [SECRET_KEY_FILE], 'no temporary file left behind');
    const sealed = first.box.encrypt(PLAIN);
    const second = loadSecretBox({ dataDir: dir, env: {} });
    assert.equal(second.source, 'file');
    assert.equal(second.box.decrypt(sealed), PLAIN);
    assert.equal(second.box.keyId, first.box.keyId);
  });

  it('a key file others can read is used with a warning; a damaged one is a clear error', { skip: process.platform === 'win32' ? 'POSIX modes' : false }, () => {
    const dir = tempDir();
    const file = path.join(dir, SECRET_KEY_FILE);
    fs.writeFileSync(file, KEY.toString('hex'), { mode: 0o644 });
    fs.chmodSync(file, 0o644);
    const loaded = loadSecretBox({ dataDir: dir, env: {} });
    assert.equal(loaded.source, 'file');
    assert.match(loaded.warnings.join(), /chmod 600/);
    fs.writeFileSync(file, 'garbage');
    expectBoxError(() => loadSecretBox({ dataDir: dir, env: {} }), 'KEY_FILE', 'garbage');
  });

  it('processes starting together end up with one key', async () => {
    const dir = tempDir();
    const module = fileURLToPath(new URL('../../src/store/secret-box.ts', import.meta.url));
    const script = `import { loadSecretBox } from ${JSON.stringify(module)}; const l = loadSecretBox({ dataDir: ${JSON.stringify(dir)}, env: {} }); console.log(l.box.keyId + ' ' + l.source);`;
    const run = () =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (c) => (out += c));
        child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}`))));
      });
    const outputs = await Promise.all([run(), run(), run()]);
    assert.equal(new Set(outputs.map((o) => o.split(' ')[0])).size, 1, outputs.join(' | '));
    assert.equal(outputs.filter((o) => o.endsWith('created')).length, 1, outputs.join(' | '));
  });
});
