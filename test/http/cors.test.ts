import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';

const PAGE_ORIGIN_HOST = '127.0.0.1';

interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request over a real socket, any headers (Origin included), as a browser would send it. */
function raw(base: string, method: string, path: string, headers: Record<string, string>): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(base + path, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const list = (value: string | string[] | undefined) => String(value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

async function listening(t: TestApp): Promise<string> {
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
}

/** A page server on another origin (another port): GET /?api=...&key=... serves a page whose script calls the API. */
async function pageServer(): Promise<{ origin: string; close(): Promise<void> }> {
  const page = `<!doctype html><html><head><title>another origin</title></head><body><script>
const params = new URLSearchParams(location.search);
window.result = (async () => {
  try {
    const res = await fetch(params.get('api') + '/v1/smart-processes?select=id,entityTypeId,title', { headers: { 'X-Api-Key': params.get('key') } });
    return { status: res.status, body: await res.json(), requestId: res.headers.get('X-Request-Id'), rateLimit: res.headers.get('X-RateLimit-Limit'), remaining: res.headers.get('X-RateLimit-Remaining') };
  } catch (error) {
    return { failed: String(error) };
  }
})();
</script></body></html>`;
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page));
  await new Promise<void>((resolve) => server.listen(0, PAGE_ORIGIN_HOST, resolve));
  return {
    origin: `http://${PAGE_ORIGIN_HOST}:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('CORS_ORIGINS (configuration)', () => {
  it('is off by default; takes comma-separated origins or *', () => {
    assert.deepEqual(loadConfig({}).corsOrigins, []);
    assert.deepEqual(loadConfig({ CORS_ORIGINS: ' https://app.example.com , http://localhost:5173,https://app.example.com' }).corsOrigins, ['https://app.example.com', 'http://localhost:5173']);
    assert.deepEqual(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins, ['*']);
    assert.deepEqual(loadConfig({ CORS_ORIGINS: 'https://a.example, *' }).corsOrigins, ['*']);
  });

  it('refuses what is not an origin, saying what an origin looks like', () => {
    for (const [bad, suggestion] of [['https://app.example.com/', 'https://app.example.com'], ['https://app.example.com/path', 'https://app.example.com'], ['app.example.com', undefined], ['ftp://files.example.com', undefined]] as const) {
      assert.throws(() => loadConfig({ CORS_ORIGINS: bad }), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /CORS_ORIGINS must be "\*" or comma-separated origins/);
        assert.ok(error.message.includes(`"${bad}"`));
        if (suggestion) assert.ok(error.message.includes(`did you mean "${suggestion}"`), error.message);
        return true;
      });
    }
  });
});

describe('CORS off (the default)', () => {
  let t: TestApp;
  let base: string;
  before(async () => {
    t = await createTestApp();
    base = await listening(t);
  });
  after(() => t.close());

  it('answers no preflight and allows no origin', async () => {
    const preflight = await raw(base, 'OPTIONS', '/v1/smart-processes', { origin: 'https://app.example.com', 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-api-key' });
    assert.equal(preflight.status, 405, preflight.body);
    assert.equal(preflight.headers['access-control-allow-origin'], undefined);
    const get = await raw(base, 'GET', '/v1/smart-processes', { origin: 'https://app.example.com', 'x-api-key': t.key.secret });
    assert.equal(get.status, 200);
    assert.equal(get.headers['access-control-allow-origin'], undefined);
  });
});

describe('CORS with listed origins', () => {
  let t: TestApp;
  let base: string;
  const ORIGIN = 'https://app.example.com';
  before(async () => {
    t = await createTestApp({ config: { corsOrigins: [ORIGIN, 'http://localhost:5173'] } });
    base = await listening(t);
    await t.call('POST', '/v1/smart-processes', { title: 'Supply contracts', entityTypeId: 1050 });
  });
  after(() => t.close());

  it('a preflight of PATCH with the key, a session, If-Match and JSON is answered 204 without a key', async () => {
    const res = await raw(base, 'OPTIONS', '/v1/smart-processes/1050', {
      origin: ORIGIN,
      'access-control-request-method': 'PATCH',
      'access-control-request-headers': 'authorization,content-type,if-match,x-api-key',
    });
    assert.equal(res.status, 204, res.body);
    assert.equal(res.body, '');
    assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
    assert.deepEqual(list(res.headers['access-control-allow-methods']), ['get', 'head', 'post', 'patch', 'delete']);
    for (const header of ['x-api-key', 'authorization', 'if-match', 'content-type']) {
      assert.ok(list(res.headers['access-control-allow-headers']).includes(header), `${header} is allowed`);
    }
    assert.equal(res.headers['access-control-max-age'], '600');
    assert.ok(list(res.headers.vary).includes('origin'), 'Vary: Origin, as the answer depends on it');
    assert.equal(res.headers['access-control-allow-credentials'], undefined, 'keys travel in headers, not cookies');
    assert.ok(res.headers['x-request-id'], 'a preflight answer carries its request id too');
  });

  it('every preflight of the API is answered: each method, on each kind of path', async () => {
    for (const [method, path] of [['GET', '/v1/smart-processes'], ['POST', '/v1/smart-processes/search'], ['DELETE', '/v1/smart-processes/1050'], ['GET', '/v1/me'], ['POST', '/v1/keys']]) {
      const res = await raw(base, 'OPTIONS', path, { origin: 'http://localhost:5173', 'access-control-request-method': method, 'access-control-request-headers': 'x-api-key' });
      assert.equal(res.status, 204, `${method} ${path}`);
      assert.equal(res.headers['access-control-allow-origin'], 'http://localhost:5173');
      assert.ok(list(res.headers['access-control-allow-methods']).includes(method.toLowerCase()));
    }
  });

  it('an origin that is not listed gets no Access-Control-Allow-Origin (the browser refuses)', async () => {
    const preflight = await raw(base, 'OPTIONS', '/v1/smart-processes', { origin: 'https://evil.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-api-key' });
    assert.equal(preflight.headers['access-control-allow-origin'], undefined);
    const get = await raw(base, 'GET', '/v1/smart-processes', { origin: 'https://evil.example', 'x-api-key': t.key.secret });
    assert.equal(get.headers['access-control-allow-origin'], undefined);
  });

  it('answers carry the origin and expose ETag, X-Request-Id, X-RateLimit-* and Retry-After', async () => {
    const limited = await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'], userId: 7, requestsPerSecond: 10 });
    const res = await raw(base, 'GET', '/v1/smart-processes/1050', { origin: ORIGIN, 'x-api-key': limited.secret });
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
    const exposed = list(res.headers['access-control-expose-headers']);
    for (const header of ['etag', 'x-request-id', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after']) {
      assert.ok(exposed.includes(header), `${header} is exposed; got ${exposed.join(', ')}`);
      if (header !== 'retry-after') assert.ok(res.headers[header], `and the answer has ${header}`);
    }
  });

  it('errors carry the CORS headers too, so that a page can read them', async () => {
    const res = await raw(base, 'GET', '/v1/smart-processes', { origin: ORIGIN });
    assert.equal(res.status, 401);
    assert.equal(JSON.parse(res.body).error.code, 'MISSING_API_KEY');
    assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
    assert.ok(list(res.headers['access-control-expose-headers']).includes('x-request-id'));
  });

  it('the preflight route makes no path known: an unknown path is still 404, and a 405 does not offer OPTIONS', async () => {
    const unknown = await raw(base, 'GET', '/v1/nothing-here', { 'x-api-key': t.key.secret });
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.body).error.code, 'ROUTE_NOT_FOUND');
    const wrongMethod = await raw(base, 'PUT', '/v1/smart-processes/1050', { 'x-api-key': t.key.secret });
    assert.equal(wrongMethod.status, 405);
    assert.ok(!list(wrongMethod.headers.allow).includes('options'), `Allow: ${wrongMethod.headers.allow}`);
  });
});

describe('CORS_ORIGINS=*', () => {
  it('allows any origin with Access-Control-Allow-Origin: *', async () => {
    const t = await createTestApp({ config: { corsOrigins: ['*'] } });
    try {
      const base = await listening(t);
      const preflight = await raw(base, 'OPTIONS', '/v1/smart-processes', { origin: 'https://anyone.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-api-key' });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers['access-control-allow-origin'], '*');
      const get = await raw(base, 'GET', '/v1/smart-processes', { origin: 'https://anyone.example', 'x-api-key': t.key.secret });
      assert.equal(get.headers['access-control-allow-origin'], '*');
    } finally {
      await t.close();
    }
  });
});

describe('a browser page on another origin (headless Chromium)', chromiumSkip, () => {
  it('calls GET /v1/smart-processes with its key when its origin is listed, after a real preflight; is refused when not', async () => {
    const pages = await pageServer();
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const allowed = await createTestApp({ config: { corsOrigins: [pages.origin] }, logger: { level: 'info', stream } as never });
    const other = await createTestApp({ config: { corsOrigins: ['https://someone-else.example'] } });
    const browser = await launchChromium();
    try {
      const api = await listening(allowed);
      await allowed.call('POST', '/v1/smart-processes', { title: 'Supply contracts', entityTypeId: 1050 });
      const key = await allowed.createKey({ kind: 'personal', portalId: allowed.portal.id, scopes: ['crm'], userId: 7, requestsPerSecond: 10 });
      const page = await browser.context.newPage();
      await page.goto(`${pages.origin}/?api=${encodeURIComponent(api)}&key=${encodeURIComponent(key.secret)}`);
      const result = await page.evaluate(() => (globalThis as unknown as { result: Promise<Record<string, unknown>> }).result);
      assert.equal(result.status, 200, JSON.stringify(result));
      const body = result.body as { success: boolean; data: { entityTypeId: number; title: string }[] };
      assert.equal(body.success, true);
      assert.deepEqual(body.data.map((d) => [d.entityTypeId, d.title]), [[1050, 'Supply contracts']]);
      assert.match(String(result.requestId), /^req_/, 'the page reads X-Request-Id');
      assert.equal(result.rateLimit, '10', 'the page reads X-RateLimit-Limit');
      // One log line per request (src/observability/request-log.ts), in the order the answers went out; a preflight
      // is answered by @fastify/cors's catch-all OPTIONS route, so its line names that route, not the path.
      const requests = lines.map((l) => JSON.parse(l)).filter((e) => e.msg === 'request' && (String(e.route ?? '').startsWith('/v1/smart-processes') || e.method === 'OPTIONS'));
      assert.deepEqual(requests.map((e) => e.method), ['POST', 'OPTIONS', 'GET'], 'the browser sent a preflight before the GET');

      const refusedApi = await listening(other);
      await page.goto(`${pages.origin}/?api=${encodeURIComponent(refusedApi)}&key=${encodeURIComponent(other.key.secret)}`);
      const refused = await page.evaluate(() => (globalThis as unknown as { result: Promise<Record<string, unknown>> }).result);
      assert.match(String(refused.failed), /TypeError: Failed to fetch/, `an unlisted origin cannot call: ${JSON.stringify(refused)}`);
    } finally {
      await browser.close();
      await allowed.close();
      await other.close();
      await pages.close();
    }
  });
});
