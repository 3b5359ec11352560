/**
 * The reads of a batch on a bitrix24 portal (issue 12 item 4): served from the cache where
 * it has them, the rest combined into native `batch` calls (50 commands each, one request
 * for the portal's limit), and several lists answered from one read of the type list.
 * Against the fake portal of test/fakes/bitrix24.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';


const SP = 'smart-processes';

describe('bitrix24 portal: the reads of a batch', () => {
  let t: TestApp;
  const seeded = Array.from({ length: 160 }, (_, i) => 1100 + 2 * i);
  const ids = seeded.slice(0, 60);
  before(async () => {
    t = await createTestApp({ portalKind: 'bitrix24' });
    for (const entityTypeId of seeded) t.fake!.state.seedType({ title: `Type ${entityTypeId}`, entityTypeId, isStagesEnabled: entityTypeId % 4 === 0 });
  });
  after(() => t.close());

  /** REST requests that reached the fake (a batch is one; its commands are recorded with inBatch). */
  const requests = () => t.fake!.calls.filter((c) => c.inBatch === undefined);

  it('60 cards asked in one batch: two native batch calls of crm.type.getByEntityTypeId (50 + 11); asked again: from the cache, no request', async () => {
    t.fake!.resetRecords();
    const items = [...ids.map((entityTypeId) => ({ entityTypeId })), { entityTypeId: 9998 }];
    const res = await t.call('POST', '/v1/smart-processes/batch', { action: 'get', items });
    assert.equal(res.statusCode, 200, res.body);
    const { results, summary } = json(res).data;
    assert.deepEqual(summary, { total: 61, succeeded: 60, failed: 1 });
    assert.equal(results[59].data.title, `Type ${ids[59]}`);
    assert.equal(results[60].error.code, 'SMART_PROCESS_NOT_FOUND');
    assert.deepEqual(requests().map((c) => c.method), ['batch', 'batch']);
    const commands = t.fake!.calls.filter((c) => c.inBatch !== undefined);
    assert.equal(commands.length, 61);
    assert.ok(commands.every((c) => c.method.toLowerCase() === 'crm.type.getbyentitytypeid'));

    // Each card equals the single route's answer (which now comes from the same cache).
    assert.deepEqual(results[0].data, json(await t.call('GET', `/v1/smart-processes/${ids[0]}`)).data);
    t.fake!.resetRecords();
    const again = await t.call('POST', '/v1/batch', { calls: ids.slice(0, 50).map((entityTypeId) => ({ id: `t${entityTypeId}`, entity: SP, action: 'get', entityId: entityTypeId })) });
    assert.equal(json(again).data.summary.succeeded, 50);
    assert.deepEqual(t.fake!.calls, [], 'every card came from the cache');
  });

  it('several lists in one batch are answered from one read of the type list (its pages after the first in one native batch), with the same data as their routes', async () => {
    t.fake!.resetRecords();
    const calls = [
      { id: 'stages', entity: SP, action: 'list', params: { filter: { isStagesEnabled: 'true' }, select: 'entityTypeId' } },
      { id: 'search', entity: SP, action: 'search', params: { filter: { '>=entityTypeId': 1200 }, limit: 5, sort: '-entityTypeId' } },
      { id: 'fields', entity: SP, action: 'fields' },
    ];
    const res = await t.call('POST', '/v1/batch', { calls });
    assert.equal(res.statusCode, 200, res.body);
    const out = json(res).data;
    assert.deepEqual(out.summary, { total: 3, succeeded: 3, failed: 0 });
    // 160 types: the first page of 50 tells the total; the three pages after it come in one native batch.
    assert.deepEqual(requests().map((c) => c.method), ['crm.type.list', 'batch']);
    assert.deepEqual(t.fake!.calls.filter((c) => c.inBatch !== undefined).map((c) => [c.method, c.params.start]), [['crm.type.list', '50'], ['crm.type.list', '100'], ['crm.type.list', '150']]);
    assert.deepEqual(out.results.stages, json(await t.call('GET', '/v1/smart-processes?filter[isStagesEnabled]=true&select=entityTypeId')).data);
    assert.deepEqual(out.results.search, json(await t.call('POST', '/v1/smart-processes/search', calls[1].params)).data);
    assert.equal(out.totals.stages, 80);
    assert.equal(out.totals.search, seeded.filter((id) => id >= 1200).length);
    // What a list answers with the whole list read in pages one by one (cache off) is the same.
    assert.equal(out.results.stages.length, 50);
  });

  it('a write between reads: the reads after it see it (the cache is dropped by the write)', async () => {
    const res = await t.call('POST', '/v1/batch', {
      calls: [
        { id: 'before', entity: SP, action: 'get', entityId: ids[1] },
        { id: 'rename', entity: SP, action: 'update', entityId: ids[1], params: { title: 'Renamed' } },
        { id: 'after', entity: SP, action: 'get', entityId: ids[1] },
        { id: 'list', entity: SP, action: 'search', params: { filter: { title: 'Renamed' } } },
      ],
    });
    const out = json(res).data;
    assert.deepEqual(out.summary, { total: 4, succeeded: 4, failed: 0 });
    assert.equal(out.results.before.title, `Type ${ids[1]}`);
    assert.equal(out.results.after.title, 'Renamed');
    assert.deepEqual(out.results.list.map((x: { entityTypeId: number }) => x.entityTypeId), [ids[1]]);
  });

  it('a failed native batch call fails only the reads it carried, each with the mapped error', async () => {
    t.fake!.inject.overload('batch');
    const res = await t.call('POST', '/v1/batch', {
      calls: [
        { id: 'a', entity: SP, action: 'get', entityId: 1900 },
        { id: 'b', entity: SP, action: 'get', entityId: 1902 },
        { id: 'fields', entity: SP, action: 'fields' },
      ],
    });
    const out = json(res).data;
    assert.equal(out.errors.a.code, 'BITRIX_UNAVAILABLE');
    assert.equal(out.errors.a.status, 502);
    assert.equal(out.errors.b.code, 'BITRIX_UNAVAILABLE');
    assert.ok(out.results.fields.fields.title);
    assert.deepEqual(out.summary, { total: 3, succeeded: 1, failed: 2 });
  });
});
