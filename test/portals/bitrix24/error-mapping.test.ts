import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../../../src/errors.js';
import { bitrix24ErrorToApiError, mapBitrix24Failure, oauthErrorToApiError } from '../../../src/portals/bitrix24/error-mapping.js';
import { NeedsAuthorizationError, OAuthError } from '../../../src/portals/bitrix24/oauth.js';
import { Bitrix24Error, type Bitrix24ErrorInit } from '../../../src/portals/bitrix24/rest-client.js';

const err = (init: Partial<Bitrix24ErrorInit> & Pick<Bitrix24ErrorInit, 'code' | 'status'>) => new Bitrix24Error({ description: 'описание ошибки', method: 'crm.type.get', ...init });

/** bitrix24.md § "System errors and what /v1 answers", row by row. */
const TABLE: { native: Bitrix24Error; status: number; code: string }[] = [
  { native: err({ code: 0, status: 400 }), status: 404, code: 'SMART_PROCESS_NOT_FOUND' },
  { native: err({ code: 0, status: 400, method: 'crm.type.update' }), status: 404, code: 'SMART_PROCESS_NOT_FOUND' },
  { native: err({ code: 0, status: 400, method: 'crm.type.delete' }), status: 404, code: 'SMART_PROCESS_NOT_FOUND' },
  { native: err({ code: 0, status: 400, method: 'crm.type.add' }), status: 422, code: 'BITRIX_ERROR' },
  { native: err({ code: 'INVALID_ARG_VALUE', status: 400, method: 'crm.type.add' }), status: 422, code: 'BITRIX_ERROR' },
  { native: err({ code: 'BX_ERROR', status: 400, method: 'crm.type.delete' }), status: 422, code: 'BITRIX_ERROR' },
  { native: err({ code: 'BX_EMPTY_REQUIRED', status: 400, method: 'crm.type.add' }), status: 422, code: 'BITRIX_ERROR' },
  { native: err({ code: 'CREATE_DYNAMIC_TYPE_RESTRICTED', status: 400, method: 'crm.type.add' }), status: 422, code: 'BITRIX_ERROR' },
  { native: err({ code: 'UPDATE_DYNAMIC_TYPE_RESTRICTED', status: 400, method: 'crm.type.update' }), status: 422, code: 'BITRIX_ERROR' },
  { native: err({ code: '100', status: 400, method: 'crm.type.add' }), status: 422, code: 'BITRIX_ERROR' },
  { native: err({ code: 'ACCESS_DENIED', status: 400 }), status: 403, code: 'BITRIX_ACCESS_DENIED' },
  { native: err({ code: 'insufficient_scope', status: 403 }), status: 403, code: 'BITRIX_ACCESS_DENIED' },
  { native: err({ code: 'INVALID_CREDENTIALS', status: 403 }), status: 403, code: 'BITRIX_ACCESS_DENIED' },
  { native: err({ code: 'user_access_error', status: 403 }), status: 403, code: 'BITRIX_ACCESS_DENIED' },
  { native: err({ code: 'allowed_only_intranet_user', status: 403 }), status: 403, code: 'BITRIX_ACCESS_DENIED' },
  { native: err({ code: 'expired_token', status: 401 }), status: 401, code: 'TOKEN_EXPIRED' },
  { native: err({ code: 'NO_AUTH_FOUND', status: 401 }), status: 401, code: 'TOKEN_MISSING' },
  { native: err({ code: 'invalid_token', status: 401 }), status: 401, code: 'TOKEN_MISSING' },
  { native: err({ code: 'QUERY_LIMIT_EXCEEDED', status: 503 }), status: 504, code: 'QUEUE_TIMEOUT' },
  { native: err({ code: 'OPERATION_TIME_LIMIT', status: 429 }), status: 504, code: 'QUEUE_TIMEOUT' },
  { native: err({ code: 'OVERLOAD_LIMIT', status: 503 }), status: 502, code: 'BITRIX_UNAVAILABLE' },
  { native: err({ code: 'INTERNAL_SERVER_ERROR', status: 500 }), status: 502, code: 'BITRIX_UNAVAILABLE' },
  { native: err({ code: 'ERROR_CORE', status: 500 }), status: 502, code: 'BITRIX_UNAVAILABLE' },
  { native: err({ code: 'NETWORK_ERROR', status: 0, kind: 'network' }), status: 502, code: 'BITRIX_UNAVAILABLE' },
  { native: err({ code: 'TIMEOUT', status: 0, kind: 'timeout' }), status: 502, code: 'BITRIX_UNAVAILABLE' },
  { native: err({ code: 'ANSWER_LOST', status: 0, kind: 'answer_lost' }), status: 502, code: 'BITRIX_UNAVAILABLE' },
];

