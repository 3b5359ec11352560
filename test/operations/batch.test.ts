import { SYSTEM_AUDIT } from '../../src/domain/audit.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../../src/errors.js';
import { runItemsBatch, type BatchDeps } from '../../src/operations/batch.js';
import type { Portal } from '../../src/portals/portal.js';

/** The batch service with a portal whose writes fail in ways a route's error handler knows (src/http/plugins/errors.ts). */

class StoreDown extends Error {}

function depsWith(create: () => Promise<never>) {
  const bugs: unknown[] = [];
  const portal = { record: { timeZone: 'UTC' }, types: { create } } as unknown as Portal;
  const deps: BatchDeps = {
    principal: {} as BatchDeps['principal'],
    access: {} as BatchDeps['access'],
    typeCall: () => ({ portal, actor: { userId: 1, audit: SYSTEM_AUDIT }, timeZone: 'UTC' }),
    known: (error) => (error instanceof StoreDown ? new ApiError('SERVICE_UNAVAILABLE', 'The store is unavailable; retry shortly', { retryAfter: 1 }) : null),
    logBug: (error) => bugs.push(error),
    requestId: 'req_test',
  };
  return { deps, bugs };
}

describe('batch service: failures that are not ApiErrors', () => {
  it('a store that is unavailable is 503 SERVICE_UNAVAILABLE with retryAfter for the item it hit; the others still run', async () => {
    let calls = 0;
    const { deps, bugs } = depsWith(async () => {
      calls++;
      throw new StoreDown('connection refused');
    });
    const data = JSON.parse(await runItemsBatch('create', [{ title: 'a' }, { title: 'b' }], deps));
    assert.equal(calls, 2);
    assert.deepEqual(data.results[0], { success: false, error: { code: 'SERVICE_UNAVAILABLE', message: 'The store is unavailable; retry shortly', status: 503, retryAfter: 1 } });
    assert.deepEqual(data.summary, { total: 2, succeeded: 0, failed: 2 });
    assert.deepEqual(bugs, []);
  });

  it('any other failure is 500 INTERNAL_ERROR naming the request id, without its text, and is logged', async () => {
    const { deps, bugs } = depsWith(async () => {
      throw new TypeError('secret internals at line 12');
    });
    const text = await runItemsBatch('create', [{ title: 'a' }], deps);
    const data = JSON.parse(text);
    assert.equal(data.results[0].error.code, 'INTERNAL_ERROR');
    assert.equal(data.results[0].error.status, 500);
    assert.match(data.results[0].error.message, /req_test/);
    assert.doesNotMatch(text, /secret internals/);
    assert.equal(bugs.length, 1);
  });
});
