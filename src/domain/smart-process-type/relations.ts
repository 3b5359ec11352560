import { ApiError, type ErrorDetail } from '../../errors.js';
import { hasFlag } from './fields.js';
import type { Relation } from './schemas.js';

/**
 * Relations of a smart process type (contract §3.1): the base CRM types, the edges that
 * follow from flags (predefined), and which entries a type may be linked to. No I/O.
 */

export const CRM = { Lead: 1, Deal: 2, Contact: 3, Company: 4, Quote: 7, Order: 14, SmartInvoice: 31 } as const;
const CRM_NAMES: Record<number, string> = Object.fromEntries(Object.entries(CRM).map(([name, id]) => [id, name]));
export const BASE_ENTITY_TYPES: ReadonlySet<number> = new Set(Object.values(CRM));
export const crmTypeName = (entityTypeId: number): string => CRM_NAMES[entityTypeId] ?? `smart process ${entityTypeId}`;

export type RelationSide = 'parent' | 'child';

export interface RelationEntry {
  entityTypeId: number;
  isChildrenListEnabled: boolean;
  /** Where the entry stood in the request, for error messages: body.relations.parent[0]. */
  location: string;
}

export interface RelationsChange {
  parent?: RelationEntry[];
  child?: RelationEntry[];
}

/** Edges that exist because of a flag, not because of `relations` (contract §3.1). */
export function predefinedRelations(flags: number): { parent: Relation[]; child: Relation[] } {
  const parent: Relation[] = hasFlag(flags, 'isClientEnabled')
    ? [
        { entityTypeId: CRM.Contact, isChildrenListEnabled: true, isPredefined: true },
        { entityTypeId: CRM.Company, isChildrenListEnabled: true, isPredefined: true },
      ]
    : [];
  const child: Relation[] = hasFlag(flags, 'isPaymentsEnabled') ? [{ entityTypeId: CRM.Order, isChildrenListEnabled: true, isPredefined: true }] : [];
  return { parent, child };
}

/**
 * The eligibility and predefined rules of contract §3.1, checked against the flags
 * the type has after the request. Returns the entries to store (predefined ones
 * removed) or throws 422 BITRIX_ERROR naming every ineligible entry.
 */
export function checkRelations(change: RelationsChange, flags: number, selfEntityTypeId: number, portalTypes: ReadonlySet<number>): RelationsChange {
  const problems: ErrorDetail[] = [];
  const result: RelationsChange = {};
  for (const side of ['parent', 'child'] as const) {
    const entries = change[side];
    if (!entries) continue;
    const kept: RelationEntry[] = [];
    for (const entry of entries) {
      const etid = entry.entityTypeId;
      const predefined =
        side === 'parent' ? hasFlag(flags, 'isClientEnabled') && (etid === CRM.Contact || etid === CRM.Company) : hasFlag(flags, 'isPaymentsEnabled') && etid === CRM.Order;
      if (predefined) continue;
      const problem = ineligibility(side, etid, selfEntityTypeId, portalTypes);
      if (problem) problems.push({ location: `${entry.location}.entityTypeId`, message: problem.message, fix: problem.fix });
      else kept.push(entry);
    }
    result[side] = kept;
  }
  if (problems.length) {
    throw new ApiError('BITRIX_ERROR', problems.length === 1 ? `${problems[0].location}: ${problems[0].message}` : `${problems.length} relation entries cannot be linked`, {
      details: problems,
      hint: 'Bitrix24 would drop these entries silently; smartproc refuses them so that no relation is lost without notice.',
    });
  }
  return result;
}

function ineligibility(side: RelationSide, etid: number, self: number, portalTypes: ReadonlySet<number>): { message: string; fix: string } | null {
  if (etid === self) return { message: 'a type cannot be related to itself', fix: 'remove this entry' };
  if (side === 'parent' && (etid === CRM.Contact || etid === CRM.Company)) {
    return { message: `${crmTypeName(etid)} (${etid}) can be a parent only through isClientEnabled`, fix: 'set isClientEnabled to true instead' };
  }
  if (side === 'child' && etid === CRM.Order) {
    return { message: 'Order (14) can be a child only through isPaymentsEnabled', fix: 'set isPaymentsEnabled to true instead' };
  }
  if (!BASE_ENTITY_TYPES.has(etid) && !portalTypes.has(etid)) {
    return { message: `entityTypeId ${etid} is neither a CRM type that can be linked (1, 2, 3, 4, 7, 14, 31) nor a smart process type of this portal`, fix: 'list the types: GET /v1/smart-processes' };
  }
  return null;
}
