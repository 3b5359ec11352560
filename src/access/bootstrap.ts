import fs from 'node:fs';
import path from 'node:path';
import type { Store } from '../store/store.js';
import type { KeysService } from './keys-service.js';
import { DEFAULT_PORTAL_SCOPES, MANAGEMENT_SCOPES } from './key-model.js';
import { displayParts, hashSecret, KEY_PREFIX, kindOfKey, newId } from './tokens.js';
import type { KeyRecord } from '../domain/records.js';
import { keyChanges, portalChanges, SYSTEM_AUDIT } from '../domain/audit.js';
import { recordPortalChange } from '../portals/portal-audit.js';

export interface BootstrapResult {
  file: string;
  portalId: number;
  managementKey: string;
  personalKey: string;
}

export class BootstrapError extends Error {}

export function checkBootstrapManagementKey(value: string | null): void {
  if (value === null) return;
  if (!value.startsWith(KEY_PREFIX.management) || kindOfKey(value) !== 'management') {
    throw new BootstrapError(
      'SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY must start with vibe_live_ and be followed by at least 32 letters and digits (A-Z a-z 0-9), e.g. vibe_live_ + 40 random characters',
    );
  }
}

/**
 * First start (contract §5): with an empty store, create a local portal, a
 * management key and a personal key, and write both secrets to a file only the
 * owner can read. Runs once per store, also when several instances start together.
 */
export async function bootstrapIfEmpty(store: Store, keys: KeysService, options: { dataDir: string; managementKey: string | null }): Promise<BootstrapResult | null> {
  checkBootstrapManagementKey(options.managementKey);
  const always = async () => true;
  const now = Date.now();
  fs.mkdirSync(options.dataDir, { recursive: true });
  const file = path.join(options.dataDir, 'bootstrap-keys.json');
  // One write: the claim, the portal, both keys, and the file with their secrets. If any
  // part fails nothing is stored and the next start tries again; when it commits, the
  // file is already there.
  const created = await store.write(async ({ repos }) => {
    if (!(await repos.settings.claim('bootstrapped_at', new Date(now).toISOString()))) return null;
    if ((await repos.portals.count()) > 0) return null;
    const portal = await repos.portals.create({ kind: 'local', name: 'Local portal', timeZone: 'UTC' });
    let management: { key: KeyRecord; secret: string };
    if (options.managementKey) {
      const display = displayParts(options.managementKey, KEY_PREFIX.management);
      management = {
        secret: options.managementKey,
        key: {
          id: newId('key'), kind: 'management', portalId: null, name: 'Bootstrap management key', keyPrefix: display.prefix, keySuffix: display.suffix,
          scopes: [...MANAGEMENT_SCOPES], accessMode: 'READWRITE', expiresAt: null, requestsPerSecond: null, allowedIps: [], redirectUris: [], userId: null,
          createdByKeyId: null, createdAt: now, updatedAt: now,
        },
      };
    } else {
      management = await keys.prepare({ kind: 'management', name: 'Bootstrap management key', scopes: [...MANAGEMENT_SCOPES], requestsPerSecond: null }, null, now, always);
    }
    const personal = await keys.prepare({ kind: 'personal', portalId: portal.id, name: 'Bootstrap personal key', scopes: DEFAULT_PORTAL_SCOPES, userId: 1 }, null, now, always);
    await repos.keys.insert(management.key, hashSecret(management.secret));
    await repos.keys.insert(personal.key, hashSecret(personal.secret));
    // The audit trail starts with what the server made by itself.
    await recordPortalChange(repos, SYSTEM_AUDIT, portal.id, 'create', portalChanges(null, portal));
    for (const key of [management.key, personal.key]) {
      await repos.audit.record({ at: now, portalId: key.portalId, resource: 'key', resourceId: key.id, action: 'create', context: SYSTEM_AUDIT, changes: keyChanges(null, key) });
    }
    const content = {
      note: 'Created on first start. Keep this file secret; smartproc stores only hashes of these keys.',
      portal: { id: portal.id, domain: portal.domain, timeZone: portal.timeZone },
      managementKey: management.secret,
      personalKey: personal.secret,
    };
    fs.writeFileSync(file, JSON.stringify(content, null, 2) + '\n', { mode: 0o600 });
    fs.chmodSync(file, 0o600);
    return { portal, managementKey: management.secret, personalKey: personal.secret };
  });
  if (!created) return null;
  const { portal, managementKey } = created;
  const personal = { secret: created.personalKey };
  return { file, portalId: portal.id, managementKey, personalKey: personal.secret };
}
