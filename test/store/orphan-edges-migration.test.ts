import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { orphanEdges as migration } from '../../src/store/migrations/002-orphan-edges.js';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { orphanEdges } from '../helpers/relations.js';

/** Edges to a deleted type could be stored before issue 7 (defect 4); migration 002 removes those already in a database. */
describe('migration 002-orphan-edges', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  const card = async (etid: number) => json(await t.call('GET', `/v1/smart-processes/${etid}`)).data;
  const ids = (list: { entityTypeId: number }[]) => list.map((r) => r.entityTypeId);

  it('is applied on start', async () => {
    const rows = await t.app.services.store.db.selectFrom('kysely_migration' as never).select('name' as never).execute();
    assert.ok((rows as { name: string }[]).some((r) => r.name === '002-orphan-edges'));
  });

  it('removes every edge with an end that is neither a type of its portal nor a linkable CRM type, moves the version of the surviving end, keeps the valid edges', async () => {
    const store = t.app.services.store;
    const other = await t.createPortal();
    for (const entityTypeId of [1900, 1902, 1904]) assert.equal((await t.call('POST', '/v1/smart-processes', { title: `M ${entityTypeId}`, entityTypeId })).statusCode, 201);
    const linked = await t.call('PATCH', '/v1/smart-processes/1900', { relations: { parent: [{ entityTypeId: 1902 }, { entityTypeId: 2 }], child: [{ entityTypeId: 31 }] } });
    assert.equal(linked.statusCode, 200, linked.body);
    const versionOf = async (etid: number) => (await store.db.selectFrom('smart_process_types').select('version').where('portal_id', '=', t.portal.id).where('entity_type_id', '=', etid).executeTakeFirstOrThrow()).version;
    const before = { 1900: await versionOf(1900), 1902: await versionOf(1902), 1904: await versionOf(1904) };
    // As the race left them: a deleted parent of 1900, a deleted child of 1902, both ends gone, and an edge of another portal to a type only this portal has.
    const row = (portal_id: number, parent: number, child: number) => ({ portal_id, parent_entity_type_id: parent, child_entity_type_id: child, is_children_list_enabled: 0 });
    await store.db.insertInto('type_relations').values([row(t.portal.id, 5000, 1900), row(t.portal.id, 1902, 5002), row(t.portal.id, 5004, 5006), row(other.id, 1904, 5008)]).execute();
    assert.equal((await orphanEdges(store)).length, 4);

    await migration.up(store.db);

    assert.deepEqual(await orphanEdges(store), []);
    const a = await card(1900);
    assert.deepEqual(ids(a.relations.parent), [2, 1902]);
    assert.deepEqual(ids(a.relations.child), [31]);
    assert.deepEqual(ids((await card(1902)).relations.child), [1900]);
    assert.deepEqual({ 1900: await versionOf(1900), 1902: await versionOf(1902), 1904: await versionOf(1904) }, { 1900: before[1900] + 1, 1902: before[1902] + 1, 1904: before[1904] });
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'New 5000', entityTypeId: 5000 })).statusCode, 201);
    assert.deepEqual((await card(5000)).relations.child, [], 'a type created later inherits nothing');

    await migration.up(store.db);
    assert.equal(await versionOf(1900), before[1900] + 1, 'running it again changes nothing');
  });
});
