import { field, fieldTable, type FieldSpec, type FieldTable, type FieldType } from '../field-table.js';

/**
 * The field table of a smart process type (contract §3). It is written once and
 * gives the request and response schemas, the `/fields` answer, the list of
 * selectable, filterable and sortable fields, and the storage bit of each flag.
 */
export const FLAG_FIELDS = [
  { name: 'isCategoriesEnabled', title: 'Use custom pipelines and sales tunnels' },
  { name: 'isStagesEnabled', title: 'Use custom stages and kanban' },
  { name: 'isBeginCloseDatesEnabled', title: '"Start date" and "End date" fields' },
  { name: 'isClientEnabled', title: '"Client" field linked to contacts and companies' },
  { name: 'isLinkWithProductsEnabled', title: 'Linking catalog products' },
  { name: 'isMycompanyEnabled', title: '"Your company details" field' },
  { name: 'isObserversEnabled', title: '"Observers" field' },
  { name: 'isSourceEnabled', title: '"Source" and "More about the source" fields' },
  { name: 'isAutomationEnabled', title: 'Automation rules and triggers' },
  { name: 'isBizProcEnabled', title: 'Business process designer' },
  { name: 'isDocumentsEnabled', title: 'Document printing' },
  { name: 'isRecyclebinEnabled', title: 'Recycle bin usage' },
  { name: 'isSetOpenPermissions', title: 'Make new pipelines available to everyone' },
  { name: 'isUseInUserfieldEnabled', title: 'Use the smart process in a user field' },
  { name: 'isRecurringEnabled', title: '"Recurrence" field' },
  { name: 'isPaymentsEnabled', title: 'Online payment' },
  { name: 'isCountersEnabled', title: 'Counters (notifications and badges)' },
] as const;

export type FlagName = (typeof FLAG_FIELDS)[number]['name'];
export const FLAG_NAMES: readonly FlagName[] = FLAG_FIELDS.map((f) => f.name);
export const FLAG_BIT: Readonly<Record<FlagName, number>> = Object.fromEntries(FLAG_NAMES.map((name, i) => [name, 1 << i])) as Record<FlagName, number>;
export const hasFlag = (flags: number, name: FlagName): boolean => (flags & FLAG_BIT[name]) !== 0;
/** Flags that are on when a type is created without them: only isSetOpenPermissions. */
export const DEFAULT_FLAGS = FLAG_BIT.isSetOpenPermissions;

export const LINKED_USER_FIELDS = ['CALENDAR_EVENT|UF_CRM_CAL_EVENT', 'TASKS_TASK|UF_CRM_TASK', 'TASKS_TASK_TEMPLATE|UF_CRM_TASK'] as const;
export type LinkedUserField = (typeof LINKED_USER_FIELDS)[number];
export const LINKED_USER_FIELD_BIT: Readonly<Record<LinkedUserField, number>> = Object.fromEntries(LINKED_USER_FIELDS.map((name, i) => [name, 1 << i])) as Record<LinkedUserField, number>;

export const TYPE_FIELDS: readonly FieldSpec[] = [
  field('id', 'integer', 'ID', { isReadOnly: true }),
  field('entityTypeId', 'integer', 'Entity type ID', { isImmutable: true }),
  field('title', 'string', 'Smart process name', { isRequired: true }),
  field('code', 'string', 'Symbolic code of the type', { isNullable: true }),
  field('createdBy', 'user', 'Created by', { isReadOnly: true }),
  field('createdTime', 'datetime', 'Created on', { isReadOnly: true }),
  field('updatedBy', 'user', 'Modified by', { isReadOnly: true }),
  field('updatedTime', 'datetime', 'Modified on', { isReadOnly: true }),
  field('customSectionId', 'integer', 'Digital workplace ID (set on create only)', { isImmutable: true, isNullable: true }),
  ...FLAG_FIELDS.map((f) => field(f.name, 'boolean', f.title)),
  field('isInitialized', 'boolean', 'The type exists and is ready', { isReadOnly: true }),
  field('relations', 'object', 'Relations with other CRM entities: {parent: Relation[], child: Relation[]}', { inList: false }),
  field('linkedUserFields', 'object', 'User fields in which the smart process is displayed', { inList: false }),
];

/** The table the list/search parser takes (list-query.ts). */
export const TYPE_FIELD_TABLE: FieldTable = fieldTable(TYPE_FIELDS);
export const LIST_FIELD_NAMES: readonly string[] = TYPE_FIELD_TABLE.listFieldNames;

/** Read-only fields a client may echo back from a GET; a PATCH ignores them whatever their values. */
export const ECHOED_READ_ONLY_FIELDS = ['id', 'createdBy', 'createdTime', 'updatedBy', 'updatedTime', 'isInitialized', 'customSectionId'] as const;

export const TITLE_MAX_LENGTH = 255;
export const CODE_MAX_LENGTH = 255;

/** The `/v1/smart-processes/fields` answer; `readOnly` names fields the portal reports but cannot set (a bitrix24 portal's unwritable flags). */
export function describeFields(readOnly: readonly string[] = []) {
  const fields: Record<string, { type: FieldType; isRequired: boolean; isReadOnly: boolean; isImmutable: boolean; isMultiple: boolean; isDynamic: boolean; title: string }> = {};
  for (const f of TYPE_FIELDS) {
    fields[f.name] = { type: f.type, isRequired: f.isRequired, isReadOnly: f.isReadOnly || readOnly.includes(f.name), isImmutable: f.isImmutable, isMultiple: f.isMultiple, isDynamic: false, title: f.title };
  }
  return { fields };
}
