import fs from 'node:fs';
import path from 'node:path';
import type { Store } from '../store/store.js';
import type { KeysService } from './keys-service.js';
import { DEFAULT_PORTAL_SCOPES, MANAGEMENT_SCOPES } from './key-model.js';
import { displayParts, KEY_PREFIX, kindOfKey, newId } from './tokens.js';

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
  if (!(await store.write(({ repos }) => repos.settings.claim('bootstrapped_at', new Date().toISOString())))) return null;
  if ((await store.read.portals.count()) > 0) return null;

  const portal = await store.write(({ repos }) => repos.portals.create({ kind: 'local', name: 'Local portal', timeZone: 'UTC' }));
  let managementKey: string;
  if (options.managementKey) {
    managementKey = options.managementKey;
    const display = displayParts(managementKey, KEY_PREFIX.management);
    const now = Date.now();
    await keys.insertWithSecret(
      {
        id: newId('key'), kind: 'management', portalId: null, name: 'Bootstrap management key', keyPrefix: display.prefix, keySuffix: display.suffix,
        scopes: [...MANAGEMENT_SCOPES], accessMode: 'READWRITE', expiresAt: null, requestsPerSecond: null, allowedIps: [], userId: null,
        createdByKeyId: null, createdAt: now, updatedAt: now,
      },
      managementKey,
    );
  } else {
    managementKey = (await keys.create({ kind: 'management', name: 'Bootstrap management key', scopes: [...MANAGEMENT_SCOPES], requestsPerSecond: null }, null)).secret;
  }
  const personal = await keys.create({ kind: 'personal', portalId: portal.id, name: 'Bootstrap personal key', scopes: DEFAULT_PORTAL_SCOPES, userId: 1 }, null);

  fs.mkdirSync(options.dataDir, { recursive: true });
  const file = path.join(options.dataDir, 'bootstrap-keys.json');
  const content = {
    note: 'Created on first start. Keep this file secret; smartproc stores only hashes of these keys.',
    portal: { id: portal.id, domain: portal.domain, timeZone: portal.timeZone },
    managementKey,
    personalKey: personal.secret,
  };
  fs.writeFileSync(file, JSON.stringify(content, null, 2) + '\n', { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return { file, portalId: portal.id, managementKey, personalKey: personal.secret };
}
