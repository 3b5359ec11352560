import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { banner, startServer } from '../../src/server.js';
import { TEST_DIALECT } from '../helpers/test-store.js';

const run = TEST_DIALECT === 'sqlite' ? {} : { skip: 'first start is exercised on the SQLite default; the PostgreSQL pass covers the store itself' };

describe('the start banner', run, () => {
  it("states the personal key's real scopes, access mode, user and rate limit, and how to change the limit", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-banner-'));
    // Load shedding off: a busy test machine would answer /v1/me 503.
    const config = loadConfig({ DATA_DIR: dataDir, PORT: '0', MAX_EVENT_LOOP_DELAY_MS: '0' });
    const server = await startServer(config, { logger: false });
    try {
      const text = await banner(server, config);
      const me = (await (await fetch(`${server.url}/v1/me`, { headers: { 'X-Api-Key': server.bootstrap!.personalKey } })).json()) as { data: { keyId: string; scopes: string[]; accessMode: string; rateLimit: { requestsPerSecond: number | null }; currentUser: { bitrixUserId: number } } };
      const line = text.split('\n').find((l) => l.startsWith('Personal key'));
      assert.ok(line, text);
      assert.ok(line.includes(`scopes ${me.data.scopes.join(', ')}`), `${line}\nvs /v1/me scopes ${me.data.scopes}`);
      assert.ok(line.includes(me.data.accessMode), line);
      assert.ok(line.includes(`user ${me.data.currentUser.bitrixUserId}`), line);
      assert.equal(me.data.rateLimit.requestsPerSecond, 10);
      assert.ok(line.includes('10 requests per second'), line);
      assert.ok(line.endsWith(server.bootstrap!.personalKey), line);
      assert.match(text, new RegExp(`keys update ${me.data.keyId} --rps`), 'says how to change the limit');
    } finally {
      await server.app.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
