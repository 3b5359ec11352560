import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cardJson, listItemJson, type TypeCard } from '../../../src/domain/smart-process-type/card.js';
import { FLAG_BIT, FLAG_NAMES, LINKED_USER_FIELDS, LINKED_USER_FIELD_BIT, type FlagName } from '../../../src/domain/smart-process-type/fields.js';
import { parseCreateBody, parsePatchBody, type TypeDraft, type TypePatch } from '../../../src/domain/smart-process-type/input.js';
import {
  cardVersion,
  compareRelations,
  expectedAfterAdd,
  expectedAfterPatch,
  formatNativeTime,
  fromNativeCard,
  fromNativeListItem,
  NATIVE_UNWRITABLE_FLAGS,
  NATIVE_WRITABLE_FLAGS,
  nativeBoolean,
  NativeShapeError,
  notKeptWarnings,
  parseNativeTime,
  patchChangesCard,
  relationsToSend,
  toNativeAddFields,
  toNativeUpdateFields,
  typeOfResult,
  typesOfListResult,
  unkeptFields,
  unwritableFlagChanges,
  unwritableFlagsError,
  type NativeType,
} from '../../../src/portals/bitrix24/native-mapping.js';
import { createTestApp, json, type TestApp } from '../../helpers/app.js';
import { DOCS_GET_CARD, DOCS_LIST_ITEM, nativeFromV1 } from './native-samples.js';

const bits = (...names: FlagName[]) => names.reduce((m, n) => m | FLAG_BIT[n], 0);
const draftOf = (body: Record<string, unknown>): TypeDraft => parseCreateBody(body as never);
const patchOf = (body: Record<string, unknown>, etid = 1032): TypePatch => parsePatchBody(body as never, etid);
const clone = (native: NativeType): NativeType => structuredClone(native);

