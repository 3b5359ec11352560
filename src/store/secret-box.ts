/**
 * Secrets at rest (issue 9 item 1): the webhook secret, the OAuth client secret and the
 * tokens of a bitrix24 portal are stored encrypted with AES-256-GCM.
 *
 * It lives in src/store/ because it is a property of how the store keeps a value (the
 * repositories seal on write and open on read, like the key file sits in DATA_DIR next
 * to the SQLite file); src/access/ hashes API keys, which are never read back.
 *
 * The key (32 bytes):
 * - `SMARTPROC_SECRET_KEY`: 64 hex characters, or base64 (standard or URL-safe, padding
 *   optional) of 32 bytes, e.g. `openssl rand -base64 32`; every instance of a scaled-out
 *   server must get the same one;
 * - unset: `DATA_DIR/secret.key` (base64, one line), created on the first start with mode
 *   0600 (owner only) and read on the next starts. It is created whole or not at all
 *   (written to a temporary file, then hard-linked into place), so two processes starting
 *   together end up with one key.
 *
 * The sealed text: `v1:<base64 iv>:<base64 tag>:<base64 ciphertext>` with a random 12-byte
 * IV per value and the 16-byte GCM tag. The version prefix leaves room for a later format
 * (a key id, for rotation); `previousKeys` already lets values sealed with an older key be
 * opened. An optional `context` (e.g. `portal:12:webhookSecret`) is bound as additional
 * authenticated data, so a sealed value copied to another row or column does not open.
 * A wrong key, a tampered or truncated value, or a foreign text is a SecretBoxError, never
 * garbage; its message never holds the value or the key.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const SECRET_KEY_ENV = 'SMARTPROC_SECRET_KEY';
/** Older keys, comma-separated, that still open values sealed before a rotation (docs/operations.md, "Rotating SMARTPROC_SECRET_KEY"). */
export const PREVIOUS_KEYS_ENV = 'SMARTPROC_PREVIOUS_SECRET_KEYS';
export const SECRET_KEY_FILE = 'secret.key';
const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export type SecretBoxErrorCode = 'MALFORMED' | 'UNSUPPORTED_VERSION' | 'DECRYPT_FAILED' | 'BAD_KEY' | 'KEY_FILE';

