import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createTestApp, json, localOnly, type TestApp } from '../../helpers/app.js';
import { expectError, expectValidationError } from '../../helpers/expect.js';

const SEED_BODY = { title: 'Supply contracts (updated name)', code: 'supply_contracts', isAutomationEnabled: false };

describe('PATCH /v1/smart-processes/:entityTypeId', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());
  beforeEach(async () => {
    await t.call('DELETE', '/v1/smart-processes/1050');
    const created = await t.call('POST', '/v1/smart-processes', { title: 'Supply contracts', entityTypeId: 1050, isStagesEnabled: true, isAutomationEnabled: true });
    assert.equal(created.statusCode, 201, created.body);
  });

  const card = async () => json(await t.call('GET', '/v1/smart-processes/1050')).data;
  const stored = async () => (await t.call('GET', '/v1/smart-processes/1050')).body;

  it("applies the seed's example and answers the full card", async () => {
    const res = await t.call('PATCH', '/v1/smart-processes/1050', SEED_BODY);
    assert.equal(res.statusCode, 200);
    const { success, data } = json(res);
    assert.equal(success, true);
    assert.equal(data.title, 'Supply contracts (updated name)');
    assert.equal(data.code, 'supply_contracts');
    assert.equal(data.isAutomationEnabled, false);
    assert.equal(data.isStagesEnabled, true, 'fields not sent stay as they are');
    assert.equal(data.entityTypeId, 1050);
    assert.equal(data.isInitialized, true);
    assert.equal(data.updatedBy, 7);
    assert.match(data.updatedTime, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$/);
    assert.deepEqual(Object.keys(data.relations), ['parent', 'child']);
    assert.deepEqual(await card(), data);
  });

  it('PATCH with an empty body returns the current card and changes nothing, not even updatedTime', async () => {
    const before = await stored();
    await new Promise((r) => setTimeout(r, 1100));
    const res = await t.call('PATCH', '/v1/smart-processes/1050', {});
    assert.equal(res.statusCode, 200);
    assert.deepEqual(json(res).data, JSON.parse(before).data);
    assert.equal(await stored(), before);
  });

  it('a request without a body is the same as {}', async () => {
    const before = await stored();
    const res = await t.app.inject({ method: 'PATCH', url: '/v1/smart-processes/1050', headers: { 'x-api-key': t.key.secret } });
    assert.equal(res.statusCode, 200);
    assert.equal(await stored(), before);
  });

  it('sending the current values moves neither updatedTime nor updatedBy', async () => {
    const current = await card();
    await new Promise((r) => setTimeout(r, 1100));
    const other = await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'], userId: 99 });
    const res = await t.call('PATCH', '/v1/smart-processes/1050', { title: current.title, isStagesEnabled: true }, { 'x-api-key': other.secret });
    assert.equal(json(res).data.updatedTime, current.updatedTime);
    assert.equal(json(res).data.updatedBy, 7);
  });

  it('read-only fields echoed from a GET are ignored, whatever their values', async () => {
    const current = await card();
    const res = await t.call('PATCH', '/v1/smart-processes/1050', { ...current, id: 999, createdBy: 5, createdTime: 'yesterday', updatedBy: 5, updatedTime: 'x', isInitialized: false, customSectionId: 77, title: 'Renamed' });
    assert.equal(res.statusCode, 200, res.body);
    const data = json(res).data;
    assert.equal(data.id, current.id);
    assert.equal(data.createdBy, current.createdBy);
    assert.equal(data.createdTime, current.createdTime);
    assert.equal(data.customSectionId, null);
    assert.equal(data.isInitialized, true);
    assert.equal(data.title, 'Renamed');
  });

  it('an unknown field is 400 naming it with the closest real field, and nothing is written', async () => {
    const before = await stored();
    const res = await t.call('PATCH', '/v1/smart-processes/1050', { title: 'New', isStageEnabled: true });
    const error = expectValidationError(res, 'body.isStageEnabled');
    assert.match(error.details!.find((d) => d.location === 'body.isStageEnabled')!.fix!, /isStagesEnabled/);
    assert.equal(await stored(), before);
  });

  it('reports every problem, not only the first', async () => {
    const res = await t.call('PATCH', '/v1/smart-processes/1050', { title: 5, isStagesEnabled: 'yes', colour: 'red', relations: { parent: [{ entityTypeId: 'x' }] } });
    expectValidationError(res, 'body.title', 'body.isStagesEnabled', 'body.colour', 'body.relations.parent[0].entityTypeId');
  });

  it('booleans must be JSON booleans', async () => {
    expectValidationError(await t.call('PATCH', '/v1/smart-processes/1050', { isStagesEnabled: 'Y' }), 'body.isStagesEnabled');
    expectValidationError(await t.call('PATCH', '/v1/smart-processes/1050', { isStagesEnabled: 1 }), 'body.isStagesEnabled');
  });

  it('entityTypeId equal to the path is ignored; a different one is 400 (immutable)', async () => {
    assert.equal((await t.call('PATCH', '/v1/smart-processes/1050', { entityTypeId: 1050, title: 'Same id' })).statusCode, 200);
    const before = await stored();
    const error = expectValidationError(await t.call('PATCH', '/v1/smart-processes/1050', { entityTypeId: 1052, title: 'Moved' }), 'body.entityTypeId');
    assert.match(error.details![0].message, /immutable/);
    assert.equal(await stored(), before);
    assert.equal((await t.call('GET', '/v1/smart-processes/1052')).statusCode, 404);
  });

  it('title is trimmed; blank or longer than 255 characters is 400', async () => {
    assert.equal(json(await t.call('PATCH', '/v1/smart-processes/1050', { title: '  Padded  ' })).data.title, 'Padded');
    expectValidationError(await t.call('PATCH', '/v1/smart-processes/1050', { title: '   ' }), 'body.title');
    expectValidationError(await t.call('PATCH', '/v1/smart-processes/1050', { title: 'x'.repeat(256) }), 'body.title');
    assert.equal(json(await t.call('PATCH', '/v1/smart-processes/1050', { title: 'я'.repeat(255) })).data.title.length, 255);
  });

  it('code: null clears it; a code used by another type is 422 naming that type', async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Holder', entityTypeId: 1060, code: 'taken' });
    const error = expectError(await t.call('PATCH', '/v1/smart-processes/1050', { code: 'taken' }), 422, 'BITRIX_ERROR');
    assert.match(error.message, /1060/);
    assert.equal(json(await t.call('PATCH', '/v1/smart-processes/1050', { code: 'mine' })).data.code, 'mine');
    assert.equal(json(await t.call('PATCH', '/v1/smart-processes/1050', { code: null })).data.code, null);
    await t.call('DELETE', '/v1/smart-processes/1060');
  });

  it('an unknown entityTypeId is 404 with the message of the seed, even with a bad body', async () => {
    const error = expectError(await t.call('PATCH', '/v1/smart-processes/99999', { isStageEnabled: 'nope' }), 404, 'SMART_PROCESS_NOT_FOUND');
    assert.equal(error.message, 'Smart process with entityTypeId=99999 not found');
  });

  it('a path entityTypeId that is not a positive integer is 400', async () => {
    for (const bad of ['abc', '0', '-5', '1.5', '1e3']) expectValidationError(await t.call('PATCH', `/v1/smart-processes/${bad}`, {}), 'params.entityTypeId');
  });

  it('malformed JSON, a non-object body, another media type and an oversized body are 4xx and write nothing', async () => {
    const before = await stored();
    expectValidationError(await t.call('PATCH', '/v1/smart-processes/1050', '{"title": '), 'body');
    expectValidationError(await t.call('PATCH', '/v1/smart-processes/1050', '[1,2]'), 'body');
    expectValidationError(await t.call('PATCH', '/v1/smart-processes/1050', 'null'), 'body');
    expectError(await t.call('PATCH', '/v1/smart-processes/1050', 'title=x', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await t.call('PATCH', '/v1/smart-processes/1050', { title: 'x'.repeat(1024 * 1024 + 10) }), 413, 'PAYLOAD_TOO_LARGE');
    assert.equal(await stored(), before);
  });

  it('answers an ETag; If-Match with a stale one is 412 and writes nothing (beyond)', async () => {
    const first = await t.call('GET', '/v1/smart-processes/1050');
    const etag = first.headers.etag as string;
    assert.match(etag, /^"\d+"$/);
    const ok = await t.call('PATCH', '/v1/smart-processes/1050', { title: 'First writer' }, { 'if-match': etag });
    assert.equal(ok.statusCode, 200);
    assert.notEqual(ok.headers.etag, etag);
    expectError(await t.call('PATCH', '/v1/smart-processes/1050', { title: 'Second writer' }, { 'if-match': etag }), 412, 'PRECONDITION_FAILED');
    assert.equal((await card()).title, 'First writer');
  });

  it("a relation set, changed or removed from the other end moves the card's ETag too, so a stale If-Match cannot undo it (beyond)", localOnly('the ETag is a hash of the card, not a counter (content seen before gives the ETag seen before)'), async () => {
    await t.call('POST', '/v1/smart-processes', { title: 'Hub', entityTypeId: 1090 });
    await t.call('POST', '/v1/smart-processes', { title: 'Spoke', entityTypeId: 1092 });
    const etagOfHub = async () => (await t.call('GET', '/v1/smart-processes/1090')).headers.etag as string;
    const seen = [await etagOfHub()];

    await t.call('PATCH', '/v1/smart-processes/1092', { relations: { parent: [{ entityTypeId: 1090, isChildrenListEnabled: true }] } });
    seen.push(await etagOfHub());
    await t.call('PATCH', '/v1/smart-processes/1092', { relations: { parent: [{ entityTypeId: 1090, isChildrenListEnabled: false }] } });
    seen.push(await etagOfHub());
    await t.call('PATCH', '/v1/smart-processes/1092', { title: 'Spoke renamed' }); // no relation changed: the hub keeps its ETag
    seen.push(await etagOfHub());
    await t.call('POST', '/v1/smart-processes', { title: 'Born linked', entityTypeId: 1094, relations: { parent: [{ entityTypeId: 1090 }] } });
    seen.push(await etagOfHub());
    await t.call('DELETE', '/v1/smart-processes/1094');
    seen.push(await etagOfHub());
    assert.deepEqual(seen.map((e) => Number(e.replace(/\D/g, ''))), [1, 2, 3, 3, 4, 5]);

    // An editor who read the hub before the spoke dropped it cannot put the edge back unknowingly.
    const stale = await etagOfHub();
    await t.call('PATCH', '/v1/smart-processes/1092', { relations: { parent: [] } });
    expectError(await t.call('PATCH', '/v1/smart-processes/1090', { relations: { child: [{ entityTypeId: 1092 }] } }, { 'if-match': stale }), 412, 'PRECONDITION_FAILED');
    assert.deepEqual((await t.call('GET', '/v1/smart-processes/1090')).json().data.relations.child, []);
  });
});