describe('native card → TypeCard (fromNativeCard)', () => {
  it('maps the crm.type.get example of the docs', () => {
    const card = fromNativeCard(DOCS_GET_CARD);
    const r = card.record;
    assert.equal(r.id, 16);
    assert.equal(r.entityTypeId, 2024);
    assert.equal(r.title, 'SPA');
    assert.equal(r.code, null, '"" is no code');
    assert.equal(r.createdBy, 1);
    assert.equal(r.updatedBy, 1);
    assert.equal(r.createdTime, Date.parse('2024-07-08T12:46:54Z') / 1000, 'the offset is honoured');
    assert.equal(r.updatedTime, r.createdTime);
    assert.equal(r.customSectionId, null);
    assert.equal(r.flags, bits(...NATIVE_WRITABLE_FLAGS), 'every documented flag is Y; payments, counters, recurring are off');
    assert.equal(r.linkedUserFields, LINKED_USER_FIELD_BIT['CALENDAR_EVENT|UF_CRM_CAL_EVENT'] | LINKED_USER_FIELD_BIT['TASKS_TASK|UF_CRM_TASK']);
    assert.equal(r.itemCount, 0);
    assert.deepEqual(card.relations, {
      parent: [
        { entityTypeId: 3, isChildrenListEnabled: true, isPredefined: true },
        { entityTypeId: 4, isChildrenListEnabled: true, isPredefined: true },
        { entityTypeId: 1, isChildrenListEnabled: true, isPredefined: false },
        { entityTypeId: 2, isChildrenListEnabled: true, isPredefined: false },
        { entityTypeId: 31, isChildrenListEnabled: true, isPredefined: false },
      ],
      child: [
        { entityTypeId: 3, isChildrenListEnabled: true, isPredefined: false },
        { entityTypeId: 4, isChildrenListEnabled: false, isPredefined: false },
      ],
    });
    assert.equal(r.version, cardVersion(card));
  });

  it('reads every boolean spelling the docs mention (Y/N, 1/0, true/false) and refuses others', () => {
    const table: [unknown, boolean | 'error'][] = [
      ['Y', true], ['N', false], ['y', true], ['n', false], [true, true], [false, false], ['true', true], ['false', false],
      [1, true], [0, false], ['1', true], ['0', false], [null, false], [undefined, false], ['', false],
      ['yes', 'error'], [2, 'error'], [{}, 'error'],
    ];
    for (const [value, expected] of table) {
      if (expected === 'error') assert.throws(() => nativeBoolean(value, 'x'), NativeShapeError, JSON.stringify(value));
      else assert.equal(nativeBoolean(value, 'x'), expected, JSON.stringify(value));
      for (const name of FLAG_NAMES) {
        const native = { ...clone(DOCS_LIST_ITEM), [name]: value };
        if (expected === 'error') assert.throws(() => fromNativeListItem(native), NativeShapeError);
        else assert.equal((fromNativeListItem(native).flags & FLAG_BIT[name]) !== 0, expected, `${name}=${JSON.stringify(value)}`);
      }
    }
  });

  it('each flag maps to its own bit', () => {
    for (const name of FLAG_NAMES) {
      const native = clone(DOCS_LIST_ITEM);
      for (const other of FLAG_NAMES) native[other] = other === name ? 'Y' : 'N';
      assert.equal(fromNativeListItem(native).flags, FLAG_BIT[name], name);
    }
  });

  it('code: "" / null / missing → null; a code is kept as it is', () => {
    const table: [unknown, string | null][] = [['', null], [null, null], [undefined, null], ['supply', 'supply'], [' x ', ' x ']];
    for (const [code, expected] of table) {
      const native = clone(DOCS_LIST_ITEM);
      if (code === undefined) delete native.code;
      else native.code = code;
      assert.equal(fromNativeListItem(native).code, expected);
    }
    assert.throws(() => fromNativeListItem({ ...clone(DOCS_LIST_ITEM), code: 5 }), NativeShapeError);
  });

  it('integers as numbers or numeric strings; customSectionId null/""/missing → null', () => {
    const native = { ...clone(DOCS_LIST_ITEM), id: '37', entityTypeId: '1256', createdBy: '5', updatedBy: 6, customSectionId: '12' };
    const r = fromNativeListItem(native);
    assert.deepEqual([r.id, r.entityTypeId, r.createdBy, r.updatedBy, r.customSectionId], [37, 1256, 5, 6, 12]);
    for (const value of [null, '', undefined]) assert.equal(fromNativeListItem({ ...clone(DOCS_LIST_ITEM), customSectionId: value }).customSectionId, null);
    assert.throws(() => fromNativeListItem({ ...clone(DOCS_LIST_ITEM), id: 'abc' }), NativeShapeError);
    assert.throws(() => fromNativeListItem({ ...clone(DOCS_LIST_ITEM), entityTypeId: 1.5 }), NativeShapeError);
    assert.throws(() => fromNativeListItem({ ...clone(DOCS_LIST_ITEM), title: null }), NativeShapeError);
  });

  it('times: ISO 8601 with any offset → epoch seconds; without an offset, in the given zone; garbage refused', () => {
    const epoch = Date.parse('2024-07-08T15:24:55Z') / 1000;
    for (const text of ['2024-07-08T17:24:55+02:00', '2024-07-08T15:24:55+00:00', '2024-07-08T15:24:55Z', '2024-07-08T21:09:55+05:45', '2024-07-08T11:24:55-04:00', '2024-07-08T17:24:55+0200']) {
      assert.equal(parseNativeTime(text, 'UTC'), epoch, text);
    }
    assert.equal(parseNativeTime('2024-07-08T17:24:55', 'Europe/Berlin'), epoch);
    assert.throws(() => parseNativeTime('yesterday', 'UTC'), NativeShapeError);
    assert.throws(() => parseNativeTime(null, 'UTC'), NativeShapeError);
    assert.equal(formatNativeTime(epoch, 'Europe/Berlin'), '2024-07-08T17:24:55+02:00');
    assert.equal(parseNativeTime(formatNativeTime(epoch, 'Asia/Kathmandu'), 'UTC'), epoch);
  });

  it('linkedUserFields Y/N → bit set; missing, null or [] (PHP empty map) → 0; unknown keys ignored', () => {
    for (const key of LINKED_USER_FIELDS) {
      const native = clone(DOCS_GET_CARD);
      native.linkedUserFields = { ...Object.fromEntries(LINKED_USER_FIELDS.map((k) => [k, 'N'])), [key]: 'Y', 'OTHER|UF_X': 'Y' };
      assert.equal(fromNativeCard(native).record.linkedUserFields, LINKED_USER_FIELD_BIT[key]);
    }
    for (const value of [undefined, null, []]) assert.equal(fromNativeCard({ ...clone(DOCS_GET_CARD), linkedUserFields: value }).record.linkedUserFields, 0);
    assert.throws(() => fromNativeCard({ ...clone(DOCS_GET_CARD), linkedUserFields: 'Y' }), NativeShapeError);
  });

  it('relations: predefined first, then by entityTypeId, whatever order the portal answers in; empty or missing sides are []', () => {
    const native = clone(DOCS_GET_CARD);
    const rel = native.relations as { parent: unknown[]; child: unknown[] };
    rel.parent.reverse();
    rel.child.reverse();
    assert.deepEqual(fromNativeCard(native).relations, fromNativeCard(DOCS_GET_CARD).relations);
    assert.deepEqual(fromNativeCard({ ...clone(DOCS_GET_CARD), relations: { parent: [] } }).relations, { parent: [], child: [] });
    assert.deepEqual(fromNativeCard({ ...clone(DOCS_GET_CARD), relations: [] }).relations, { parent: [], child: [] });
    assert.throws(() => fromNativeCard({ ...clone(DOCS_GET_CARD), relations: { parent: [{ entityTypeId: 'x' }] } }), NativeShapeError);
  });

  it('customSections and unknown native keys are ignored', () => {
    const native = { ...clone(DOCS_GET_CARD), customSections: [{ id: 1, title: 'Workplace' }], isExternal: 'Y', somethingNew: 42 };
    assert.deepEqual(fromNativeCard(native), fromNativeCard(DOCS_GET_CARD));
  });

  it('a light list item → TypeRecord with version 0 and no linkedUserFields', () => {
    const r = fromNativeListItem(DOCS_LIST_ITEM);
    assert.equal(r.id, 37);
    assert.equal(r.entityTypeId, 1256);
    assert.equal(r.code, null);
    assert.equal(r.version, 0);
    assert.equal(r.linkedUserFields, 0);
    assert.equal(r.flags, bits('isCategoriesEnabled', 'isBeginCloseDatesEnabled', 'isClientEnabled', 'isUseInUserfieldEnabled', 'isMycompanyEnabled', 'isDocumentsEnabled', 'isSourceEnabled', 'isObserversEnabled', 'isRecyclebinEnabled', 'isAutomationEnabled'));
  });

  it('unwraps result.type and result.types, refusing other shapes', () => {
    assert.equal(typeOfResult({ type: DOCS_GET_CARD }), DOCS_GET_CARD);
    assert.deepEqual(typesOfListResult({ types: [DOCS_LIST_ITEM] }), [DOCS_LIST_ITEM]);
    for (const bad of [null, [], { type: [] }, { types: {} }]) {
      assert.throws(() => typeOfResult(bad), NativeShapeError);
    }
    assert.throws(() => typesOfListResult({ types: [1] }), NativeShapeError);
  });
});

