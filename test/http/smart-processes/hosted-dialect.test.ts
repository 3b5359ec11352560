import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, TEST_PORTAL_KIND, type TestApp } from '../../helpers/app.js';
import { expectError, expectValidationError } from '../../helpers/expect.js';

/**
 * The hosted API's list and search dialect (issue #12, items 1 and 2): `pageSize`, `sort`
 * as an object, `autoWindow`, and the three filter styles, mixable, in a body and in a
 * query string. Runs on both stores and, with SMARTPROC_TEST_PORTAL_KIND=bitrix24, on a
 * bitrix24 portal backed by the fake.
 */
describe('the hosted API dialect of list and search', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
    const types = [
      { title: 'Supply contracts', code: 'supply', isStagesEnabled: true }, // 1032
      { title: 'Service requests', code: 'service', isClientEnabled: true }, // 1034
      { title: 'Поставки', code: null, isStagesEnabled: true }, // 1036
      { title: 'Equipment', code: 'equipment' }, // 1038
      { title: 'Supplier audits', code: 'audit_50%', isStagesEnabled: true }, // 1040
      { title: 'Fleet', code: 'fleet', entityTypeId: 1052 },
      { title: 'Warehouse\tnorth\nsite', code: 'ctl\u0001code', entityTypeId: 1054, isStagesEnabled: true },
    ];
    for (const body of types) assert.equal((await t.call('POST', '/v1/smart-processes', body)).statusCode, 201);
  });
  after(() => t.close());

  const search = (body: unknown) => t.call('POST', '/v1/smart-processes/search', body);
  const list = (query: string) => t.call('GET', `/v1/smart-processes${query}`);
  const ids = async (res: Promise<Awaited<ReturnType<TestApp['call']>>>) => {
    const answer = await res;
    assert.equal(answer.statusCode, 200, answer.body);
    return (json(answer).data as { entityTypeId: number }[]).map((x) => x.entityTypeId);
  };

  it("end to end over HTTP: the guide's search example and the operator-style filter", async () => {
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const post = async (body: unknown) => {
      const res = await fetch(`${address}/v1/smart-processes/search`, { method: 'POST', headers: { 'x-api-key': t.key.secret, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as { data: { entityTypeId: number }[]; meta: unknown } };
    };
    const guide = await post({ filter: {}, sort: {}, pageSize: 20 });
    assert.equal(guide.status, 200);
    assert.deepEqual(guide.body.meta, { total: 7, limit: 20, offset: 0, hasMore: false });
    const operator = await post({ filter: { entityTypeId: { '>=': 1052 } } });
    assert.equal(operator.status, 200);
    assert.deepEqual(operator.body.data.map((x) => x.entityTypeId), [1052, 1054]);
    const query = await fetch(`${address}/v1/smart-processes?filter[entityTypeId][>=]=1052&sort[entityTypeId]=desc`, { headers: { 'x-api-key': t.key.secret } });
    assert.deepEqual(((await query.json()) as { data: { entityTypeId: number }[] }).data.map((x) => x.entityTypeId), [1054, 1052]);
  });

  describe('parameters', () => {
    it("the guide's own example {filter: {}, sort: {}, pageSize: 20} lists everything, 20 at a time", async () => {
      const res = await search({ filter: {}, sort: {}, pageSize: 20 });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(json(res).meta, { total: 7, limit: 20, offset: 0, hasMore: false });
      assert.equal(json(res).data.length, 7);
    });

    it('pageSize pages like limit, in a body and in a query string; meta keeps total and hasMore', async () => {
      const body = json(await search({ pageSize: 2, offset: 2 }));
      assert.deepEqual(body.meta, { total: 7, limit: 2, offset: 2, hasMore: true });
      assert.deepEqual(body.data.map((x: { entityTypeId: number }) => x.entityTypeId), [1036, 1038]);
      assert.deepEqual(json(await list('?pageSize=3&offset=6')).meta, { total: 7, limit: 3, offset: 6, hasMore: false });
    });

    it('limit and pageSize are one parameter: the same value in both is fine, different values are 400', async () => {
      assert.equal(json(await search({ limit: 3, pageSize: 3 })).data.length, 3);
      const error = expectValidationError(await search({ limit: 30, pageSize: 20 }), 'body.pageSize');
      assert.match(error.details![0].message, /20.*30/);
      expectValidationError(await list('?limit=5&pageSize=6'), 'query.pageSize');
    });

    it('pageSize is 1..5000 and an integer', async () => {
      expectValidationError(await search({ pageSize: 0 }), 'body.pageSize');
      const over = expectValidationError(await search({ pageSize: 5001 }), 'body.pageSize');
      assert.match(over.details![0].fix!, /offset/);
      expectValidationError(await search({ pageSize: '20' }), 'body.pageSize');
      expectValidationError(await list('?pageSize=many'), 'query.pageSize');
      assert.equal(json(await search({ pageSize: 5000 })).meta.limit, 5000);
    });

    it('sort as an object {"field": "asc"|"desc"} (any case, or 1 / -1), several keys in order', async () => {
      assert.deepEqual(await ids(search({ sort: { entityTypeId: 'desc' }, pageSize: 3 })), [1054, 1052, 1040]);
      assert.deepEqual(await ids(search({ sort: { entityTypeId: 'DESC' }, pageSize: 1 })), [1054]);
      assert.deepEqual(await ids(search({ sort: { entityTypeId: -1 }, pageSize: 1 })), [1054]);
      assert.deepEqual(await ids(search({ sort: { isStagesEnabled: 'desc', entityTypeId: 'asc' }, pageSize: 4 })), [1032, 1036, 1040, 1054]);
      assert.deepEqual(await ids(search({ sort: { createdTime: 'desc', id: 'desc' }, pageSize: 1 })), [1054]);
    });

    it('sort keeps its string forms, takes an array of them, and sort[field]=desc in a query string', async () => {
      assert.deepEqual(await ids(search({ sort: '-entityTypeId', pageSize: 1 })), [1054]);
      assert.deepEqual(await ids(search({ sort: ['-isStagesEnabled', '-entityTypeId'], pageSize: 2 })), [1054, 1040]);
      assert.deepEqual(await ids(list('?sort[entityTypeId]=desc&limit=2')), [1054, 1052]);
      assert.deepEqual(await ids(list('?sort=-entityTypeId&limit=1')), [1054]);
    });

    it('a bad sort is 400 at the key, with a "did you mean" for a misspelt field', async () => {
      expectValidationError(await search({ sort: { entityTypeId: 'down' } }), 'body.sort.entityTypeId');
      const error = expectValidationError(await search({ sort: { createdTme: 'desc' } }), 'body.sort.createdTme');
      assert.match(error.details![0].fix!, /"createdTime"/);
      expectValidationError(await search({ sort: 5 }), 'body.sort');
      expectValidationError(await list('?sort[id]=sideways'), 'query.sort.id');
    });

    it('autoWindow is accepted (true or false) and changes nothing; windowFrom/windowTo say what to do instead', async () => {
      for (const autoWindow of [true, false]) assert.deepEqual(json(await search({ autoWindow, pageSize: 2 })).meta, { total: 7, limit: 2, offset: 0, hasMore: true });
      assert.equal(json(await list('?autoWindow=true')).meta.total, 7);
      expectValidationError(await search({ autoWindow: 'yes' }), 'body.autoWindow');
      const error = expectValidationError(await search({ autoWindow: true, windowFrom: '2026-01-01' }), 'body.windowFrom');
      assert.match(error.details![0].fix!, /createdTime/);
    });

    it('a null body, or any other body that is not an object, is 400 (no body at all lists everything)', async () => {
      for (const body of ['null', '[]', '"filter"', '7', 'true']) expectValidationError(await search(body), 'body');
      const empty = await t.app.inject({ method: 'POST', url: '/v1/smart-processes/search', headers: { 'x-api-key': t.key.secret } });
      assert.equal(json(empty).meta.total, 7);
    });
  });

  describe('filter styles', () => {
    it('Bitrix24 operators as object keys: {"entityTypeId": {">=": 1052}} (the issue\'s example)', async () => {
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { '>=': 1052 } } })), [1052, 1054]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { '>': 1036, '<=': 1052 } } })), [1038, 1040, 1052]);
      assert.deepEqual(await ids(search({ filter: { title: { '%': 'SUPP' }, entityTypeId: { '!': 1032 } } })), [1040]);
      assert.deepEqual(await ids(search({ filter: { code: { '=': 'fleet' } } })), [1052]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { '@': [1034, 1038] } } })), [1034, 1038]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { '!@': [1032, 1034, 1036, 1038, 1040] } } })), [1052, 1054]);
      assert.deepEqual(await ids(search({ filter: { isStagesEnabled: { '!=': true } } })), [1034, 1038, 1052]);
    });

    it('Bitrix24 key prefixes: ">=", ">", "<=", "<", "!", "!=", "%", "=", "@", "!@"', async () => {
      assert.deepEqual(await ids(search({ filter: { '>=entityTypeId': 1052 } })), [1052, 1054]);
      assert.deepEqual(await ids(search({ filter: { '>entityTypeId': 1040, '<entityTypeId': 1054 } })), [1052]);
      assert.deepEqual(await ids(search({ filter: { '<=entityTypeId': 1034 } })), [1032, 1034]);
      assert.deepEqual(await ids(search({ filter: { '%title': 'supp', '!code': 'supply' } })), [1040]);
      assert.deepEqual(await ids(search({ filter: { '=code': 'equipment' } })), [1038]);
      assert.deepEqual(await ids(search({ filter: { '@entityTypeId': [1032, 1054] } })), [1032, 1054]);
      assert.deepEqual(await ids(search({ filter: { '!@entityTypeId': [1032, 1034, 1036, 1038, 1040, 1052] } })), [1054]);
    });

    it('MongoDB style: $eq $ne $gt $gte $lt $lte $contains $in, and $nin (beyond)', async () => {
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { $gte: 1040, $lt: 1054 } } })), [1040, 1052]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { $gt: 1052 } } })), [1054]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { $lte: 1032 } } })), [1032]);
      assert.deepEqual(await ids(search({ filter: { code: { $eq: 'service' } } })), [1034]);
      assert.deepEqual(await ids(search({ filter: { title: { $contains: 'supp' }, code: { $ne: 'supply' } } })), [1040]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { $in: [1036, 1052] } } })), [1036, 1052]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { $nin: [1032, 1034, 1036, 1038, 1040] } } })), [1052, 1054]);
    });

    it('an array value means "in"; with "!" it means "not in" (null included as a value)', async () => {
      assert.deepEqual(await ids(search({ filter: { entityTypeId: [1032, 1034] } })), [1032, 1034]);
      assert.deepEqual(await ids(search({ filter: { code: ['fleet', null] } })), [1036, 1052]);
      assert.deepEqual(await ids(search({ filter: { '!code': ['supply', 'service', 'equipment', 'audit_50%', null] } })), [1052, 1054]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: [] } })), []);
    });

    it('all three styles mix in one filter (AND-ed), also on one field', async () => {
      const filter = { isStagesEnabled: true, '>=entityTypeId': 1036, entityTypeId: { $lte: 1054, '!': 1038 }, title: { '!': 'Supplier audits' }, code: [null, 'ctl\u0001code', 'fleet'] };
      assert.deepEqual(await ids(search({ filter })), [1036, 1054]);
      assert.deepEqual(await ids(search({ filter: { entityTypeId: { $gte: 1034, '<=': 1038 }, '!entityTypeId': 1036 } })), [1034, 1038]);
    });

    it('the same styles in a query string: filter[field][>=]=, filter[>=field]=, filter[field][$op]=, filter[field][]=', async () => {
      assert.deepEqual(await ids(list('?filter[entityTypeId][>=]=1052')), [1052, 1054]);
      assert.deepEqual(await ids(list(`?filter[entityTypeId][${encodeURIComponent('>=')}]=1052`)), [1052, 1054]);
      assert.deepEqual(await ids(list('?filter[%3E%3DentityTypeId]=1052&filter[entityTypeId][$lt]=1054')), [1052]);
      assert.deepEqual(await ids(list('?filter[entityTypeId][]=1032&filter[entityTypeId][]=1038')), [1032, 1038]);
      assert.deepEqual(await ids(list('?filter[entityTypeId][@]=1032,1038')), [1032, 1038]);
      assert.deepEqual(await ids(list('?filter[entityTypeId][!@]=1032,1034,1036,1038,1040')), [1052, 1054]);
      assert.deepEqual(await ids(list('?filter[!entityTypeId][]=1032&filter[!entityTypeId][]=1034&filter[isStagesEnabled][!]=false')), [1036, 1040, 1054]);
      assert.deepEqual(await ids(list('?filter[title][%25]=ware&filter[isStagesEnabled]=true&filter[entityTypeId][$in]=1054,1052')), [1054]);
    });

    it('$contains, "%" and {"%": ...} take control characters literally (and ignore case)', async () => {
      for (const filter of [{ title: { $contains: 'HOUSE\tNORTH\nS' } }, { '%title': '\tnorth\n' }, { title: { '%': 'e\tn' } }, { code: { $contains: 'L\u0001C' } }]) {
        assert.deepEqual(await ids(search({ filter })), [1054], JSON.stringify(filter));
      }
      assert.deepEqual(await ids(list(`?filter[title][$contains]=${encodeURIComponent('north\nsite')}`)), [1054]);
      assert.deepEqual(await ids(search({ filter: { title: { $contains: '\r' } } })), []);
      assert.deepEqual(await ids(search({ filter: { title: { $contains: 'north site' } } })), [], 'a newline is not a space');
    });

    it('an operator object must hold an operator; a list goes only with in / not in', async () => {
      expectValidationError(await search({ filter: { entityTypeId: {} } }), 'body.filter.entityTypeId');
      expectValidationError(await search({ filter: { entityTypeId: { '>=': [1, 2] } } }), 'body.filter.entityTypeId.>=');
      expectValidationError(await search({ filter: { '%title': ['a'] } }), 'body.filter.%title');
      expectValidationError(await search({ filter: { '>=entityTypeId': { $lt: 5 } } }), 'body.filter.>=entityTypeId');
      expectValidationError(await search({ filter: { $gte: 5 } }), 'body.filter.$gte');
    });
  });

  describe('"did you mean" in the style the client used', () => {
    const fixOf = async (body: unknown, location: string) => {
      const error = expectError(await search(body), 400, 'INVALID_FILTER_OPERATOR');
      const detail = error.details!.find((d) => d.location === location);
      assert.ok(detail, `a detail at ${location}: ${JSON.stringify(error.details)}`);
      return detail.fix ?? '';
    };

    it('a Bitrix24 operator key gets a Bitrix24 operator, never a $ one', async () => {
      assert.match(await fixOf({ filter: { entityTypeId: { '=>': 1052 } } }, 'body.filter.entityTypeId.=>'), /did you mean ">="\?/);
      assert.match(await fixOf({ filter: { entityTypeId: { '=<': 1052 } } }, 'body.filter.entityTypeId.=<'), /did you mean "<="\?/);
      assert.match(await fixOf({ filter: { entityTypeId: { '<>': 1052 } } }, 'body.filter.entityTypeId.<>'), /did you mean "!="\?/);
      const unknown = await fixOf({ filter: { entityTypeId: { '~': 1 } } }, 'body.filter.entityTypeId.~');
      assert.doesNotMatch(unknown, /\$/);
      assert.match(unknown, />=/);
      assert.match(await fixOf({ filter: { title: { '!%': 'x' } } }, 'body.filter.title.!%'), /not supported/);
    });

    it('a Bitrix24 key prefix gets a prefix on the same field', async () => {
      assert.match(await fixOf({ filter: { '=>entityTypeId': 1052 } }, 'body.filter.=>entityTypeId'), /did you mean ">=entityTypeId"\?/);
      const field = expectValidationError(await search({ filter: { '>=entityTypeld': 1052 } }), 'body.filter.>=entityTypeld');
      assert.match(field.details![0].fix!, /did you mean ">=entityTypeId"\?/);
    });

    it('a $ operator gets a $ operator; a bare word gets the $ operator it names', async () => {
      assert.match(await fixOf({ filter: { entityTypeId: { $gtee: 1 } } }, 'body.filter.entityTypeId.$gtee'), /did you mean "\$gte"\?/);
      assert.match(await fixOf({ filter: { title: { $like: 'x' } } }, 'body.filter.title.$like'), /did you mean "\$contains"\?/);
      assert.match(await fixOf({ filter: { entityTypeId: { gte: 1 } } }, 'body.filter.entityTypeId.gte'), /did you mean "\$gte"\?/);
      assert.match(await fixOf({ filter: { entityTypeId: { $between: [1, 2] } } }, 'body.filter.entityTypeId.$between'), /\$gte.*\$lte/);
    });

    it('the same in a query string', async () => {
      const error = expectError(await list('?filter[entityTypeId][=%3E]=1052'), 400, 'INVALID_FILTER_OPERATOR');
      assert.equal(error.details![0].location, 'query.filter.entityTypeId.=>');
      assert.match(error.details![0].fix!, /">="/);
    });
  });

  describe('impossible calendar dates', () => {
    it('2026-02-30, 2026-04-31, 2025-02-29, hour 24, minute 60 are 400, not rolled over; 2028-02-29 is a date', async () => {
      for (const value of ['2026-02-30', '2026-04-31T10:00:00', '2025-02-29T00:00:00+03:00', '2026-01-01T24:00:00Z', '2026-01-01T10:60:00', '2026-01-01T10:00:60Z', '2026-00-10', '2026-01-01T10:00:00+25:00']) {
        expectValidationError(await search({ filter: { createdTime: { $gte: value } } }), 'body.filter.createdTime.$gte');
        expectValidationError(await list(`?filter[createdTime][$lt]=${encodeURIComponent(value)}`), 'query.filter.createdTime.$lt');
      }
      assert.equal(json(await search({ filter: { createdTime: { $gte: '2028-02-29' } } })).meta.total, 0);
      assert.equal(json(await search({ filter: { '>=createdTime': '2000-02-29T23:59:59Z' } })).meta.total, 7);
    });
  });
});

