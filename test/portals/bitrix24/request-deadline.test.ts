/**
 * The queue bound (BITRIX24_QUEUE_TIMEOUT_MS) holds per client request, across every
 * native call the request makes, not per call (docs/bitrix24.md "The request budget").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestApp } from '../../helpers/app.js';
import { expectError } from '../../helpers/expect.js';

describe('one deadline per client request', () => {
  it('a PATCH whose native calls together would wait longer than the queue bound answers 504 QUEUE_TIMEOUT with retryAfter before its write, though each call alone would fit', async () => {
    // 1 request a second, capacity 1 (burst 2 - headroom 1): the calls of one request go at 0, 1, 2, 3 s.
    const t = await createTestApp({ portalKind: 'bitrix24', limits: { burst: 2, perSecond: 1 }, config: { bitrix24QueueTimeoutMs: 2500, bitrix24CacheTtlMs: 0, maxEventLoopDelayMs: 0 } });
    try {
      t.fake!.state.seedType({ title: 'A', entityTypeId: 1100 });
      await sleep(1200); // the credential check's slot is free again
      const from = t.fake!.calls.length;
      const started = Date.now();
      // existence (getByEntityTypeId), the fresh card (getByEntityTypeId), the type list (relations pre-check), then crm.type.update
      const res = await t.call('PATCH', '/v1/smart-processes/1100', { title: 'A2', relations: { parent: [{ entityTypeId: 2 }] } });
      const elapsed = Date.now() - started;
      const error = expectError(res, 504, 'QUEUE_TIMEOUT');
      assert.ok(error.retryAfter && error.retryAfter >= 1);
      assert.equal(res.headers['retry-after'], String(error.retryAfter));
      const methods = t.fake!.calls.slice(from).map((c) => c.method);
      assert.ok(!methods.includes('crm.type.update'), `no write: ${methods.join(', ')}`);
      assert.equal(t.fake!.state.types()[0].title, 'A');
      assert.ok(elapsed < 2500 + 1000, `answered within the bound (plus call time): ${elapsed} ms`);
    } finally {
      await t.close();
    }
  });
});
