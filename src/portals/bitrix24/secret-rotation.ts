import type { SecretBox, Store } from '../../store/store.js';
import { seal, unseal } from './portal-credentials.js';

export interface RotationResult {
  /** Sealed values written again with the box's current key. */
  resealed: number;
  /** The current key's fingerprint (not secret). */
  keyId: string;
}

export class RotationError extends Error {}

/**
 * `smartproc secrets rotate`: every sealed value of the store (today: the credentials of
 * bitrix24 portals) is opened with any key of `box` (the current one, or one of
 * SMARTPROC_PREVIOUS_SECRET_KEYS) and sealed again with its current key, all in one
 * transaction: when one value cannot be opened, nothing is changed. Running it again is
 * harmless. Concurrent token refreshes wait for it (the rows are locked on PostgreSQL;
 * SQLite has one writer) and compare the refresh token, not the sealed text, so they are
 * not disturbed by it.
 */
export async function resealAll(store: Store, box: SecretBox): Promise<RotationResult> {
  const resealed = await store.write(async ({ repos }) => {
    const rows = await repos.bitrix24.allSealed();
    const unreadable: number[] = [];
    const next: { portalId: number; sealed: string }[] = [];
    for (const row of rows) {
      try {
        next.push({ portalId: row.portalId, sealed: seal(box, row.portalId, unseal(box, row.portalId, row.sealed)) });
      } catch {
        unreadable.push(row.portalId);
      }
    }
    if (unreadable.length) {
      throw new RotationError(
        `The credentials of portal${unreadable.length > 1 ? 's' : ''} ${unreadable.join(', ')} cannot be opened with SMARTPROC_SECRET_KEY nor with any key of SMARTPROC_PREVIOUS_SECRET_KEYS; nothing was changed. Give the key they were sealed with in SMARTPROC_PREVIOUS_SECRET_KEYS.`,
      );
    }
    for (const row of next) await repos.bitrix24.reseal(row.portalId, row.sealed);
    return next.length;
  });
  return { resealed, keyId: box.keyId };
}
