import assert from 'node:assert/strict';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { json, type TestApp } from '../helpers/app.js';

/** Local helpers of the access tests (test/helpers is shared; these live here). */

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A well-formed base62 string that is nobody's secret. */
export function base62(length = 40): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(Math.random() * alphabet.length)];
  return out;
}

export interface SendOptions {
  body?: unknown;
  headers?: Record<string, string>;
  remoteAddress?: string;
}

/** app.inject with exactly the headers given (no default key). */
export function send(t: TestApp, method: InjectOptions['method'], url: string, options: SendOptions = {}): Promise<LightMyRequestResponse> {
  const { body, headers = {}, remoteAddress } = options;
  return t.app.inject({
    method,
    url,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    ...(remoteAddress ? { remoteAddress } : {}),
  });
}

/** A call with the management key of the test app (every management scope, no rate limit). */
export function mgmt(t: TestApp, method: InjectOptions['method'], url: string, body?: unknown): Promise<LightMyRequestResponse> {
  return send(t, method, url, { body, headers: { 'x-api-key': t.managementKey.secret } });
}

export interface CreatedKey {
  id: string;
  secret: string;
  data: any;
}

/** POST /v1/keys with the management key; asserts 201. requestsPerSecond defaults to null (no limit) unless given. */
export async function createKeyViaApi(t: TestApp, body: Record<string, unknown>, managementSecret = t.managementKey.secret): Promise<CreatedKey> {
  const res = await send(t, 'POST', '/v1/keys', { body: { requestsPerSecond: null, ...body }, headers: { 'x-api-key': managementSecret } });
  assert.equal(res.statusCode, 201, res.body);
  const data = json(res).data;
  return { id: data.id, secret: data.secret, data };
}

/** POST /v1/sessions with the management key; asserts 201; returns the token and the answer. */
export async function mintSession(t: TestApp, keyId: string, userId: number): Promise<{ token: string; data: any }> {
  const res = await mgmt(t, 'POST', '/v1/sessions', { keyId, userId });
  assert.equal(res.statusCode, 201, res.body);
  const data = json(res).data;
  return { token: data.token, data };
}

/** Headers of an application key with its session. */
export const appHeaders = (secret: string, session: string) => ({ 'x-api-key': secret, authorization: `Bearer ${session}` });

/** Writes a key's expiry straight into the store (epoch ms). Call before the key's first use, or wait out the key cache. */
export async function setKeyExpiry(t: TestApp, keyId: string, expiresAt: number | null): Promise<void> {
  await t.app.services.store.db.updateTable('api_keys').set({ expires_at: expiresAt }).where('id', '=', keyId).execute();
}

/** Writes a session's expiry straight into the store (epoch ms). */
export async function setSessionExpiry(t: TestApp, sessionId: string, expiresAt: number): Promise<void> {
  await t.app.services.store.db.updateTable('sessions').set({ expires_at: expiresAt }).where('id', '=', sessionId).execute();
}

/** Asserts a 2xx answer. */
export function expectSuccess(res: LightMyRequestResponse, status?: number): void {
  if (status !== undefined) assert.equal(res.statusCode, status, res.body);
  else assert.ok(res.statusCode >= 200 && res.statusCode < 300, `expected success, got ${res.statusCode}: ${res.body}`);
}

export const RATE_LIMIT_HEADERS = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'] as const;

/** Asserts the rate-limit headers of a limited key on an answer; returns them as numbers. */
export function expectRateLimitHeaders(res: LightMyRequestResponse, limit: number) {
  for (const name of RATE_LIMIT_HEADERS) assert.ok(res.headers[name] !== undefined, `${name} on a ${res.statusCode} answer of a limited key`);
  const remaining = Number(res.headers['x-ratelimit-remaining']);
  const reset = Number(res.headers['x-ratelimit-reset']);
  assert.equal(Number(res.headers['x-ratelimit-limit']), limit);
  assert.ok(Number.isInteger(remaining) && remaining >= 0 && remaining < limit, `remaining ${remaining}`);
  const nowSeconds = Date.now() / 1000;
  assert.ok(Number.isInteger(reset) && reset >= Math.floor(nowSeconds) && reset <= Math.ceil(nowSeconds) + 2, `X-RateLimit-Reset ${reset} is epoch seconds within the next window (now ${nowSeconds})`);
  return { remaining, reset };
}

export function expectNoRateLimitHeaders(res: LightMyRequestResponse): void {
  for (const name of RATE_LIMIT_HEADERS) assert.equal(res.headers[name], undefined, `${name} must not be on an answer of an unlimited key (status ${res.statusCode})`);
}
