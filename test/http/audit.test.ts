import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { CLI_AUDIT } from '../../src/domain/audit.js';
import { grantAuditScope } from '../../src/store/migrations/004-audit-log.js';
import { createTestApp, json, type TestApp, type TestKey } from '../helpers/app.js';
import { expectError, expectValidationError } from '../helpers/expect.js';
import { openTestStore, TEST_DIALECT, type TestStore } from '../helpers/test-store.js';
import { send } from '../access/access-helpers.js';

/**
 * Issue 11 item 2, the audit trail: every change of a type, key, portal or session is
 * recorded in the store in the change's own transaction, with who made it and from
 * where; never for a refused request; never with a secret. GET /v1/audit (management,
 * vibe:mgmt:audit) and GET /v1/smart-processes/:entityTypeId/history (portal key) read it.
 */

interface Entry {
  id: number;
  at: string;
  portalId: number | null;
  resource: string;
  resourceId: string;
  action: string;
  actor: string;
  keyId: string | null;
  keyKind: string | null;
  userId: number | null;
  requestId: string | null;
  clientIp: string | null;
  changes: Record<string, { before?: unknown; after?: unknown }>;
}

/** The machine is shared: load shedding (503) is not what these specifications are about. */
const NO_SHEDDING = { maxEventLoopDelayMs: 0 };

const ENTRY_FIELDS = ['id', 'at', 'portalId', 'resource', 'resourceId', 'action', 'actor', 'keyId', 'keyKind', 'userId', 'requestId', 'clientIp', 'changes'].sort();

/** A management key that may read the audit trail. */
async function auditKey(t: TestApp): Promise<TestKey> {
  return t.createKey({ kind: 'management', scopes: ['vibe:mgmt:keys', 'vibe:mgmt:portals', 'vibe:mgmt:audit'] });
}

