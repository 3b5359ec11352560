import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, localOnly, type TestApp } from '../../helpers/app.js';

describe('concurrent writes', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  it('parallel creates without entityTypeId get distinct ids and entityTypeIds', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => t.call('POST', '/v1/smart-processes', { title: `Parallel ${i}` })));
    for (const res of answers) assert.equal(res.statusCode, 201, res.body);
    const entityTypeIds = answers.map((r) => json(r).data.entityTypeId);
    const ids = answers.map((r) => json(r).data.id);
    assert.equal(new Set(entityTypeIds).size, 20);
    assert.equal(new Set(ids).size, 20);
  });

  it('parallel creates of one explicit entityTypeId: exactly one wins, the others are 422', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => t.call('POST', '/v1/smart-processes', { title: `Race ${i}`, entityTypeId: 1500 })));
    assert.equal(answers.filter((r) => r.statusCode === 201).length, 1);
    assert.ok(answers.filter((r) => r.statusCode !== 201).every((r) => r.statusCode === 422 && json(r).error.code === 'BITRIX_ERROR'));
  });

  it('parallel PATCHes all apply; each change moves the version once', localOnly('the ETag is a hash of the card, not a counter'), async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Contended', entityTypeId: 1502 });
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => t.call('PATCH', '/v1/smart-processes/1502', { title: `Writer ${i}` })));
    for (const res of answers) assert.equal(res.statusCode, 200, res.body);
    const final = await t.call('GET', '/v1/smart-processes/1502');
    assert.equal(final.headers.etag, '"11"');
    assert.ok(answers.some((r) => json(r).data.title === json(final).data.title));
  });

  it('If-Match lets exactly one of two editors of the same version win', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Optimistic', entityTypeId: 1504 });
    const etag = (await t.call('GET', '/v1/smart-processes/1504')).headers.etag as string;
    const [a, b] = await Promise.all([
      t.call('PATCH', '/v1/smart-processes/1504', { title: 'Editor A' }, { 'if-match': etag }),
      t.call('PATCH', '/v1/smart-processes/1504', { title: 'Editor B' }, { 'if-match': etag }),
    ]);
    assert.deepEqual([a.statusCode, b.statusCode].sort(), [200, 412]);
  });

  it('parallel codes: one type gets a code, the clash is 422, never two types with one code', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'C1', entityTypeId: 1506 });
    await t.call('POST', '/v1/smart-processes', { title: 'C2', entityTypeId: 1508 });
    const [a, b] = await Promise.all([
      t.call('PATCH', '/v1/smart-processes/1506', { code: 'contested' }),
      t.call('PATCH', '/v1/smart-processes/1508', { code: 'contested' }),
    ]);
    assert.deepEqual([a.statusCode, b.statusCode].sort(), [200, 422]);
    assert.equal(json(await t.call('GET', '/v1/smart-processes?filter[code]=contested')).meta.total, 1);
  });

  it('two types linking each other at the same time both succeed (on PostgreSQL both take their locks in one order)', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Left', entityTypeId: 1510 });
    await t.call('POST', '/v1/smart-processes', { title: 'Right', entityTypeId: 1512 });
    for (let round = 0; round < 3; round++) {
      const [a, b] = await Promise.all([
        t.call('PATCH', '/v1/smart-processes/1510', { title: `Left ${round}`, relations: { child: round % 2 ? [] : [{ entityTypeId: 1512 }] } }),
        t.call('PATCH', '/v1/smart-processes/1512', { title: `Right ${round}`, relations: { child: round % 2 ? [] : [{ entityTypeId: 1510 }] } }),
      ]);
      assert.deepEqual([a.statusCode, b.statusCode], [200, 200], `${a.body} ${b.body}`);
      const left = json(await t.call('GET', '/v1/smart-processes/1510')).data.relations;
      assert.deepEqual([left.child.length, left.parent.length], round % 2 ? [0, 0] : [1, 1]);
    }
  });
});
