/** Native crm.type.* shapes for the mapping tests: the docs' own examples, and /v1 answers turned into native ones. */
import { parseTime, formatTime } from '../../../src/domain/time.js';
import { FLAG_NAMES, LINKED_USER_FIELDS } from '../../../src/domain/smart-process-type/fields.js';
import type { NativeType } from '../../../src/portals/bitrix24/native-mapping.js';

/** `result.type` of the crm.type.get example (api-reference/crm/universal/user-defined-object-types/crm-type-get.md). */
export const DOCS_GET_CARD: NativeType = {
  id: 16,
  title: 'SPA',
  code: '',
  createdBy: 1,
  entityTypeId: 2024,
  customSectionId: null,
  isCategoriesEnabled: 'Y',
  isStagesEnabled: 'Y',
  isBeginCloseDatesEnabled: 'Y',
  isClientEnabled: 'Y',
  isUseInUserfieldEnabled: 'Y',
  isLinkWithProductsEnabled: 'Y',
  isMycompanyEnabled: 'Y',
  isDocumentsEnabled: 'Y',
  isSourceEnabled: 'Y',
  isObserversEnabled: 'Y',
  isRecyclebinEnabled: 'Y',
  isAutomationEnabled: 'Y',
  isBizProcEnabled: 'Y',
  isSetOpenPermissions: 'Y',
  isPaymentsEnabled: 'N',
  isCountersEnabled: 'N',
  createdTime: '2024-07-08T14:46:54+02:00',
  updatedTime: '2024-07-08T14:46:54+02:00',
  updatedBy: 1,
  relations: {
    parent: [
      { entityTypeId: 3, isChildrenListEnabled: 'Y', isPredefined: 'Y' },
      { entityTypeId: 4, isChildrenListEnabled: 'Y', isPredefined: 'Y' },
      { entityTypeId: 1, isChildrenListEnabled: 'Y', isPredefined: 'N' },
      { entityTypeId: 2, isChildrenListEnabled: 'Y', isPredefined: 'N' },
      { entityTypeId: 31, isChildrenListEnabled: 'Y', isPredefined: 'N' },
    ],
    child: [
      { entityTypeId: 3, isChildrenListEnabled: 'Y', isPredefined: 'N' },
      { entityTypeId: 4, isChildrenListEnabled: 'N', isPredefined: 'N' },
    ],
  },
  linkedUserFields: {
    'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'Y',
    'TASKS_TASK|UF_CRM_TASK': 'Y',
    'TASKS_TASK_TEMPLATE|UF_CRM_TASK': 'N',
  },
  customSections: [],
};

/** One item of the crm.type.list example (crm-type-list.md). */
export const DOCS_LIST_ITEM: NativeType = {
  id: 37,
  title: 'Smart Process #20',
  code: '',
  createdBy: 1,
  entityTypeId: 1256,
  customSectionId: null,
  isCategoriesEnabled: 'Y',
  isStagesEnabled: 'N',
  isBeginCloseDatesEnabled: 'Y',
  isClientEnabled: 'Y',
  isUseInUserfieldEnabled: 'Y',
  isLinkWithProductsEnabled: 'N',
  isMycompanyEnabled: 'Y',
  isDocumentsEnabled: 'Y',
  isSourceEnabled: 'Y',
  isObserversEnabled: 'Y',
  isRecyclebinEnabled: 'Y',
  isAutomationEnabled: 'Y',
  isBizProcEnabled: 'N',
  isSetOpenPermissions: 'N',
  isPaymentsEnabled: 'N',
  isCountersEnabled: 'N',
  createdTime: '2024-07-08T17:24:55+02:00',
  updatedTime: '2024-07-08T17:24:55+02:00',
  updatedBy: 1,
};

const NATIVE_FLAGS = FLAG_NAMES.filter((name) => name !== 'isRecurringEnabled');

/**
 * A /v1 list item or card (parsed JSON of a local portal's answer, in `v1TimeZone`) as a
 * real portal would send it: Y/N flags, "" for no code, times in the portal server's own
 * zone `nativeTimeZone`, relations and linkedUserFields with Y/N, customSections: [], no
 * isInitialized and no isRecurringEnabled (the native type has neither).
 */
export function nativeFromV1(item: Record<string, any>, v1TimeZone: string, nativeTimeZone: string): NativeType {
  const time = (value: string) => formatTime(parseTime(value, v1TimeZone)!, nativeTimeZone);
  const native: NativeType = {
    id: item.id,
    title: item.title,
    code: item.code ?? '',
    createdBy: item.createdBy,
    entityTypeId: item.entityTypeId,
    customSectionId: item.customSectionId,
  };
  for (const name of NATIVE_FLAGS) native[name] = item[name] ? 'Y' : 'N';
  native.createdTime = time(item.createdTime);
  native.updatedTime = time(item.updatedTime);
  native.updatedBy = item.updatedBy;
  if (item.relations) {
    const side = (entries: any[]) => entries.map((r) => ({ entityTypeId: r.entityTypeId, isChildrenListEnabled: r.isChildrenListEnabled ? 'Y' : 'N', isPredefined: r.isPredefined ? 'Y' : 'N' }));
    native.relations = { parent: side(item.relations.parent), child: side(item.relations.child) };
  }
  if (item.linkedUserFields) native.linkedUserFields = Object.fromEntries(LINKED_USER_FIELDS.map((k) => [k, item.linkedUserFields[k] ? 'Y' : 'N']));
  if (item.relations || item.linkedUserFields) native.customSections = [];
  return native;
}