async function audit(t: TestApp, key: TestKey, query = ''): Promise<{ data: Entry[]; meta: { total: number; limit: number; offset: number; hasMore: boolean } }> {
  const res = await send(t, 'GET', `/v1/audit${query}`, { headers: { 'x-api-key': key.secret } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json();
}

/** Every entry in the store, oldest first (straight from the table, as written). */
async function allRows(t: TestApp) {
  return t.app.services.store.db.selectFrom('audit_log').selectAll().orderBy('id').execute();
}

const count = async (t: TestApp) => (await allRows(t)).length;

const requestIdOf = (res: LightMyRequestResponse) => res.headers['x-request-id'] as string;

describe('audit trail: smart process types (local portal)', () => {
  let t: TestApp;
  let reader: TestKey;
  before(async () => {
    t = await createTestApp({ portalKind: 'local', config: NO_SHEDDING });
    reader = await auditKey(t);
  });
  after(() => t.close());

  const typeEntries = async (entityTypeId: number) => (await audit(t, reader, `?portalId=${t.portal.id}&resource=type&resourceId=${entityTypeId}`)).data;

  it('a create, a PATCH and a delete each record one entry: who, from where, and the fields before and after', async () => {
    const created = await t.call('POST', '/v1/smart-processes', { title: 'Audited', entityTypeId: 1100, isCategoriesEnabled: true });
    assert.equal(created.statusCode, 201, created.body);
    let [entry] = await typeEntries(1100);
    assert.deepEqual(Object.keys(entry).sort(), ENTRY_FIELDS);
    assert.equal(entry.resource, 'type');
    assert.equal(entry.resourceId, '1100');
    assert.equal(entry.action, 'create');
    assert.equal(entry.portalId, t.portal.id);
    assert.equal(entry.actor, 'key');
    assert.equal(entry.keyId, t.key.record.id);
    assert.equal(entry.keyKind, 'personal');
    assert.equal(entry.userId, 7);
    assert.equal(entry.requestId, requestIdOf(created));
    assert.equal(entry.clientIp, '127.0.0.1');
    assert.ok(Math.abs(Date.parse(entry.at) - Date.now()) < 60_000, entry.at);
    assert.deepEqual(entry.changes.title, { after: 'Audited' });
    assert.deepEqual(entry.changes.isCategoriesEnabled, { after: true });
    assert.deepEqual(entry.changes['relations.parent'], { after: [] });

    const patched = await t.call('PATCH', '/v1/smart-processes/1100', { title: 'Audited again', isCategoriesEnabled: false, linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': true } }, { 'x-request-id': 'audit-spec-1' });
    assert.equal(patched.statusCode, 200, patched.body);
    [entry] = await typeEntries(1100);
    assert.equal(entry.action, 'update');
    assert.equal(entry.requestId, 'audit-spec-1');
    assert.deepEqual(entry.changes, {
      title: { before: 'Audited', after: 'Audited again' },
      isCategoriesEnabled: { before: true, after: false },
      linkedUserFields: {
        before: { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': false, 'TASKS_TASK|UF_CRM_TASK': false, 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': false },
        after: { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': false, 'TASKS_TASK|UF_CRM_TASK': true, 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': false },
      },
    }, 'only the fields that changed');

    const deleted = await t.call('DELETE', '/v1/smart-processes/1100');
    assert.equal(deleted.statusCode, 204);
    const entries = await typeEntries(1100);
    assert.deepEqual(entries.map((e) => e.action), ['delete', 'update', 'create'], 'newest first');
    assert.deepEqual(entries[0].changes.title, { before: 'Audited again' });
    assert.equal(entries[0].requestId, requestIdOf(deleted));
  });

  it('a PATCH that changes nothing records nothing', async () => {
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Same', entityTypeId: 1102 })).statusCode, 201);
    const before = await count(t);
    assert.equal((await t.call('PATCH', '/v1/smart-processes/1102', { title: 'Same' })).statusCode, 200);
    assert.equal((await t.call('PATCH', '/v1/smart-processes/1102', {})).statusCode, 200);
    assert.equal(await count(t), before);
  });

  it('a relation change records the type and each other type whose card it changed, with their relations before and after', async () => {
    for (const [etid, title] of [[1110, 'Parent'], [1112, 'Child'], [1114, 'Other']] as const) {
      assert.equal((await t.call('POST', '/v1/smart-processes', { title, entityTypeId: etid })).statusCode, 201);
    }
    // 1114 is already a child of 1110: its other edges show in its before and after.
    assert.equal((await t.call('PATCH', '/v1/smart-processes/1114', { relations: { parent: [{ entityTypeId: 1110, isChildrenListEnabled: true }] } })).statusCode, 200);
    const res = await t.call('PATCH', '/v1/smart-processes/1112', { relations: { parent: [{ entityTypeId: 1110, isChildrenListEnabled: false }, { entityTypeId: 2, isChildrenListEnabled: true }] } });
    assert.equal(res.statusCode, 200, res.body);
    const [child] = await typeEntries(1112);
    assert.deepEqual(child.changes, {
      'relations.parent': { before: [], after: [{ entityTypeId: 2, isChildrenListEnabled: true }, { entityTypeId: 1110, isChildrenListEnabled: false }] },
    });
    const [parent] = await typeEntries(1110);
    assert.equal(parent.action, 'update');
    assert.equal(parent.requestId, requestIdOf(res), 'the same request');
    assert.deepEqual(parent.changes, {
      'relations.child': { before: [{ entityTypeId: 1114, isChildrenListEnabled: true }], after: [{ entityTypeId: 1112, isChildrenListEnabled: false }, { entityTypeId: 1114, isChildrenListEnabled: true }] },
    });
    assert.equal((await audit(t, reader, `?resourceId=2&resource=type`)).meta.total, 0, 'a base CRM type (Deal) has no entries');

    // Deleting the parent changes both children's cards.
    const deleted = await t.call('DELETE', '/v1/smart-processes/1110');
    assert.equal(deleted.statusCode, 204);
    for (const etid of [1112, 1114]) {
      const [entry] = await typeEntries(etid);
      assert.equal(entry.requestId, requestIdOf(deleted));
      assert.deepEqual(entry.changes['relations.parent'].after, etid === 1112 ? [{ entityTypeId: 2, isChildrenListEnabled: true }] : []);
    }
  });

  it('no entry for a refused request: access, read-only key, path, existence, body, If-Match, portal rules', async () => {
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Guarded', entityTypeId: 1120, code: 'guarded' })).statusCode, 201);
    const readonly = await t.createKey({ kind: 'personal', portalId: t.portal.id, scopes: ['crm'], accessMode: 'READONLY' });
    const before = await count(t);
    expectError(await t.call('PATCH', '/v1/smart-processes/1120', { title: 'x' }, { 'x-api-key': 'vibe_api_' + 'A'.repeat(40) }), 401, 'INVALID_API_KEY');
    expectError(await t.call('PATCH', '/v1/smart-processes/1120', { title: 'x' }, { 'x-api-key': readonly.secret }), 403, 'WRITE_BLOCKED_READONLY_KEY');
    expectError(await t.call('PATCH', '/v1/smart-processes/1120', { title: 'x' }, { 'x-api-key': t.managementKey.secret }), 403, 'MANAGEMENT_KEY_NO_ENTITY_ACCESS');
    expectError(await t.call('PATCH', '/v1/smart-processes/0', { title: 'x' }), 400, 'VALIDATION_ERROR');
    expectError(await t.call('PATCH', '/v1/smart-processes/1999', { title: 'x' }), 404, 'SMART_PROCESS_NOT_FOUND');
    expectValidationError(await t.call('PATCH', '/v1/smart-processes/1120', { title: 5 }), 'body.title');
    expectError(await t.call('PATCH', '/v1/smart-processes/1120', { title: 'x' }, { 'if-match': '"999"' }), 412, 'PRECONDITION_FAILED');
    expectError(await t.call('PATCH', '/v1/smart-processes/1120', { relations: { parent: [{ entityTypeId: 1120 }] } }), 422, 'BITRIX_ERROR');
    expectError(await t.call('POST', '/v1/smart-processes', { title: 'Twin', code: 'guarded' }), 422, 'BITRIX_ERROR');
    expectError(await t.call('DELETE', '/v1/smart-processes/1120', undefined, { 'if-match': '"999"' }), 412, 'PRECONDITION_FAILED');
    expectError(await t.call('DELETE', '/v1/smart-processes/1998'), 404, 'SMART_PROCESS_NOT_FOUND');
    assert.equal(await count(t), before);
  });

  it('history: the type\'s own entries, newest first, paged with limit/offset and meta', async () => {
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'v0', entityTypeId: 1130 })).statusCode, 201);
    for (let i = 1; i <= 5; i++) assert.equal((await t.call('PATCH', '/v1/smart-processes/1130', { title: `v${i}` })).statusCode, 200);
    assert.equal((await t.call('PATCH', '/v1/smart-processes/1120', { title: 'someone else' })).statusCode, 200);

    const page = async (query: string) => {
      const res = await t.call('GET', `/v1/smart-processes/1130/history${query}`);
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as { data: Entry[]; meta: { total: number; limit: number; offset: number; hasMore: boolean } };
    };
    const all = await page('');
    assert.deepEqual(all.meta, { total: 6, limit: 50, offset: 0, hasMore: false });
    assert.deepEqual(all.data.map((e) => e.changes.title.after), ['v5', 'v4', 'v3', 'v2', 'v1', 'v0']);
    assert.ok(all.data.every((e) => e.resource === 'type' && e.resourceId === '1130' && e.portalId === t.portal.id));

    const first = await page('?limit=2');
    assert.deepEqual(first.meta, { total: 6, limit: 2, offset: 0, hasMore: true });
    assert.deepEqual(first.data.map((e) => e.changes.title.after), ['v5', 'v4']);
    const last = await page('?limit=2&offset=4');
    assert.deepEqual(last.meta, { total: 6, limit: 2, offset: 4, hasMore: false });
    assert.deepEqual(last.data.map((e) => e.action), ['update', 'create']);
    assert.deepEqual((await page('?offset=10')).data, []);

    expectValidationError(await t.call('GET', '/v1/smart-processes/1130/history?limit=0'), 'query.limit');
    expectValidationError(await t.call('GET', '/v1/smart-processes/1130/history?limit=501&offset=-1'), 'query.limit', 'query.offset');
    expectValidationError(await t.call('GET', '/v1/smart-processes/1130/history?portalId=1'), 'query.portalId');
    expectError(await t.call('GET', '/v1/smart-processes/1997/history'), 404, 'SMART_PROCESS_NOT_FOUND');
    expectError(await t.call('GET', '/v1/smart-processes/1997/history?limit=0'), 404, 'SMART_PROCESS_NOT_FOUND');
    expectValidationError(await t.call('GET', '/v1/smart-processes/abc/history'), 'params.entityTypeId');
    expectError(await t.call('GET', '/v1/smart-processes/1130/history', undefined, { 'x-api-key': t.managementKey.secret }), 403, 'MANAGEMENT_KEY_NO_ENTITY_ACCESS');

    // A deleted type keeps its history; a key of another portal sees none of it.
    assert.equal((await t.call('DELETE', '/v1/smart-processes/1130')).statusCode, 204);
    assert.equal((await page('')).meta.total, 7);
    const other = await t.createPortal();
    const stranger = await t.createKey({ kind: 'personal', portalId: other.id, scopes: ['crm'] });
    expectError(await t.call('GET', '/v1/smart-processes/1130/history', undefined, { 'x-api-key': stranger.secret }), 404, 'SMART_PROCESS_NOT_FOUND');
  });

  it('rolled back with its write: a write that fails after its entry leaves neither; an entry that cannot be stored fails its change', async () => {
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Stable', entityTypeId: 1140 })).statusCode, 201);
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Poisoned end', entityTypeId: 1142 })).statusCode, 201);
    assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Neighbour', entityTypeId: 1144 })).statusCode, 201);
    const db = t.app.services.store.db;
    // An edge to 1142 cannot be stored: the PATCH fails after its entry was written (the entry comes before the edges).
    if (TEST_DIALECT === 'sqlite') {
      await sql`create trigger no_edge_to_1142 before insert on type_relations when new.child_entity_type_id = 1142 begin select raise(abort, 'edge refused'); end`.execute(db);
      await sql`create trigger no_boom_entry before insert on audit_log when new.changes like '%boom%' begin select raise(abort, 'entry refused'); end`.execute(db);
    } else {
      await sql`create function refuse_edge() returns trigger language plpgsql as $$ begin if new.child_entity_type_id = 1142 then raise exception 'edge refused'; end if; return new; end $$`.execute(db);
      await sql`create trigger no_edge_to_1142 before insert on type_relations for each row execute function refuse_edge()`.execute(db);
      await sql`create function refuse_entry() returns trigger language plpgsql as $$ begin if new.changes like '%boom%' then raise exception 'entry refused'; end if; return new; end $$`.execute(db);
      await sql`create trigger no_boom_entry before insert on audit_log for each row execute function refuse_entry()`.execute(db);
    }
    try {
      const before = await count(t);
      // Sent together: on SQLite they share one group-commit batch, and only the failing one is rolled back.
      const [good, bad, neighbour] = await Promise.all([
        t.call('PATCH', '/v1/smart-processes/1144', { title: 'Neighbour changed' }),
        t.call('PATCH', '/v1/smart-processes/1140', { title: 'Stable changed', relations: { child: [{ entityTypeId: 1142 }] } }),
        t.call('PATCH', '/v1/smart-processes/1142', { title: 'Poisoned end changed' }),
      ]);
      assert.equal(good.statusCode, 200, good.body);
      assert.equal(neighbour.statusCode, 200, neighbour.body);
      assert.equal(bad.statusCode, 500, bad.body);
      const rows = (await allRows(t)).slice(before);
      assert.deepEqual(rows.map((r) => r.resource_id).sort(), ['1142', '1144'], 'the failed write left no entry');
      assert.equal(json(await t.call('GET', '/v1/smart-processes/1140')).data.title, 'Stable', 'nor its change');

      // The change whose entry cannot be stored is not stored either.
      const refused = await t.call('PATCH', '/v1/smart-processes/1140', { title: 'boom' });
      assert.equal(refused.statusCode, 500, refused.body);
      assert.equal(json(await t.call('GET', '/v1/smart-processes/1140')).data.title, 'Stable');
      assert.equal(await count(t), before + 2);
    } finally {
      await sql`drop trigger no_edge_to_1142${sql.raw(TEST_DIALECT === 'postgres' ? ' on type_relations' : '')}`.execute(db);
      await sql`drop trigger no_boom_entry${sql.raw(TEST_DIALECT === 'postgres' ? ' on audit_log' : '')}`.execute(db);
    }
  });
});

