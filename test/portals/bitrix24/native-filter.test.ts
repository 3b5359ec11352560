import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseListQuery, type ListQuery } from '../../../src/domain/list-query.js';
import { TYPE_FIELD_TABLE } from '../../../src/domain/smart-process-type/fields.js';
import type { TypeRecord } from '../../../src/domain/smart-process-type/card.js';
import {
  applyResidual,
  compareCodePoints,
  finishReadAll,
  NATIVE_PAGE_SIZE,
  planPages,
  toNativeList,
  type NativeFilterValue,
  type NativeListPlan,
  type NativeOrder,
} from '../../../src/portals/bitrix24/native-filter.js';
import { fromNativeListItem, type NativeType } from '../../../src/portals/bitrix24/native-mapping.js';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { TEST_DIALECT } from '../../helpers/test-store.js';
import { nativeFromV1 } from './native-samples.js';

const q = (raw: Record<string, unknown>): ListQuery => parseListQuery(TYPE_FIELD_TABLE, raw, 'body', 'UTC');
const residualOf = (plan: NativeListPlan) => plan.residual.conditions.map((c) => `${c.field.name} ${c.op}`);

describe('toNativeList: which conditions go to crm.type.list and which stay with smartproc', () => {
  const table: { filter: Record<string, unknown>; native: Record<string, NativeFilterValue>; residual: string[]; nothing?: boolean }[] = [
    // integers without nulls: exact natively, every operator
    { filter: { id: 5 }, native: { id: 5 }, residual: [] },
    { filter: { id: { $ne: 5 } }, native: { '!=id': 5 }, residual: [] },
    { filter: { '!id': 5 }, native: { '!=id': 5 }, residual: [] },
    { filter: { id: { $gt: 1, $gte: 2, $lt: 9, $lte: 8 } }, native: { '>id': 1, '>=id': 2, '<id': 9, '<=id': 8 }, residual: [] },
    { filter: { '>=entityTypeId': 1030, createdBy: { $in: [1, 2] }, updatedBy: 3 }, native: { '>=entityTypeId': 1030, '@createdBy': [1, 2], updatedBy: 3 }, residual: [] },
    { filter: { id: { $in: [] } }, native: {}, residual: [], nothing: true },
    // a second condition on the same native key stays residual
    { filter: { id: { $eq: 1 }, '=id': 2 }, native: { id: 1 }, residual: ['id eq'] },
    // documented flags as Y/N; $ne as the opposite value; $in both = no condition
    { filter: { isStagesEnabled: true, isClientEnabled: false }, native: { isStagesEnabled: 'Y', isClientEnabled: 'N' }, residual: [] },
    { filter: { isStagesEnabled: { $ne: true } }, native: { isStagesEnabled: 'N' }, residual: [] },
    { filter: { isStagesEnabled: { $in: [true, false] } }, native: {}, residual: [] },
    { filter: { isStagesEnabled: { $in: [] } }, native: {}, residual: [], nothing: true },
    { filter: { isStagesEnabled: { $in: [true] } }, native: { isStagesEnabled: 'Y' }, residual: [] },
    // flags the native list does not document as filterable, and isInitialized (always true)
    { filter: { isPaymentsEnabled: true, isCountersEnabled: false, isRecurringEnabled: false }, native: {}, residual: ['isPaymentsEnabled eq', 'isCountersEnabled eq', 'isRecurringEnabled eq'] },
    { filter: { isInitialized: true }, native: {}, residual: [] },
    { filter: { isInitialized: false }, native: {}, residual: [], nothing: true },
    { filter: { isInitialized: { $ne: true } }, native: {}, residual: [], nothing: true },
    // customSectionId (nullable): exact for non-null values, residual for null tests and $ne (which includes nulls)
    { filter: { customSectionId: 3 }, native: { customSectionId: 3 }, residual: [] },
    { filter: { customSectionId: { $gt: 1, $in: [1, 2] } }, native: { '>customSectionId': 1, '@customSectionId': [1, 2] }, residual: [] },
    { filter: { customSectionId: null }, native: {}, residual: ['customSectionId eq'] },
    { filter: { customSectionId: { $ne: 3 } }, native: {}, residual: ['customSectionId ne'] },
    { filter: { customSectionId: { $in: [1, null] } }, native: {}, residual: ['customSectionId in'] },
    // text: equality and $in as a prefilter, checked again; everything else residual
    { filter: { title: 'Supply' }, native: { title: 'Supply' }, residual: ['title eq'] },
    { filter: { code: { $in: ['a', 'b'] } }, native: { '@code': ['a', 'b'] }, residual: ['code in'] },
    { filter: { title: { $contains: 'sup' }, '%code': 'x' }, native: {}, residual: ['title contains', 'code contains'] },
    { filter: { title: { $ne: 'x', $gt: 'a', $lte: 'z' } }, native: {}, residual: ['title ne', 'title gt', 'title lte'] },
    { filter: { code: null }, native: {}, residual: ['code eq'] },
    { filter: { code: { $in: ['a', null] } }, native: {}, residual: ['code in'] },
    // times: residual
    { filter: { createdTime: { $gte: '2024-01-01T00:00:00+02:00' }, updatedTime: { $lt: '2030-01-01' } }, native: {}, residual: ['createdTime gte', 'updatedTime lt'] },
  ];

  for (const row of table) {
    it(JSON.stringify(row.filter), () => {
      const plan = toNativeList(q({ filter: row.filter }));
      assert.deepEqual(plan.filter, row.native);
      assert.deepEqual(residualOf(plan), row.residual);
      assert.equal(plan.matchesNothing, row.nothing ?? false);
      assert.equal(plan.readAll, row.residual.length > 0);
    });
  }

  it('order: natively for integer fields without nulls and documented flags, with id ASC appended', () => {
    const orders: [Record<string, unknown>, NativeOrder | null][] = [
      [{}, { id: 'ASC' }],
      [{ sort: '-id' }, { id: 'DESC' }],
      [{ sort: 'entityTypeId,-createdBy' }, { entityTypeId: 'ASC', createdBy: 'DESC', id: 'ASC' }],
      [{ order: { isStagesEnabled: 'desc', updatedBy: 'asc' } }, { isStagesEnabled: 'DESC', updatedBy: 'ASC', id: 'ASC' }],
      [{ sort: 'isInitialized,-id' }, { id: 'DESC' }],
      [{ sort: 'id,-id' }, { id: 'ASC' }],
      [{ sort: 'title' }, null],
      [{ sort: 'id,code' }, null],
      [{ sort: '-customSectionId' }, null],
      [{ sort: 'createdTime' }, null],
      [{ sort: 'isPaymentsEnabled' }, null],
    ];
    for (const [raw, expected] of orders) {
      const plan = toNativeList(q(raw));
      if (expected) {
        assert.deepEqual(plan.order, expected, JSON.stringify(raw));
        assert.equal(plan.residual.sortApplied, true);
        assert.equal(plan.readAll, false);
      } else {
        assert.deepEqual(plan.order, { id: 'ASC' }, JSON.stringify(raw));
        assert.equal(plan.residual.sortApplied, false, JSON.stringify(raw));
        assert.equal(plan.readAll, true);
        assert.deepEqual(plan.residual.sort, q(raw).sort);
      }
    }
  });
});

