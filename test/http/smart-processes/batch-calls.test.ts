import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { expectError, expectValidationError } from '../../helpers/expect.js';


/** Issue 12 item 4: POST /v1/batch (docs/api.md, "Batches"). Here because its calls are the smart process routes (also run against a bitrix24 portal). */

const URL = '/v1/batch';
const SP = 'smart-processes';

interface CallError {
  code: string;
  message: string;
  status: number;
  hint?: string;
  details?: { location: string; message: string; fix?: string }[];
}
interface BatchData {
  results: Record<string, any>;
  totals: Record<string, number>;
  errors: Record<string, CallError>;
  summary: { total: number; succeeded: number; failed: number };
}

async function batch(t: TestApp, calls: unknown[], headers?: Record<string, string>): Promise<BatchData> {
  const res = await t.call('POST', URL, { calls }, headers);
  assert.equal(res.statusCode, 200, res.body);
  const body = json(res);
  assert.equal(body.success, true);
  return body.data as BatchData;
}

const data = async (t: TestApp, url: string, headers?: Record<string, string>) => json(await t.call('GET', url, undefined, headers));

describe('POST /v1/batch', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
    for (const body of [
      { title: 'Batch list A', entityTypeId: 1600, isStagesEnabled: true },
      { title: 'Batch list B', entityTypeId: 1602 },
      { title: 'Batch list C', entityTypeId: 1604, isStagesEnabled: true },
    ]) {
      const res = await t.call('POST', '/v1/smart-processes', body);
      assert.equal(res.statusCode, 201, res.body);
    }
  });
  after(() => t.close());

  it('list + get + fields: each result is exactly the data of its direct route; list totals; a summary', async () => {
    const out = await batch(t, [
      { id: 'types', entity: SP, action: 'list', params: { select: 'id,title', limit: 2 } },
      { id: 'card', entity: SP, action: 'get', entityId: 1602 },
      { id: 'fields', entity: SP, action: 'fields' },
    ]);
    const list = await data(t, '/v1/smart-processes?select=id,title&limit=2');
    assert.deepEqual(out.results.types, list.data);
    assert.deepEqual(out.totals, { types: list.meta.total });
    assert.deepEqual(out.results.card, (await data(t, '/v1/smart-processes/1602')).data);
    assert.deepEqual(out.results.fields, (await data(t, '/v1/smart-processes/fields')).data);
    assert.deepEqual(out.errors, {});
    assert.deepEqual(out.summary, { total: 3, succeeded: 3, failed: 0 });
    assert.deepEqual(Object.keys(out.results), ['types', 'card', 'fields']);
  });

  it('end to end over HTTP: a client posts list + get + fields and reads each result by its id', async () => {
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const res = await fetch(`${base}/v1/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': t.key.secret },
      body: JSON.stringify({ calls: [{ id: 'a', entity: SP, action: 'list' }, { id: 'b', entity: SP, action: 'get', entityId: 1604 }, { id: 'c', entity: SP, action: 'fields' }] }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.ok(res.headers.get('x-request-id'));
    const body = (await res.json()) as { success: boolean; data: BatchData };
    assert.equal(body.success, true);
    assert.deepEqual(body.data.results.a.map((x: { entityTypeId: number }) => x.entityTypeId), [1600, 1602, 1604]);
    assert.equal(body.data.totals.a, 3);
    assert.equal(body.data.results.b.title, 'Batch list C');
    assert.equal(body.data.results.c.fields.entityTypeId.isImmutable, true);
    const wrongMethod = await fetch(`${base}/v1/batch`, { headers: { 'x-api-key': t.key.secret } });
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
  });

  it('list takes its params as the GET query (string values converted); search as its body (JSON values only)', async () => {
    const out = await batch(t, [
      { id: 'asQuery', entity: SP, action: 'list', params: { filter: { isStagesEnabled: 'true' }, sort: '-entityTypeId' } },
      { id: 'asBody', entity: SP, action: 'search', params: { filter: { isStagesEnabled: true }, sort: '-entityTypeId' } },
      { id: 'stringInBody', entity: SP, action: 'search', params: { filter: { isStagesEnabled: 'true' } } },
      { id: 'badOperator', entity: SP, action: 'list', params: { filter: { title: { $like: 'x' } } } },
    ]);
    const direct = (await data(t, '/v1/smart-processes?filter[isStagesEnabled]=true&sort=-entityTypeId')).data;
    assert.deepEqual(out.results.asQuery, direct);
    assert.deepEqual(out.results.asBody, direct);
    assert.deepEqual(out.totals, { asQuery: 2, asBody: 2 });
    assert.equal(out.errors.stringInBody.code, 'VALIDATION_ERROR');
    assert.deepEqual(out.errors.stringInBody.details!.map((d) => d.location), ['body.calls[2].params.filter.isStagesEnabled']);
    assert.equal(out.errors.badOperator.code, 'INVALID_FILTER_OPERATOR');
    assert.equal(out.errors.badOperator.status, 400);
    assert.ok(out.errors.badOperator.details!.every((d) => d.location.startsWith('body.calls[3].params.filter.title')), JSON.stringify(out.errors.badOperator));
    assert.deepEqual(out.summary, { total: 4, succeeded: 2, failed: 2 });
  });

  it('create, update and delete calls; calls run in order (a later call sees an earlier write); delete answers null', async () => {
    const out = await batch(t, [
      { id: 'before', entity: SP, action: 'get', entityId: 1700 },
      { id: 'create', entity: SP, action: 'create', params: { title: 'Made in a batch', entityTypeId: 1700 } },
      { id: 'read', entity: SP, action: 'get', entityId: '1700' },
      { id: 'update', entity: SP, action: 'update', entityId: 1700, params: { title: 'Renamed in a batch' } },
      { id: 'empty', entity: SP, action: 'update', entityId: 1700 },
      { id: 'delete', entity: SP, action: 'delete', entityId: 1700 },
      { id: 'after', entity: SP, action: 'get', entityId: 1700 },
    ]);
    assert.equal(out.errors.before.code, 'SMART_PROCESS_NOT_FOUND');
    assert.equal(out.errors.before.status, 404);
    assert.equal(out.results.create.title, 'Made in a batch');
    assert.deepEqual(out.results.read, out.results.create);
    assert.equal(out.results.update.title, 'Renamed in a batch');
    assert.deepEqual(out.results.empty, out.results.update, 'update without params is PATCH {}');
    assert.equal(out.results.delete, null);
    assert.ok('delete' in out.results);
    assert.equal(out.errors.after.code, 'SMART_PROCESS_NOT_FOUND');
    assert.deepEqual(out.summary, { total: 7, succeeded: 5, failed: 2 });
    expectError(await t.call('GET', '/v1/smart-processes/1700'), 404, 'SMART_PROCESS_NOT_FOUND');
  });

  it('each call is judged as its direct route: path id (400), existence before body (404), body (400), portal rules (422), with locations in the batch', async () => {
    const out = await batch(t, [
      { id: 'badId', entity: SP, action: 'get', entityId: 'abc' },
      { id: 'noId', entity: SP, action: 'delete' },
      { id: 'unknownWithBadBody', entity: SP, action: 'update', entityId: 99990, params: { isStageEnabled: 'x' } },
      { id: 'badBody', entity: SP, action: 'update', entityId: 1600, params: { isStageEnabled: true } },
      { id: 'createWithId', entity: SP, action: 'create', entityId: 1702, params: { title: 'x' } },
      { id: 'createBad', entity: SP, action: 'create', params: { title: 7 } },
      { id: 'outOfRange', entity: SP, action: 'create', params: { title: 'Out of range', entityTypeId: 5 } },
      { id: 'getWithParams', entity: SP, action: 'get', entityId: 1600, params: { select: 'id' } },
      { id: 'fieldsWithId', entity: SP, action: 'fields', entityId: 1600 },
    ]);
    assert.deepEqual(out.summary, { total: 9, succeeded: 0, failed: 9 });
    const locations = (id: string) => out.errors[id].details!.map((d) => d.location);
    assert.deepEqual(locations('badId'), ['body.calls[0].entityId']);
    assert.deepEqual(locations('noId'), ['body.calls[1].entityId']);
    assert.equal(out.errors.unknownWithBadBody.code, 'SMART_PROCESS_NOT_FOUND');
    assert.deepEqual(out.errors.badBody.details, [{ location: 'body.calls[3].params.isStageEnabled', message: 'is not a known field', fix: 'did you mean "isStagesEnabled"?' }]);
    assert.deepEqual(locations('createWithId'), ['body.calls[4].entityId']);
    assert.deepEqual(locations('createBad'), ['body.calls[5].params.title']);
    assert.equal(out.errors.outOfRange.code, 'BITRIX_ERROR');
    assert.equal(out.errors.outOfRange.status, 422);
    assert.deepEqual(locations('getWithParams'), ['body.calls[7].params']);
    assert.deepEqual(locations('fieldsWithId'), ['body.calls[8].entityId']);
    // A call's error is its route's error: same code and message, the location moved.
    const single = json(await t.call('PATCH', '/v1/smart-processes/1600', { isStageEnabled: true })).error;
    assert.equal(out.errors.badBody.message, single.message.replace(/^body/, 'body.calls[3].params'));
  });

  it('an entity smartproc does not serve is a per-call ENTITY_NOT_SUPPORTED naming the served ones; an unknown action is a per-call 400', async () => {
    const out = await batch(t, [
      { id: 'deals', entity: 'deals', action: 'list' },
      { id: 'typo', entity: 'smart-process', action: 'list' },
      { id: 'noEntity', action: 'list' },
      { id: 'badAction', entity: SP, action: 'lsit' },
      { id: 'ok', entity: SP, action: 'get', entityId: 1600 },
    ]);
    assert.equal(out.errors.deals.code, 'ENTITY_NOT_SUPPORTED');
    assert.equal(out.errors.deals.status, 404);
    assert.match(out.errors.deals.message, /"deals" is not served.*served entities: smart-processes/);
    assert.equal(out.errors.typo.hint, 'Did you mean "smart-processes"?');
    assert.deepEqual(out.errors.noEntity.details!.map((d) => d.location), ['body.calls[2].entity']);
    assert.equal(out.errors.badAction.code, 'VALIDATION_ERROR');
    assert.equal(out.errors.badAction.details![0].fix, 'did you mean "list"?');
    assert.equal(out.results.ok.entityTypeId, 1600);
    assert.deepEqual(out.summary, { total: 5, succeeded: 1, failed: 4 });
  });

  it('50 calls are one request; 51 is 400 BATCH_LIMIT_EXCEEDED and no call runs', async () => {
    const calls = Array.from({ length: 50 }, (_, i) => ({ id: `c${i}`, entity: SP, action: 'get', entityId: 1600 + 2 * (i % 3) }));
    const out = await batch(t, calls);
    assert.deepEqual(out.summary, { total: 50, succeeded: 50, failed: 0 });
    assert.equal(out.results.c49.entityTypeId, 1602);
    const over = [...calls, { id: 'c50', entity: SP, action: 'create', params: { title: 'Never', entityTypeId: 1704 } }];
    const error = expectError(await t.call('POST', URL, { calls: over }), 400, 'BATCH_LIMIT_EXCEEDED');
    assert.match(error.message, /at most 50 calls; got 51/);
    expectError(await t.call('GET', '/v1/smart-processes/1704'), 404, 'SMART_PROCESS_NOT_FOUND');
  });

  it("the batch's own shape is 400 for the whole request: body, calls, ids (required, unique), call keys", async () => {
    expectValidationError(await t.call('POST', URL, 'null'), 'body');
    expectValidationError(await t.call('POST', URL, {}), 'body.calls');
    expectValidationError(await t.call('POST', URL, { calls: [] }), 'body.calls');
    expectValidationError(await t.call('POST', URL, { calls: {} }), 'body.calls');
    expectValidationError(await t.call('POST', URL, { calls: [{ entity: SP, action: 'fields' }] }), 'body.calls[0].id');
    expectValidationError(await t.call('POST', URL, { calls: [{ id: 5, entity: SP, action: 'fields' }] }), 'body.calls[0].id');
    expectValidationError(await t.call('POST', URL, { calls: [{ id: 'a', entity: SP, action: 'fields' }, { id: 'a', entity: SP, action: 'fields' }] }), 'body.calls[1].id');
    expectValidationError(await t.call('POST', URL, { calls: ['get'] }), 'body.calls[0]');
    const typo = expectValidationError(await t.call('POST', URL, { calls: [{ id: 'a', entity: SP, action: 'get', entityID: 1600 }] }), 'body.calls[0].entityID');
    assert.equal(typo.details![0].fix, 'did you mean "entityId"?');
    expectValidationError(await t.call('POST', URL, { calls: [{ id: 'a', entity: SP, action: 'fields' }], halt: true }), 'body.halt');
    expectValidationError(await t.call('POST', URL, { calls: [{ id: 'a', entity: SP, action: 'fields' }] }, { 'if-match': '*' }), 'headers.if-match');
  });

  it('both batch routes are in the OpenAPI document, with their limits and the error codes they answer', async () => {
    const doc = json(await t.app.inject({ method: 'GET', url: '/v1/openapi.json' })) as any;
    const calls = doc.paths['/v1/batch'].post;
    const items = doc.paths['/v1/smart-processes/batch'].post;
    assert.equal(calls.operationId, 'batch');
    assert.equal(items.operationId, 'batchSmartProcesses');
    assert.equal(calls.requestBody.content['application/json'].schema.properties.calls.maxItems, 50);
    assert.equal(items.requestBody.content['application/json'].schema.properties.items.maxItems, 500);
    for (const op of [calls, items]) assert.match(op.responses['400'].description, /BATCH_LIMIT_EXCEEDED/);
    assert.match(items.responses['403'].description, /WRITE_BLOCKED_READONLY_KEY/);
  });

  it('ids that are names of Object.prototype are keys like any other', async () => {
    const out = await batch(t, [
      { id: '__proto__', entity: SP, action: 'get', entityId: 1600 },
      { id: 'constructor', entity: 'nope', action: 'get' },
    ]);
    assert.equal(Object.getOwnPropertyDescriptor(out.results, '__proto__')?.value.entityTypeId, 1600);
    assert.equal(out.errors['constructor' as string].code, 'ENTITY_NOT_SUPPORTED');
  });
});

describe('POST /v1/batch: each call checked against the key as its direct route', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Guarded', entityTypeId: 1800 })).statusCode, 201);
  });
  after(() => t.close());

  const mixed = [
    { id: 'list', entity: SP, action: 'list' },
    { id: 'get', entity: SP, action: 'get', entityId: 1800 },
    { id: 'fields', entity: SP, action: 'fields' },
    { id: 'search', entity: SP, action: 'search', params: { filter: { title: 'Guarded' } } },
    { id: 'create', entity: SP, action: 'create', params: { title: 'Not allowed', entityTypeId: 1802 } },
    { id: 'update', entity: SP, action: 'update', entityId: 1800, params: { title: 'Not allowed' } },
    { id: 'delete', entity: SP, action: 'delete', entityId: 1800 },
  ];

  it('a READONLY key: each write is refused (WRITE_BLOCKED_READONLY_KEY), the reads are served, nothing is written', async () => {
    const readonly = await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'], userId: 7, accessMode: 'READONLY' });
    const before = (await t.call('GET', '/v1/smart-processes?limit=5000')).body;
    const out = await batch(t, mixed, { 'x-api-key': readonly.secret });
    assert.deepEqual(Object.keys(out.results), ['list', 'get', 'fields', 'search']);
    assert.deepEqual(Object.keys(out.errors), ['create', 'update', 'delete']);
    for (const id of ['create', 'update', 'delete']) {
      assert.equal(out.errors[id].code, 'WRITE_BLOCKED_READONLY_KEY');
      assert.equal(out.errors[id].status, 403);
    }
    assert.equal(out.results.get.title, 'Guarded');
    assert.deepEqual(out.totals, { list: 1, search: 1 });
    assert.deepEqual(out.summary, { total: 7, succeeded: 4, failed: 3 });
    assert.equal((await t.call('GET', '/v1/smart-processes?limit=5000')).body, before);
  });

  it('a key without the crm scope: every smart process call is refused with SCOPE_DENIED naming the scope; the batch itself is 200', async () => {
    const noCrm = await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['user', 'task'], userId: 7 });
    const out = await batch(t, [...mixed, { id: 'deals', entity: 'deals', action: 'list' }], { 'x-api-key': noCrm.secret });
    assert.deepEqual(out.results, {});
    for (const call of mixed) {
      assert.equal(out.errors[call.id].code, 'SCOPE_DENIED', call.id);
      assert.match(out.errors[call.id].message, /crm scope/);
    }
    assert.equal(out.errors.deals.code, 'ENTITY_NOT_SUPPORTED');
    assert.deepEqual(out.summary, { total: 8, succeeded: 0, failed: 8 });
    assert.equal((await t.call('GET', '/v1/smart-processes/1800')).statusCode, 200);
  });

  it('the batch request itself goes through the check order: no key 401, a management key 403', async () => {
    expectError(await t.app.inject({ method: 'POST', url: URL, payload: { calls: mixed } }), 401, 'MISSING_API_KEY');
    expectError(await t.call('POST', URL, { calls: mixed }, { 'x-api-key': t.managementKey.secret }), 403, 'MANAGEMENT_KEY_NO_ENTITY_ACCESS');
  });

  it('a batch counts as one request for the rate limit; its calls do not count again', async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const limited = await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'], userId: 7, requestsPerSecond: 2 });
      const as = { 'x-api-key': limited.secret };
      const calls = Array.from({ length: 50 }, (_, i) => ({ id: `g${i}`, entity: SP, action: 'get', entityId: 1800 }));
      const res = await t.call('POST', URL, { calls }, as);
      if (res.statusCode !== 200 || res.headers['x-ratelimit-remaining'] !== '1') continue; // a window boundary fell inside
      assert.equal(json(res).data.summary.succeeded, 50);
      assert.equal(res.headers['x-ratelimit-limit'], '2');
      return;
    }
    assert.fail('could not stay within one rate-limit window in 5 attempts');
  });

  it('/v1/me lists both batch routes for a READONLY key (get and reads are allowed)', async () => {
    const readonly = await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'], userId: 7, accessMode: 'READONLY' });
    const routes = (await data(t, '/v1/me', { 'x-api-key': readonly.secret })).data.routes as { method: string; path: string }[];
    assert.ok(routes.some((r) => r.method === 'POST' && r.path === '/v1/batch'));
    assert.ok(routes.some((r) => r.method === 'POST' && r.path === '/v1/smart-processes/batch'));
  });
});
