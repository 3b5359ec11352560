import crypto from 'node:crypto';

import type { KeyKind } from '../domain/records.js';

export const KEY_PREFIX: Readonly<Record<KeyKind, string>> = {
  personal: 'vibe_api_',
  application: 'vibe_app_',
  management: 'vibe_live_',
};
export const SESSION_PREFIX = 'vibe_session_';
export const SECRET_LENGTH = 40;
export const MIN_SECRET_LENGTH = 32;

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const BASE62_RE = /^[A-Za-z0-9]+$/;

/** Uniform random base62 (rejection sampling: no modulo bias). */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of crypto.randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += BASE62[byte % 62];
    }
  }
  return out;
}

export function newKeySecret(kind: KeyKind): string {
  return KEY_PREFIX[kind] + randomBase62(SECRET_LENGTH);
}

export function newSessionToken(): string {
  return SESSION_PREFIX + randomBase62(SECRET_LENGTH);
}

export function newId(prefix: string): string {
  return `${prefix}_${randomBase62(16)}`;
}

/** SHA-256, hex (one-shot crypto.hash: Node >= 20.12). */
export function hashSecret(secret: string): string {
  return crypto.hash('sha256', secret, 'hex');
}

/** The kind a key claims by its prefix, if it is well formed. */
export function kindOfKey(token: string): KeyKind | null {
  for (const kind of Object.keys(KEY_PREFIX) as KeyKind[]) {
    const prefix = KEY_PREFIX[kind];
    if (token.startsWith(prefix)) {
      const secret = token.slice(prefix.length);
      return secret.length >= MIN_SECRET_LENGTH && secret.length <= 128 && BASE62_RE.test(secret) ? kind : null;
    }
  }
  return null;
}

export function isWellFormedSession(token: string): boolean {
  const secret = token.slice(SESSION_PREFIX.length);
  return token.startsWith(SESSION_PREFIX) && secret.length >= MIN_SECRET_LENGTH && secret.length <= 128 && BASE62_RE.test(secret);
}

/** What may be shown of a secret: its prefix with 4 characters, and its last 4. */
export function displayParts(token: string, prefix: string): { prefix: string; suffix: string } {
  return { prefix: token.slice(0, prefix.length + 4), suffix: token.slice(-4) };
}
