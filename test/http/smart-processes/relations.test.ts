import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, localOnly, type TestApp } from '../../helpers/app.js';
import { expectError, expectValidationError } from '../../helpers/expect.js';

type Rel = { entityTypeId: number; isChildrenListEnabled: boolean; isPredefined: boolean };
const ids = (list: Rel[]) => list.map((r) => r.entityTypeId);

describe('relations of smart process types', () => {
  let t: TestApp;
  let a: number;
  let b: number;
  let c: number;
  before(async () => {
    t = await createTestApp();
    a = json(await t.call('POST', '/v1/smart-processes', { title: 'A' })).data.entityTypeId;
    b = json(await t.call('POST', '/v1/smart-processes', { title: 'B' })).data.entityTypeId;
    c = json(await t.call('POST', '/v1/smart-processes', { title: 'C' })).data.entityTypeId;
  });
  after(() => t.close());

  const card = async (etid: number) => json(await t.call('GET', `/v1/smart-processes/${etid}`)).data;
  const patch = (etid: number, body: unknown) => t.call('PATCH', `/v1/smart-processes/${etid}`, body);

  it('an edge is stored once and seen from both ends', async () => {
    assert.equal((await patch(b, { relations: { parent: [{ entityTypeId: a, isChildrenListEnabled: true }] } })).statusCode, 200);
    assert.deepEqual((await card(b)).relations.parent, [{ entityTypeId: a, isChildrenListEnabled: true, isPredefined: false }]);
    assert.deepEqual((await card(a)).relations.child, [{ entityTypeId: b, isChildrenListEnabled: true, isPredefined: false }]);
  });

  it('a present side replaces that side; an absent side is untouched', async () => {
    await patch(a, { relations: { parent: [{ entityTypeId: 2 }], child: [{ entityTypeId: b }, { entityTypeId: 3 }] } });
    await patch(a, { relations: { parent: [{ entityTypeId: 1 }, { entityTypeId: 7 }] } });
    const current = await card(a);
    assert.deepEqual(ids(current.relations.parent), [1, 7], 'parent side replaced');
    assert.deepEqual(ids(current.relations.child), [3, b], 'child side untouched');
    await patch(a, { relations: { child: [] } });
    assert.deepEqual((await card(a)).relations.child, []);
    assert.deepEqual((await card(b)).relations.parent, [], 'the edge is gone from the other end too');
  });

  it('a PATCH without relations keeps them', async () => {
    await patch(a, { relations: { parent: [{ entityTypeId: 31 }] } });
    await patch(a, { title: 'A renamed' });
    assert.deepEqual(ids((await card(a)).relations.parent), [31]);
  });

  it('isChildrenListEnabled accepts true/false and the strings "true", "false", "Y", "N"; omitted is false', async () => {
    await patch(a, { relations: { parent: [{ entityTypeId: 1, isChildrenListEnabled: 'Y' }, { entityTypeId: 2, isChildrenListEnabled: 'true' }, { entityTypeId: 7, isChildrenListEnabled: 'N' }, { entityTypeId: 31 }] } });
    const flags = Object.fromEntries((await card(a)).relations.parent.map((r: Rel) => [r.entityTypeId, r.isChildrenListEnabled]));
    assert.deepEqual(flags, { 1: true, 2: true, 7: false, 31: false });
    expectValidationError(await patch(a, { relations: { parent: [{ entityTypeId: 1, isChildrenListEnabled: 'yes' }] } }), 'body.relations.parent[0].isChildrenListEnabled');
  });

  it('ineligible entries are 422 naming each entry, and nothing changes', async () => {
    await patch(a, { relations: { parent: [{ entityTypeId: 2 }] } });
    const before = await card(a);
    const error = expectError(await patch(a, { title: 'Changed', relations: { parent: [{ entityTypeId: 2 }, { entityTypeId: 3 }, { entityTypeId: 999 }], child: [{ entityTypeId: 14 }, { entityTypeId: a }] } }), 422, 'BITRIX_ERROR');
    assert.deepEqual(error.details!.map((d) => d.location), [
      'body.relations.parent[1].entityTypeId',
      'body.relations.parent[2].entityTypeId',
      'body.relations.child[0].entityTypeId',
      'body.relations.child[1].entityTypeId',
    ]);
    assert.deepEqual(await card(a), before, 'the whole request was refused: no half-write');
  });

  it('Contact and Company become parents through isClientEnabled (predefined, listed first)', async () => {
    await patch(c, { isClientEnabled: true, relations: { parent: [{ entityTypeId: 2 }] } });
    const parents = (await card(c)).relations.parent as Rel[];
    assert.deepEqual(parents, [
      { entityTypeId: 3, isChildrenListEnabled: true, isPredefined: true },
      { entityTypeId: 4, isChildrenListEnabled: true, isPredefined: true },
      { entityTypeId: 2, isChildrenListEnabled: false, isPredefined: false },
    ]);
    await patch(c, { isClientEnabled: false });
    assert.deepEqual(ids((await card(c)).relations.parent), [2]);
  });

  it('Order becomes a child through isPaymentsEnabled', localOnly('isPaymentsEnabled is not writable through crm.type.add/update (422 naming it)'), async () => {
    await patch(c, { isPaymentsEnabled: true });
    assert.deepEqual((await card(c)).relations.child[0], { entityTypeId: 14, isChildrenListEnabled: true, isPredefined: true });
  });

  it('a card read with GET can be sent back as is (predefined entries are accepted and ignored)', localOnly('the spec sets isPaymentsEnabled, which crm.type.update does not take'), async () => {
    await patch(c, { isClientEnabled: true, isPaymentsEnabled: true, relations: { parent: [{ entityTypeId: 2 }], child: [{ entityTypeId: a }] } });
    const current = await card(c);
    const edited = { parent: [...current.relations.parent, { entityTypeId: 7, isChildrenListEnabled: false, isPredefined: false }], child: current.relations.child };
    const res = await patch(c, { relations: edited });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(ids(json(res).data.relations.parent), [3, 4, 2, 7]);
    assert.deepEqual(ids(json(res).data.relations.child), [14, a]);
  });

  it('Contact on the parent side is accepted when isClientEnabled becomes true in the same request', async () => {
    const res = await patch(b, { isClientEnabled: true, relations: { parent: [{ entityTypeId: 3, isChildrenListEnabled: false }] } });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res).data.relations.parent.filter((r: Rel) => !r.isPredefined), []);
  });

  it('duplicate entries on one side are 400; unknown keys inside an entry are 400', async () => {
    expectValidationError(await patch(a, { relations: { parent: [{ entityTypeId: 2 }, { entityTypeId: 2 }] } }), 'body.relations.parent[1].entityTypeId');
    expectValidationError(await patch(a, { relations: { parent: [{ entityTypeId: 2, childrenList: true }] } }), 'body.relations.parent[0].childrenList');
  });

  it('deleting a type removes every edge that touches it', async () => {
    const d = json(await t.call('POST', '/v1/smart-processes', { title: 'D', relations: { parent: [{ entityTypeId: a }], child: [{ entityTypeId: b }] } })).data.entityTypeId;
    assert.ok(ids((await card(a)).relations.child).includes(d));
    assert.equal((await t.call('DELETE', `/v1/smart-processes/${d}`)).statusCode, 204);
    assert.ok(!ids((await card(a)).relations.child).includes(d));
    assert.ok(!ids((await card(b)).relations.parent).includes(d));
    const rows = await t.app.services.store.db.selectFrom('type_relations').selectAll().where((eb) => eb.or([eb('parent_entity_type_id', '=', d), eb('child_entity_type_id', '=', d)])).execute();
    assert.equal(rows.length, 0);
  });

  it('linkedUserFields is a full overwrite: keys not sent become false', async () => {
    // isUseInUserfieldEnabled: a real portal applies linkedUserFields only while it is on.
    await patch(a, { isUseInUserfieldEnabled: true, linkedUserFields: { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': true, 'TASKS_TASK|UF_CRM_TASK': true } });
    const res = await patch(a, { linkedUserFields: { 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': true } });
    assert.deepEqual(json(res).data.linkedUserFields, { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': false, 'TASKS_TASK|UF_CRM_TASK': false, 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': true });
  });
});