describe('the ETag of a native card (cardVersion)', () => {
  const base = fromNativeCard(DOCS_GET_CARD);

  it('is a positive safe integer, identical for identical content (key order, relation order, time zone of the text)', () => {
    assert.ok(Number.isSafeInteger(base.record.version) && base.record.version > 0 && base.record.version < 2 ** 48);
    assert.equal(fromNativeCard(clone(DOCS_GET_CARD)).record.version, base.record.version);
    const reordered: NativeType = Object.fromEntries(Object.entries(clone(DOCS_GET_CARD)).reverse());
    (reordered.relations as { parent: unknown[] }).parent.reverse();
    reordered.createdTime = '2024-07-08T12:46:54+00:00';
    reordered.updatedTime = '2024-07-08T18:31:54+05:45';
    reordered.id = '16';
    assert.equal(fromNativeCard(reordered).record.version, base.record.version);
    assert.equal(fromNativeCard({ ...clone(DOCS_GET_CARD), customSections: [{ id: 9 }] }).record.version, base.record.version, 'customSections is not /v1 content');
  });

  it('changes whenever any /v1-visible content changes', () => {
    const variants: [string, (n: NativeType) => void][] = [
      ['title', (n) => (n.title = 'SPA 2')],
      ['title case', (n) => (n.title = 'spa')],
      ['code', (n) => (n.code = 'spa')],
      ['createdBy', (n) => (n.createdBy = 2)],
      ['updatedBy', (n) => (n.updatedBy = 2)],
      ['createdTime', (n) => (n.createdTime = '2024-07-08T14:46:55+02:00')],
      ['updatedTime', (n) => (n.updatedTime = '2024-07-08T14:46:55+02:00')],
      ['customSectionId', (n) => (n.customSectionId = 3)],
      ['id', (n) => (n.id = 17)],
      ['entityTypeId', (n) => (n.entityTypeId = 2026)],
      ...FLAG_NAMES.map((name): [string, (n: NativeType) => void] => [name, (n) => (n[name] = n[name] === 'Y' ? 'N' : 'Y')]),
      ...LINKED_USER_FIELDS.map((key): [string, (n: NativeType) => void] => [key, (n) => {
        const l = n.linkedUserFields as Record<string, string>;
        l[key] = l[key] === 'Y' ? 'N' : 'Y';
      }]),
      ['edge added', (n) => (n.relations as any).child.push({ entityTypeId: 1040, isChildrenListEnabled: 'N', isPredefined: 'N' })],
      ['edge removed', (n) => (n.relations as any).parent.pop()],
      ['isChildrenListEnabled flipped', (n) => ((n.relations as any).child[1].isChildrenListEnabled = 'Y')],
      ['isPredefined flipped', (n) => ((n.relations as any).child[0].isPredefined = 'Y')],
      ['edge moved to the other side', (n) => {
        const rel = n.relations as any;
        rel.child.push(rel.parent.pop());
      }],
    ];
    const seen = new Map<number, string>([[base.record.version, 'base']]);
    for (const [label, change] of variants) {
      const native = clone(DOCS_GET_CARD);
      change(native);
      const version = fromNativeCard(native).record.version;
      assert.notEqual(version, base.record.version, label);
      assert.equal(seen.get(version), undefined, `${label} collides with ${seen.get(version)}`);
      seen.set(version, label);
    }
  });

  it('is computed from the domain card too (a card built elsewhere gets the same ETag)', () => {
    const card: TypeCard = structuredClone(base);
    card.relations.parent.reverse();
    assert.equal(cardVersion(card), base.record.version);
  });
});

/** Every key the native write methods may ever receive from smartproc. */
const ADD_KEYS = new Set<string>(['title', 'entityTypeId', 'code', 'customSectionId', 'linkedUserFields', 'relations', ...NATIVE_WRITABLE_FLAGS]);
const UPDATE_KEYS = new Set<string>(['title', 'code', 'linkedUserFields', 'relations', ...NATIVE_WRITABLE_FLAGS]);

