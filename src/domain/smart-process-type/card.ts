import { FLAG_BIT, FLAG_NAMES, LINKED_USER_FIELDS, LINKED_USER_FIELD_BIT } from './fields.js';
import { predefinedRelations } from './relations.js';
import type { Relation, TypeCardJson, TypeListItemJson } from './schemas.js';
import { formatTime } from '../time.js';
import type { WriteWarning } from '../write-warning.js';

/** A smart process type as the store holds it: times in epoch seconds, flags as bit sets. */
export interface TypeRecord {
  id: number;
  entityTypeId: number;
  title: string;
  code: string | null;
  createdBy: number;
  createdTime: number;
  updatedBy: number;
  updatedTime: number;
  customSectionId: number | null;
  flags: number;
  linkedUserFields: number;
  itemCount: number;
  version: number;
}

/** One stored relation edge (parent → child), seen from both ends. */
export interface Edge {
  parent: number;
  child: number;
  isChildrenListEnabled: boolean;
}

export interface TypeCard {
  record: TypeRecord;
  relations: { parent: Relation[]; child: Relation[] };
  /** Only on a card a write answers, when the portal did not keep everything asked (bitrix24 portals): answered beside `data`. */
  warnings?: WriteWarning[];
}

/** Predefined edges first, then the stored ones by entityTypeId. */
export function relationsOf(record: TypeRecord, edges: readonly Edge[]): TypeCard['relations'] {
  const { parent, child } = predefinedRelations(record.flags);
  const etid = record.entityTypeId;
  const storedParents = edges.filter((e) => e.child === etid).sort((a, b) => a.parent - b.parent);
  const storedChildren = edges.filter((e) => e.parent === etid).sort((a, b) => a.child - b.child);
  return {
    parent: [...parent, ...storedParents.map((e) => ({ entityTypeId: e.parent, isChildrenListEnabled: e.isChildrenListEnabled, isPredefined: false }))],
    child: [...child, ...storedChildren.map((e) => ({ entityTypeId: e.child, isChildrenListEnabled: e.isChildrenListEnabled, isPredefined: false }))],
  };
}

export function presentListItem(record: TypeRecord, timeZone: string): TypeListItemJson & TypeCardJson {
  const item: Record<string, unknown> = {
    id: record.id,
    entityTypeId: record.entityTypeId,
    title: record.title,
    code: record.code,
    createdBy: record.createdBy,
    createdTime: formatTime(record.createdTime, timeZone),
    updatedBy: record.updatedBy,
    updatedTime: formatTime(record.updatedTime, timeZone),
    customSectionId: record.customSectionId,
  };
  for (const name of FLAG_NAMES) item[name] = (record.flags & FLAG_BIT[name]) !== 0;
  item.isInitialized = true;
  return item as TypeListItemJson & TypeCardJson;
}

export function presentLinkedUserFields(mask: number): TypeCardJson['linkedUserFields'] {
  const out: Record<string, boolean> = {};
  for (const key of LINKED_USER_FIELDS) out[key] = (mask & LINKED_USER_FIELD_BIT[key]) !== 0;
  return out as TypeCardJson['linkedUserFields'];
}

export function presentCard(card: TypeCard, timeZone: string): TypeCardJson {
  const item = presentListItem(card.record, timeZone);
  item.relations = card.relations;
  item.linkedUserFields = presentLinkedUserFields(card.record.linkedUserFields);
  return item;
}

/*
 * The JSON text of a card and of a list item, written straight from the record: the same
 * text as JSON.stringify(presentCard(...)) / JSON.stringify(presentListItem(...)) (a test
 * holds them equal), without building the object in between. Every answer that carries a
 * type goes through here, so it is the one place where presenting is written for speed.
 */
const FLAG_KEYS = FLAG_NAMES.map((name) => ({ key: `,${JSON.stringify(name)}:`, bit: FLAG_BIT[name] }));
const LINKED_KEYS = LINKED_USER_FIELDS.map((name, i) => ({ key: `${i ? ',' : ''}${JSON.stringify(name)}:`, bit: LINKED_USER_FIELD_BIT[name] }));

/** The flag members of the JSON for a flags value; a portal's types share few distinct values. */
const flagsJsonCache = new Map<number, string>();

