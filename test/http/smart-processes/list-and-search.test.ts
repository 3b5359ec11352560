import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { expectError, expectValidationError } from '../../helpers/expect.js';

describe('GET /v1/smart-processes and POST /v1/smart-processes/search', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
    const types = [
      { title: 'Supply contracts', code: 'supply', isStagesEnabled: true },
      { title: 'Service requests', code: 'service', isStagesEnabled: false, isClientEnabled: true },
      { title: 'Поставки', code: null, isStagesEnabled: true },
      { title: 'Equipment', code: 'equipment', isStagesEnabled: false },
      { title: 'Supplier audits', code: 'audit_50%', isStagesEnabled: true },
    ];
    for (const body of types) assert.equal((await t.call('POST', '/v1/smart-processes', body)).statusCode, 201);
  });
  after(() => t.close());

  const list = async (query: string) => json(await t.call('GET', `/v1/smart-processes${query}`));
  const titles = (body: { data?: { title: string }[] }) => (body.data ?? []).map((x) => x.title);

  it('lists every type with meta; list items carry no relations or linkedUserFields', async () => {
    const body = await list('');
    assert.equal(body.success, true);
    assert.deepEqual(body.meta, { total: 5, limit: 50, offset: 0, hasMore: false });
    assert.equal(body.data.length, 5);
    assert.equal(body.data[0].relations, undefined);
    assert.equal(body.data[0].linkedUserFields, undefined);
    assert.equal(body.data[0].isInitialized, true);
  });

  it('pages with limit and offset; hasMore = offset + data.length < total', async () => {
    const page = await list('?limit=2&offset=2');
    assert.deepEqual(page.meta, { total: 5, limit: 2, offset: 2, hasMore: true });
    assert.deepEqual(page.data.map((x: { id: number }) => x.id), [3, 4]);
    assert.equal((await list('?limit=2&offset=4')).meta.hasMore, false);
    assert.equal((await list('?offset=10')).data.length, 0);
  });

  it('the total is right at every page boundary: a page that is exactly the rest, one row short of it, past the end, and filtered', async () => {
    assert.deepEqual((await list('?limit=5')).meta, { total: 5, limit: 5, offset: 0, hasMore: false });
    assert.deepEqual((await list('?limit=4')).meta, { total: 5, limit: 4, offset: 0, hasMore: true });
    assert.deepEqual((await list('?limit=3&offset=2')).meta, { total: 5, limit: 3, offset: 2, hasMore: false });
    assert.deepEqual((await list('?limit=2&offset=5')).meta, { total: 5, limit: 2, offset: 5, hasMore: false });
    assert.deepEqual((await list('?limit=2&offset=10')).meta, { total: 5, limit: 2, offset: 10, hasMore: false });
    assert.deepEqual((await list('?limit=1&filter[isStagesEnabled]=false')).meta, { total: 2, limit: 1, offset: 0, hasMore: true });
    assert.deepEqual((await list('?limit=2&filter[isStagesEnabled]=false&sort=-id')).meta, { total: 2, limit: 2, offset: 0, hasMore: false });
  });

  it('limit is 1..5000 and offset not negative', async () => {
    expectValidationError(await t.call('GET', '/v1/smart-processes?limit=0'), 'query.limit');
    expectValidationError(await t.call('GET', '/v1/smart-processes?limit=5001'), 'query.limit');
    expectValidationError(await t.call('GET', '/v1/smart-processes?limit=ten'), 'query.limit');
    expectValidationError(await t.call('GET', '/v1/smart-processes?offset=-1'), 'query.offset');
  });

  it('select returns only the named fields and ignores names that are not list fields', async () => {
    const body = await list('?select=id,title,name,entityTypeId');
    assert.deepEqual(Object.keys(body.data[0]).sort(), ['entityTypeId', 'id', 'title']);
    const all = await list('?select=name,relations');
    assert.ok('isStagesEnabled' in all.data[0], 'no name left: the whole item');
  });

  it('sorts by sort=field, sort=-field and order[field]', async () => {
    assert.deepEqual(titles(await list('?sort=title&select=title')), ['Equipment', 'Service requests', 'Supplier audits', 'Supply contracts', 'Поставки']);
    assert.deepEqual((await list('?sort=-id')).data.map((x: { id: number }) => x.id), [5, 4, 3, 2, 1]);
    assert.deepEqual((await list('?order[id]=desc&limit=1')).data[0].id, 5);
    const error = expectValidationError(await t.call('GET', '/v1/smart-processes?sort=titel'), 'query.sort');
    assert.match(error.details![0].fix!, /title/);
    expectValidationError(await t.call('GET', '/v1/smart-processes?order[id]=up'), 'query.order.id');
  });

  it('filters: equality, booleans converted from the query string, AND-ed', async () => {
    assert.deepEqual(titles(await list('?filter[isStagesEnabled]=true&filter[code]=supply')), ['Supply contracts']);
    assert.equal((await list('?filter[isStagesEnabled]=false')).meta.total, 2);
    assert.equal((await list('?filter[isClientEnabled]=true')).meta.total, 1);
    assert.equal((await list('?filter[isInitialized]=false')).meta.total, 0);
  });

  it('filters: $contains and % ignore case, also outside ASCII, and take % and _ literally', async () => {
    assert.deepEqual(titles(await list('?filter[title][$contains]=SUPP')), ['Supply contracts', 'Supplier audits']);
    assert.deepEqual(titles(await list(`?filter[%25title]=${encodeURIComponent('ПОСТ')}`)), ['Поставки']);
    assert.deepEqual(titles(await list('?filter[code][$contains]=50%25')), ['Supplier audits']);
    assert.equal((await list('?filter[code][$contains]=_')).meta.total, 1);
  });

  it('filters: comparison operators and Bitrix24 prefixes on integers', async () => {
    assert.equal((await list('?filter[id][$gt]=3')).meta.total, 2);
    assert.equal((await list('?filter[>=id]=3')).meta.total, 3);
    assert.equal((await list('?filter[<id]=3')).meta.total, 2);
    assert.equal((await list('?filter[!id]=1')).meta.total, 4);
    assert.equal((await list('?filter[!=id]=1')).meta.total, 4);
    assert.deepEqual((await list('?filter[entityTypeId][$in]=1032,1036')).data.map((x: { entityTypeId: number }) => x.entityTypeId), [1032, 1036]);
  });

  it('filters: $ne on a nullable field keeps the rows where it is null', async () => {
    assert.equal((await list('?filter[code][$ne]=supply')).meta.total, 4);
  });

  it('filters: times in ISO 8601', async () => {
    assert.equal((await list('?filter[createdTime][$gte]=2000-01-01T00:00:00%2B00:00')).meta.total, 5);
    assert.equal((await list('?filter[createdTime][$lt]=2000-01-01')).meta.total, 0);
    expectValidationError(await t.call('GET', '/v1/smart-processes?filter[createdTime][$gt]=yesterday'), 'query.filter.createdTime.$gt');
  });

  it('an unknown operator is 400 INVALID_FILTER_OPERATOR; an unknown field or a wrong value type is 400 VALIDATION_ERROR', async () => {
    const op = expectError(await t.call('GET', '/v1/smart-processes?filter[title][$like]=x'), 400, 'INVALID_FILTER_OPERATOR');
    assert.equal(op.details![0].location, 'query.filter.title.$like');
    const field = expectValidationError(await t.call('GET', '/v1/smart-processes?filter[titel]=x'), 'query.filter.titel');
    assert.match(field.details![0].fix!, /title/);
    expectValidationError(await t.call('GET', '/v1/smart-processes?filter[id]=abc'), 'query.filter.id');
    expectValidationError(await t.call('GET', '/v1/smart-processes?filter[isStagesEnabled]=maybe'), 'query.filter.isStagesEnabled');
    expectValidationError(await t.call('GET', '/v1/smart-processes?filter[id][$contains]=1'), 'query.filter.id.$contains');
    expectValidationError(await t.call('GET', '/v1/smart-processes?filter[relations]=1'), 'query.filter.relations');
    expectValidationError(await t.call('GET', '/v1/smart-processes?fliter[id]=1'), 'query.fliter');
  });

  it('search takes the same in a JSON body, with $in as an array', async () => {
    const res = await t.call('POST', '/v1/smart-processes/search', { filter: { isStagesEnabled: true, id: { $in: [1, 3, 4] } }, select: ['id', 'title'], order: { id: 'desc' }, limit: 1 });
    assert.equal(res.statusCode, 200);
    const body = json(res);
    assert.deepEqual(body.data, [{ id: 3, title: 'Поставки' }]);
    assert.deepEqual(body.meta, { total: 2, limit: 1, offset: 0, hasMore: true });
    assert.equal(json(await t.call('POST', '/v1/smart-processes/search', { filter: { code: null } })).meta.total, 1);
  });

  it('search without a body lists everything; a bad body is 400 with every problem', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/smart-processes/search', headers: { 'x-api-key': t.key.secret } });
    assert.equal(json(res).meta.total, 5);
    expectValidationError(await t.call('POST', '/v1/smart-processes/search', { filter: { isStagesEnabled: 'true' }, limit: '5', filters: {} }), 'body.filter.isStagesEnabled', 'body.limit', 'body.filters');
    expectValidationError(await t.call('POST', '/v1/smart-processes/search', [1]), 'body');
    expectError(await t.call('POST', '/v1/smart-processes/search', { filter: { id: { $between: [1, 2] } } }), 400, 'INVALID_FILTER_OPERATOR');
  });

  it('GET /search is 405 with Allow: POST', async () => {
    const res = await t.call('GET', '/v1/smart-processes/search');
    expectError(res, 405, 'METHOD_NOT_ALLOWED');
    assert.equal(res.headers.allow, 'POST');
  });
});