function* sampleBodies(): Generator<Record<string, unknown>> {
  const relationSets = [
    undefined,
    {},
    { parent: [] },
    { parent: [{ entityTypeId: 2, isChildrenListEnabled: true }, { entityTypeId: 3 }, { entityTypeId: 4, isChildrenListEnabled: 'Y' }] },
    { child: [{ entityTypeId: 14, isChildrenListEnabled: 'true' }, { entityTypeId: 3, isChildrenListEnabled: 'N' }, { entityTypeId: 1040, isPredefined: true }] },
  ];
  let i = 0;
  for (const relations of relationSets) {
    for (const flagSet of [{}, { isClientEnabled: true }, { isPaymentsEnabled: true, isClientEnabled: false }, Object.fromEntries(FLAG_NAMES.map((n, j) => [n, (i + j) % 2 === 0]))]) {
      for (const linked of [undefined, {}, { 'TASKS_TASK|UF_CRM_TASK': true }, Object.fromEntries(LINKED_USER_FIELDS.map((k) => [k, true]))]) {
        i++;
        const body: Record<string, unknown> = { title: `Type ${i}`, ...flagSet };
        if (relations !== undefined) body.relations = relations;
        if (linked !== undefined) body.linkedUserFields = linked;
        if (i % 3 === 0) body.code = i % 2 ? null : `code_${i}`;
        if (i % 5 === 0) body.entityTypeId = 1032;
        if (i % 7 === 0) body.customSectionId = 4;
        // Read-only fields a client echoes back from a GET: parsed away before mapping.
        if (i % 4 === 0) Object.assign(body, { id: 9, createdBy: 1, createdTime: '2024-01-01T00:00:00+00:00', updatedBy: 1, updatedTime: '2024-01-01T00:00:00+00:00', isInitialized: true });
        yield body;
      }
    }
  }
}

describe('TypeDraft → crm.type.add fields (toNativeAddFields)', () => {
  it('flags as Y/N for the 14 documented flags; defaults sent explicitly (isSetOpenPermissions Y)', () => {
    const fields = toNativeAddFields(draftOf({ title: 'Deliveries', isStagesEnabled: true }));
    for (const name of NATIVE_WRITABLE_FLAGS) assert.equal(fields[name], name === 'isStagesEnabled' || name === 'isSetOpenPermissions' ? 'Y' : 'N', name);
    assert.equal(toNativeAddFields(draftOf({ title: 'x', isSetOpenPermissions: false })).isSetOpenPermissions, 'N');
  });

  it('title always; entityTypeId, code and customSectionId only when given', () => {
    const minimal = toNativeAddFields(draftOf({ title: '  Deliveries  ' }));
    assert.equal(minimal.title, 'Deliveries');
    assert.ok(!('entityTypeId' in minimal) && !('code' in minimal) && !('customSectionId' in minimal));
    assert.ok(!('relations' in minimal), 'no relations sent when none requested');
    const full = toNativeAddFields(draftOf({ title: 'x', entityTypeId: 1050, code: 'deliveries', customSectionId: 7 }));
    assert.deepEqual([full.entityTypeId, full.code, full.customSectionId], [1050, 'deliveries', 7]);
    assert.ok(!('code' in toNativeAddFields(draftOf({ title: 'x', code: '' }))), '"" is no code: nothing to send');
  });

  it('linkedUserFields: always all three keys, "true"/"false" strings', () => {
    assert.deepEqual(toNativeAddFields(draftOf({ title: 'x' })).linkedUserFields, {
      'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'false',
      'TASKS_TASK|UF_CRM_TASK': 'false',
      'TASKS_TASK_TEMPLATE|UF_CRM_TASK': 'false',
    });
    assert.deepEqual(toNativeAddFields(draftOf({ title: 'x', isUseInUserfieldEnabled: true, linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true } })).linkedUserFields, {
      'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'false',
      'TASKS_TASK|UF_CRM_TASK': 'true',
      'TASKS_TASK_TEMPLATE|UF_CRM_TASK': 'false',
    });
  });

  it('relations: sides present, isChildrenListEnabled as the string "true"/"false", predefined entries left out under the draft flags', () => {
    const body = {
      title: 'x',
      isClientEnabled: true,
      relations: {
        parent: [{ entityTypeId: 3 }, { entityTypeId: 2, isChildrenListEnabled: true }, { entityTypeId: 4, isChildrenListEnabled: true }, { entityTypeId: 1, isChildrenListEnabled: 'Y' }],
        child: [{ entityTypeId: 3, isChildrenListEnabled: 'true' }, { entityTypeId: 1040 }],
      },
    };
    assert.deepEqual(toNativeAddFields(draftOf(body)).relations, {
      parent: [{ entityTypeId: 2, isChildrenListEnabled: 'true' }, { entityTypeId: 1, isChildrenListEnabled: 'true' }],
      child: [{ entityTypeId: 3, isChildrenListEnabled: 'true' }, { entityTypeId: 1040, isChildrenListEnabled: 'false' }],
    });
    // Without isClientEnabled, 3/4 on the parent side are not predefined: sent (the adapter's eligibility pre-check refuses them first).
    assert.deepEqual(toNativeAddFields(draftOf({ title: 'x', relations: { parent: [{ entityTypeId: 3 }] } })).relations, { parent: [{ entityTypeId: 3, isChildrenListEnabled: 'false' }] });
    // Order 14 on the child side is predefined while isPaymentsEnabled.
    assert.deepEqual(toNativeAddFields(draftOf({ title: 'x', isPaymentsEnabled: true, relations: { child: [{ entityTypeId: 14 }, { entityTypeId: 2 }] } })).relations, { child: [{ entityTypeId: 2, isChildrenListEnabled: 'false' }] });
    assert.deepEqual(toNativeAddFields(draftOf({ title: 'x', relations: { child: [] } })).relations, { child: [] });
  });

  it('never sends customSections, isExternal, read-only fields or unwritable flags, for any body', () => {
    for (const body of sampleBodies()) {
      const fields = toNativeAddFields(draftOf(body));
      for (const key of Object.keys(fields)) assert.ok(ADD_KEYS.has(key), `unexpected key ${key}`);
      assert.ok(!JSON.stringify(fields).includes('customSections'));
      assert.equal(Object.keys(fields.linkedUserFields!).length, 3);
      for (const side of Object.values(fields.relations ?? {})) for (const entry of side!) assert.ok(entry.isChildrenListEnabled === 'true' || entry.isChildrenListEnabled === 'false');
    }
  });
});