describe('planPages: the native pages of 50 holding offset .. offset+limit-1', () => {
  const table: [number, number, number[], number][] = [
    [0, 50, [0], 0],
    [0, 1, [0], 0],
    [0, 51, [0, 50], 0],
    [49, 1, [0], 49],
    [49, 2, [0, 50], 49],
    [50, 50, [50], 0],
    [70, 40, [50, 100], 20],
    [120, 5000, Array.from({ length: 101 }, (_, i) => 100 + i * 50), 20],
    [1000, 10, [1000], 0],
  ];
  for (const [offset, limit, starts, skip] of table) {
    it(`offset ${offset}, limit ${limit}`, () => assert.deepEqual(planPages(offset, limit), { starts, skip }));
  }
  it('pages are 50 records', () => assert.equal(NATIVE_PAGE_SIZE, 50));
});

describe('compareCodePoints orders text as SQLite BINARY does (UTF-8 bytes = code points)', () => {
  it('astral characters after U+FFFF, unlike UTF-16 units', () => {
    const words = ['\uffff', '😀', 'a', 'A', 'ab', '', 'Б', 'б', '\ue000'];
    const sorted = [...words].sort(compareCodePoints);
    assert.deepEqual(sorted, ['', 'A', 'a', 'ab', 'Б', 'б', '\ue000', '\uffff', '😀']);
    assert.notDeepEqual([...words].sort(), sorted, 'UTF-16 order differs');
  });
});

