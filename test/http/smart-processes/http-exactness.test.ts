import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { expectError, expectValidationError } from '../../helpers/expect.js';

/** HTTP and contract exactness on /v1/smart-processes (issue #12, item 8). */
describe('HTTP exactness of /v1/smart-processes', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
    for (const entityTypeId of [1050, 1052, 1054]) assert.equal((await t.call('POST', '/v1/smart-processes', { title: `Type ${entityTypeId}`, entityTypeId })).statusCode, 201);
  });
  after(() => t.close());

  const etagOf = async (entityTypeId: number) => String((await t.call('GET', `/v1/smart-processes/${entityTypeId}`)).headers.etag);
  const patch = (entityTypeId: number, title: string, ifMatch: string) => t.call('PATCH', `/v1/smart-processes/${entityTypeId}`, { title }, { 'if-match': ifMatch });

  describe('If-Match (RFC 9110 §13.1.1)', () => {
    it('a list passes when any listed ETag is current; a list of stale ones is 412 and writes nothing', async () => {
      const etag = await etagOf(1050);
      assert.match(etag, /^"\d+"$/);
      const ok = await patch(1050, 'Listed', `"1", ${etag}, "999999"`);
      assert.equal(ok.statusCode, 200, ok.body);
      const stale = etag;
      const now = String(ok.headers.etag);
      assert.notEqual(now, stale);
      const error = expectError(await patch(1050, 'Stale', `"999999", ${stale}`), 412, 'PRECONDITION_FAILED');
      assert.match(error.message, new RegExp(now.replace(/"/g, '"')));
      assert.equal(json(await t.call('GET', '/v1/smart-processes/1050')).data.title, 'Listed');
    });

    it('empty list elements are ignored; several If-Match header lines form one list', async () => {
      assert.equal((await patch(1050, 'Commas', ` , "7", , ${await etagOf(1050)} ,`)).statusCode, 200);
      const etag = await etagOf(1050);
      // Over a real connection: node's HTTP parser joins the two lines with ", ".
      const address = new URL(await t.app.listen({ port: 0, host: '127.0.0.1' }));
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request({ host: address.hostname, port: address.port, method: 'PATCH', path: '/v1/smart-processes/1050', headers: ['host', address.host, 'x-api-key', t.key.secret, 'content-type', 'application/json', 'if-match', '"123"', 'if-match', etag] }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end(JSON.stringify({ title: 'Two lines' }));
      });
      assert.equal(status, 200);
      expectError(await patch(1050, 'Stale', etag), 412, 'PRECONDITION_FAILED');
    });

    it('* passes for an existing type, and an unknown type is still 404', async () => {
      assert.equal((await patch(1050, 'Star', '*')).statusCode, 200);
      expectError(await patch(1090, 'Star', '*'), 404, 'SMART_PROCESS_NOT_FOUND');
    });

    it('comparison is strong: the weak form of the current ETag does not match', async () => {
      const etag = await etagOf(1050);
      expectError(await patch(1050, 'Weak', `W/${etag}`), 412, 'PRECONDITION_FAILED');
      assert.equal((await patch(1050, 'Weak and strong', `W/${etag}, ${etag}`)).statusCode, 200);
    });

    it('a value that is not an entity-tag list matches nothing: 412, nothing written', async () => {
      const etag = await etagOf(1050);
      for (const header of ['garbage', `${etag.slice(1, -1)}`, `${etag} x`, '*, "1"']) expectError(await patch(1050, 'Garbage', header), 412, 'PRECONDITION_FAILED');
      assert.equal(await etagOf(1050), etag);
    });

    it('DELETE takes the same lists', async () => {
      expectError(await t.call('DELETE', '/v1/smart-processes/1054', undefined, { 'if-match': `"999999", W/${await etagOf(1054)}` }), 412, 'PRECONDITION_FAILED');
      assert.equal((await t.call('DELETE', '/v1/smart-processes/1054', undefined, { 'if-match': `"999999", ${await etagOf(1054)}` })).statusCode, 204);
    });
  });

  describe('405 Allow lists only methods that really work', () => {
    const cases: [string, string[], string[]][] = [
      ['/v1/smart-processes/search', ['POST'], ['GET', 'PUT', 'PATCH', 'DELETE']],
      ['/v1/smart-processes/fields', ['GET', 'HEAD'], ['POST', 'PUT', 'PATCH', 'DELETE']],
      ['/v1/smart-processes/1050', ['GET', 'HEAD', 'PATCH', 'DELETE'], ['POST', 'PUT']],
      ['/v1/smart-processes', ['GET', 'HEAD', 'POST'], ['PUT', 'PATCH', 'DELETE']],
    ];
    for (const [path, allowed, refused] of cases) {
      it(`${path}: Allow: ${allowed.join(', ')}`, async () => {
        for (const method of refused) {
          const res = await t.call(method as 'PUT', path, method === 'GET' || method === 'DELETE' ? undefined : {});
          expectError(res, 405, 'METHOD_NOT_ALLOWED');
          assert.equal(res.headers.allow, allowed.join(', '), `${method} ${path}`);
        }
      });
    }

    it('every method an Allow lists answers (not 404, not 405)', async () => {
      for (const [path, allowed] of cases) {
        for (const method of allowed) {
          if (method === 'DELETE') continue; // would delete 1050; DELETE is spec'd above
          const res = await t.call(method as 'GET', path, method === 'POST' || method === 'PATCH' ? (path.endsWith('/search') ? {} : { title: 'Allowed' }) : undefined);
          assert.ok(res.statusCode < 300, `${method} ${path}: ${res.statusCode} ${res.body}`);
        }
      }
    });
  });

  describe('check order with a body that cannot be taken: access → path → existence → body', () => {
    const raw = (method: 'PATCH' | 'DELETE' | 'POST', url: string, payload: string, headers: Record<string, string> = { 'x-api-key': t.key.secret }) =>
      t.app.inject({ method, url, payload, headers: { 'content-type': 'application/json', ...headers } });

    it('malformed JSON to an unknown id is 404, to a bad id 400 at the path, to a real one 400 at the body', async () => {
      expectError(await raw('PATCH', '/v1/smart-processes/1090', '{"title": '), 404, 'SMART_PROCESS_NOT_FOUND');
      expectError(await raw('DELETE', '/v1/smart-processes/1090', '{bad'), 404, 'SMART_PROCESS_NOT_FOUND');
      for (const id of ['abc', '0', '-5', '1.5', '99999999999']) expectValidationError(await raw('PATCH', `/v1/smart-processes/${id}`, '{bad'), 'params.entityTypeId');
      expectValidationError(await raw('DELETE', '/v1/smart-processes/abc', '{bad'), 'params.entityTypeId');
      const body = expectValidationError(await raw('PATCH', '/v1/smart-processes/1050', '{bad'), 'body');
      assert.match(body.message, /not valid JSON/);
      expectValidationError(await raw('DELETE', '/v1/smart-processes/1052', '{bad'), 'body');
      assert.equal((await t.call('GET', '/v1/smart-processes/1052')).statusCode, 200, 'nothing deleted');
    });

    it('the same for a body that breaks the input rules (a NUL character, a __proto__ key)', async () => {
      expectError(await raw('PATCH', '/v1/smart-processes/1090', '{"title": "a\\u0000b"}'), 404, 'SMART_PROCESS_NOT_FOUND');
      expectError(await raw('PATCH', '/v1/smart-processes/1090', '{"__proto__": {}}'), 404, 'SMART_PROCESS_NOT_FOUND');
      expectValidationError(await raw('PATCH', '/v1/smart-processes/1050', '{"title": "a\\u0000b"}'), 'body.title');
    });

    it('access comes first, and a route without an id reports the body', async () => {
      expectError(await raw('PATCH', '/v1/smart-processes/1090', '{bad', {}), 401, 'MISSING_API_KEY');
      const create = expectValidationError(await raw('POST', '/v1/smart-processes', '{bad'), 'body');
      assert.match(create.message, /not valid JSON/, 'the JSON error, not "must be an object"');
      expectValidationError(await raw('POST', '/v1/smart-processes/search', '{"filter": '), 'body');
      expectError(await raw('POST', '/v1/no-such-route', '{bad'), 404, 'ROUTE_NOT_FOUND');
    });
  });
});
