import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { expectError } from '../helpers/expect.js';
import { ERROR_TABLE } from '../../src/errors.js';

const execFileAsync = promisify(execFile);

describe('platform: envelope, request ids, routes, API document', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  it('every answer carries X-Request-Id; a well-formed incoming one is kept, another is replaced', async () => {
    const kept = await t.call('GET', '/v1/smart-processes', undefined, { 'x-request-id': 'trace-42.a:b_c' });
    assert.equal(kept.headers['x-request-id'], 'trace-42.a:b_c');
    const replaced = await t.call('GET', '/v1/smart-processes/9', undefined, { 'x-request-id': 'bad id with spaces' });
    assert.match(String(replaced.headers['x-request-id']), /^req_/);
    assert.equal(json(replaced).error.requestId, replaced.headers['x-request-id']);
    const tooLong = await t.call('GET', '/v1/smart-processes', undefined, { 'x-request-id': 'x'.repeat(129) });
    assert.match(String(tooLong.headers['x-request-id']), /^req_/);
  });

  it('minted request ids are req_ and 16 random hex digits, none repeated (also past the 512 ids drawn at a time)', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 1200; i++) {
      const id = String((await t.app.inject({ method: 'GET', url: '/v2/none' })).headers['x-request-id']);
      assert.match(id, /^req_[0-9a-f]{16}$/);
      ids.add(id);
    }
    assert.equal(ids.size, 1200);
  });

  it('an unknown route is 404 ROUTE_NOT_FOUND; a wrong method is 405 with Allow', async () => {
    expectError(await t.app.inject({ method: 'GET', url: '/v2/anything' }), 404, 'ROUTE_NOT_FOUND');
    const res = await t.call('PUT', '/v1/smart-processes/1032', {});
    expectError(res, 405, 'METHOD_NOT_ALLOWED');
    assert.equal(res.headers.allow, 'GET, HEAD, PATCH, DELETE');
    assert.equal((await t.call('DELETE', '/v1/smart-processes')).headers.allow, 'GET, HEAD, POST');
  });

  it('an unexpected failure is 500 INTERNAL_ERROR without internals', async () => {
    const store = t.app.services.store;
    const original = store.db.selectFrom.bind(store.db);
    (store.db as unknown as { selectFrom: unknown }).selectFrom = () => {
      throw new Error('SELECT * FROM secret_table failed at /src/x.ts:1');
    };
    try {
      // A filtered list builds its statement anew (a plain list's is compiled once, and pages are kept): it reaches the broken store.
      const res = await t.call('GET', '/v1/smart-processes?filter[title]=reaches-the-store-500');
      const error = expectError(res, 500, 'INTERNAL_ERROR');
      assert.doesNotMatch(error.message, /secret_table/);
    } finally {
      (store.db as unknown as { selectFrom: unknown }).selectFrom = original;
    }
  });

  it('a store that cannot be reached is 503 SERVICE_UNAVAILABLE with retryAfter', async () => {
    const store = t.app.services.store;
    const original = store.db.selectFrom.bind(store.db);
    (store.db as unknown as { selectFrom: unknown }).selectFrom = () => {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    };
    try {
      const res = await t.call('GET', '/v1/smart-processes?filter[title]=reaches-the-store-503');
      const error = expectError(res, 503, 'SERVICE_UNAVAILABLE');
      assert.equal(error.retryAfter, 1);
      assert.equal(res.headers['retry-after'], '1');
    } finally {
      (store.db as unknown as { selectFrom: unknown }).selectFrom = original;
    }
  });

  it('GET /v1/openapi.json is an OpenAPI 3.1 document of every route, with the error table, without a key', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json();
    assert.equal(doc.openapi, '3.1.0');
    for (const path of ['/v1/smart-processes', '/v1/smart-processes/search', '/v1/smart-processes/fields', '/v1/smart-processes/{entityTypeId}', '/v1/me', '/v1/keys', '/v1/portals', '/v1/sessions']) {
      assert.ok(doc.paths[path], `documents ${path}`);
    }
    const patch = doc.paths['/v1/smart-processes/{entityTypeId}'].patch;
    assert.ok(patch.requestBody.content['application/json'].schema.properties.isStagesEnabled);
    assert.ok(patch.responses['404'], 'error answers are documented');
    assert.match(JSON.stringify(patch.responses['404']), /SMART_PROCESS_NOT_FOUND/);
    for (const code of Object.keys(ERROR_TABLE)) assert.match(doc.info.description, new RegExp(code), `error table lists ${code}`);
  });

  it('GET /docs serves the interactive API reference', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/docs/' });
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /swagger-ui/i);
  });

  it('times use the portal time zone: ISO 8601 with its offset, second precision', async () => {
    const moscow = await t.createPortal('Europe/Moscow');
    const key = await t.createKey({ kind: 'personal', portalId: moscow.id, scopes: ['crm'], userId: 3 });
    const data = json(await t.call('POST', '/v1/smart-processes', { title: 'Moscow' }, { 'x-api-key': key.secret })).data;
    assert.match(data.createdTime, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+03:00$/);
    const utc = new Date(data.createdTime).getTime();
    assert.ok(Math.abs(utc - Date.now()) < 5000);
  });
});

describe('a listening server', () => {
  let t: TestApp;
  let base: string;
  before(async () => {
    t = await createTestApp();
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    await t.call('POST', '/v1/smart-processes', { title: 'Supply contracts', entityTypeId: 1050, isAutomationEnabled: true });
  });
  after(() => t.close());

  it("runs the seed's JavaScript example unchanged but for the base URL and key", async () => {
    const script = fileURLToPath(new URL('../fixtures/seed-patch-example.mjs', import.meta.url));
    const { stdout } = await execFileAsync(process.execPath, [script], { env: { ...process.env, SMARTPROC_BASE_URL: base, SMARTPROC_API_KEY: t.key.secret } });
    assert.match(stdout, /^Updated at: \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00\n$/);
    const data = json(await t.call('GET', '/v1/smart-processes/1050')).data;
    assert.equal(data.title, 'Supply contracts (updated name)');
    assert.equal(data.code, 'supply_contracts');
    assert.equal(data.isAutomationEnabled, false);
  });

  it('an oversized body gets the 413 envelope on the wire, not a reset connection', async () => {
    const body = JSON.stringify({ title: 'x'.repeat(2 * 1024 * 1024) });
    const { port } = new URL(base);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => {
        socket.write(`PATCH /v1/smart-processes/1050 HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${t.key.secret}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
        socket.write(body, () => undefined);
      });
      let received = '';
      socket.on('data', (chunk) => {
        received += chunk;
        if (received.includes('PAYLOAD_TOO_LARGE')) {
          socket.destroy();
          resolve(received);
        }
      });
      socket.on('error', (error) => (received.includes('413') ? resolve(received) : reject(error)));
      socket.on('close', () => resolve(received));
    });
    assert.match(answer, /^HTTP\/1\.1 413/);
    assert.match(answer, /"code":"PAYLOAD_TOO_LARGE"/);
    const after = await fetch(`${base}/v1/smart-processes/1050`, { headers: { 'X-Api-Key': t.key.secret } });
    assert.equal(((await after.json()) as { data: { title: string } }).data.title, 'Supply contracts (updated name)');
  });
});