/**
 * A crm.type.list of its own, written from crm-type-list.md for the keys toNativeList
 * emits (bare key, !=, >, >=, <, <=, @), pages of 50 with total and next. It compares text
 * ignoring case, as a MySQL portal with a case-insensitive collation does, so that the
 * prefilter-and-recheck of text equality is exercised.
 */
function fakeCrmTypeList(items: NativeType[], params: { order: NativeOrder; filter: Record<string, NativeFilterValue>; start: number }) {
  const norm = (v: unknown) => (typeof v === 'string' ? v.toLowerCase() : v);
  const cmp = (a: unknown, b: unknown) => {
    const [x, y] = [norm(a), norm(b)];
    return x === y ? 0 : (x as number) < (y as number) ? -1 : 1;
  };
  const matches = (item: NativeType) =>
    Object.entries(params.filter).every(([key, value]) => {
      const m = /^(!=|>=|<=|>|<|@|)(.+)$/.exec(key)!;
      const actual = item[m[2]];
      if (m[1] === '@') return (value as unknown[]).some((v) => actual !== null && cmp(actual, v) === 0);
      if (actual === null || actual === undefined) return false;
      const c = cmp(actual, value);
      return { '': c === 0, '!=': c !== 0, '>': c > 0, '>=': c >= 0, '<': c < 0, '<=': c <= 0 }[m[1]]!;
    });
  const found = items.filter(matches).sort((a, b) => {
    for (const [field, dir] of Object.entries(params.order)) {
      const c = cmp(a[field], b[field]);
      if (c) return dir === 'ASC' ? c : -c;
    }
    return 0;
  });
  const page = found.slice(params.start, params.start + NATIVE_PAGE_SIZE);
  return { result: { types: page }, total: found.length, ...(params.start + NATIVE_PAGE_SIZE < found.length ? { next: params.start + NATIVE_PAGE_SIZE } : {}) };
}

/** What the adapter does with a plan: the list answer of a bitrix24 portal, over the fake list. */
function listThroughNative(items: NativeType[], query: ListQuery): { records: TypeRecord[]; total: number; calls: number } {
  const plan = toNativeList(query);
  if (plan.matchesNothing) return { records: [], total: 0, calls: 0 };
  const call = (start: number) => fakeCrmTypeList(items, { order: plan.order, filter: plan.filter, start });
  const toRecords = (types: NativeType[]) => types.map((t) => fromNativeListItem(t));
  if (plan.readAll) {
    const all: TypeRecord[] = [];
    let calls = 0;
    for (let start: number | undefined = 0; start !== undefined; ) {
      const answer = call(start);
      calls++;
      all.push(...toRecords(answer.result.types));
      start = answer.next;
    }
    return { ...finishReadAll(all, plan, query), calls };
  }
  const { starts, skip } = planPages(query.offset, query.limit);
  const window: TypeRecord[] = [];
  let total = 0;
  let calls = 0;
  for (const start of starts) {
    const answer = call(start);
    calls++;
    if (start === starts[0]) total = answer.total;
    window.push(...toRecords(answer.result.types));
    if (answer.next === undefined) break;
  }
  return { records: window.slice(skip, skip + query.limit), total, calls };
}

