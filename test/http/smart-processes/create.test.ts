import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { expectError, expectValidationError } from '../../helpers/expect.js';

describe('POST /v1/smart-processes', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  const count = async () => json(await t.call('GET', '/v1/smart-processes')).meta.total as number;

  it('creates a type with defaults and answers 201 with the whole card', async () => {
    const res = await t.call('POST', '/v1/smart-processes', { title: '  Supply contracts ' });
    assert.equal(res.statusCode, 201);
    const { data } = json(res);
    assert.equal(data.title, 'Supply contracts');
    assert.equal(data.id, 1);
    assert.equal(data.entityTypeId, 1032, 'first automatic entityTypeId is 1032');
    assert.equal(data.code, null);
    assert.equal(data.customSectionId, null);
    assert.equal(data.createdBy, 7);
    assert.equal(data.updatedBy, 7);
    assert.equal(data.createdTime, data.updatedTime);
    assert.equal(data.isSetOpenPermissions, true, 'the one flag on by default');
    for (const flag of ['isCategoriesEnabled', 'isStagesEnabled', 'isClientEnabled', 'isPaymentsEnabled', 'isAutomationEnabled', 'isCountersEnabled']) assert.equal(data[flag], false, flag);
    assert.equal(data.isInitialized, true);
    assert.deepEqual(data.relations, { parent: [], child: [] });
    assert.deepEqual(data.linkedUserFields, { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': false, 'TASKS_TASK|UF_CRM_TASK': false, 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': false });
  });

  it('allocates entityTypeId from a counter (+2), skipping values taken explicitly, never reusing one', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Explicit', entityTypeId: 1036 });
    const next = json(await t.call('POST', '/v1/smart-processes', { title: 'Auto 2' })).data;
    assert.equal(next.entityTypeId, 1034);
    const skipped = json(await t.call('POST', '/v1/smart-processes', { title: 'Auto 3' })).data;
    assert.equal(skipped.entityTypeId, 1038, '1036 was taken explicitly');
    assert.equal((await t.call('DELETE', '/v1/smart-processes/1038')).statusCode, 204);
    assert.equal(json(await t.call('POST', '/v1/smart-processes', { title: 'Auto 4' })).data.entityTypeId, 1040, 'a deleted automatic value is not handed out again');
  });

  it('ids are per portal, start at 1 and are never reused', async () => {
    const a = json(await t.call('POST', '/v1/smart-processes', { title: 'Id A' })).data;
    await t.call('DELETE', `/v1/smart-processes/${a.entityTypeId}`);
    const b = json(await t.call('POST', '/v1/smart-processes', { title: 'Id B' })).data;
    assert.equal(b.id, a.id + 1);
  });

  it('an explicit entityTypeId must be 128..191 or an even number ≥ 1030 (422 otherwise)', async () => {
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Low range', entityTypeId: 128 })).statusCode, 201);
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Low range top', entityTypeId: 191 })).statusCode, 201);
    for (const bad of [1, 127, 192, 1029, 1031, 1051, 0, -2]) {
      const error = expectError(await t.call('POST', '/v1/smart-processes', { title: 'Bad', entityTypeId: bad }), 422, 'BITRIX_ERROR');
      assert.equal(error.message, 'entityTypeId is out of allowed range');
    }
  });

  it('an explicit entityTypeId already used is 422; it may be used again once deleted', async () => {
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'First', entityTypeId: 1050 })).statusCode, 201);
    const error = expectError(await t.call('POST', '/v1/smart-processes', { title: 'Second', entityTypeId: 1050 }), 422, 'BITRIX_ERROR');
    assert.equal(error.message, 'entityTypeId 1050 is already used');
    await t.call('DELETE', '/v1/smart-processes/1050');
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Again', entityTypeId: 1050 })).statusCode, 201);
  });

  it('title is required, trimmed, 1..255 characters', async () => {
    const before = await count();
    expectValidationError(await t.call('POST', '/v1/smart-processes', {}), 'body.title');
    expectValidationError(await t.call('POST', '/v1/smart-processes', { title: ' \t ' }), 'body.title');
    expectValidationError(await t.call('POST', '/v1/smart-processes', { title: 'é'.repeat(256) }), 'body.title');
    expectValidationError(await t.call('POST', '/v1/smart-processes', { title: null }), 'body.title');
    assert.equal(await count(), before);
  });

  it('sets flags, code, customSectionId, linkedUserFields and relations on create', async () => {
    const parent = json(await t.call('POST', '/v1/smart-processes', { title: 'Parent' })).data;
    const res = await t.call('POST', '/v1/smart-processes', {
      title: 'Full',
      code: 'full',
      customSectionId: 3,
      isStagesEnabled: true,
      isSetOpenPermissions: false,
      isClientEnabled: true,
      isUseInUserfieldEnabled: true,
      linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true },
      relations: { parent: [{ entityTypeId: parent.entityTypeId, isChildrenListEnabled: true }, { entityTypeId: 2 }], child: [{ entityTypeId: 3 }] },
    });
    assert.equal(res.statusCode, 201, res.body);
    const data = json(res).data;
    assert.equal(data.code, 'full');
    assert.equal(data.customSectionId, 3);
    assert.equal(data.isStagesEnabled, true);
    assert.equal(data.isSetOpenPermissions, false);
    assert.equal(data.linkedUserFields['TASKS_TASK|UF_CRM_TASK'], true);
    assert.deepEqual(data.relations.parent.map((r: { entityTypeId: number }) => r.entityTypeId), [3, 4, 2, parent.entityTypeId]);
    assert.deepEqual(data.relations.child, [{ entityTypeId: 3, isChildrenListEnabled: false, isPredefined: false }]);
  });

  it('unknown fields are 400 with a suggestion; wrong types are 400; nothing is created', async () => {
    const before = await count();
    const error = expectValidationError(await t.call('POST', '/v1/smart-processes', { title: 'X', isAutomationEnable: true, code: 5, customSectionId: 'a' }), 'body.isAutomationEnable', 'body.code', 'body.customSectionId');
    assert.match(error.details!.find((d) => d.location === 'body.isAutomationEnable')!.fix!, /isAutomationEnabled/);
    expectValidationError(await t.call('POST', '/v1/smart-processes', { title: 'X', linkedUserFields: { 'UNKNOWN|UF': true } }), 'body.linkedUserFields.UNKNOWN|UF');
    expectValidationError(await t.call('POST', '/v1/smart-processes', { title: 'X', relations: { parent: [], sibling: [] } }), 'body.relations.sibling');
    expectValidationError(await t.call('POST', '/v1/smart-processes', { title: 'X', code: 'c'.repeat(256) }), 'body.code');
    assert.equal(await count(), before);
  });

  it('a duplicate code is 422 naming the type that has it', async () => {
    const holder = json(await t.call('POST', '/v1/smart-processes', { title: 'Code holder', code: 'dup' })).data;
    const error = expectError(await t.call('POST', '/v1/smart-processes', { title: 'Code thief', code: 'dup' }), 422, 'BITRIX_ERROR');
    assert.match(error.message, new RegExp(`entityTypeId=${holder.entityTypeId}`));
  });

  it('read-only fields copied from another card are ignored (clone a type)', async () => {
    const source = json(await t.call('POST', '/v1/smart-processes', { title: 'Source', isStagesEnabled: true })).data;
    const { relations, linkedUserFields, entityTypeId, ...rest } = source;
    const res = await t.call('POST', '/v1/smart-processes', { ...rest, title: 'Clone', code: null });
    assert.equal(res.statusCode, 201, res.body);
    assert.notEqual(json(res).data.id, source.id);
    assert.equal(json(res).data.isStagesEnabled, true);
  });
});
