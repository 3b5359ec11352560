import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cardJson, listItemJson, listItemsJson, presentCard, presentListItem, relationsOf, type TypeCard, type TypeRecord } from '../../src/domain/smart-process-type/card.js';
import { FLAG_NAMES, LIST_FIELD_NAMES } from '../../src/domain/smart-process-type/fields.js';

const base: TypeRecord = {
  id: 7,
  entityTypeId: 1038,
  title: 'Deliveries',
  code: null,
  createdBy: 1,
  createdTime: 1_776_779_205,
  updatedBy: 3,
  updatedTime: 1_776_865_605,
  customSectionId: null,
  flags: 0,
  linkedUserFields: 0,
  itemCount: 0,
  version: 4,
};

const titles = ['Deliveries', 'Заявки "VIP" \\ отдел', 'tab\there, newline\nthere', 'emoji 🚚 and \u2028 separator', '</script>', '\u0001 control'];
const timeZones = ['UTC', 'Europe/Moscow', 'America/St_Johns', 'Asia/Kathmandu', 'Pacific/Chatham'];

function* records(): Generator<TypeRecord> {
  let i = 0;
  for (const title of titles) {
    for (const timeZoneSpread of [0, 1]) {
      i++;
      yield {
        ...base,
        id: i,
        title,
        code: i % 3 === 0 ? null : `code_${i}`,
        customSectionId: i % 2 ? null : i * 10,
        // Every flag on its own, all on, none, and mixtures.
        flags: i % 4 === 0 ? 0 : i % 4 === 1 ? (1 << FLAG_NAMES.length) - 1 : (0x5a5a5 * i) & ((1 << FLAG_NAMES.length) - 1),
        linkedUserFields: i % 8,
        createdTime: base.createdTime + timeZoneSpread * 15_552_000, // half a year later: the other side of a DST change
      };
    }
  }
  for (let bit = 0; bit < FLAG_NAMES.length; bit++) yield { ...base, flags: 1 << bit };
}

describe('the JSON of a type is written straight from the record, as presenting it would', () => {
  it('a list item: the same text as JSON.stringify(presentListItem(...)), for every flag, title and time zone', () => {
    for (const record of records()) {
      for (const timeZone of timeZones) assert.equal(listItemJson(record, timeZone), JSON.stringify(presentListItem(record, timeZone)));
    }
  });

  it('a card: the same text as JSON.stringify(presentCard(...)), with predefined and stored relations', () => {
    for (const record of records()) {
      const card: TypeCard = {
        record,
        relations: relationsOf(record, [
          { parent: 1040, child: record.entityTypeId, isChildrenListEnabled: true },
          { parent: record.entityTypeId, child: 2, isChildrenListEnabled: false },
        ]),
      };
      for (const timeZone of timeZones) assert.equal(cardJson(card, timeZone), JSON.stringify(presentCard(card, timeZone)));
    }
  });

  it('writes what JSON.stringify writes for numbers it would refuse (Infinity, NaN: null), so the text is always valid JSON (issue 7, defect 5)', () => {
    for (const bad of [Infinity, -Infinity, NaN]) {
      const record: TypeRecord = { ...base, id: bad, entityTypeId: bad, createdBy: bad, updatedBy: bad, customSectionId: bad };
      const card: TypeCard = { record, relations: { parent: [], child: [] } };
      assert.equal(listItemJson(record, 'UTC'), JSON.stringify(presentListItem(record, 'UTC')));
      assert.equal(cardJson(card, 'UTC'), JSON.stringify(presentCard(card, 'UTC')));
      assert.equal(JSON.parse(cardJson(card, 'UTC')).customSectionId, null);
    }
  });

  it('is valid JSON whatever the title holds', () => {
    for (const record of records()) assert.equal(JSON.parse(listItemJson(record, 'UTC')).title, record.title);
  });

  it('a list page, whole or with a select: the same text as JSON.stringify of the presented items, the selected fields in the order named', () => {
    const page = [...records()];
    const selects: (string[] | null)[] = [null, ['id'], ['title', 'id'], ['createdTime', 'isStagesEnabled', 'code', 'isInitialized'], [...LIST_FIELD_NAMES].reverse()];
    for (const select of selects) {
      for (const timeZone of timeZones) {
        const expected = page.map((record) => {
          const item = presentListItem(record, timeZone) as Record<string, unknown>;
          return select ? Object.fromEntries(select.map((name) => [name, item[name]])) : item;
        });
        assert.equal(listItemsJson(page, timeZone, select), JSON.stringify(expected));
      }
    }
    assert.equal(listItemsJson([], 'UTC', null), '[]');
  });
});
