import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createTestApp, json, type TestApp } from '../helpers/app.js';
import { expectError } from '../helpers/expect.js';
import { loadConfig } from '../../src/config.js';

/**
 * When the event loop is saturated the server sheds load with 503 SERVICE_UNAVAILABLE
 * and retryAfter (issue 7, defect 9; @fastify/under-pressure), and serves again once
 * the loop recovers. /health keeps answering: a saturated server is alive.
 */

/** Keeps the event loop busy: `busyMs` of synchronous work every `everyMs`. */
function saturate(busyMs: number, everyMs: number): () => void {
  const timer = setInterval(() => {
    const until = Date.now() + busyMs;
    while (Date.now() < until) {
      /* busy */
    }
  }, everyMs);
  return () => clearInterval(timer);
}

describe('load shedding when the event loop is saturated', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp({ config: { maxEventLoopDelayMs: 40, pressureSampleIntervalMs: 50 } });
  });
  after(() => t.close());

  it('answers 503 SERVICE_UNAVAILABLE with retryAfter in the envelope, keeps /health up, and serves again after', async () => {
    const stop = saturate(150, 155);
    let shed;
    try {
      // Polled: the loop's delay is sampled, and other test files share this machine's cores.
      for (let i = 0; i < 30; i++) {
        await sleep(100);
        shed = await t.call('GET', '/v1/smart-processes');
        if (shed.statusCode === 503) break;
      }
      const health = await t.app.inject({ method: 'GET', url: '/health' });
      assert.equal(health.statusCode, 200, 'a saturated server is still alive');
    } finally {
      stop();
    }
    assert.ok(shed, 'a request was made');
    const error = expectError(shed, 503, 'SERVICE_UNAVAILABLE');
    assert.ok(error.retryAfter && error.retryAfter >= 1);
    assert.equal(shed.headers['retry-after'], String(error.retryAfter));
    // Served again once the loop recovers (polled: other test files share this machine's cores).
    let again = await t.call('GET', '/v1/smart-processes');
    for (let i = 0; i < 50 && again.statusCode === 503; i++) {
      await sleep(100);
      again = await t.call('GET', '/v1/smart-processes');
    }
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(json(again).success, true);
  });
});

describe('pressure thresholds are settings', () => {
  it('event-loop delay 1000 ms by default; utilization, heap and RSS off unless set; 0 turns a check off', () => {
    const defaults = loadConfig({});
    assert.equal(defaults.maxEventLoopDelayMs, 1000);
    assert.equal(defaults.maxEventLoopUtilization, 0);
    const set = loadConfig({ MAX_EVENT_LOOP_DELAY_MS: '0', MAX_EVENT_LOOP_UTILIZATION: '0.95' });
    assert.equal(set.maxEventLoopDelayMs, 0);
    assert.equal(set.maxEventLoopUtilization, 0.95);
    assert.throws(() => loadConfig({ MAX_EVENT_LOOP_UTILIZATION: '2' }), /MAX_EVENT_LOOP_UTILIZATION/);
  });
});