describe('audit trail: keys, portals and sessions', () => {
  let t: TestApp;
  let reader: TestKey;
  const secrets: string[] = [];
  before(async () => {
    t = await createTestApp({ portalKind: 'local', config: NO_SHEDDING });
    reader = await auditKey(t);
    secrets.push(t.key.secret, t.managementKey.secret, reader.secret);
  });
  after(() => t.close());

  const asReader = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) => send(t, method, url, { body, headers: { 'x-api-key': reader.secret }, remoteAddress: '203.0.113.9' });
  const latest = async (query: string) => (await audit(t, reader, query)).data[0];

  it('keys: create, update, rotate and delete each record an entry with the management key that made it; never a secret', async () => {
    const created = await asReader('POST', '/v1/keys', { kind: 'personal', portalId: t.portal.id, scopes: ['crm'], name: 'Audited key', userId: 3 });
    assert.equal(created.statusCode, 201, created.body);
    const key = json(created).data;
    secrets.push(key.secret);
    let entry = await latest(`?resource=key&resourceId=${key.id}`);
    assert.equal(entry.action, 'create');
    assert.equal(entry.portalId, t.portal.id);
    assert.equal(entry.actor, 'key');
    assert.equal(entry.keyId, reader.record.id);
    assert.equal(entry.keyKind, 'management');
    assert.equal(entry.userId, null);
    assert.equal(entry.clientIp, '203.0.113.9');
    assert.equal(entry.requestId, requestIdOf(created));
    assert.deepEqual(entry.changes.name, { after: 'Audited key' });
    assert.deepEqual(entry.changes.scopes, { after: ['crm'] });

    assert.equal((await asReader('PATCH', `/v1/keys/${key.id}`, { name: 'Renamed', accessMode: 'READONLY', expiresAt: '2099-01-01T00:00:00Z' })).statusCode, 200);
    entry = await latest(`?resource=key&resourceId=${key.id}`);
    assert.equal(entry.action, 'update');
    assert.deepEqual(entry.changes, {
      name: { before: 'Audited key', after: 'Renamed' },
      accessMode: { before: 'READWRITE', after: 'READONLY' },
      expiresAt: { before: null, after: '2099-01-01T00:00:00Z' },
    });

    const rotated = await asReader('POST', `/v1/keys/${key.id}/rotate`, { gracePeriodSeconds: 60 });
    assert.equal(rotated.statusCode, 200, rotated.body);
    secrets.push(json(rotated).data.secret);
    entry = await latest(`?resource=key&resourceId=${key.id}`);
    assert.equal(entry.action, 'rotate');
    assert.deepEqual(entry.changes.secret, { before: '[redacted]', after: '[redacted]' });
    assert.equal(entry.changes.previousSecretExpiresAt.after, json(rotated).data.previousSecretExpiresAt);

    assert.equal((await asReader('DELETE', `/v1/keys/${key.id}`)).statusCode, 204);
    entry = await latest(`?resource=key&resourceId=${key.id}`);
    assert.equal(entry.action, 'delete');
    assert.deepEqual(entry.changes.name, { before: 'Renamed' });
    assert.deepEqual((await audit(t, reader, `?resource=key&resourceId=${key.id}`)).data.map((e) => e.action), ['delete', 'rotate', 'update', 'create']);
  });

  it('no entry for a refused key change: scope, escalation, validation, unknown key', async () => {
    const before = await count(t);
    const portalOnly = await t.createKey({ kind: 'management', scopes: ['vibe:mgmt:portals'] });
    const afterSetup = await count(t);
    assert.equal(afterSetup, before + 1, 'the setup key itself is an entry (actor cli)');
    expectError(await send(t, 'POST', '/v1/keys', { body: { kind: 'personal', portalId: t.portal.id }, headers: { 'x-api-key': portalOnly.secret } }), 403, 'MANAGEMENT_SCOPE_REQUIRED');
    const keysOnly = await t.createKey({ kind: 'management', scopes: ['vibe:mgmt:keys'] });
    const setup = await count(t);
    expectError(await send(t, 'POST', '/v1/keys', { body: { kind: 'management', scopes: ['vibe:mgmt:audit'] }, headers: { 'x-api-key': keysOnly.secret } }), 403, 'MANAGEMENT_SCOPE_REQUIRED');
    expectError(await send(t, 'POST', `/v1/keys/${reader.record.id}/rotate`, { body: {}, headers: { 'x-api-key': keysOnly.secret } }), 403, 'MANAGEMENT_SCOPE_REQUIRED');
    expectValidationError(await asReader('POST', '/v1/keys', { kind: 'personal' }), 'body.portalId');
    expectError(await asReader('PATCH', '/v1/keys/key_nope', { name: 'x' }), 404, 'ENTITY_NOT_FOUND');
    expectError(await asReader('DELETE', '/v1/keys/key_nope'), 404, 'ENTITY_NOT_FOUND');
    assert.equal(await count(t), setup);
  });

  it('portals: create, update and a forced delete (which counts the keys and types it took) each record an entry', async () => {
    const created = await asReader('POST', '/v1/portals', { name: 'Audited portal', timeZone: 'Europe/Moscow' });
    assert.equal(created.statusCode, 201);
    const portal = json(created).data;
    let entry = await latest(`?resource=portal&resourceId=${portal.id}`);
    assert.equal(entry.action, 'create');
    assert.equal(entry.portalId, portal.id);
    assert.deepEqual(entry.changes, { kind: { after: 'local' }, name: { after: 'Audited portal' }, domain: { after: portal.domain }, timeZone: { after: 'Europe/Moscow' } });

    assert.equal((await asReader('PATCH', `/v1/portals/${portal.id}`, { timeZone: 'UTC' })).statusCode, 200);
    entry = await latest(`?resource=portal&resourceId=${portal.id}`);
    assert.deepEqual(entry.changes, { timeZone: { before: 'Europe/Moscow', after: 'UTC' } });
    const unchanged = await count(t);
    assert.equal((await asReader('PATCH', `/v1/portals/${portal.id}`, { timeZone: 'UTC' })).statusCode, 200);
    assert.equal(await count(t), unchanged, 'no change, no entry');

    const key = await t.createKey({ kind: 'personal', portalId: portal.id, scopes: ['crm'] });
    assert.equal((await send(t, 'POST', '/v1/smart-processes', { body: { title: 'In it' }, headers: { 'x-api-key': key.secret } })).statusCode, 201);
    const refusedFrom = await count(t);
    expectError(await asReader('DELETE', `/v1/portals/${portal.id}`), 409, 'PORTAL_NOT_EMPTY');
    assert.equal(await count(t), refusedFrom, 'a refused delete records nothing');
    assert.equal((await asReader('DELETE', `/v1/portals/${portal.id}?force=true`)).statusCode, 204);
    entry = await latest(`?resource=portal&resourceId=${portal.id}`);
    assert.equal(entry.action, 'delete');
    assert.deepEqual(entry.changes.keys, { before: 1, after: 0 });
    assert.deepEqual(entry.changes.types, { before: 1, after: 0 });
    assert.deepEqual(entry.changes.name, { before: 'Audited portal' });
    const filtered = await audit(t, reader, `?portalId=${portal.id}`);
    assert.deepEqual(filtered.data.map((e) => `${e.resource}:${e.action}`), ['portal:delete', 'type:create', 'key:create', 'portal:update', 'portal:create']);
  });

  it('sessions: minting and ending one each record an entry; the token never', async () => {
    const app = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
    const minted = await asReader('POST', '/v1/sessions', { keyId: app.record.id, userId: 5 });
    assert.equal(minted.statusCode, 201, minted.body);
    const session = json(minted).data;
    secrets.push(session.token);
    let entry = await latest(`?resource=session&resourceId=${session.id}`);
    assert.equal(entry.action, 'create');
    assert.equal(entry.portalId, t.portal.id);
    assert.equal(entry.keyId, reader.record.id);
    assert.deepEqual(entry.changes, { keyId: { after: app.record.id }, userId: { after: 5 }, expiresAt: { after: session.expiresAt } });

    const appHeaders = { 'x-api-key': app.secret, authorization: `Bearer ${session.token}` };
    assert.equal((await send(t, 'GET', '/v1/me', { headers: appHeaders })).statusCode, 200);
    assert.equal((await asReader('DELETE', `/v1/sessions/${session.id}`)).statusCode, 204);
    expectError(await send(t, 'GET', '/v1/me', { headers: appHeaders }), 401, 'INVALID_SESSION');
    entry = await latest(`?resource=session&resourceId=${session.id}`);
    assert.equal(entry.action, 'delete');
    assert.deepEqual(entry.changes.userId, { before: 5 });
    const before = await count(t);
    expectError(await asReader('DELETE', `/v1/sessions/${session.id}`), 404, 'ENTITY_NOT_FOUND');
    assert.equal(await count(t), before);
  });

  it('GET /v1/audit: filters by portal, key, resource, action and time; paged; bad parameters are 400; only vibe:mgmt:audit', async () => {
    const everything = await audit(t, reader, '?limit=500');
    assert.equal(everything.meta.total, await count(t));
    assert.deepEqual(everything.data.map((e) => e.id), [...everything.data.map((e) => e.id)].sort((a, b) => b - a), 'newest first');

    const byKey = await audit(t, reader, `?keyId=${reader.record.id}&limit=500`);
    assert.ok(byKey.meta.total > 0);
    assert.ok(byKey.data.every((e) => e.keyId === reader.record.id));
    const byAction = await audit(t, reader, '?action=rotate');
    assert.ok(byAction.data.length > 0 && byAction.data.every((e) => e.action === 'rotate'));

    const paged = await audit(t, reader, '?limit=3&offset=2');
    assert.deepEqual(paged.meta, { total: everything.meta.total, limit: 3, offset: 2, hasMore: everything.meta.total > 5 });
    assert.deepEqual(paged.data.map((e) => e.id), everything.data.slice(2, 5).map((e) => e.id));

    const newest = everything.data[0];
    assert.deepEqual((await audit(t, reader, `?since=${encodeURIComponent(newest.at)}&limit=500`)).data.map((e) => e.id), everything.data.filter((e) => e.at >= newest.at).map((e) => e.id));
    assert.equal((await audit(t, reader, `?until=2000-01-01`)).meta.total, 0);
    assert.equal((await audit(t, reader, `?since=2999-01-01T00:00:00Z`)).meta.total, 0);

    const get = (query: string, key = reader) => send(t, 'GET', `/v1/audit${query}`, { headers: { 'x-api-key': key.secret } });
    expectValidationError(await get('?resource=widget&action=explode&since=yesterday&limit=0&portalId=x&colour=red'), 'query.resource', 'query.action', 'query.since', 'query.limit', 'query.portalId', 'query.colour');
    expectValidationError(await get('?limit=1&limit=2'), 'query.limit');
    expectError(await get('', t.managementKey), 403, 'MANAGEMENT_SCOPE_REQUIRED');
    expectError(await get('', t.key), 403, 'MANAGEMENT_SCOPE_REQUIRED');
    expectError(await send(t, 'GET', '/v1/audit'), 401, 'MISSING_API_KEY');
  });

  it('no entry holds a secret: key secrets, session tokens, hashes', async () => {
    const rows = await allRows(t);
    assert.ok(rows.length > 10);
    const text = JSON.stringify(rows);
    const hashes = (await t.app.services.store.db.selectFrom('key_secrets').select('hash').execute()).map((r) => r.hash);
    for (const secret of [...secrets, ...hashes]) {
      assert.ok(!text.includes(secret), 'a secret in an entry');
      assert.ok(!text.includes(secret.slice(-20)), 'a part of a secret in an entry');
    }
    assert.doesNotMatch(text, /vibe_(api|app|live|session)_[A-Za-z0-9]{20,}/);
  });
});

