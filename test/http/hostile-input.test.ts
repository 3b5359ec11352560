import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { expectError, expectValidationError } from '../helpers/expect.js';
import { TEST_DIALECT } from '../helpers/test-store.js';
import { ERROR_TABLE } from '../../src/errors.js';

/**
 * Hostile input (issue 7, defects 5, 6, 7, 10, 11, 12): every answer is a 4xx in the
 * envelope, the same on SQLite and PostgreSQL, and nothing is stored after it.
 */
describe('hostile input: a 4xx in the envelope, the same on both stores, nothing stored', () => {
  let t: TestApp;
  let appKeyId: string;
  before(async () => {
    t = await createTestApp();
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Target', entityTypeId: 1050, code: 'target' })).statusCode, 201);
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Other', entityTypeId: 1052 })).statusCode, 201);
    appKeyId = (await t.createKey({ kind: 'application', portalId: t.portal.id })).record.id;
  });
  after(() => t.close());

  const mgmt = (method: InjectOptions['method'], url: string, body?: unknown) =>
    t.call(method, url, body, { 'x-api-key': t.managementKey.secret });

  /** Everything a 4xx must leave as it was: the types with their cards, the keys, the portals. */
  async function snapshot(): Promise<string> {
    const list = json(await t.call('GET', '/v1/smart-processes?limit=5000'));
    assert.equal(list.success, true, 'the list answers');
    const cards = [];
    for (const item of list.data) cards.push(json(await t.call('GET', `/v1/smart-processes/${item.entityTypeId}`)).data);
    const keys = json(await mgmt('GET', '/v1/keys')).data;
    const portals = json(await mgmt('GET', '/v1/portals')).data;
    return JSON.stringify({ cards, keys, portals });
  }

  /** Runs the calls; each must be a 4xx envelope (checked by `check`), and the store must be unchanged after all of them. */
  async function refusedWithoutChange(calls: [string, () => Promise<LightMyRequestResponse>][], check: (res: LightMyRequestResponse, label: string) => void) {
    const before = await snapshot();
    for (const [label, call] of calls) {
      const res = await call();
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${label}: expected a 4xx, got ${res.statusCode}: ${res.body.slice(0, 300)}`);
      check(res, label);
    }
    assert.equal(await snapshot(), before, 'nothing stored after the 4xx answers');
  }

  /** The card cache (SQLite) is private to the registry; a test drops it to read from the store. */
  const dropCardCache = () => (t.app.services.portalRegistry as unknown as { cards: { clear(): void } | null }).cards?.clear();

  const detailsOf = (res: LightMyRequestResponse) => (json(res).error.details ?? []) as { location: string; message: string }[];

  // Defect 5 ------------------------------------------------------------------------------------

  it('defect 5: a number beyond the range of a JSON double (1e309) is 400 wherever a body holds it, and no portal is poisoned', async () => {
    const raw = (method: InjectOptions['method'], url: string, body: string, key = t.key.secret) => () => t.call(method, url, body, { 'x-api-key': key });
    const m = t.managementKey.secret;
    await refusedWithoutChange(
      [
        ['create customSectionId', raw('POST', '/v1/smart-processes', '{"title":"poison","customSectionId":1e309}')],
        ['create customSectionId negative', raw('POST', '/v1/smart-processes', '{"title":"poison","customSectionId":-1e309}')],
        ['create entityTypeId', raw('POST', '/v1/smart-processes', '{"title":"poison","entityTypeId":1e309}')],
        ['create relation', raw('POST', '/v1/smart-processes', '{"title":"poison","relations":{"parent":[{"entityTypeId":1e400}]}}')],
        ['patch ignored customSectionId', raw('PATCH', '/v1/smart-processes/1050', '{"title":"poisoned","customSectionId":1e309}')],
        ['patch echoed id', raw('PATCH', '/v1/smart-processes/1050', '{"title":"poisoned","id":1e309}')],
        ['search filter', raw('POST', '/v1/smart-processes/search', '{"filter":{"id":1e309}}')],
        ['search limit', raw('POST', '/v1/smart-processes/search', '{"limit":1e309}')],
        ['key requestsPerSecond', raw('POST', '/v1/keys', `{"portalId":${t.portal.id},"requestsPerSecond":1e309}`, m)],
        ['key userId', raw('POST', '/v1/keys', `{"portalId":${t.portal.id},"userId":1e309}`, m)],
        ['session userId', raw('POST', '/v1/sessions', `{"keyId":"${appKeyId}","userId":1e309}`, m)],
      ],
      (res, label) => {
        const error = expectError(res, 400, 'VALIDATION_ERROR');
        assert.match(error.message, /finite/, label);
        assert.ok(detailsOf(res).some((d) => /finite/.test(d.message) && d.location.startsWith('body.')), `${label}: a detail names the place: ${res.body}`);
      },
    );
    const list = await t.call('GET', '/v1/smart-processes');
    assert.doesNotThrow(() => JSON.parse(list.body), 'the list is still valid JSON');
  });

  it(
    'defect 5: a stored number that is not finite (a portal poisoned before the fix) still gives valid JSON in list and card',
    { skip: TEST_DIALECT === 'postgres' && 'an integer column of PostgreSQL cannot hold Infinity' },
    async () => {
      await t.call('POST', '/v1/smart-processes', { title: 'Poisoned earlier', entityTypeId: 1098 });
      await t.testStore.store.db.updateTable('smart_process_types').set({ custom_section_id: Infinity }).where('entity_type_id', '=', 1098).execute();
      dropCardCache();
      try {
        const list = await t.call('GET', '/v1/smart-processes?limit=5000');
        const item = (JSON.parse(list.body) as { data: { entityTypeId: number; customSectionId: unknown }[] }).data.find((x) => x.entityTypeId === 1098);
        assert.equal(item?.customSectionId, null, 'written as JSON.stringify writes it: null');
        const card = await t.call('GET', '/v1/smart-processes/1098');
        assert.equal((JSON.parse(card.body) as { data: { customSectionId: unknown } }).data.customSectionId, null);
      } finally {
        await t.call('DELETE', '/v1/smart-processes/1098');
      }
    },
  );

  // Defect 6 ------------------------------------------------------------------------------------

  it('defect 6: a path entityTypeId above 2147483647 is 400 naming the range; 2147483647 itself is merely absent (404)', async () => {
    await refusedWithoutChange(
      [
        ['GET', () => t.call('GET', '/v1/smart-processes/2147483648')],
        ['PATCH', () => t.call('PATCH', '/v1/smart-processes/99999999999', { title: 'x' })],
        ['DELETE', () => t.call('DELETE', '/v1/smart-processes/999999999999999')],
      ],
      (res) => {
        const error = expectValidationError(res, 'params.entityTypeId');
        assert.match(error.message, /2147483647/);
      },
    );
    expectError(await t.call('GET', '/v1/smart-processes/2147483647'), 404, 'SMART_PROCESS_NOT_FOUND');
  });

  it('defect 6: filters on integer fields refuse values outside the 32-bit range (400), in the query and in a search body', async () => {
    await refusedWithoutChange(
      [
        ['query eq', () => t.call('GET', '/v1/smart-processes?filter[id]=99999999999')],
        ['query $in', () => t.call('GET', '/v1/smart-processes?filter[entityTypeId][$in]=1050,2147483648')],
        ['query prefix', () => t.call('GET', '/v1/smart-processes?filter[>createdBy]=-2147483649')],
        ['query customSectionId', () => t.call('GET', '/v1/smart-processes?filter[customSectionId][$gte]=4000000000')],
        ['search eq', () => t.call('POST', '/v1/smart-processes/search', '{"filter":{"id":1e20}}')],
        ['search $in', () => t.call('POST', '/v1/smart-processes/search', { filter: { updatedBy: { $in: [1, 2 ** 31] } } })],
      ],
      (res, label) => {
        const error = expectError(res, 400, 'VALIDATION_ERROR');
        assert.match(error.message, /2147483647/, label);
      },
    );
    const edge = json(await t.call('GET', '/v1/smart-processes?filter[id]=2147483647&filter[>createdBy]=-2147483648'));
    assert.deepEqual(edge.data, [], 'the ends of the range are values, merely absent');
  });

  it('defect 6: customSectionId and relation entityTypeIds above 2147483647 are 400 on create and PATCH', async () => {
    await refusedWithoutChange(
      [
        ['create customSectionId', () => t.call('POST', '/v1/smart-processes', { title: 'Big', customSectionId: 99999999999 })],
        ['create entityTypeId', () => t.call('POST', '/v1/smart-processes', { title: 'Big', entityTypeId: 4294967296 })],
        ['create relation', () => t.call('POST', '/v1/smart-processes', { title: 'Big', relations: { child: [{ entityTypeId: 2147483648 }] } })],
        ['patch relation', () => t.call('PATCH', '/v1/smart-processes/1050', { relations: { parent: [{ entityTypeId: 1e20 }] } })],
      ],
      (res, label) => {
        const error = expectError(res, 400, 'VALIDATION_ERROR');
        assert.match(JSON.stringify(error.details), /2147483647/, label);
      },
    );
  });

  it('defect 6: userId and portalId of /v1/keys and /v1/sessions, and portal ids in paths, refuse values outside the 32-bit range', async () => {
    await refusedWithoutChange(
      [
        ['key userId', () => mgmt('POST', '/v1/keys', { portalId: t.portal.id, userId: 99999999999 })],
        ['key portalId', () => mgmt('POST', '/v1/keys', { portalId: 99999999999 })],
        ['key patch userId', () => mgmt('PATCH', `/v1/keys/${t.key.record.id}`, { userId: 2 ** 31 })],
        ['keys list portalId', () => mgmt('GET', '/v1/keys?portalId=99999999999')],
        ['session userId', () => mgmt('POST', '/v1/sessions', { keyId: appKeyId, userId: 99999999999 })],
        ['portal get', () => mgmt('GET', '/v1/portals/2147483648')],
        ['portal patch', () => mgmt('PATCH', '/v1/portals/99999999999', { name: 'x' })],
        ['portal delete', () => mgmt('DELETE', '/v1/portals/99999999999')],
      ],
      (res, label) => {
        const error = expectError(res, 400, 'VALIDATION_ERROR');
        assert.match(`${error.message} ${JSON.stringify(error.details)}`, /2147483647/, label);
      },
    );
    expectError(await mgmt('GET', '/v1/portals/2147483647'), 404, 'ENTITY_NOT_FOUND');
    assert.deepEqual(json(await mgmt('GET', '/v1/keys?portalId=2147483647')).data, []);
  });

  // Defect 7 ------------------------------------------------------------------------------------

  it('defect 7: a NUL character is 400 in titles and codes, on create and PATCH', async () => {
    await refusedWithoutChange(
      [
        ['create title', () => t.call('POST', '/v1/smart-processes', { title: 'a\u0000b' })],
        ['create code', () => t.call('POST', '/v1/smart-processes', { title: 'ok', code: '\u0000' })],
        ['patch title', () => t.call('PATCH', '/v1/smart-processes/1050', { title: 'a\u0000b' })],
        ['patch code', () => t.call('PATCH', '/v1/smart-processes/1050', { code: 'x\u0000' })],
      ],
      (res, label) => {
        const error = expectError(res, 400, 'VALIDATION_ERROR');
        assert.match(error.message, /NUL/, label);
        assert.ok(detailsOf(res).some((d) => d.location === `body.${label.split(' ')[1]}`), `${label}: ${res.body}`);
      },
    );
  });

  it('defect 7: a NUL character is 400 in filters, in the query and in a search body', async () => {
    await refusedWithoutChange(
      [
        ['query', () => t.call('GET', '/v1/smart-processes?filter[title]=a%00b')],
        ['query $contains', () => t.call('GET', '/v1/smart-processes?filter[code][$contains]=%00')],
        ['query $in', () => t.call('GET', '/v1/smart-processes?filter[title][$in]=a,b%00')],
        ['search', () => t.call('POST', '/v1/smart-processes/search', { filter: { '%title': 'a\u0000' } })],
        ['search select', () => t.call('POST', '/v1/smart-processes/search', { select: ['title\u0000'] })],
      ],
      (res, label) => assert.match(expectError(res, 400, 'VALIDATION_ERROR').message, /NUL/, label),
    );
  });

  it('defect 7: a NUL character is 400 in every text of /v1/keys, /v1/portals and /v1/sessions', async () => {
    await refusedWithoutChange(
      [
        ['key name', () => mgmt('POST', '/v1/keys', { portalId: t.portal.id, name: 'a\u0000' })],
        ['key scopes', () => mgmt('POST', '/v1/keys', { portalId: t.portal.id, scopes: ['crm\u0000'] })],
        ['key allowedIps', () => mgmt('POST', '/v1/keys', { portalId: t.portal.id, allowedIps: ['10.0.0.1\u0000'] })],
        ['key expiresAt', () => mgmt('POST', '/v1/keys', { portalId: t.portal.id, expiresAt: '2099-01-01T00:00:00Z\u0000' })],
        ['key rename', () => mgmt('PATCH', `/v1/keys/${t.key.record.id}`, { name: '\u0000' })],
        ['key id in the path', () => mgmt('GET', '/v1/keys/key_%00')],
        ['key id to delete', () => mgmt('DELETE', '/v1/keys/key_%00')],
        ['portal name', () => mgmt('POST', '/v1/portals', { name: 'a\u0000' })],
        ['portal time zone', () => mgmt('PATCH', `/v1/portals/${t.portal.id}`, { timeZone: 'UTC\u0000' })],
        ['session keyId', () => mgmt('POST', '/v1/sessions', { keyId: `${appKeyId}\u0000`, userId: 1 })],
      ],
      (res, label) => assert.match(expectError(res, 400, 'VALIDATION_ERROR').message, /NUL/, label),
    );
  });

  // Defect 10 -----------------------------------------------------------------------------------

  it('defect 10: a filter operator named like an Object.prototype member is 400 INVALID_FILTER_OPERATOR, in a body and in the query', async () => {
    const names = ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'isPrototypeOf'];
    await refusedWithoutChange(
      [
        ...names.map((op): [string, () => Promise<LightMyRequestResponse>] => [`body ${op}`, () => t.call('POST', '/v1/smart-processes/search', { filter: { title: { [op]: 'x' } } })]),
        ...names.map((op): [string, () => Promise<LightMyRequestResponse>] => [`query ${op}`, () => t.call('GET', `/v1/smart-processes?filter[title][${op}]=x`)]),
      ],
      (res, label) => {
        const error = expectError(res, 400, 'INVALID_FILTER_OPERATOR');
        assert.match(error.message, /unknown filter operator/, label);
      },
    );
  });

  it('defect 10: field, sort, order and path names like Object.prototype members are 400 (or 404), never 500 and never ignored', async () => {
    await refusedWithoutChange(
      [
        ['query field', () => t.call('GET', '/v1/smart-processes?filter[constructor]=x')],
        ['query field toString', () => t.call('GET', '/v1/smart-processes?filter[>=toString]=x')],
        ['query order', () => t.call('GET', '/v1/smart-processes?order[toString]=asc')],
        ['query top level', () => t.call('GET', '/v1/smart-processes?constructor=x')],
        ['query sort', () => t.call('GET', '/v1/smart-processes?sort=-constructor')],
        ['body field', () => t.call('POST', '/v1/smart-processes/search', { filter: { hasOwnProperty: 'x' } })],
        ['body order', () => t.call('POST', '/v1/smart-processes/search', { order: { valueOf: 'desc' } })],
        ['body __proto__', () => t.call('POST', '/v1/smart-processes/search', '{"filter":{"__proto__":{"$eq":"x"}}}')],
        ['create __proto__', () => t.call('POST', '/v1/smart-processes', '{"title":"x","__proto__":{"isStagesEnabled":true}}')],
      ],
      (res, label) => expectError(res, 400, 'VALIDATION_ERROR') && assert.ok(true, label),
    );
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
        expectValidationError(await t.call(method, `/v1/smart-processes/${name}`, method === 'PATCH' ? {} : undefined), 'params.entityTypeId');
      }
    }
  });

  it('defect 10: $in takes at most 1000 values, and a filter at most 1000 in all; the message names the limit', async () => {
    const ids = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
    await refusedWithoutChange(
      [
        ['50,000 ids', () => t.call('POST', '/v1/smart-processes/search', { filter: { id: { $in: ids(50_000) } } })],
        ['1001 ids', () => t.call('POST', '/v1/smart-processes/search', { filter: { id: { $in: ids(1001) } } })],
        ['1001 in all', () => t.call('POST', '/v1/smart-processes/search', { filter: { id: { $in: ids(600) }, entityTypeId: { $in: ids(401) } } })],
        ['query', () => t.call('GET', `/v1/smart-processes?filter[id][$in]=${ids(1001).join(',')}`)],
      ],
      (res, label) => assert.match(expectError(res, 400, 'VALIDATION_ERROR').message, /1000/, label),
    );
    const ok = json(await t.call('POST', '/v1/smart-processes/search', { filter: { entityTypeId: { $in: [...ids(999), 1050] } } }));
    assert.deepEqual(ok.data.map((x: { entityTypeId: number }) => x.entityTypeId), [1050], '1000 values are fine');
  });

  it('defect 10: sort takes at most 10 keys (sort and order together); the message names the limit', async () => {
    const keys = (n: number) => Array.from({ length: n }, (_, i) => (i % 2 ? '-id' : 'title')).join(',');
    await refusedWithoutChange(
      [
        ['5000 keys', () => t.call('GET', `/v1/smart-processes?sort=${keys(5000)}`)],
        ['11 keys', () => t.call('POST', '/v1/smart-processes/search', { sort: keys(11) })],
        ['9 + 2 keys', () => t.call('POST', '/v1/smart-processes/search', { sort: keys(9), order: { createdTime: 'asc', updatedTime: 'desc' } })],
      ],
      (res, label) => assert.match(expectError(res, 400, 'VALIDATION_ERROR').message, /10 /, label),
    );
    assert.equal(json(await t.call('GET', `/v1/smart-processes?sort=${keys(10)}`)).success, true, '10 keys are fine');
  });

  it('defect 10 (sibling): a query string with many parameters is read whole: a filter after the 200th parameter is not dropped silently', async () => {
    // Empty parameters count toward qs's parameterLimit too.
    const padding = `select=id,title${'&'.repeat(300)}`;
    const filtered = json(await t.call('GET', `/v1/smart-processes?${padding}&filter[title]=Target`));
    assert.deepEqual(filtered.data.map((x: { title: string }) => x.title), ['Target']);
    const refused = await t.call('GET', `/v1/smart-processes?${padding}&filter[constructor]=x`);
    expectValidationError(refused, 'query.filter.constructor');
  });

  it('defect 10: JSON nested deeper than 32 levels is 400 in the envelope on every route with a body, whatever the depth', async () => {
    const deep = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    const deepArray = (n: number) => '{"title":"x","relations":' + '['.repeat(n) + ']'.repeat(n) + '}';
    const m = t.managementKey.secret;
    const calls: [string, () => Promise<LightMyRequestResponse>][] = [];
    for (const [name, body] of [['100,000 deep', deep(100_000)], ['33 deep', deep(33)], ['arrays 200,000 deep', deepArray(200_000)]] as const) {
      calls.push(
        [`create ${name}`, () => t.call('POST', '/v1/smart-processes', body)],
        [`patch ${name}`, () => t.call('PATCH', '/v1/smart-processes/1050', body)],
        [`search ${name}`, () => t.call('POST', '/v1/smart-processes/search', body)],
        [`key ${name}`, () => t.call('POST', '/v1/keys', body, { 'x-api-key': m })],
        [`portal ${name}`, () => t.call('PATCH', `/v1/portals/${t.portal.id}`, body, { 'x-api-key': m })],
      );
    }
    await refusedWithoutChange(calls, (res, label) => assert.match(expectError(res, 400, 'VALIDATION_ERROR').message, /32/, label));
    // 32 levels are JSON the schema then judges (here: an unknown field).
    expectValidationError(await t.call('POST', '/v1/smart-processes', deep(32)), 'body.a');
  });

  // Defect 11 -----------------------------------------------------------------------------------

  it('defect 11: a lone UTF-16 surrogate is 400 in every text input, and the answers do not change afterwards', async () => {
    const raw = (method: InjectOptions['method'], url: string, body: string, key = t.key.secret) => () => t.call(method, url, body, { 'x-api-key': key });
    const m = t.managementKey.secret;
    const cardBefore = (await t.call('GET', '/v1/smart-processes/1050')).body;
    await refusedWithoutChange(
      [
        ['create title', raw('POST', '/v1/smart-processes', '{"title":"\\ud800 x"}')],
        ['create code', raw('POST', '/v1/smart-processes', '{"title":"x","code":"\\udfff"}')],
        ['patch title', raw('PATCH', '/v1/smart-processes/1050', '{"title":"Target \\udc00"}')],
        ['patch reversed pair', raw('PATCH', '/v1/smart-processes/1050', '{"title":"\\udc00\\ud800"}')],
        ['search filter', raw('POST', '/v1/smart-processes/search', '{"filter":{"title":"\\ud83d"}}')],
        ['key name', raw('POST', '/v1/keys', `{"portalId":${t.portal.id},"name":"\\ud800"}`, m)],
        ['portal name', raw('PATCH', `/v1/portals/${t.portal.id}`, '{"name":"\\ud800"}', m)],
      ],
      (res, label) => {
        const error = expectError(res, 400, 'VALIDATION_ERROR');
        assert.match(error.message, /surrogate/, label);
      },
    );
    dropCardCache();
    assert.equal((await t.call('GET', '/v1/smart-processes/1050')).body, cardBefore, 'the card reads the same from the store as from the cache');
    // A well-formed pair (an emoji) is text like any other.
    const emoji = await t.call('PATCH', '/v1/smart-processes/1052', { title: 'Trucks 🚚' });
    assert.equal(json(emoji).data.title, 'Trucks 🚚');
  });

  // Defect 12 -----------------------------------------------------------------------------------

  it('defect 12: a path that cannot be percent-decoded, or a path segment over the router limit, is 400 in the envelope with X-Request-Id', async () => {
    for (const url of ['/v1/smart-processes/%', '/v1/smart-processes/%E0%A4%A', '/v1/smart-processes/%ED%A0%80', '/v1/keys/%ff', `/v1/smart-processes/${'1'.repeat(101)}`, `/v1/keys/${'k'.repeat(500)}`]) {
      const res = await t.call('GET', url);
      const error = expectError(res, 400, 'VALIDATION_ERROR');
      assert.ok(error.details?.length, `${url}: details say what is wrong`);
    }
  });
});

describe('hostile input on the wire: every answer of a listening server is in the envelope', () => {
  let t: TestApp;
  let port: number;
  before(async () => {
    t = await createTestApp();
    port = Number(new URL(await t.app.listen({ port: 0, host: '127.0.0.1' })).port);
  });
  after(() => t.close());

  /** Sends raw bytes; resolves with what came back before the server closed (or 3 s passed). */
  const raw = (request: string) =>
    new Promise<string>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
      let received = '';
      const done = () => {
        clearTimeout(timer);
        socket.destroy();
        resolve(received);
      };
      const timer = setTimeout(done, 3000);
      socket.on('data', (chunk) => {
        received += chunk;
        const head = received.indexOf('\r\n\r\n');
        const length = /content-length: (\d+)/i.exec(received);
        if (head >= 0 && length && Buffer.byteLength(received.slice(head + 4)) >= Number(length[1])) done();
      });
      socket.on('close', done);
      socket.on('error', done);
    });

  function envelopeOf(answer: string, status: number, code: string) {
    assert.match(answer, new RegExp(`^HTTP/1\\.1 ${status} `), answer.slice(0, 300));
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { success: boolean; error: { code: string; message: string; requestId: string } };
    assert.equal(body.success, false);
    assert.equal(body.error.code, code, answer.slice(0, 300));
    assert.ok(code in ERROR_TABLE);
    assert.equal(ERROR_TABLE[code as keyof typeof ERROR_TABLE].status, status);
    assert.ok(body.error.requestId);
    return body.error;
  }

  it('defect 12: a header section over the limit (a 64 KB header, or a 20 KB URL) is 431 HEADERS_TOO_LARGE', async () => {
    const big = await raw(`GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${t.key.secret}\r\nX-Big: ${'a'.repeat(65_536)}\r\n\r\n`);
    assert.match(envelopeOf(big, 431, 'HEADERS_TOO_LARGE').message, /16 KiB|16384/);
    envelopeOf(await raw(`GET /v1/smart-processes?x=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`), 431, 'HEADERS_TOO_LARGE');
  });

  it('defect 12: malformed HTTP (bad percent-encoding, Content-Length, Transfer-Encoding, method, version, no Host, CONNECT, Expect) is answered in the envelope', async () => {
    const k = t.key.secret;
    const cases: [string, string, number, string][] = [
      ['bad percent-encoding', 'GET /v1/smart-processes/% HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'VALIDATION_ERROR'],
      ['Content-Length not a number', `POST /v1/smart-processes HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${k}\r\nContent-Length: abc\r\n\r\n`, 400, 'VALIDATION_ERROR'],
      ['Transfer-Encoding gzip', `POST /v1/smart-processes HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${k}\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n{}`, 400, 'VALIDATION_ERROR'],
      ['both Content-Length and chunked', `POST /v1/smart-processes HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${k}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}`, 400, 'VALIDATION_ERROR'],
      ['bad chunk size', `POST /v1/smart-processes HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${k}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`, 400, 'VALIDATION_ERROR'],
      ['unknown method', 'FOO / HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'VALIDATION_ERROR'],
      ['unknown version', 'GET / HTTP/9.9\r\nHost: x\r\n\r\n', 400, 'VALIDATION_ERROR'],
      ['NUL in a header', 'GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Api-Key: a\0b\r\n\r\n', 400, 'VALIDATION_ERROR'],
      ['HTTP/1.1 without Host', 'GET /v1/me HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'VALIDATION_ERROR'],
      ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405, 'METHOD_NOT_ALLOWED'],
      ['Content-Length twice', `POST /v1/smart-processes HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${k}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`, 400, 'VALIDATION_ERROR'],
      ['Expect other than 100-continue', `POST /v1/smart-processes HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${k}\r\nContent-Type: application/json\r\nExpect: magic\r\nContent-Length: 2\r\n\r\n{}`, 400, 'VALIDATION_ERROR'],
    ];
    for (const [label, request, status, code] of cases) {
      const answer = await raw(request);
      assert.ok(answer, `${label}: an answer, not a closed connection`);
      envelopeOf(answer, status, code);
    }
    // The server still serves after all of that.
    const ok = await fetch(`http://127.0.0.1:${port}/v1/me`, { headers: { 'X-Api-Key': k } });
    assert.equal(ok.status, 200);
  });
  it('a relations side over 1000 entries, or a text filter value over 1000 characters, is a 400 naming the limit (not a 500 on SQLite)', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Many parents', entityTypeId: 1900 });
    const entries = Array.from({ length: 34_000 }, (_, i) => ({ entityTypeId: 2000 + 2 * i }));
    const patch = expectError(await t.call('PATCH', '/v1/smart-processes/1900', { relations: { parent: entries } }), 400, 'VALIDATION_ERROR');
    assert.match(JSON.stringify(patch.details), /1000/);
    expectError(await t.call('POST', '/v1/smart-processes', { title: 'x', relations: { child: entries } }), 400, 'VALIDATION_ERROR');
    const long = expectError(await t.call('POST', '/v1/smart-processes/search', { filter: { title: { $contains: 'a'.repeat(50_001) } } }), 400, 'VALIDATION_ERROR');
    assert.match(long.message, /1000 characters/);
    expectError(await t.call('GET', `/v1/smart-processes?filter[%25title]=${'%25'.repeat(1001)}`), 400, 'VALIDATION_ERROR');
  });
});