export class SecretBoxError extends Error {
  override readonly name = 'SecretBoxError';
  constructor(
    readonly code: SecretBoxErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const KEY_HELP = `${SECRET_KEY_ENV} must be 32 bytes written as 64 hex characters or as base64 (e.g. the output of \`openssl rand -base64 32\`)`;

/** A 32-byte key from its text: 64 hex characters, or base64 / base64url (padding optional). The value is never echoed. */
export function parseSecretKey(text: string): Buffer {
  const value = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex');
  const standard = value.replace(/-/g, '+').replace(/_/g, '/');
  if (BASE64.test(standard)) {
    const key = Buffer.from(standard, 'base64');
    if (key.length === KEY_BYTES && key.toString('base64').replace(/=+$/, '') === standard.replace(/=+$/, '')) return key;
  }
  throw new SecretBoxError('BAD_KEY', `${KEY_HELP}; the value given is ${value.length} characters long and is neither`);
}

function decodeBase64(part: string, what: string): Buffer {
  if (!BASE64.test(part)) throw new SecretBoxError('MALFORMED', `Sealed secret: the ${what} is not base64`);
  const bytes = Buffer.from(part, 'base64');
  if (bytes.toString('base64') !== part) throw new SecretBoxError('MALFORMED', `Sealed secret: the ${what} is not canonical base64`);
  return bytes;
}

export class SecretBox {
  readonly #keys: Buffer[];
  /** A short fingerprint of the key (not secret), for logs and a later rotation. */
  readonly keyId: string;

  constructor(key: Buffer, options: { previousKeys?: Buffer[] } = {}) {
    for (const k of [key, ...(options.previousKeys ?? [])]) {
      if (!Buffer.isBuffer(k) || k.length !== KEY_BYTES) throw new SecretBoxError('BAD_KEY', `A secret box key must be ${KEY_BYTES} bytes`);
    }
    this.#keys = [Buffer.from(key), ...(options.previousKeys ?? []).map((k) => Buffer.from(k))];
    this.keyId = crypto.createHash('sha256').update('smartproc secret box key id\0').update(key).digest('hex').slice(0, 8);
  }

  /** True for a text in the sealed format (whatever key sealed it). */
  static isSealed(value: unknown): value is string {
    return typeof value === 'string' && /^v\d+:[A-Za-z0-9+/=]*:[A-Za-z0-9+/=]*:[A-Za-z0-9+/=]*$/.test(value);
  }

  encrypt(plain: string, context = ''): string {
    if (typeof plain !== 'string') throw new TypeError('SecretBox.encrypt takes a string');
    const iv = crypto.randomBytes(IV_BYTES);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.#keys[0], iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(context));
    const ciphertext = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return `${VERSION}:${iv.toString('base64')}:${cipher.getAuthTag().toString('base64')}:${ciphertext.toString('base64')}`;
  }

  decrypt(sealed: string, context = ''): string {
    if (typeof sealed !== 'string') throw new SecretBoxError('MALFORMED', 'Sealed secret: not a string');
    const parts = sealed.split(':');
    if (parts.length !== 4 || !/^v\d+$/.test(parts[0])) throw new SecretBoxError('MALFORMED', 'Not a sealed secret (expected v1:<iv>:<tag>:<ciphertext>)');
    if (parts[0] !== VERSION) throw new SecretBoxError('UNSUPPORTED_VERSION', `Sealed secret of format ${parts[0]}; this server reads ${VERSION}`);
    const iv = decodeBase64(parts[1], 'IV');
    const tag = decodeBase64(parts[2], 'tag');
    const ciphertext = decodeBase64(parts[3], 'ciphertext');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new SecretBoxError('MALFORMED', `Sealed secret: the IV must be ${IV_BYTES} bytes and the tag ${TAG_BYTES}`);
    for (const key of this.#keys) {
      try {
        const decipher = crypto.createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
        decipher.setAAD(aad(context));
        decipher.setAuthTag(tag);
        return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
      } catch {
        // the next key, if any
      }
    }
    throw new SecretBoxError('DECRYPT_FAILED', `Cannot decrypt a stored secret: wrong key (${SECRET_KEY_ENV} or ${SECRET_KEY_FILE} changed?) or the value was altered`);
  }

  toJSON(): object {
    return { keyId: this.keyId };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `SecretBox { keyId: '${this.keyId}' }`;
  }
}

function aad(context: string): Buffer {
  return Buffer.from(`smartproc:${VERSION}:${context}`, 'utf8');
}

export interface LoadedSecretBox {
  box: SecretBox;
  /** env: SMARTPROC_SECRET_KEY; file: an existing key file; created: a key file made now. */
  source: 'env' | 'file' | 'created';
  keyFile?: string;
  /** E.g. a key file others can read: worth a log line. */
  warnings: string[];
}

/** SMARTPROC_PREVIOUS_SECRET_KEYS: the keys of before a rotation (opening only; new values are sealed with the current key). */
function previousKeys(env: NodeJS.ProcessEnv): Buffer[] {
  const text = env[PREVIOUS_KEYS_ENV]?.trim();
  if (!text) return [];
  return text.split(',').map((part, i) => {
    try {
      return parseSecretKey(part);
    } catch {
      throw new SecretBoxError('BAD_KEY', `${PREVIOUS_KEYS_ENV}: key ${i + 1} is not 32 bytes written as 64 hex characters or base64`);
    }
  });
}

/**
 * The secret box of this server: the key from SMARTPROC_SECRET_KEY, else DATA_DIR/secret.key
 * (created 0600 when missing); keys in SMARTPROC_PREVIOUS_SECRET_KEYS still open older values.
 */
export function loadSecretBox(options: { dataDir: string; env?: NodeJS.ProcessEnv }): LoadedSecretBox {
  const env = options.env ?? process.env;
  const fromEnv = env[SECRET_KEY_ENV];
  const previous = { previousKeys: previousKeys(env) };
  if (fromEnv !== undefined && fromEnv.trim() !== '') return { box: new SecretBox(parseSecretKey(fromEnv), previous), source: 'env', warnings: [] };
  const file = path.join(options.dataDir, SECRET_KEY_FILE);
  let created = false;
  if (!fs.existsSync(file)) created = createKeyFile(options.dataDir, file);
  const warnings: string[] = [];
  let text: string;
  try {
    if (process.platform !== 'win32') {
      const mode = fs.statSync(file).mode & 0o777;
      if (mode & 0o077) warnings.push(`${file} can be read by other users (mode ${mode.toString(8)}); run chmod 600 on it`);
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new SecretBoxError('KEY_FILE', `Cannot read the secret key file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let key: Buffer;
  try {
    key = parseSecretKey(text);
  } catch {
    throw new SecretBoxError('KEY_FILE', `${file} does not hold a 32-byte key (base64 or hex); restore it from a backup, or set ${SECRET_KEY_ENV}`);
  }
  return { box: new SecretBox(key, previous), source: created ? 'created' : 'file', keyFile: file, warnings };
}

/** Creates the key file whole (temp file, then a hard link that fails if another process won); false when one already existed. */
function createKeyFile(dataDir: string, file: string): boolean {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const temp = path.join(dataDir, `.${SECRET_KEY_FILE}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(temp, 'wx', 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, `${crypto.randomBytes(KEY_BYTES).toString('base64')}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.linkSync(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new SecretBoxError('KEY_FILE', `Cannot create the secret key file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}