describe('audit trail: bitrix24 portals', () => {
  let t: TestApp;
  let reader: TestKey;
  before(async () => {
    t = await createTestApp({ portalKind: 'bitrix24', config: NO_SHEDDING });
    reader = await auditKey(t);
  });
  after(() => t.close());

  it('the portal create is recorded with what may be shown of the credential, never the webhook URL; a new credential is marked, redacted', async () => {
    const [entry] = (await audit(t, reader, `?resource=portal&resourceId=${t.portal.id}`)).data;
    assert.equal(entry.action, 'create');
    assert.equal(entry.actor, 'cli');
    assert.deepEqual(entry.changes.credentials, { after: { type: 'webhook', userId: 7, domain: t.portal.domain } });
    const webhook = t.fake!.webhookUrl(7);
    const res = await send(t, 'PATCH', `/v1/portals/${t.portal.id}`, { body: { webhookUrl: webhook, limits: { burst: 500, perSecond: 500 } }, headers: { 'x-api-key': reader.secret } });
    assert.equal(res.statusCode, 200, res.body);
    const [update] = (await audit(t, reader, `?resource=portal&resourceId=${t.portal.id}`)).data;
    assert.equal(update.action, 'update');
    assert.deepEqual(update.changes.credential, { before: '[redacted]', after: '[redacted]' });
    assert.deepEqual(update.changes.limits, { before: { burst: 1000, perSecond: 1000 }, after: { burst: 500, perSecond: 500 } });
    const text = JSON.stringify(await allRows(t));
    const token = new URL(webhook).pathname.split('/').filter(Boolean).pop()!;
    assert.ok(!text.includes(webhook) && !text.includes(token), 'no webhook URL or its token in an entry');
  });

  it('type changes are recorded after the portal carried them out; refused ones are not', async () => {
    const created = await t.call('POST', '/v1/smart-processes', { title: 'Upstream' });
    assert.equal(created.statusCode, 201, created.body);
    const etid = json(created).data.entityTypeId;
    const patched = await t.call('PATCH', `/v1/smart-processes/${etid}`, { title: 'Upstream changed' });
    assert.equal(patched.statusCode, 200, patched.body);
    const before = await count(t);
    assert.equal((await t.call('PATCH', `/v1/smart-processes/${etid}`, { title: 'Upstream changed' })).statusCode, 200);
    expectError(await t.call('PATCH', `/v1/smart-processes/${etid}`, { title: 'x' }, { 'if-match': '"0"' }), 412, 'PRECONDITION_FAILED');
    expectError(await t.call('PATCH', '/v1/smart-processes/1999', { title: 'x' }), 404, 'SMART_PROCESS_NOT_FOUND');
    assert.equal(await count(t), before);
    assert.equal((await t.call('DELETE', `/v1/smart-processes/${etid}`)).statusCode, 204);

    const history = await t.call('GET', `/v1/smart-processes/${etid}/history`);
    assert.equal(history.statusCode, 200, history.body);
    const entries = json(history).data as Entry[];
    assert.deepEqual(entries.map((e) => e.action), ['delete', 'update', 'create']);
    assert.deepEqual(entries[1].changes, { title: { before: 'Upstream', after: 'Upstream changed' } });
    assert.equal(entries[1].requestId, requestIdOf(patched));
    assert.equal(entries[1].keyId, t.key.record.id);
    assert.deepEqual(entries[2].changes.title, { after: 'Upstream' });
  });
});

