import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { expectError, expectValidationError } from '../../helpers/expect.js';
import { TypesRepository } from '../../../src/store/repositories/types-repository.js';
import { TYPE_FIELDS } from '../../../src/domain/smart-process-type/fields.js';

describe('GET one, DELETE and GET /fields', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  it('GET one answers the card; an unknown id is 404 with the seed message; a bad id is 400', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Card', entityTypeId: 1100 });
    const res = await t.call('GET', '/v1/smart-processes/1100');
    assert.equal(res.statusCode, 200);
    assert.equal(json(res).data.title, 'Card');
    assert.ok(json(res).data.relations);
    assert.equal(expectError(await t.call('GET', '/v1/smart-processes/99999'), 404, 'SMART_PROCESS_NOT_FOUND').message, 'Smart process with entityTypeId=99999 not found');
    expectValidationError(await t.call('GET', '/v1/smart-processes/abc'), 'params.entityTypeId');
  });

  it('DELETE answers 204 with an empty body; the type is gone; a second DELETE is 404', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Doomed', entityTypeId: 1102 });
    const res = await t.call('DELETE', '/v1/smart-processes/1102');
    assert.equal(res.statusCode, 204);
    assert.equal(res.body, '');
    expectError(await t.call('GET', '/v1/smart-processes/1102'), 404, 'SMART_PROCESS_NOT_FOUND');
    expectError(await t.call('DELETE', '/v1/smart-processes/1102'), 404, 'SMART_PROCESS_NOT_FOUND');
  });

  it('DELETE of a type that still has items is 422 and keeps it', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'With items', entityTypeId: 1104 });
    if (t.fake) t.fake.state.setItemCount({ entityTypeId: 1104 }, 3);
    else await new TypesRepository(t.app.services.store.db, t.app.services.store.dialect).setItemCount(t.portal.id, 1104, 3);
    const error = expectError(await t.call('DELETE', '/v1/smart-processes/1104'), 422, 'BITRIX_ERROR');
    // A bitrix24 portal's own words (BX_ERROR, localized) are passed on in the message.
    if (t.fake) assert.match(error.message, /crm\.type\.delete answered BX_ERROR/);
    else assert.equal(error.message, 'You cannot delete an entity type that has elements');
    assert.equal((await t.call('GET', '/v1/smart-processes/1104')).statusCode, 200);
  });

  it('/fields describes every field of the type from the same table that drives validation', async () => {
    const res = await t.call('GET', '/v1/smart-processes/fields');
    assert.equal(res.statusCode, 200);
    const fields = json(res).data.fields;
    assert.deepEqual(Object.keys(fields), TYPE_FIELDS.map((f) => f.name));
    assert.deepEqual(fields.title, { type: 'string', isRequired: true, isReadOnly: false, isImmutable: false, isMultiple: false, isDynamic: false, title: 'Smart process name' });
    assert.equal(fields.createdBy.type, 'user');
    assert.equal(fields.updatedTime.type, 'datetime');
    assert.equal(fields.relations.type, 'object');
    assert.equal(fields.linkedUserFields.type, 'object');
    assert.equal(fields.entityTypeId.isImmutable, true);
    assert.equal(fields.id.isReadOnly, true);
    assert.equal(fields.isStagesEnabled.type, 'boolean');
  });

  it('PATCH /fields is 405 (the literal route wins over /:entityTypeId)', async () => {
    const res = await t.call('PATCH', '/v1/smart-processes/fields', {});
    expectError(res, 405, 'METHOD_NOT_ALLOWED');
    assert.match(String(res.headers.allow), /GET/);
  });
});

describe('portals are isolated', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  it('a key of portal B gets 404 for a type of portal A and does not see it in lists', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'A only', entityTypeId: 1200, code: 'shared_code' });
    const other = await t.createPortal();
    const keyB = await t.createKey({ kind: 'personal', portalId: other.id, scopes: ['crm'], userId: 1 });
    const asB = { 'x-api-key': keyB.secret };
    expectError(await t.call('GET', '/v1/smart-processes/1200', undefined, asB), 404, 'SMART_PROCESS_NOT_FOUND');
    expectError(await t.call('PATCH', '/v1/smart-processes/1200', { title: 'hijack' }, asB), 404, 'SMART_PROCESS_NOT_FOUND');
    expectError(await t.call('DELETE', '/v1/smart-processes/1200', undefined, asB), 404, 'SMART_PROCESS_NOT_FOUND');
    assert.equal(json(await t.call('GET', '/v1/smart-processes', undefined, asB)).meta.total, 0);
    assert.equal(json(await t.call('POST', '/v1/smart-processes/search', {}, asB)).meta.total, 0);
    // the same entityTypeId and code may exist in another portal
    const own = await t.call('POST', '/v1/smart-processes', { title: 'B own', entityTypeId: 1200, code: 'shared_code' }, asB);
    assert.equal(own.statusCode, 201, own.body);
    assert.equal(json(own).data.id, 1, 'ids start at 1 per portal');
    assert.equal(json(await t.call('GET', '/v1/smart-processes/1200')).data.title, 'A only');
    // relations only to types of the same portal
    await t.call('POST', '/v1/smart-processes', { title: 'A second', entityTypeId: 1300 });
    expectError(await t.call('POST', '/v1/smart-processes', { title: 'B rel', relations: { parent: [{ entityTypeId: 1300 }] } }, asB), 422, 'BITRIX_ERROR');
  });
});