describe('list answers through crm.type.list + residual equal the local store', () => {
  let t: TestApp;
  let natives: NativeType[];
  let records: TypeRecord[];
  const COUNT = 120;

  before(async () => {
    t = await createTestApp();
    const keys = [t.key, await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'], userId: 8 }), await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'], userId: 9 })];
    const titles = ['Supply', 'supply', 'SUPPLY contracts', 'Поставки', 'поставки', 'Service', 'Équipe', 'audit 50%', 'a_b', '😀 emoji', 'Zeta', 'zeta'];
    for (let i = 1; i <= COUNT; i++) {
      const body: Record<string, unknown> = {
        title: `${titles[i % titles.length]}${i % 5 === 0 ? '' : ` ${i}`}`,
        code: i % 4 === 0 ? null : i % 7 === 0 ? `C_${i}%` : `c_${i % 30}_${i}`,
        customSectionId: i % 3 === 0 ? null : (i % 4) + 1,
        isStagesEnabled: i % 2 === 0,
        isClientEnabled: i % 3 === 1,
        isAutomationEnabled: i % 5 < 2,
        isPaymentsEnabled: i % 6 === 0,
        isSetOpenPermissions: i % 4 !== 1,
      };
      const res = await t.call('POST', '/v1/smart-processes', body, { 'x-api-key': keys[i % 3].secret });
      assert.equal(res.statusCode, 201, res.body);
    }
    // updatedBy differs from createdBy for some
    for (let i = 1; i <= COUNT; i += 7) {
      const etid = 1030 + 2 * i;
      assert.equal((await t.call('PATCH', `/v1/smart-processes/${etid}`, { isBizProcEnabled: true }, { 'x-api-key': keys[(i + 1) % 3].secret })).statusCode, 200);
    }
    const all = json(await t.call('POST', '/v1/smart-processes/search', { limit: 5000 })).data as Record<string, unknown>[];
    assert.equal(all.length, COUNT);
    natives = all.map((item) => nativeFromV1(item, 'UTC', 'Europe/Berlin'));
    records = natives.map((n) => fromNativeListItem(n));
  });
  after(() => t.close());

  const filters: Record<string, unknown>[] = [
    {},
    { isStagesEnabled: true },
    { isStagesEnabled: { $ne: true }, isClientEnabled: true },
    { isStagesEnabled: { $in: [true, false] } },
    { isStagesEnabled: { $in: [] } },
    { isInitialized: false },
    { isInitialized: true, isAutomationEnabled: false },
    { isPaymentsEnabled: true },
    { isRecurringEnabled: false, isBizProcEnabled: true },
    { id: { $gt: 30, $lte: 90 } },
    { '>=id': 10, '<id': 20 },
    { id: { $in: [1, 5, 99, 1000] } },
    { '!id': 3 },
    { entityTypeId: { $gte: 1200 } },
    { createdBy: 8 },
    { updatedBy: { $ne: 7 } },
    { createdBy: { $in: [7, 9] }, isSetOpenPermissions: false },
    { customSectionId: null },
    { customSectionId: { $ne: 2 } },
    { customSectionId: 2 },
    { customSectionId: { $gt: 2 } },
    { customSectionId: { $in: [1, null] } },
    { customSectionId: { $in: [2, 4] }, isStagesEnabled: false },
    { title: 'Supply' },
    { title: 'zeta' },
    { title: { $in: ['Supply', 'supply 13', 'ZETA'] } },
    { title: { $contains: 'SUPP' } },
    { '%title': 'пост' },
    { title: { $contains: '50%' } },
    { title: { $contains: '_' } },
    { title: { $gt: 'S' } },
    { title: { $lte: 'Zeta' } },
    { title: { $ne: 'Supply' } },
    { code: null },
    { code: { $ne: 'c_5_5' } },
    { code: { $contains: '%' } },
    { code: { $contains: 'C_1' } },
    { code: 'C_7%' },
    { code: 'c_7%' },
    { code: { $in: ['c_5_5', null] } },
    { code: { $in: ['c_5_5', 'C_14%', 'c_1_31'] } },
    { createdTime: { $gte: '2000-01-01' } },
    { updatedTime: { $lt: '2000-01-01' } },
    { '>id': 10, id: { $lt: 100 }, isStagesEnabled: true, title: { $contains: 'a' }, customSectionId: { $ne: 1 } },
  ];
  /** Sorts whose order does not depend on the store (none on text or nullable fields). */
  const portableSorts: Record<string, unknown>[] = [{}, { sort: '-id' }, { sort: 'createdBy,-entityTypeId' }, { order: { isStagesEnabled: 'desc', updatedBy: 'asc' } }, { sort: '-createdTime' }, { sort: 'isPaymentsEnabled,-id' }, { sort: 'isInitialized' }];
  /** Text and nullable sorts: SQLite's BINARY collation and nulls-first are what smartproc follows; PostgreSQL's local store differs. */
  const sqliteSorts: Record<string, unknown>[] = [{ sort: 'title' }, { sort: '-title' }, { sort: '-code' }, { sort: 'customSectionId,-id' }, { order: { code: 'asc', title: 'desc' } }];
  const pages: Record<string, unknown>[] = [{}, { limit: 10, offset: 45 }, { limit: 60, offset: 40 }, { offset: 200 }, { limit: 1, offset: 119 }, { limit: 5000 }, { limit: 50, offset: 50 }];

  async function check(raw: Record<string, unknown>, exactOrder: boolean) {
    const res = await t.call('POST', '/v1/smart-processes/search', raw);
    assert.equal(res.statusCode, 200, res.body);
    const local = json(res);
    const query = q(raw);
    const label = JSON.stringify(raw);
    const ids = (rs: TypeRecord[]) => rs.map((r) => r.id);
    const localIds: number[] = local.data.map((x: { id: number }) => x.id);
    const through = listThroughNative(natives, query);
    const memory = applyResidual(records, { conditions: query.conditions, sortApplied: false, sort: query.sort });
    const memoryPage = memory.slice(query.offset, query.offset + query.limit);
    assert.equal(through.total, local.meta.total, `total through native: ${label}`);
    assert.equal(memory.length, local.meta.total, `total in memory: ${label}`);
    if (exactOrder) {
      assert.deepEqual(ids(through.records), localIds, `through native: ${label}`);
      assert.deepEqual(ids(memoryPage), localIds, `in memory: ${label}`);
    } else {
      const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
      assert.deepEqual(sorted(ids(through.records)).length, localIds.length, label);
      // Same set only when the whole list fits the page (the window depends on the order).
      if (query.offset === 0 && query.limit >= local.meta.total) assert.deepEqual(sorted(ids(through.records)), sorted(localIds), label);
    }
    return through;
  }

  it('every filter, default paging', async () => {
    for (const filter of filters) await check({ filter }, true);
  });

  it('filters × store-independent sorts × pages', async () => {
    for (const filter of filters.filter((_, i) => i % 4 === 0)) for (const sort of portableSorts) for (const page of pages) await check({ filter, ...sort, ...page }, true);
  });

  it('text and nullable sorts in memory (SQLite order)', async () => {
    for (const filter of [{}, { isStagesEnabled: true }, { title: { $contains: 'e' } }]) for (const sort of sqliteSorts) for (const page of pages) await check({ filter, ...sort, ...page }, TEST_DIALECT === 'sqlite');
  });

  it('a page window reads only its pages when nothing is residual; a residual filter reads every page', async () => {
    assert.equal((await check({ limit: 10, offset: 45 }, true)).calls, 2);
    assert.equal((await check({ limit: 50, offset: 50 }, true)).calls, 1);
    assert.equal((await check({ limit: 10, offset: 200 }, true)).calls, 1, 'beyond the end: one call to learn the total');
    assert.equal((await check({ filter: { isStagesEnabled: true }, limit: 5000 }, true)).calls, 2);
    assert.equal((await check({ filter: { title: { $contains: 'a' } }, limit: 5 }, true)).calls, 3);
    assert.equal((await check({ filter: { id: { $in: [] } } }, true)).calls, 0);
  });
});