describe('TypePatch → crm.type.update fields (toNativeUpdateFields)', () => {
  const current = fromNativeCard({ ...clone(DOCS_GET_CARD), isClientEnabled: 'N', relations: { parent: [], child: [] } });

  it('only what the client sent; {} gives {}', () => {
    assert.deepEqual(toNativeUpdateFields(patchOf({}), current), {});
    assert.deepEqual(toNativeUpdateFields(patchOf({ title: ' New ' }), current), { title: 'New' });
    assert.deepEqual(toNativeUpdateFields(patchOf({ isStagesEnabled: false, isBizProcEnabled: true }), current), { isStagesEnabled: 'N', isBizProcEnabled: 'Y' });
  });

  it('code: a value as is; null and "" clear it with ""', () => {
    assert.deepEqual(toNativeUpdateFields(patchOf({ code: 'spa' }), current), { code: 'spa' });
    assert.deepEqual(toNativeUpdateFields(patchOf({ code: null }), current), { code: '' });
    assert.deepEqual(toNativeUpdateFields(patchOf({ code: '' }), current), { code: '' });
  });

  it('never entityTypeId (even equal to the path), customSectionId, read-only fields or customSections', () => {
    const fields = toNativeUpdateFields(patchOf({ entityTypeId: 1032, customSectionId: 5, id: 1, createdTime: 'x', updatedBy: 3, isInitialized: true, title: 't' }), current);
    assert.deepEqual(fields, { title: 't' });
    for (const body of sampleBodies()) {
      delete body.entityTypeId;
      const fields = toNativeUpdateFields(patchOf(body), current);
      for (const key of Object.keys(fields)) assert.ok(UPDATE_KEYS.has(key), `unexpected key ${key}`);
      assert.ok(!JSON.stringify(fields).includes('customSections'));
    }
  });

  it('linkedUserFields: always in full with the unsent keys "false" (native input merges); isUseInUserfieldEnabled "Y" passed along when on', () => {
    assert.deepEqual(toNativeUpdateFields(patchOf({ linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true } }), current), {
      linkedUserFields: { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'false', 'TASKS_TASK|UF_CRM_TASK': 'true', 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': 'false' },
      isUseInUserfieldEnabled: 'Y',
    });
    assert.deepEqual(toNativeUpdateFields(patchOf({ linkedUserFields: {} }), current).linkedUserFields, {
      'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'false',
      'TASKS_TASK|UF_CRM_TASK': 'false',
      'TASKS_TASK_TEMPLATE|UF_CRM_TASK': 'false',
    });
    // Switched off in the same PATCH: "N" is sent, not "Y".
    assert.equal(toNativeUpdateFields(patchOf({ isUseInUserfieldEnabled: false, linkedUserFields: {} }), current).isUseInUserfieldEnabled, 'N');
    const off = fromNativeCard({ ...clone(DOCS_GET_CARD), isUseInUserfieldEnabled: 'N' });
    assert.ok(!('isUseInUserfieldEnabled' in toNativeUpdateFields(patchOf({ linkedUserFields: {} }), off)));
    assert.ok(!('linkedUserFields' in toNativeUpdateFields(patchOf({ title: 'x' }), current)), 'not sent when the client did not send it');
  });

  it('relations: the sides sent, "true"/"false", predefined entries left out under the flags after the PATCH; the other side as the card holds it', () => {
    assert.deepEqual(toNativeUpdateFields(patchOf({ relations: { parent: [{ entityTypeId: 2, isChildrenListEnabled: true }] } }), current), {
      relations: { parent: [{ entityTypeId: 2, isChildrenListEnabled: 'true' }], child: [] },
    });
    assert.deepEqual(toNativeUpdateFields(patchOf({ relations: { child: [] } }), current), { relations: { parent: [], child: [] } });
    assert.deepEqual(toNativeUpdateFields(patchOf({ relations: {} }), current), {});
    // isClientEnabled turned on in the same PATCH: 3 and 4 become predefined and are not sent.
    assert.deepEqual(toNativeUpdateFields(patchOf({ isClientEnabled: true, relations: { parent: [{ entityTypeId: 3 }, { entityTypeId: 4 }, { entityTypeId: 1 }] } }), current), {
      isClientEnabled: 'Y',
      relations: { parent: [{ entityTypeId: 1, isChildrenListEnabled: 'false' }], child: [] },
    });
    // isPaymentsEnabled comes from the card (the portal reports it; smartproc cannot send it).
    // The parent side is not in the PATCH: it goes as the card holds it, its predefined 3 and 4 left out.
    const payments = fromNativeCard({ ...clone(DOCS_GET_CARD), isPaymentsEnabled: 'Y' });
    assert.deepEqual(toNativeUpdateFields(patchOf({ relations: { child: [{ entityTypeId: 14, isChildrenListEnabled: true }, { entityTypeId: 2 }] } }), payments), {
      relations: {
        parent: [{ entityTypeId: 1, isChildrenListEnabled: 'true' }, { entityTypeId: 2, isChildrenListEnabled: 'true' }, { entityTypeId: 31, isChildrenListEnabled: 'true' }],
        child: [{ entityTypeId: 2, isChildrenListEnabled: 'false' }],
      },
    });
  });

  it('relationsToSend: undefined without a side; the untouched side carries current.relations locations', () => {
    const card = fromNativeCard(DOCS_GET_CARD);
    assert.equal(relationsToSend(patchOf({ title: 'x' }), card), undefined);
    assert.equal(relationsToSend(patchOf({ relations: {} }), card), undefined);
    const sent = relationsToSend(patchOf({ relations: { parent: [{ entityTypeId: 1 }] } }), card)!;
    assert.deepEqual(sent.parent!.map((e) => e.location), ['body.relations.parent[0]']);
    assert.deepEqual(sent.child, [
      { entityTypeId: 3, isChildrenListEnabled: true, location: 'current.relations.child[0]' },
      { entityTypeId: 4, isChildrenListEnabled: false, location: 'current.relations.child[1]' },
    ]);
  });
});