describe('Bitrix24 errors -> /v1 answers (bitrix24.md table)', () => {
  for (const row of TABLE) {
    it(`${row.native.method} ${String(row.native.code)} (HTTP ${row.native.status}) -> ${row.status} ${row.code}`, () => {
      const api = bitrix24ErrorToApiError(row.native, { entityTypeId: 1032 });
      assert.ok(api instanceof ApiError);
      assert.equal(api.code, row.code);
      assert.equal(api.status, row.status);
      assert.ok(api.message.includes(`answered ${String(row.native.code)}`), `native code in: ${api.message}`);
      assert.ok(api.message.includes('описание ошибки'), 'the (localized) description is passed on');
      assert.ok(api.hint && api.hint.length > 10, 'a hint');
      if (row.code === 'QUEUE_TIMEOUT') assert.ok(Number.isInteger(api.retryAfter) && api.retryAfter! >= 1, 'retryAfter in whole seconds');
      else assert.equal(api.retryAfter, undefined);
    });
  }

  it('404 names the entityTypeId', () => {
    assert.match(bitrix24ErrorToApiError(err({ code: 0, status: 400 }), { entityTypeId: 1032 }).message, /entityTypeId=1032 not found/);
  });

  it('the hint of an access refusal follows the code, never the description', () => {
    assert.match(bitrix24ErrorToApiError(err({ code: 'insufficient_scope', status: 403, description: 'ACCESS_DENIED' })).hint!, /crm scope/);
    assert.match(bitrix24ErrorToApiError(err({ code: 'ACCESS_DENIED', status: 400, description: 'insufficient_scope' })).hint!, /CRM administrator/);
  });

  it('OPERATION_TIME_LIMIT: retryAfter runs to operating_reset_at when the answer had one, else 60 s', () => {
    const now = () => 1_724_917_400_000;
    const held = err({ code: 'OPERATION_TIME_LIMIT', status: 429, time: { operating_reset_at: 1_724_917_459 } });
    assert.equal(bitrix24ErrorToApiError(held, { now }).retryAfter, 59);
    assert.equal(bitrix24ErrorToApiError(err({ code: 'OPERATION_TIME_LIMIT', status: 429 }), { now }).retryAfter, 60);
    assert.equal(bitrix24ErrorToApiError(err({ code: 'QUERY_LIMIT_EXCEEDED', status: 503, retryAfterMs: 2500 })).retryAfter, 3);
  });

  it('a lost answer on a write says that the write may have happened', () => {
    const lost = err({ code: 'ANSWER_LOST', status: 0, kind: 'answer_lost', method: 'crm.type.add' });
    assert.match(bitrix24ErrorToApiError(lost, { write: true }).message, /may or may not have happened/);
    assert.doesNotMatch(bitrix24ErrorToApiError(lost).message, /may or may not/);
  });

  it('OAuth: invalid_grant -> 401 TOKEN_MISSING with a hint to authorize again; other refresh failures -> 401 TOKEN_EXPIRED', () => {
    const missing = oauthErrorToApiError(new NeedsAuthorizationError('invalid_grant', 'Invalid grant', 400));
    assert.equal(missing.code, 'TOKEN_MISSING');
    assert.equal(missing.status, 401);
    assert.match(missing.message, /invalid_grant/);
    assert.match(missing.hint!, /[Aa]uthorize/);
    for (const kind of ['rejected', 'unavailable'] as const) {
      const expired = oauthErrorToApiError(new OAuthError(kind, kind === 'rejected' ? 'invalid_client' : 'TOKEN_SERVER_UNAVAILABLE', 'x'));
      assert.equal(expired.code, 'TOKEN_EXPIRED');
      assert.ok(expired.hint);
    }
  });

  it('mapBitrix24Failure: maps ours, passes ApiError and anything else through', () => {
    const queue = new ApiError('QUEUE_TIMEOUT', 'waited', { retryAfter: 3 });
    assert.equal(mapBitrix24Failure(queue), queue);
    const bug = new TypeError('bug');
    assert.equal(mapBitrix24Failure(bug), bug);
    assert.equal((mapBitrix24Failure(err({ code: 0, status: 400 })) as ApiError).code, 'SMART_PROCESS_NOT_FOUND');
    assert.equal((mapBitrix24Failure(new NeedsAuthorizationError()) as ApiError).code, 'TOKEN_MISSING');
  });
});
