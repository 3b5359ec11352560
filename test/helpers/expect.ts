import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';

/** Asserts an error envelope with this status and code; returns the error object. */
export function expectError(res: LightMyRequestResponse, status: number, code: string) {
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode}: ${res.body}`);
  const body = res.json();
  assert.equal(body.success, false);
  assert.equal(body.error.code, code, `expected ${code}, got ${body.error.code}: ${body.error.message}`);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.requestId, 'error carries requestId');
  assert.equal(res.headers['x-request-id'], body.error.requestId);
  assert.doesNotMatch(res.body, /at .*\.(ts|js):\d+|SELECT |INSERT |UPDATE .* SET|sqlite|postgres/i, 'no stack trace or SQL in an answer');
  return body.error as { code: string; message: string; hint?: string; details?: { location: string; message: string; fix?: string }[]; retryAfter?: number };
}

/** Asserts VALIDATION_ERROR (400) whose details name these locations. */
export function expectValidationError(res: LightMyRequestResponse, ...locations: string[]) {
  const error = expectError(res, 400, 'VALIDATION_ERROR');
  const found = (error.details ?? []).map((d) => d.location);
  for (const location of locations) assert.ok(found.includes(location), `details should name ${location}; got ${JSON.stringify(found)}`);
  return error;
}