describe('flags the native API cannot set', () => {
  it('are isRecurringEnabled, isPaymentsEnabled and isCountersEnabled', () => {
    assert.deepEqual([...NATIVE_UNWRITABLE_FLAGS].sort(), ['isCountersEnabled', 'isPaymentsEnabled', 'isRecurringEnabled']);
  });

  it('a create asking for one on, or a PATCH changing one, is named; unchanged values are not', () => {
    assert.deepEqual(unwritableFlagChanges(draftOf({ title: 'x', isPaymentsEnabled: true, isRecurringEnabled: true, isCountersEnabled: false, isStagesEnabled: true }), null), ['isRecurringEnabled', 'isPaymentsEnabled']);
    assert.deepEqual(unwritableFlagChanges(draftOf({ title: 'x' }), null), []);
    const current = fromNativeCard({ ...clone(DOCS_GET_CARD), isCountersEnabled: 'Y' });
    assert.deepEqual(unwritableFlagChanges(patchOf({ isCountersEnabled: true, isPaymentsEnabled: false, isStagesEnabled: false }), current), []);
    assert.deepEqual(unwritableFlagChanges(patchOf({ isCountersEnabled: false, isRecurringEnabled: true }), current), ['isRecurringEnabled', 'isCountersEnabled']);
    const error = unwritableFlagsError(['isPaymentsEnabled']);
    assert.equal(error.code, 'BITRIX_ERROR');
    assert.equal(error.details![0].location, 'body.isPaymentsEnabled');
  });
});

