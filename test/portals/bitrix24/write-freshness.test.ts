/**
 * Writes never trust the cache (docs/bitrix24.md): the pre-checks of a PATCH read the
 * portal's type list fresh, as a create does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestApp } from '../../helpers/app.js';

describe('bitrix24 writes read the type list fresh', () => {
  it('a type created inside Bitrix24 after the list was cached can be linked as a relation by PATCH at once', async () => {
    const t = await createTestApp({ portalKind: 'bitrix24', config: { bitrix24CacheTtlMs: 600_000 } });
    try {
      t.fake!.state.seedType({ title: 'A', entityTypeId: 1100 });
      const list = await t.call('GET', '/v1/smart-processes');
      assert.equal(list.statusCode, 200, list.body); // the type list is cached now
      t.fake!.state.seedType({ title: 'B', entityTypeId: 1102 }); // made in Bitrix24 itself
      const res = await t.call('PATCH', '/v1/smart-processes/1100', { relations: { parent: [{ entityTypeId: 1102 }] } });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json().data.relations.parent.map((r: { entityTypeId: number }) => r.entityTypeId), [1102]);
    } finally {
      await t.close();
    }
  });
});