describe('pageSize above 50: the answer holds that many', () => {
  let t: TestApp;
  const COUNT = 120;
  before(async () => {
    t = await createTestApp();
    for (let i = 0; i < COUNT; i++) assert.equal((await t.call('POST', '/v1/smart-processes', { title: `Type ${String(i).padStart(3, '0')}`, isStagesEnabled: i % 2 === 0 })).statusCode, 201);
  });
  after(() => t.close());

  it('with a filter the portal applies natively, in several native list calls on a bitrix24 portal', async () => {
    // First in this suite: no list has been read yet, so a bitrix24 portal has no whole list cached to answer from.
    t.fake?.resetRecords();
    const res = json(await t.call('POST', '/v1/smart-processes/search', { filter: { entityTypeId: { '>=': 1040 } }, sort: { entityTypeId: 'asc' }, pageSize: 80, offset: 10 }));
    assert.equal(res.data.length, 80);
    assert.equal(res.data[0].entityTypeId, 1040 + 2 * 10);
    assert.deepEqual(res.meta, { total: COUNT - 4, limit: 80, offset: 10, hasMore: true });
    if (TEST_PORTAL_KIND === 'bitrix24') {
      const starts = t.fake!.calls.filter((c) => c.method === 'crm.type.list').map((c) => c.params.start);
      assert.deepEqual(starts, [0, 50], 'records 10..89 of the native order: pages start=0 and start=50');
    }
  });

  it('pageSize 100 answers 100 records, then the remaining 20 with hasMore false', async () => {
    const first = json(await t.call('POST', '/v1/smart-processes/search', { pageSize: 100 }));
    assert.equal(first.data.length, 100);
    assert.deepEqual(first.meta, { total: COUNT, limit: 100, offset: 0, hasMore: true });
    const rest = json(await t.call('GET', '/v1/smart-processes?pageSize=100&offset=100'));
    assert.equal(rest.data.length, 20);
    assert.deepEqual(rest.meta, { total: COUNT, limit: 100, offset: 100, hasMore: false });
    assert.deepEqual([...first.data, ...rest.data].map((x: { id: number }) => x.id), Array.from({ length: COUNT }, (_, i) => i + 1));
  });

  it('with a filter applied by smartproc, every matching record counts (stages on every other type)', async () => {
    const res = json(await t.call('POST', '/v1/smart-processes/search', { filter: { isStagesEnabled: true, title: { $contains: 'type' } }, pageSize: 5000 }));
    assert.equal(res.data.length, COUNT / 2);
    assert.deepEqual(res.meta, { total: COUNT / 2, limit: 5000, offset: 0, hasMore: false });
  });
});