describe('read-back after a write', () => {
  const card = (relations: Record<string, unknown>, extra: Record<string, unknown> = {}) => fromNativeCard({ ...clone(DOCS_GET_CARD), isClientEnabled: 'N', relations, ...extra });
  const rel = (entityTypeId: number, cle = 'N', pre = 'N') => ({ entityTypeId, isChildrenListEnabled: cle, isPredefined: pre });

  it('everything kept: no mismatch; absent sides are not compared; predefined entries are neither requested nor compared', () => {
    const requested = patchOf({ relations: { parent: [{ entityTypeId: 2, isChildrenListEnabled: true }, { entityTypeId: 1040 }] } }).relations!;
    assert.deepEqual(compareRelations(requested, card({ parent: [rel(1040), rel(2, 'Y')], child: [rel(1)] })), []);
    const withClient = patchOf({ isClientEnabled: true, relations: { parent: [{ entityTypeId: 3 }, { entityTypeId: 2 }] } }).relations!;
    assert.deepEqual(compareRelations(withClient, card({ parent: [rel(3, 'Y', 'Y'), rel(4, 'Y', 'Y'), rel(2)] }, { isClientEnabled: 'Y' })), []);
  });

  it('names dropped entries, a changed isChildrenListEnabled and edges the side did not lose', () => {
    const requested = patchOf({ relations: { parent: [{ entityTypeId: 2, isChildrenListEnabled: true }, { entityTypeId: 1040 }, { entityTypeId: 1042 }], child: [{ entityTypeId: 1 }] } }).relations!;
    const after = card({ parent: [rel(2, 'N'), rel(1042), rel(31)], child: [] });
    assert.deepEqual(compareRelations(requested, after), [
      { side: 'parent', entityTypeId: 2, kind: 'childrenListNotKept', location: 'body.relations.parent[0]', requested: true, actual: false },
      { side: 'parent', entityTypeId: 1040, kind: 'dropped', location: 'body.relations.parent[1]', requested: false },
      { side: 'parent', entityTypeId: 31, kind: 'notRemoved', location: 'body.relations.parent', actual: false },
      { side: 'child', entityTypeId: 1, kind: 'dropped', location: 'body.relations.child[0]', requested: false },
    ]);
  });

  it('a side the PATCH did not touch is checked too: an edge it lost is named at current.relations', () => {
    const before = card({ parent: [rel(2, 'Y')], child: [rel(1), rel(1040, 'Y')] });
    const sent = relationsToSend(patchOf({ relations: { parent: [{ entityTypeId: 2, isChildrenListEnabled: true }] } }), before)!;
    const after = card({ parent: [rel(2, 'Y')], child: [rel(1)] });
    assert.deepEqual(compareRelations(sent, after), [{ side: 'child', entityTypeId: 1040, kind: 'dropped', location: 'current.relations.child[1]', requested: true }]);
    const wiped = card({ parent: [rel(2, 'Y')], child: [rel(7)] });
    assert.deepEqual(compareRelations(sent, wiped).map((m) => [m.kind, m.entityTypeId, m.location]), [
      ['dropped', 1, 'current.relations.child[0]'],
      ['dropped', 1040, 'current.relations.child[1]'],
      ['notRemoved', 7, 'current.relations.child'],
    ]);
  });

  it('a flag that did not stick makes its predefined entries count as dropped', () => {
    const requested = patchOf({ isClientEnabled: true, relations: { parent: [{ entityTypeId: 3 }] } }).relations!;
    assert.deepEqual(compareRelations(requested, card({ parent: [] })).map((m) => [m.kind, m.entityTypeId]), [['dropped', 3]]);
  });

  it('the warnings (a write that happened is never a 4xx) name every entry at its request location, with what was requested and what is there', () => {
    const requested = draftOf({ title: 'x', relations: { parent: [{ entityTypeId: 1040 }, { entityTypeId: 2 }] } }).relations;
    const warnings = notKeptWarnings(compareRelations(requested, card({ parent: [rel(2)] })));
    assert.deepEqual(warnings.map((w) => [w.kind, w.location]), [['notApplied', 'body.relations.parent[0].entityTypeId']]);
    assert.match(warnings[0].message, /parent smart process 1040 \(1040\)/);
    assert.deepEqual(warnings[0].requested, { entityTypeId: 1040, isChildrenListEnabled: false });
    assert.equal(warnings[0].actual, null);
    const two = notKeptWarnings(compareRelations(draftOf({ title: 'x', relations: { parent: [{ entityTypeId: 1040 }], child: [{ entityTypeId: 1 }] } }).relations, card({ parent: [], child: [] })));
    assert.equal(two.length, 2);
  });

  it('unkeptFields: scalar fields, flags and linkedUserFields keys the card does not show as requested', () => {
    const draft = draftOf({ title: 'SPA', entityTypeId: 2024, isRecurringEnabled: true, linkedUserFields: { 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': true } });
    const after = fromNativeCard({ ...clone(DOCS_GET_CARD) });
    const names = unkeptFields(expectedAfterAdd(draft), after).map((m) => m.field);
    assert.ok(names.includes('isRecurringEnabled') && names.includes('isStagesEnabled'));
    assert.ok(names.includes('linkedUserFields.TASKS_TASK_TEMPLATE|UF_CRM_TASK') && names.includes('linkedUserFields.TASKS_TASK|UF_CRM_TASK'));
    assert.ok(!names.includes('title') && !names.includes('entityTypeId') && !names.includes('code'));
    const current = fromNativeCard(DOCS_GET_CARD);
    assert.deepEqual(unkeptFields(expectedAfterPatch(patchOf({ title: 'SPA', isStagesEnabled: true }), current), current), []);
    assert.deepEqual(unkeptFields(expectedAfterPatch(patchOf({ code: 'spa' }), current), current), [{ field: 'code', expected: 'spa', actual: null }]);
    const warnings = notKeptWarnings([], unkeptFields(expectedAfterPatch(patchOf({ code: 'spa' }), current), current));
    assert.deepEqual(warnings.map((w) => [w.location, w.requested, w.actual]), [['body.code', 'spa', null]]);
  });
});

describe('against a local portal', () => {
  let t: TestApp;
  const portals: { timeZone: string; call: TestApp['call']; cards: Record<string, any>[]; items: Record<string, any>[] }[] = [];

  before(async () => {
    t = await createTestApp();
    for (const timeZone of ['UTC', 'Europe/Berlin', 'Asia/Kathmandu']) {
      const portal = timeZone === 'UTC' ? t.portal : await t.createPortal(timeZone);
      const key = timeZone === 'UTC' ? t.key : await t.createKey({ kind: 'personal', portalId: portal.id, scopes: ['crm'], userId: 11 });
      const call: TestApp['call'] = (method, url, body, headers) => t.call(method, url, body, { 'x-api-key': key.secret, ...headers });
      const bodies = [
        { title: 'Deliveries', code: 'deliveries', isStagesEnabled: true },
        { title: 'Заявки "VIP"', isClientEnabled: true, isUseInUserfieldEnabled: true, linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true } },
        { title: 'Payments', isPaymentsEnabled: true, isSetOpenPermissions: false, customSectionId: 3 },
        { title: 'Everything', ...Object.fromEntries(FLAG_NAMES.filter((n) => n !== 'isRecurringEnabled').map((n) => [n, true])), linkedUserFields: Object.fromEntries(LINKED_USER_FIELDS.map((k) => [k, true])) },
      ];
      const etids: number[] = [];
      for (const body of bodies) {
        const res = await call('POST', '/v1/smart-processes', body);
        assert.equal(res.statusCode, 201, res.body);
        etids.push(json(res).data.entityTypeId);
      }
      // Relations among them and with base types, seen from both ends.
      const patch = {
        relations: {
          parent: [{ entityTypeId: 2, isChildrenListEnabled: true }, { entityTypeId: etids[1] }, { entityTypeId: 3 }],
          child: [{ entityTypeId: etids[2], isChildrenListEnabled: true }, { entityTypeId: 4 }, { entityTypeId: 31 }],
        },
      };
      assert.equal((await call('PATCH', `/v1/smart-processes/${etids[3]}`, patch)).statusCode, 200);
      const cards = await Promise.all(etids.map(async (etid) => json(await call('GET', `/v1/smart-processes/${etid}`)).data));
      const items = json(await call('GET', '/v1/smart-processes')).data;
      portals.push({ timeZone, call, cards, items });
    }
  });
  after(() => t.close());

  it('round trip: local /v1 card → native card (times in another zone) → fromNativeCard → cardJson is the same text', () => {
    for (const { timeZone, cards } of portals) {
      for (const v1 of cards) {
        for (const nativeZone of ['UTC', 'Europe/Moscow', 'America/St_Johns']) {
          const card = fromNativeCard(nativeFromV1(v1, timeZone, nativeZone));
          assert.equal(cardJson(card, timeZone), JSON.stringify(v1), `${v1.title} in ${timeZone} from ${nativeZone}`);
        }
      }
    }
  });

  it('round trip: list items → fromNativeListItem → listItemJson is the same text', () => {
    for (const { timeZone, items } of portals) {
      assert.equal(items.length, 4);
      for (const v1 of items) assert.equal(listItemJson(fromNativeListItem(nativeFromV1(v1, timeZone, 'Europe/Moscow')), timeZone), JSON.stringify(v1));
    }
  });

  it('patchChangesCard agrees with the local portal on which PATCHes change the card (its ETag moves)', async () => {
    const { call, timeZone } = portals[0];
    const created = json(await call('POST', '/v1/smart-processes', { title: 'Patch me' })).data;
    const etid = created.entityTypeId;
    const bodies: [Record<string, unknown>, boolean][] = [
      [{}, false],
      [{ title: 'Patch me' }, false],
      [{ title: ' Patch me ' }, false],
      [{ title: 'Patched' }, true],
      [{ code: null }, false],
      [{ code: 'p' }, true],
      [{ code: 'p' }, false],
      [{ code: '' }, true],
      [{ isStagesEnabled: false }, false],
      [{ isStagesEnabled: true }, true],
      [{ isSetOpenPermissions: true, isStagesEnabled: true }, false],
      [{ linkedUserFields: {} }, false],
      [{ linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true } }, true],
      [{ linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true, 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': false } }, false],
      [{ linkedUserFields: {} }, true],
      [{ relations: {} }, false],
      [{ relations: { child: [] } }, false],
      [{ relations: { parent: [{ entityTypeId: 2 }] } }, true],
      [{ relations: { parent: [{ entityTypeId: 2, isChildrenListEnabled: 'N' }] } }, false],
      [{ relations: { parent: [{ entityTypeId: 2, isChildrenListEnabled: true }] } }, true],
      [{ isClientEnabled: true, relations: { parent: [{ entityTypeId: 3 }, { entityTypeId: 2, isChildrenListEnabled: true }] } }, true],
      [{ isClientEnabled: true, relations: { parent: [{ entityTypeId: 4, isChildrenListEnabled: true }, { entityTypeId: 2, isChildrenListEnabled: true }] } }, false],
      [{ relations: { parent: [] } }, true],
      [{ isClientEnabled: false }, true],
    ];
    for (const [body, expected] of bodies) {
      const before = await call('GET', `/v1/smart-processes/${etid}`);
      const current = fromNativeCard(nativeFromV1(json(before).data, timeZone, 'UTC'));
      const predicted = patchChangesCard(patchOf(body, etid), current);
      const res = await call('PATCH', `/v1/smart-processes/${etid}`, body);
      assert.equal(res.statusCode, 200, res.body);
      const changedLocally = res.headers.etag !== before.headers.etag;
      assert.equal(changedLocally, expected, `local portal on ${JSON.stringify(body)}`);
      assert.equal(predicted, expected, `patchChangesCard on ${JSON.stringify(body)}`);
      // The local answer is what the portal should hold after the native update: nothing would be reported as not kept.
      const after = fromNativeCard(nativeFromV1(json(res).data, timeZone, 'UTC'));
      const patch = patchOf(body, etid);
      assert.deepEqual(unkeptFields(expectedAfterPatch(patch, current), after), [], JSON.stringify(body));
      const sent = relationsToSend(patch, current);
      if (sent) assert.deepEqual(compareRelations(sent, after), [], JSON.stringify(body));
      // ETag of the native card moves exactly when the content does.
      assert.equal(after.record.version !== current.record.version, changedLocally, `native ETag on ${JSON.stringify(body)}`);
    }
  });
});
