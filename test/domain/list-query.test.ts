import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseListQuery } from '../../src/domain/list-query.js';
import { TYPE_FIELD_TABLE } from '../../src/domain/smart-process-type/fields.js';
import { ApiError } from '../../src/errors.js';

/** parseListQuery is the one parser of list/search parameters: routes and batch calls hand it a plain object. */
describe('parseListQuery on a plain object', () => {
  const parse = (raw: unknown, source: 'query' | 'body' = 'body') => parseListQuery(TYPE_FIELD_TABLE, raw, source, 'UTC');
  const refusal = (raw: unknown, source: 'query' | 'body' = 'body') => {
    try {
      parse(raw, source);
    } catch (error) {
      assert.ok(error instanceof ApiError);
      return error;
    }
    assert.fail(`expected a refusal of ${JSON.stringify(raw)}`);
  };

  it('takes the hosted parameters and gives one ListQuery', () => {
    const query = parse({ filter: { entityTypeId: { '>=': 1052 }, '%title': 'a', code: ['x', null] }, sort: { createdTime: 'desc' }, pageSize: 120, offset: 5, autoWindow: true });
    assert.equal(query.limit, 120);
    assert.equal(query.offset, 5);
    assert.deepEqual(query.sort, [{ field: 'createdTime', direction: 'desc' }]);
    assert.deepEqual(query.conditions.map((c) => [c.field.name, c.op, c.value]), [['entityTypeId', 'gte', 1052], ['title', 'contains', 'a'], ['code', 'in', ['x', null]]]);
  });

  it('"not in" becomes one $ne per value, so stores see only the operators they know', () => {
    const query = parse({ filter: { '!entityTypeId': [1032, 1034], id: { $nin: [1] } } });
    assert.deepEqual(query.conditions.map((c) => [c.field.name, c.op, c.value]), [['entityTypeId', 'ne', 1032], ['entityTypeId', 'ne', 1034], ['id', 'ne', 1]]);
  });

  it('defaults: everything, 50 at a time, for undefined or {}', () => {
    for (const raw of [undefined, {}]) assert.deepEqual(parse(raw), { conditions: [], select: null, sort: [], limit: 50, offset: 0 });
  });

  it('null and other non-objects are refused at the root of the source', () => {
    for (const raw of [null, [], 'x', 5]) assert.equal(refusal(raw).details![0].location, 'body');
    assert.equal(refusal(null, 'query').details![0].location, 'query');
  });

  it('every problem is listed; an operator problem makes the code INVALID_FILTER_OPERATOR', () => {
    const error = refusal({ limit: 2, pageSize: 3, filter: { id: { '=>': 1 } }, sort: { id: 'up' } });
    assert.equal(error.code, 'INVALID_FILTER_OPERATOR');
    assert.deepEqual(error.details!.map((d) => d.location).sort(), ['body.filter.id.=>', 'body.pageSize', 'body.sort.id']);
  });
});
