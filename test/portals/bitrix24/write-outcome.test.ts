/**
 * What a write on a bitrix24 portal answers when the portal did not keep everything it was
 * asked (docs/bitrix24.md "What a write answers"):
 * - never a 4xx for a write that happened: 201/200 with the card as the portal holds it
 *   (read back with a separate crm.type.get) and `warnings` naming what was not applied;
 * - what the docs say will not be kept is refused before the write (nothing is created);
 * - the read-back is an independent crm.type.get, not the write's own answer.
 * And /fields tells the truth per portal kind.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { expectError } from '../../helpers/expect.js';
import { NATIVE_UNWRITABLE_FLAGS } from '../../../src/portals/bitrix24/native-mapping.js';
import type { FakeBitrix24Options } from '../../fakes/bitrix24/fake-portal.js';

async function withPortal(fake: FakeBitrix24Options, fn: (t: TestApp) => Promise<void>): Promise<void> {
  const t = await createTestApp({ portalKind: 'bitrix24', fake, config: { maxEventLoopDelayMs: 0 } }); // no load shedding: the machine may be busy
  try {
    await fn(t);
  } finally {
    await t.close();
  }
}

const methodsAfter = (t: TestApp, from: number) => t.fake!.calls.slice(from).map((c) => c.method);
const ids = (side: { entityTypeId: number; isPredefined: boolean }[]) => side.filter((r) => !r.isPredefined).map((r) => r.entityTypeId);

describe('a create the portal did not keep in full answers 201 with the card as it is (never a 4xx for a write that happened)', () => {
  it('a customSectionId the portal ignores: 201, the entityTypeId, customSectionId as the portal holds it, a warning naming it; one type at the portal', async () => {
    await withPortal({ types: { customSectionIds: [1] } }, async (t) => {
      const res = await t.call('POST', '/v1/smart-processes', { title: 'Sectioned', customSectionId: 5 });
      assert.equal(res.statusCode, 201, res.body);
      const body = json(res) as { data: any; warnings?: any[] };
      assert.ok(Number.isInteger(body.data.entityTypeId), 'the answer carries the entityTypeId');
      assert.equal(body.data.customSectionId, null);
      assert.deepEqual(body.warnings?.map((w) => [w.kind, w.location]), [['notApplied', 'body.customSectionId']]);
      assert.equal(body.warnings![0].requested, 5);
      assert.equal(body.warnings![0].actual, null);
      assert.ok(res.headers.etag);
      assert.equal(t.fake!.state.types().filter((x) => x.title === 'Sectioned').length, 1);
      // A client that retries anyway is told the type exists (by its entityTypeId, had it chosen one) — and the card GETs as answered.
      const card = json(await t.call('GET', `/v1/smart-processes/${body.data.entityTypeId}`)).data;
      assert.equal(card.customSectionId, null);
    });
  });

  it('a relation the portal drops on create: 201 with the card as stored and a warning at the entry; no duplicate on the way', async () => {
    await withPortal({ types: { relationEligible: (side, entityTypeId) => !(side === 'parent' && entityTypeId === 2) } }, async (t) => {
      const res = await t.call('POST', '/v1/smart-processes', { title: 'Linked', entityTypeId: 1200, relations: { parent: [{ entityTypeId: 1 }, { entityTypeId: 2 }] } });
      assert.equal(res.statusCode, 201, res.body);
      const body = json(res) as { data: any; warnings?: any[] };
      assert.equal(body.data.entityTypeId, 1200);
      assert.deepEqual(ids(body.data.relations.parent), [1]);
      assert.deepEqual(body.warnings?.map((w) => [w.kind, w.location]), [['notApplied', 'body.relations.parent[1].entityTypeId']]);
      assert.match(body.warnings![0].message, /Deal \(2\)/);
      assert.equal(t.fake!.state.types().length, 1);
    });
  });

  it('linkedUserFields without isUseInUserfieldEnabled (the docs: the map is then not considered) are refused before crm.type.add: 422 naming the key, nothing created', async () => {
    await withPortal({}, async (t) => {
      const from = t.fake!.calls.length;
      const error = expectError(await t.call('POST', '/v1/smart-processes', { title: 'Linked fields', linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true } }), 422, 'BITRIX_ERROR');
      assert.deepEqual(error.details?.map((d) => d.location), ['body.linkedUserFields.TASKS_TASK|UF_CRM_TASK']);
      assert.match(error.hint ?? '', /Nothing was/);
      assert.ok(!methodsAfter(t, from).includes('crm.type.add'), 'crm.type.add was not called');
      assert.equal(t.fake!.state.types().length, 0);
      // with the flag the same map is taken
      const ok = await t.call('POST', '/v1/smart-processes', { title: 'Linked fields', isUseInUserfieldEnabled: true, linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true } });
      assert.equal(ok.statusCode, 201, ok.body);
      assert.equal((json(ok) as { warnings?: unknown }).warnings, undefined, 'nothing to warn about');
    });
  });
});

describe('a create whose answer cannot be read is looked up, never sent again', () => {
  it('crm.type.add carried out but answered in another shape: 201 from the type found by a separate read; one type, one add', async () => {
    await withPortal({}, async (t) => {
      t.fake!.inject.garbleAnswer('crm.type.add');
      const res = await t.call('POST', '/v1/smart-processes', { title: 'Garbled', entityTypeId: 1208 });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(json(res).data.entityTypeId, 1208);
      assert.equal(t.fake!.state.types().length, 1);
      assert.equal(t.fake!.calls.filter((c) => c.method === 'crm.type.add').length, 1);
    });
  });
});

describe('a PATCH the portal did not keep in full answers 200 with the card as it is', () => {
  it('a dropped relation: 200, the rest saved, a warning at the entry', async () => {
    await withPortal({ types: { relationEligible: (side, entityTypeId) => !(side === 'parent' && entityTypeId === 2) } }, async (t) => {
      await t.call('POST', '/v1/smart-processes', { title: 'A', entityTypeId: 1200 });
      const res = await t.call('PATCH', '/v1/smart-processes/1200', { title: 'A2', relations: { parent: [{ entityTypeId: 1 }, { entityTypeId: 2 }] } });
      assert.equal(res.statusCode, 200, res.body);
      const body = json(res) as { data: any; warnings?: any[] };
      assert.equal(body.data.title, 'A2');
      assert.deepEqual(ids(body.data.relations.parent), [1]);
      assert.deepEqual(body.warnings?.map((w) => [w.kind, w.location]), [['notApplied', 'body.relations.parent[1].entityTypeId']]);
    });
  });

  it('linkedUserFields while isUseInUserfieldEnabled stays off: 422 before crm.type.update, nothing changed', async () => {
    await withPortal({}, async (t) => {
      await t.call('POST', '/v1/smart-processes', { title: 'B', entityTypeId: 1202 });
      const from = t.fake!.calls.length;
      const error = expectError(await t.call('PATCH', '/v1/smart-processes/1202', { title: 'B2', linkedUserFields: { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': true } }), 422, 'BITRIX_ERROR');
      assert.deepEqual(error.details?.map((d) => d.location), ['body.linkedUserFields.CALENDAR_EVENT|UF_CRM_CAL_EVENT']);
      assert.ok(!methodsAfter(t, from).includes('crm.type.update'));
      assert.equal(json(await t.call('GET', '/v1/smart-processes/1202')).data.title, 'B');
    });
  });
});

describe('the read-back after a write is a separate crm.type.get', () => {
  it('a portal whose write answers do not show relations: create and PATCH answer the relations crm.type.get reads, with no false warning', async () => {
    await withPortal({ types: { writeAnswerRelations: 'before' } }, async (t) => {
      let from = t.fake!.calls.length;
      const created = await t.call('POST', '/v1/smart-processes', { title: 'C', entityTypeId: 1204, relations: { parent: [{ entityTypeId: 2, isChildrenListEnabled: true }] } });
      assert.equal(created.statusCode, 201, created.body);
      assert.deepEqual(ids(json(created).data.relations.parent), [2]);
      assert.equal((json(created) as { warnings?: unknown }).warnings, undefined);
      const calls = methodsAfter(t, from);
      assert.equal(calls.at(-1), 'crm.type.get', `the card was read back after crm.type.add: ${calls.join(', ')}`);
      assert.equal(t.fake!.calls.at(-1)!.params.id, json(created).data.id);

      from = t.fake!.calls.length;
      const patched = await t.call('PATCH', '/v1/smart-processes/1204', { relations: { parent: [] } });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.deepEqual(ids(json(patched).data.relations.parent), []);
      assert.equal((json(patched) as { warnings?: unknown }).warnings, undefined);
      assert.equal(methodsAfter(t, from).at(-1), 'crm.type.get');
    });
  });

  it('a read-back that fails: the write is still answered 201 from its own answer, with an "unverified" warning', async () => {
    await withPortal({}, async (t) => {
      t.fake!.inject.internalError('crm.type.get', 10);
      const res = await t.call('POST', '/v1/smart-processes', { title: 'D', entityTypeId: 1206, relations: { parent: [{ entityTypeId: 2 }] } });
      assert.equal(res.statusCode, 201, res.body);
      const body = json(res) as { data: any; warnings?: any[] };
      assert.equal(body.data.entityTypeId, 1206);
      assert.deepEqual(body.warnings?.map((w) => w.kind), ['unverified']);
      t.fake!.inject.clear();
    });
  });
});

describe('GET /v1/smart-processes/fields tells the truth per portal kind', () => {
  it('on a bitrix24 portal the flags the adapter refuses are read-only, and every field /fields calls writable is taken by a create', async () => {
    await withPortal({}, async (t) => {
      const fields = json(await t.call('GET', '/v1/smart-processes/fields')).data.fields as Record<string, { type: string; isReadOnly: boolean; isImmutable: boolean }>;
      const readOnlyFlags = Object.entries(fields).filter(([name, f]) => name.startsWith('is') && name !== 'isInitialized' && f.isReadOnly).map(([name]) => name);
      assert.deepEqual(readOnlyFlags.sort(), [...NATIVE_UNWRITABLE_FLAGS].sort());
      const writableFlags = Object.entries(fields).filter(([, f]) => f.type === 'boolean' && !f.isReadOnly).map(([name]) => name);
      assert.ok(writableFlags.length >= 14);
      const res = await t.call('POST', '/v1/smart-processes', { title: 'Every flag', ...Object.fromEntries(writableFlags.map((name) => [name, true])) });
      assert.equal(res.statusCode, 201, res.body);
      for (const name of writableFlags) assert.equal(json(res).data[name], true, name);
      for (const name of NATIVE_UNWRITABLE_FLAGS) expectError(await t.call('POST', '/v1/smart-processes', { title: 'Refused', [name]: true }), 422, 'BITRIX_ERROR');
    });
  });

  it('on a local portal every flag is writable', async () => {
    const t = await createTestApp({ portalKind: 'local' });
    try {
      const fields = json(await t.call('GET', '/v1/smart-processes/fields')).data.fields as Record<string, { isReadOnly: boolean }>;
      for (const name of NATIVE_UNWRITABLE_FLAGS) assert.equal(fields[name].isReadOnly, false, name);
    } finally {
      await t.close();
    }
  });
});