describe('audit trail: the vibe:mgmt:audit scope on upgrade', () => {
  it('management keys that held every earlier management scope get it; others do not; portal keys never', async () => {
    const t = await createTestApp({ portalKind: 'local', config: NO_SHEDDING });
    try {
      const full = t.managementKey; // vibe:mgmt:keys + vibe:mgmt:portals, as made before the audit trail
      const keysOnly = await t.createKey({ kind: 'management', scopes: ['vibe:mgmt:keys'] });
      const db = t.app.services.store.db;
      await grantAuditScope(db);
      const scopes = async (id: string) => JSON.parse((await db.selectFrom('api_keys').select('scopes').where('id', '=', id).executeTakeFirstOrThrow()).scopes);
      assert.deepEqual(await scopes(full.record.id), ['vibe:mgmt:keys', 'vibe:mgmt:portals', 'vibe:mgmt:audit']);
      assert.deepEqual(await scopes(keysOnly.record.id), ['vibe:mgmt:keys']);
      assert.deepEqual(await scopes(t.key.record.id), ['crm']);
    } finally {
      await t.close();
    }
  });
});

describe('audit trail: retention and the CLI', () => {
  it('AUDIT_RETENTION_DAYS: entries older than it are deleted by the prune, newer ones kept; 0 keeps all', async () => {
    assert.equal(loadConfig({}).auditRetentionDays, 90);
    assert.equal(loadConfig({ AUDIT_RETENTION_DAYS: '0' }).auditRetentionDays, 0);
    assert.throws(() => loadConfig({ AUDIT_RETENTION_DAYS: '-1' }), /AUDIT_RETENTION_DAYS/);

    const t = await createTestApp({ portalKind: 'local', config: { ...NO_SHEDDING, auditRetentionDays: 30 } });
    try {
      const store = t.app.services.store;
      const day = 86_400_000;
      const now = Date.now();
      await store.write(async ({ repos }) => {
        for (let i = 0; i < 1205; i++) await repos.audit.record({ at: now - 40 * day - i, portalId: t.portal.id, resource: 'type', resourceId: '1', action: 'update', context: CLI_AUDIT, changes: { title: { before: 'a', after: 'b' } } });
        await repos.audit.record({ at: now - 29 * day, portalId: t.portal.id, resource: 'type', resourceId: '2', action: 'update', context: CLI_AUDIT, changes: {} });
      });
      const before = await count(t);
      assert.equal(await t.app.services.audit.prune(now), 1205, 'in batches of 1000, until none is left');
      assert.equal(await count(t), before - 1205);
      assert.equal((await store.db.selectFrom('audit_log').select('id').where('resource_id', '=', '2').execute()).length, 1);
      assert.equal(await t.app.services.audit.prune(now), 0);
    } finally {
      await t.close();
    }
  });

  describe('changes made through the CLI are recorded: no key, actor "cli"', () => {
    let dataDir: string;
    let testStore: TestStore | null = null;
    let env: NodeJS.ProcessEnv;
    before(() => {
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-audit-cli-'));
      env = { ...process.env, DATA_DIR: dataDir, DATABASE_URL: '', REDIS_URL: '' };
      if (TEST_DIALECT === 'postgres') {
        testStore = openTestStore();
        env.DATABASE_URL = testStore.databaseUrl!;
      }
    });
    after(async () => {
      await testStore?.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('portals create, keys create / rotate / delete, sessions create', async () => {
      const cli = async (...args: string[]) => (await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', ...args], { env })).stdout;
      const portal = JSON.parse(await cli('portals', 'create', '--name', 'CLI audited', '--json'));
      const key = JSON.parse(await cli('keys', 'create', '--kind', 'application', '--portal', String(portal.id), '--scopes', 'crm', '--json'));
      await cli('sessions', 'create', '--key', key.id, '--user-id', '4');
      await cli('keys', 'rotate', key.id);
      await cli('keys', 'delete', key.id);

      const app = await buildApp({ config: { ...loadConfig({ DATA_DIR: dataDir }), databaseUrl: env.DATABASE_URL || null, redisUrl: null }, store: testStore?.store, logger: false });
      try {
        const rows = await app.services.store.db.selectFrom('audit_log').selectAll().orderBy('id').execute();
        assert.deepEqual(rows.map((r) => `${r.resource}:${r.action}`), ['portal:create', 'key:create', 'session:create', 'key:rotate', 'key:delete']);
        for (const row of rows) {
          assert.equal(row.actor, 'cli');
          assert.equal(row.key_id, null);
          assert.equal(row.request_id, null);
          assert.equal(row.client_ip, null);
        }
        assert.ok(!JSON.stringify(rows).includes(key.secret));
      } finally {
        await app.close();
      }
    });
  });
});
