import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { endsDisagree, orphanEdges, randomFrom, type CardRelations } from '../../helpers/relations.js';

/**
 * Relation edits that run at the same time (issue 7, defects 3 and 4). On PostgreSQL
 * each write is its own transaction: a write that changes edges locks every type row it
 * touches in one order, so two writes never deadlock, and an edge never outlives one of
 * its ends. On SQLite the writes are serialised; the same specifications hold.
 */
describe('relation edits racing each other', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  const create = async (entityTypeId: number, title = `Type ${entityTypeId}`) => {
    const res = await t.call('POST', '/v1/smart-processes', { title, entityTypeId });
    assert.equal(res.statusCode, 201, res.body);
  };
  const card = async (etid: number): Promise<CardRelations> => json(await t.call('GET', `/v1/smart-processes/${etid}`)).data;
  const patch = (etid: number, body: unknown, headers?: Record<string, string>) => t.call('PATCH', `/v1/smart-processes/${etid}`, body, headers);
  const remove = (etid: number) => t.call('DELETE', `/v1/smart-processes/${etid}`);
  /** Runs `b` a little after `a` (0, 1 or 2 turns of the event loop), so that the rounds try different interleavings. */
  const race = async <A, B>(round: number, a: () => Promise<A>, b: () => Promise<B>): Promise<[A, B]> => {
    const later = async () => {
      for (let i = 0; i < round % 3; i++) await new Promise((resolve) => setImmediate(resolve));
      return b();
    };
    return round % 2 ? Promise.all([a(), later()]) : (await Promise.all([later(), a()])).reverse() as [A, B];
  };
  const tally = (counts: Record<number, number>, res: LightMyRequestResponse, problems: string[]) => {
    counts[res.statusCode] = (counts[res.statusCode] ?? 0) + 1;
    if (res.statusCode >= 500 && problems.length < 5) problems.push(res.body);
  };
  const store = () => t.app.services.store;

  it('two editors toggling A.child=[B]/[] and B.child=[A]/[] 100 times each at once get only 200s, and both ends agree', async () => {
    const [a, b] = [1700, 1702];
    await create(a);
    await create(b);
    const counts: Record<number, number> = {};
    const problems: string[] = [];
    const editor = async (self: number, other: number) => {
      for (let i = 0; i < 100; i++) tally(counts, await patch(self, { relations: { child: i % 2 ? [] : [{ entityTypeId: other }] } }), problems);
    };
    // One more round for A, so that the end state is known: A.child = [B], B.child = [].
    await Promise.all([editor(a, b), editor(b, a)]);
    tally(counts, await patch(a, { relations: { child: [{ entityTypeId: b }] } }), problems);
    assert.deepEqual(counts, { 200: 201 }, problems.join('\n'));
    const cards = [await card(a), await card(b)];
    assert.deepEqual(endsDisagree(cards), []);
    assert.deepEqual(cards[0].relations.child.map((r) => r.entityTypeId), [b]);
    assert.deepEqual(cards[1].relations.parent.map((r) => r.entityTypeId), [a]);
    assert.deepEqual(cards[1].relations.child, []);
    assert.deepEqual(await orphanEdges(store(), t.portal.id), []);
  });

  it('16 editors on 10 types mixing parent and child edits, scalar PATCHes and If-Match: no 5xx, and both ends agree', async () => {
    const types = Array.from({ length: 10 }, (_, i) => 1720 + 2 * i);
    for (const etid of types) await create(etid);
    const counts: Record<number, number> = {};
    const problems: string[] = [];
    const editor = async (seed: number) => {
      const random = randomFrom(seed);
      const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)];
      const others = (self: number) =>
        types
          .filter((x) => x !== self && random() < 0.25)
          .slice(0, 3)
          .map((entityTypeId) => ({ entityTypeId, isChildrenListEnabled: random() < 0.5 }));
      for (let op = 0; op < 25; op++) {
        const self = pick(types);
        const kind = random();
        let res: LightMyRequestResponse;
        if (kind < 0.3) res = await patch(self, { relations: { child: others(self) } });
        else if (kind < 0.55) res = await patch(self, { relations: { parent: random() < 0.2 ? [{ entityTypeId: 31 }, ...others(self)] : others(self) } });
        else if (kind < 0.65) res = await patch(self, { title: `Both ${seed}.${op}`, relations: { parent: others(self), child: others(self) } });
        else if (kind < 0.8) res = await patch(self, { title: `Editor ${seed}.${op}` });
        else {
          const current = await t.call('GET', `/v1/smart-processes/${self}`);
          const body = random() < 0.5 ? { title: `Careful ${seed}.${op}` } : { relations: { child: others(self) } };
          res = await patch(self, body, { 'if-match': current.headers.etag as string });
        }
        tally(counts, res, problems);
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, i) => editor(1000 + i)));
    const fiveHundreds = Object.entries(counts).filter(([status]) => Number(status) >= 500);
    assert.deepEqual(fiveHundreds, [], `${JSON.stringify(counts)}\n${problems.join('\n')}`);
    assert.deepEqual(Object.keys(counts).filter((s) => s !== '200' && s !== '412'), [], JSON.stringify(counts));
    const cards = await Promise.all(types.map(card));
    assert.deepEqual(endsDisagree(cards), []);
    assert.deepEqual(await orphanEdges(store(), t.portal.id), []);
  });

  it('editors linking types that other editors delete and create again at the same time: no 5xx, no edge to a missing type, and both ends agree', async () => {
    const types = Array.from({ length: 8 }, (_, i) => 1740 + 2 * i);
    for (const etid of types) await create(etid);
    const counts: Record<number, number> = {};
    const problems: string[] = [];
    const editor = async (seed: number) => {
      const random = randomFrom(seed);
      const others = (self: number) => types.filter((x) => x !== self && random() < 0.3).map((entityTypeId) => ({ entityTypeId }));
      for (let op = 0; op < 30; op++) {
        const self = types[Math.floor(random() * types.length)];
        if (random() < 0.15) {
          const deleted = await remove(self);
          tally(counts, deleted, problems);
          if (deleted.statusCode !== 204) continue;
          const again = await t.call('POST', '/v1/smart-processes', { title: `Again ${self}`, entityTypeId: self, relations: { child: others(self) } });
          tally(counts, again, problems);
          if (again.statusCode === 422) tally(counts, await t.call('POST', '/v1/smart-processes', { title: `Again ${self}`, entityTypeId: self }), problems);
        } else {
          tally(counts, await patch(self, { relations: random() < 0.5 ? { parent: others(self) } : { child: others(self) } }), problems);
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, i) => editor(2000 + i)));
    assert.deepEqual(Object.keys(counts).filter((s) => Number(s) >= 500), [], `${JSON.stringify(counts)}\n${problems.join('\n')}`);
    const cards = await Promise.all(types.map(card));
    assert.ok(cards.every(Boolean), 'every type deleted was created again');
    assert.deepEqual(endsDisagree(cards), []);
    assert.deepEqual(await orphanEdges(store(), t.portal.id), []);
  });

  it('PATCH X adding parent 5000 racing DELETE 5000: never an edge to a missing type, and a new 5000 inherits no edge', async () => {
    const x = 1760;
    await create(x);
    const counts: Record<string, number> = {};
    for (let round = 0; round < 60; round++) {
      await create(5000);
      assert.deepEqual((await card(5000)).relations.child, [], `round ${round}: a new 5000 inherited an edge`);
      const [linked, deleted] = await race(round, () => patch(x, { relations: { parent: [{ entityTypeId: 5000 }] } }), () => remove(5000));
      counts[`${linked.statusCode}/${deleted.statusCode}`] = (counts[`${linked.statusCode}/${deleted.statusCode}`] ?? 0) + 1;
      assert.ok([200, 422].includes(linked.statusCode), `round ${round}: PATCH answered ${linked.statusCode} ${linked.body}`);
      assert.equal(deleted.statusCode, 204, `round ${round}: DELETE answered ${deleted.body}`);
      assert.deepEqual(await orphanEdges(store(), t.portal.id), [], `round ${round}: ${JSON.stringify(counts)}`);
      assert.deepEqual((await card(x)).relations.parent, [], `round ${round}: X still lists a parent`);
    }
    await create(5000);
    assert.deepEqual((await card(5000)).relations.child, []);
    assert.ok(Object.keys(counts).length >= 1, JSON.stringify(counts));
  });

  it('PATCH X adding child 5000 racing DELETE 5000: never an edge to a missing type', async () => {
    const x = 1762;
    await create(x);
    if ((await t.call('GET', '/v1/smart-processes/5000')).statusCode === 200) assert.equal((await remove(5000)).statusCode, 204);
    for (let round = 0; round < 40; round++) {
      await create(5000);
      const [linked, deleted] = await race(round, () => patch(x, { relations: { child: [{ entityTypeId: 5000, isChildrenListEnabled: true }] } }), () => remove(5000));
      assert.ok([200, 422].includes(linked.statusCode), `round ${round}: PATCH answered ${linked.statusCode} ${linked.body}`);
      assert.equal(deleted.statusCode, 204, `round ${round}: DELETE answered ${deleted.body}`);
      assert.deepEqual(await orphanEdges(store(), t.portal.id), [], `round ${round}`);
      assert.deepEqual((await card(x)).relations.child, [], `round ${round}: X still lists a child`);
    }
  });

  it('creating a type with a parent racing the DELETE of that parent: never an edge to a missing type', async () => {
    if ((await t.call('GET', '/v1/smart-processes/5000')).statusCode === 200) assert.equal((await remove(5000)).statusCode, 204);
    for (let round = 0; round < 40; round++) {
      await create(5000);
      const [created, deleted] = await race(
        round,
        () => t.call('POST', '/v1/smart-processes', { title: `Child ${round}`, entityTypeId: 5100, relations: { parent: [{ entityTypeId: 5000 }] } }),
        () => remove(5000),
      );
      assert.ok([201, 422].includes(created.statusCode), `round ${round}: POST answered ${created.statusCode} ${created.body}`);
      assert.equal(deleted.statusCode, 204, `round ${round}: DELETE answered ${deleted.body}`);
      assert.deepEqual(await orphanEdges(store(), t.portal.id), [], `round ${round}`);
      if (created.statusCode === 201) {
        assert.deepEqual((await card(5100)).relations.parent, [], `round ${round}: the new type lists a deleted parent`);
        assert.equal((await remove(5100)).statusCode, 204);
      }
    }
  });

  it('DELETE X racing a PATCH of 5000 that adds X as its parent: never an edge to a missing type', async () => {
    await create(5000).catch(() => undefined);
    for (let round = 0; round < 40; round++) {
      await create(5200);
      const [deleted, linked] = await race(round, () => remove(5200), () => patch(5000, { relations: { parent: [{ entityTypeId: 5200 }] } }));
      assert.ok([200, 422].includes(linked.statusCode), `round ${round}: PATCH answered ${linked.statusCode} ${linked.body}`);
      assert.equal(deleted.statusCode, 204, `round ${round}: DELETE answered ${deleted.body}`);
      assert.deepEqual(await orphanEdges(store(), t.portal.id), [], `round ${round}`);
    }
  });

  it('a portal deleted (force) while its types are created, linked and deleted: no 5xx and nothing of it is left', async () => {
    for (let round = 0; round < 6; round++) {
      const portal = await t.createPortal();
      const key = await t.createKey({ kind: 'personal', portalId: portal.id, scopes: ['crm'], userId: 1 });
      const call = (method: 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
        t.app.inject({ method, url, headers: { 'x-api-key': key.secret, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });
      const types = [1800, 1802, 1804, 1806];
      for (const entityTypeId of types) assert.equal((await call('POST', '/v1/smart-processes', { title: 'P', entityTypeId })).statusCode, 201);
      const counts: Record<number, number> = {};
      const problems: string[] = [];
      let stop = false;
      const editor = async (i: number) => {
        for (let op = 0; !stop && op < 200; op++) {
          const self = types[(i + op) % types.length];
          const other = types[(i + op + 1) % types.length];
          const res =
            op % 5 === 4
              ? await call('POST', '/v1/smart-processes', { title: 'New', relations: { parent: [{ entityTypeId: other }] } })
              : await call('PATCH', `/v1/smart-processes/${self}`, { relations: op % 2 ? { child: [{ entityTypeId: other }] } : { parent: [{ entityTypeId: other }], child: [] } });
          tally(counts, res, problems);
          if (res.statusCode === 401) return;
        }
      };
      const editors = Promise.all([0, 1, 2, 3].map(editor));
      try {
        // Deleted after a number of answers that grows with the round, while the editors run.
        while (Object.values(counts).reduce((a, b) => a + b, 0) < 6 + round * 8) await new Promise((resolve) => setTimeout(resolve, 1));
        const deleted = await t.app.inject({ method: 'DELETE', url: `/v1/portals/${portal.id}?force=true`, headers: { 'x-api-key': t.managementKey.secret } });
        assert.equal(deleted.statusCode, 204, deleted.body);
        await new Promise((resolve) => setTimeout(resolve, 20));
      } finally {
        stop = true;
        await editors;
      }
      assert.deepEqual(Object.keys(counts).filter((s) => Number(s) >= 500), [], `${JSON.stringify(counts)}\n${problems.join('\n')}`);
      const left = await store().db.selectFrom('type_relations').select('portal_id').where('portal_id', '=', portal.id).execute();
      const typesLeft = await store().db.selectFrom('smart_process_types').select('portal_id').where('portal_id', '=', portal.id).execute();
      assert.deepEqual([left.length, typesLeft.length], [0, 0], `round ${round}: rows of the deleted portal are left`);
    }
    assert.deepEqual(await orphanEdges(store()), []);
  });
});