function flagsJson(flags: number): string {
  let json = flagsJsonCache.get(flags);
  if (json === undefined) {
    json = '';
    for (const { key, bit } of FLAG_KEYS) json += key + ((flags & bit) !== 0 ? 'true' : 'false');
    if (flagsJsonCache.size >= 4096) flagsJsonCache.clear();
    flagsJsonCache.set(flags, json);
  }
  return json;
}

/**
 * A number as JSON.stringify writes it: one that JSON cannot hold (Infinity, NaN) is null,
 * so that no stored value can make the text invalid JSON. Texts go through JSON.stringify.
 */
const num = (n: number | null): number | 'null' => (n !== null && Number.isFinite(n) ? n : 'null');

function recordFieldsJson(record: TypeRecord, timeZone: string): string {
  return (
    `{"id":${num(record.id)},"entityTypeId":${num(record.entityTypeId)},"title":${JSON.stringify(record.title)},"code":${record.code === null ? 'null' : JSON.stringify(record.code)}` +
    `,"createdBy":${num(record.createdBy)},"createdTime":"${formatTime(record.createdTime, timeZone)}","updatedBy":${num(record.updatedBy)},"updatedTime":"${formatTime(record.updatedTime, timeZone)}"` +
    `,"customSectionId":${num(record.customSectionId)}${flagsJson(record.flags)},"isInitialized":true`
  );
}

export function listItemJson(record: TypeRecord, timeZone: string): string {
  return recordFieldsJson(record, timeZone) + '}';
}

export function cardJson(card: TypeCard, timeZone: string): string {
  let linked = '';
  for (const { key, bit } of LINKED_KEYS) linked += key + ((card.record.linkedUserFields & bit) !== 0 ? 'true' : 'false');
  return `${recordFieldsJson(card.record, timeZone)},"relations":${JSON.stringify(card.relations)},"linkedUserFields":{${linked}}}`;
}

/** One list field as JSON text (`"name":value`), written from the record. */
type MemberJson = (record: TypeRecord, timeZone: string) => string;

function memberJson(name: string): MemberJson {
  const key = `${JSON.stringify(name)}:`;
  switch (name) {
    case 'id':
      return (r) => key + num(r.id);
    case 'entityTypeId':
      return (r) => key + num(r.entityTypeId);
    case 'title':
      return (r) => key + JSON.stringify(r.title);
    case 'code':
      return (r) => key + (r.code === null ? 'null' : JSON.stringify(r.code));
    case 'createdBy':
      return (r) => key + num(r.createdBy);
    case 'createdTime':
      return (r, tz) => `${key}"${formatTime(r.createdTime, tz)}"`;
    case 'updatedBy':
      return (r) => key + num(r.updatedBy);
    case 'updatedTime':
      return (r, tz) => `${key}"${formatTime(r.updatedTime, tz)}"`;
    case 'customSectionId':
      return (r) => key + num(r.customSectionId);
    case 'isInitialized':
      return () => `${key}true`;
    default: {
      const bit = FLAG_BIT[name as (typeof FLAG_NAMES)[number]];
      if (bit === undefined) throw new Error(`no list field ${name}`);
      return (r) => key + ((r.flags & bit) !== 0 ? 'true' : 'false');
    }
  }
}

/** Writers of selected list items, by the selected names (a client's selects are few and repeat). */
const selectedWriters = new Map<string, MemberJson[]>();

function writersFor(select: readonly string[]): MemberJson[] {
  const id = select.join(',');
  let writers = selectedWriters.get(id);
  if (!writers) {
    writers = select.map(memberJson);
    if (selectedWriters.size >= 1024) selectedWriters.clear();
    selectedWriters.set(id, writers);
  }
  return writers;
}

/**
 * The JSON array of a list page: every item whole (`select` null), or only the selected
 * fields, in the order named (the same text as JSON.stringify of presentListItem's
 * members picked by name; a test holds them equal). A select of a few fields writes only
 * those, so it costs less than whole items.
 */
export function listItemsJson(records: readonly TypeRecord[], timeZone: string, select: readonly string[] | null): string {
  if (!records.length) return '[]';
  let out = '[';
  if (!select) {
    for (let i = 0; i < records.length; i++) out += (i ? ',' : '') + recordFieldsJson(records[i], timeZone) + '}';
    return out + ']';
  }
  const writers = writersFor(select);
  for (let i = 0; i < records.length; i++) {
    out += i ? ',{' : '{';
    for (let j = 0; j < writers.length; j++) out += (j ? ',' : '') + writers[j](records[i], timeZone);
    out += '}';
  }
  return out + ']';
}
