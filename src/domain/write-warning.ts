/**
 * What a write that happened did not do as asked (beyond the hosted API; bitrix24 portals,
 * docs/bitrix24.md "What a write answers"). A write that changed the portal is never
 * answered with a 4xx: it answers its 2xx with the card as it now is and these, in
 * `warnings` beside `data`.
 * - `notApplied`: the request asked for it, the card read back does not show it
 *   (`requested` / `actual` give both values);
 * - `unverified`: the card could not be read back; what the write's own answer showed is
 *   answered instead (it may not reflect relations).
 */
export interface WriteWarning {
  kind: 'notApplied' | 'unverified';
  /** Where in the request, like error details: body.relations.parent[1].entityTypeId, body.customSectionId; `body` for the whole card. */
  location: string;
  message: string;
  fix?: string;
  requested?: unknown;
  actual?: unknown;
}
