import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openTestStore } from '../helpers/test-store.js';

describe('logs', () => {
  it('a 500 is logged with the request id that the client got', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const testStore = openTestStore();
    const app = await buildApp({ config: { ...loadConfig({}), redisUrl: null, maxEventLoopDelayMs: 0 }, store: testStore.store, logger: { level: 'error', stream } as never });
    try {
      const { keys, portals } = app.services;
      const portal = await portals.create({ name: 'Logs' });
      const { secret } = await keys.create({ kind: 'personal', portalId: portal.id, scopes: ['crm'], requestsPerSecond: null }, null);
      const db = app.services.store.db as unknown as { selectFrom: unknown };
      db.selectFrom = () => {
        throw new Error('boom in the store');
      };
      const res = await app.inject({ method: 'GET', url: '/v1/smart-processes', headers: { 'x-api-key': secret, 'x-request-id': 'trace-500' } });
      assert.equal(res.statusCode, 500);
      const logged = lines.map((l) => JSON.parse(l)).find((entry) => entry.level === 50);
      assert.ok(logged, 'an error line was logged');
      assert.equal(logged.requestId, 'trace-500');
      assert.match(logged.err.message, /boom in the store/);
      assert.doesNotMatch(res.body, /boom/);
    } finally {
      await app.close();
      await testStore.drop();
    }
  });
});
