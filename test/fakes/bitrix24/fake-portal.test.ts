// Self-tests of the fake Bitrix24 portal: each documented behaviour exercised
// with plain fetch calls. Doc paths are relative to bitrix24/b24restdocs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startFakeBitrix24, type FakeBitrix24, type FakeBitrix24Options } from './fake-portal.js';

interface Reply {
  status: number;
  body: any;
}

async function json(r: Response): Promise<Reply> {
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

/** POST with a JSON body, as the docs' cURL examples do. */
const post = async (base: string, method: string, params: unknown = {}, headers: Record<string, string> = {}) =>
  json(await fetch(base + method, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', ...headers }, body: JSON.stringify(params) }));

async function withFake(options: FakeBitrix24Options, fn: (fake: FakeBitrix24, hook: string) => Promise<void>) {
  const fake = await startFakeBitrix24(options);
  try {
    await fn(fake, fake.webhookUrl());
  } finally {
    await fake.close();
  }
}

/** A clock the test moves by hand (the bucket, token and code expiry, operating baskets). */
function frozenClock(start = Date.parse('2025-03-01T10:00:00Z')) {
  const clock = { t: start };
  return { clock, now: () => clock.t };
}

describe('fake Bitrix24: transport and envelope', () => {
  it('a webhook call answers {result, time} with the docs time keys (settings/how-to-call-rest-api/index.md, limits.md)', async () => {
    await withFake({}, async (fake, hook) => {
      assert.match(hook, /^http:\/\/127\.0\.0\.1:\d+\/rest\/1\/[a-z0-9]+\/$/);
      const r = await post(hook, 'crm.type.add.json', { fields: { title: 'SPA' } });
      assert.equal(r.status, 200);
      assert.deepEqual(Object.keys(r.body), ['result', 'time']);
      for (const key of ['start', 'finish', 'duration', 'processing', 'date_start', 'date_finish', 'operating', 'operating_reset_at']) assert.ok(key in r.body.time, key);
      assert.match(r.body.time.date_start, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+02:00$/);
      assert.equal(typeof r.body.time.operating_reset_at, 'number');
    });
  });

  it('the method name works without ".json" and in any case (local-webhooks.md: "This suffix can be omitted")', async () => {
    await withFake({}, async (fake, hook) => {
      await post(hook, 'crm.type.add', { fields: { title: 'A', entityTypeId: 1040 } });
      assert.equal((await post(hook, 'crm.type.getByEntityTypeId', { entityTypeId: 1040 })).body.result.type.title, 'A');
      assert.equal((await post(hook, 'CRM.TYPE.GETBYENTITYTYPEID.json', { entityTypeId: 1040 })).body.result.type.title, 'A');
      assert.equal(fake.calls.at(-1)!.method, 'crm.type.getbyentitytypeid');
    });
  });

  it('form-encoded and multipart bodies and GET queries with PHP-style nested keys (data-encoding.md)', async () => {
    await withFake({}, async (fake, hook) => {
      const form = 'fields[title]=John%26Martin&fields[isStagesEnabled]=Y&fields[relations][parent][0][entityTypeId]=2&fields[relations][parent][0][isChildrenListEnabled]=true';
      const a = await json(await fetch(hook + 'crm.type.add', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form }));
      assert.equal(a.status, 200);
      assert.equal(a.body.result.type.title, 'John&Martin');
      assert.equal(a.body.result.type.isStagesEnabled, 'Y');
      assert.deepEqual(a.body.result.type.relations.parent, [{ entityTypeId: 2, isChildrenListEnabled: 'Y', isPredefined: 'N' }]);

      const multipart = new FormData();
      multipart.append('fields[title]', 'My company');
      multipart.append('fields[entityTypeId]', '1050');
      const b = await json(await fetch(hook + 'crm.type.add', { method: 'POST', body: multipart }));
      assert.equal(b.body.result.type.entityTypeId, 1050);

      const c = await json(await fetch(`${hook}crm.type.get.json?id=${b.body.result.type.id}`));
      assert.equal(c.body.result.type.title, 'My company');
      const untyped = await json(await fetch(hook + 'crm.type.add', { method: 'POST', body: new TextEncoder().encode('{"fields":{"title":"x"}}') }));
      assert.equal(untyped.body.error, 100, 'a body without Content-Type is not read (general-principles.md: pass Content-Type)');
      assert.deepEqual(
        fake.calls.map((x) => x.bodyKind),
        ['form', 'multipart', 'none', 'other'],
      );
    });
  });

  it('a wrong webhook secret or user is 401 NO_AUTH_FOUND (_includes/system-errors.md)', async () => {
    await withFake({}, async (fake, hook) => {
      const bad = hook.replace(/\/[a-z0-9]+\/$/, '/wrongsecret/');
      const r = await post(bad, 'crm.type.list');
      assert.equal(r.status, 401);
      assert.deepEqual(r.body, { error: 'NO_AUTH_FOUND', error_description: 'Wrong authorization data' });
      assert.equal((await post(hook.replace('/rest/1/', '/rest/2/'), 'crm.type.list')).status, 401);
      assert.equal(fake.stats.errors.NO_AUTH_FOUND, 2);
    });
  });

  it('a webhook without the crm scope gets 403 insufficient_scope; an expired one 401 (system-errors.md, local-webhooks.md)', async () => {
    await withFake({}, async (fake) => {
      const noCrm = fake.addWebhook({ scope: ['user'] });
      const r = await post(noCrm, 'crm.type.list');
      assert.equal(r.status, 403);
      assert.equal(r.body.error, 'insufficient_scope');
      assert.equal((await post(noCrm, 'user.current')).status, 200);
      const expired = fake.addWebhook({ expiresAt: fake.clock.now() - 1 });
      assert.equal((await post(expired, 'crm.type.list')).status, 401);
      fake.revokeWebhook(noCrm);
      assert.equal((await post(noCrm, 'user.current')).body.error, 'NO_AUTH_FOUND');
    });
  });

  it('an unknown method is 404 ERROR_METHOD_NOT_FOUND (api-reference/rest-v3.md)', async () => {
    await withFake({}, async (_fake, hook) => {
      const r = await post(hook, 'crm.type.nope');
      assert.equal(r.status, 404);
      assert.equal(r.body.error, 'ERROR_METHOD_NOT_FOUND');
    });
  });

  it('OAuth: auth in the JSON body, in the query or as Bearer; none, unknown and expired tokens (authorization.md, system-errors.md)', async () => {
    const { clock, now } = frozenClock();
    await withFake({ now }, async (fake) => {
      const { access_token: token } = fake.oauth.issueTokens();
      const base = fake.clientEndpoint;
      assert.equal((await post(base, 'crm.type.list.json', { auth: token })).status, 200);
      assert.equal((await json(await fetch(`${base}crm.type.list?auth=${token}`))).status, 200);
      assert.equal((await post(base, 'crm.type.list', {}, { authorization: `Bearer ${token}` })).status, 200);
      assert.deepEqual(
        fake.calls.map((c) => c.authVia),
        ['body', 'query', 'bearer'],
      );
      assert.equal(fake.calls[0]!.tokenId, fake.oauth.tokenId(token));
      assert.ok(!JSON.stringify(fake.calls).includes(token), 'the token itself is not recorded');

      const none = await post(base, 'crm.type.list');
      assert.deepEqual([none.status, none.body.error], [401, 'NO_AUTH_FOUND']);
      const unknown = await post(base, 'crm.type.list', { auth: 'x'.repeat(32) });
      assert.deepEqual([unknown.status, unknown.body.error], [401, 'NO_AUTH_FOUND']);

      clock.t += 3600 * 1000; // settings/oauth/index.md: access_token lives one hour
      const expired = await post(base, 'crm.type.list', { auth: token });
      assert.deepEqual([expired.status, expired.body.error], [401, 'expired_token']);
    });
  });

  it('option invalidTokenError: "invalid_token" answers an unknown token with 401 invalid_token', async () => {
    await withFake({ invalidTokenError: 'invalid_token' }, async (fake) => {
      const r = await post(fake.clientEndpoint, 'crm.type.list', { auth: 'nope' });
      assert.deepEqual([r.status, r.body.error], [401, 'invalid_token']);
    });
  });

  it('user.current needs a user scope and returns the token user; profile, scope, method.get and server.time are basic (user-current.md, common/system/*)', async () => {
    await withFake({ users: [{ id: 1, name: 'Admin' }, { id: 7, name: 'Klaus', lastName: 'Weber' }] }, async (fake, hook) => {
      assert.equal((await post(hook, 'user.current')).body.error, 'insufficient_scope', 'the default webhook has only crm');
      assert.equal((await post(hook, 'profile')).body.result.ID, '1');
      assert.deepEqual((await post(hook, 'scope')).body.result, ['crm']);
      assert.ok((await post(hook, 'scope', { full: true })).body.result.includes('userfieldconfig'));
      assert.deepEqual((await post(hook, 'method.get', { name: 'crm.type.add' })).body.result, { isExisting: true, isAvailable: true });
      assert.deepEqual((await post(hook, 'method.get', { name: 'user.current' })).body.result, { isExisting: true, isAvailable: false });
      assert.match((await post(hook, 'server.time')).body.result, /\+02:00$/);
      const app = await post(hook, 'app.info');
      assert.deepEqual([app.status, app.body.error], [400, 'ACCESS_DENIED'], 'app.info needs the application context');

      const { access_token } = fake.oauth.issueTokens({ userId: 7 });
      const me = await post(fake.clientEndpoint, 'user.current', { auth: access_token });
      assert.equal(me.body.result.ID, '7');
      assert.equal(me.body.result.NAME, 'Klaus');
      assert.equal((await post(fake.clientEndpoint, 'app.info', { auth: access_token })).body.result.CODE, fake.oauth.clientId);
      const created = await post(fake.clientEndpoint, 'crm.type.add', { auth: access_token, fields: { title: 'By Klaus' } });
      assert.equal(created.body.result.type.createdBy, 7);
      assert.equal(created.body.result.type.updatedBy, 7);
    });
  });

  it('a domain move answers 302 to the new address (change-domen.md)', async () => {
    await withFake({}, async (fake, hook) => {
      fake.inject.moveDomain('https://new.example.invalid');
      const r = await fetch(hook + 'crm.type.list', { method: 'POST', redirect: 'manual' });
      assert.equal(r.status, 302);
      assert.match(r.headers.get('location')!, /^https:\/\/new\.example\.invalid\/rest\/1\/[a-z0-9]+\/crm\.type\.list$/);
    });
  });
});

describe('fake Bitrix24: crm.type.* native shapes and quirks', () => {
  it('add: defaults N except isSetOpenPermissions Y, code "", customSections [], customSectionId null (crm-type-add.md, crm-type-get.md)', async () => {
    await withFake({}, async (_fake, hook) => {
      const t = (await post(hook, 'crm.type.add', { fields: { title: 'SPA' } })).body.result.type;
      assert.equal(t.code, '');
      assert.equal(t.isSetOpenPermissions, 'Y');
      for (const f of ['isCategoriesEnabled', 'isStagesEnabled', 'isClientEnabled', 'isPaymentsEnabled', 'isCountersEnabled']) assert.equal(t[f], 'N', f);
      assert.deepEqual(t.customSections, []);
      assert.equal(t.customSectionId, null);
      assert.deepEqual(t.relations, { parent: [], child: [] });
      assert.deepEqual(t.linkedUserFields, { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'N', 'TASKS_TASK|UF_CRM_TASK': 'N', 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': 'N' });
      assert.deepEqual(Object.keys(t).slice(0, 6), ['id', 'title', 'code', 'createdBy', 'entityTypeId', 'customSectionId']);
    });
  });

  it('add: entityTypeId must be 128..191 or an even number ≥ 1030, unique; omitted ones are allocated and never reused (crm-type-add.md)', async () => {
    await withFake({}, async (_fake, hook) => {
      for (const bad of [127, 192, 1000, 1031, 1029, -2]) {
        const r = await post(hook, 'crm.type.add', { fields: { title: 'X', entityTypeId: bad } });
        assert.deepEqual([r.status, r.body.error, r.body.error_description], [400, 'INVALID_ARG_VALUE', 'entityTypeId is out of allowed range'], String(bad));
      }
      for (const good of [128, 191, 1030, 2024]) assert.equal((await post(hook, 'crm.type.add', { fields: { title: 'X', entityTypeId: good } })).status, 200, String(good));
      assert.equal((await post(hook, 'crm.type.add', { fields: { title: 'X', entityTypeId: 2024 } })).body.error, 'INVALID_ARG_VALUE', 'unique');
      const first = (await post(hook, 'crm.type.add', { fields: { title: 'Auto' } })).body.result.type;
      assert.equal(first.entityTypeId, 1032);
      await post(hook, 'crm.type.delete', { id: first.id });
      assert.equal((await post(hook, 'crm.type.add', { fields: { title: 'Auto' } })).body.result.type.entityTypeId, 1034);
    });
  });

  it('option types.lowRangeEnd: 192 reads "from 128 to 192" inclusively', async () => {
    await withFake({ types: { lowRangeEnd: 192 } }, async (_fake, hook) => {
      assert.equal((await post(hook, 'crm.type.add', { fields: { title: 'X', entityTypeId: 192 } })).status, 200);
    });
  });

  it('add: fields missing is 400 error 100; a blank title BX_EMPTY_REQUIRED; isExternal without a workplace is error 0 (crm-type-add.md, crm-type-update.md)', async () => {
    await withFake({}, async (_fake, hook) => {
      assert.deepEqual((await post(hook, 'crm.type.add', {})).body, { error: 100, error_description: 'Could not find value for parameter {fields}' });
      assert.equal((await post(hook, 'crm.type.add', { fields: { title: '  ' } })).body.error, 'BX_EMPTY_REQUIRED');
      const ext = await post(hook, 'crm.type.add', { fields: { title: 'X', isExternal: 'true' } });
      assert.deepEqual([ext.status, ext.body.error], [400, 0]);
      const { id } = (await post(hook, 'crm.type.add', { fields: { title: 'X' } })).body.result.type;
      const extUpdate = await post(hook, 'crm.type.update', { id, fields: { isExternal: 'true' } });
      assert.deepEqual([extUpdate.status, extUpdate.body.error, extUpdate.body.error_description], [400, 0, 'Select a workplace where the SPA will be located'], 'crm-type-update.md: error 0 is not only "not found"');
    });
  });

  it('flags take "Y"/"N"; other spellings are ignored (data-types.md: "Most often takes values Y or N"); option lenient takes true/false too', async () => {
    await withFake({}, async (fake, hook) => {
      const t = (await post(hook, 'crm.type.add', { fields: { title: 'X', isStagesEnabled: 'Y', isCategoriesEnabled: true, isDocumentsEnabled: 'true', isSourceEnabled: 1 } })).body.result.type;
      assert.deepEqual([t.isStagesEnabled, t.isCategoriesEnabled, t.isDocumentsEnabled, t.isSourceEnabled], ['Y', 'N', 'N', 'N']);
      assert.equal(fake.state.warnings.filter((w) => w.what.includes('value not accepted')).length, 3);
    });
    await withFake({ types: { flagSpellings: 'lenient' } }, async (_fake, hook) => {
      const t = (await post(hook, 'crm.type.add', { fields: { title: 'X', isCategoriesEnabled: true, isDocumentsEnabled: 'true' } })).body.result.type;
      assert.deepEqual([t.isCategoriesEnabled, t.isDocumentsEnabled], ['Y', 'Y']);
    });
  });

  it('relations: only "true" enables isChildrenListEnabled ("Values Y and N do not work"), crm-type-add.md#relation', async () => {
    await withFake({}, async (_fake, hook) => {
      const parent = [
        { entityTypeId: 1, isChildrenListEnabled: 'true' },
        { entityTypeId: 2, isChildrenListEnabled: 'Y' },
        { entityTypeId: 7, isChildrenListEnabled: true },
        { entityTypeId: 31 },
      ];
      const t = (await post(hook, 'crm.type.add', { fields: { title: 'X', relations: { parent } } })).body.result.type;
      assert.deepEqual(
        t.relations.parent.map((r: { entityTypeId: number; isChildrenListEnabled: string }) => [r.entityTypeId, r.isChildrenListEnabled]),
        [[1, 'Y'], [2, 'N'], [7, 'N'], [31, 'N']],
      );
    });
    await withFake({ types: { truthy: 'php-bool' } }, async (_fake, hook) => {
      const t = (await post(hook, 'crm.type.add', { fields: { title: 'X', relations: { parent: [{ entityTypeId: 7, isChildrenListEnabled: true }] } } })).body.result.type;
      assert.equal(t.relations.parent[0].isChildrenListEnabled, 'Y');
    });
  });

  it('relations: entries the portal cannot link are dropped silently, no error (crm-type-update.md "it will not be displayed")', async () => {
    await withFake({}, async (fake, hook) => {
      const other = (await post(hook, 'crm.type.add', { fields: { title: 'Other', entityTypeId: 1100 } })).body.result.type;
      const r = await post(hook, 'crm.type.add', {
        fields: {
          title: 'X',
          entityTypeId: 1102,
          relations: {
            parent: [{ entityTypeId: 1102 }, { entityTypeId: 999 }, { entityTypeId: 3 }, { entityTypeId: 5 }, { entityTypeId: 1100, isChildrenListEnabled: 'true' }],
            child: [{ entityTypeId: 14 }, { entityTypeId: 4 }],
          },
        },
      });
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.result.type.relations.parent, [{ entityTypeId: 1100, isChildrenListEnabled: 'Y', isPredefined: 'N' }]);
      assert.deepEqual(r.body.result.type.relations.child, [{ entityTypeId: 4, isChildrenListEnabled: 'N', isPredefined: 'N' }]);
      assert.equal(fake.state.warnings.filter((w) => w.what.includes('dropped silently')).length, 5);
      // the edge is seen from the other end
      const seen = (await post(hook, 'crm.type.get', { id: other.id })).body.result.type.relations.child;
      assert.deepEqual(seen, [{ entityTypeId: 1102, isChildrenListEnabled: 'Y', isPredefined: 'N' }]);
    });
  });

  it('isClientEnabled gives the predefined parents Contact 3 and Company 4, listed first; entries for them are ignored (crm-type-add.md response)', async () => {
    await withFake({}, async (_fake, hook) => {
      const t = (
        await post(hook, 'crm.type.add', {
          fields: { title: 'X', isClientEnabled: 'Y', relations: { parent: [{ entityTypeId: 1, isChildrenListEnabled: 'true' }, { entityTypeId: 3, isChildrenListEnabled: 'false' }] } },
        })
      ).body.result.type;
      assert.deepEqual(t.relations.parent, [
        { entityTypeId: 3, isChildrenListEnabled: 'Y', isPredefined: 'Y' },
        { entityTypeId: 4, isChildrenListEnabled: 'Y', isPredefined: 'Y' },
        { entityTypeId: 1, isChildrenListEnabled: 'Y', isPredefined: 'N' },
      ]);
    });
  });

  it('update: relations "passed in full; completely overwritten" — an absent side is emptied; option per-side keeps it (crm-type-update.md)', async () => {
    const fields = { title: 'X', relations: { parent: [{ entityTypeId: 1 }], child: [{ entityTypeId: 2 }] } };
    await withFake({}, async (_fake, hook) => {
      const { id } = (await post(hook, 'crm.type.add', { fields })).body.result.type;
      const t = (await post(hook, 'crm.type.update', { id, fields: { relations: { parent: [{ entityTypeId: 7 }] } } })).body.result.type;
      assert.deepEqual(t.relations, { parent: [{ entityTypeId: 7, isChildrenListEnabled: 'N', isPredefined: 'N' }], child: [] });
      const same = (await post(hook, 'crm.type.update', { id, fields: { title: 'Y' } })).body.result.type;
      assert.equal(same.relations.parent.length, 1, 'no relations key: relations untouched');
    });
    await withFake({ types: { relationsUpdate: 'per-side' } }, async (_fake, hook) => {
      const { id } = (await post(hook, 'crm.type.add', { fields })).body.result.type;
      const t = (await post(hook, 'crm.type.update', { id, fields: { relations: { parent: [] } } })).body.result.type;
      assert.deepEqual(t.relations, { parent: [], child: [{ entityTypeId: 2, isChildrenListEnabled: 'N', isPredefined: 'N' }] });
    });
  });

  it('linkedUserFields: only "true" enables, input merged key by key, only while isUseInUserfieldEnabled is Y (crm-type-add.md#linkedUserFields)', async () => {
    await withFake({}, async (fake, hook) => {
      const off = (await post(hook, 'crm.type.add', { fields: { title: 'Off', linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': 'true' } } })).body.result.type;
      assert.equal(off.linkedUserFields['TASKS_TASK|UF_CRM_TASK'], 'N', 'ignored while isUseInUserfieldEnabled is N');
      assert.ok(fake.state.warnings.some((w) => w.what.startsWith('linkedUserFields ignored')));

      const t = (
        await post(hook, 'crm.type.add', {
          fields: { title: 'On', isUseInUserfieldEnabled: 'Y', linkedUserFields: { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'true', 'TASKS_TASK|UF_CRM_TASK': 'Y' } },
        })
      ).body.result.type;
      assert.deepEqual(t.linkedUserFields, { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'Y', 'TASKS_TASK|UF_CRM_TASK': 'N', 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': 'N' });
      const merged = (await post(hook, 'crm.type.update', { id: t.id, fields: { linkedUserFields: { 'TASKS_TASK|UF_CRM_TASK': 'true' } } })).body.result.type;
      assert.deepEqual(merged.linkedUserFields, { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'Y', 'TASKS_TASK|UF_CRM_TASK': 'Y', 'TASKS_TASK_TEMPLATE|UF_CRM_TASK': 'N' }, 'the calendar key sent earlier stays');
      const cleared = (await post(hook, 'crm.type.update', { id: t.id, fields: { linkedUserFields: { 'CALENDAR_EVENT|UF_CRM_CAL_EVENT': 'false' } } })).body.result.type;
      assert.equal(cleared.linkedUserFields['CALENDAR_EVENT|UF_CRM_CAL_EVENT'], 'N');
    });
  });

  it('update: entityTypeId dropped, read-only fields ignored, customSections recorded, updatedBy is the caller; nothing changed keeps updatedTime (crm-type-update.md, crm-type-fields.md)', async () => {
    const { clock, now } = frozenClock();
    await withFake({ now, users: [{ id: 1 }, { id: 5 }] }, async (fake, hook) => {
      const t = (await post(hook, 'crm.type.add', { fields: { title: 'X', entityTypeId: 1200, customSections: [{ id: 1 }] } })).body.result.type;
      clock.t += 5000;
      const same = (await post(hook, 'crm.type.update', { id: t.id, fields: { title: 'X', id: 99, createdBy: 42, createdTime: '2000-01-01T00:00:00+00:00' } })).body.result.type;
      assert.equal(same.updatedTime, t.updatedTime);
      assert.equal(same.id, t.id);
      assert.equal(same.createdBy, 1);
      clock.t += 5000;
      const other = fake.webhookUrl(5);
      const u = (await post(other, 'crm.type.update', { id: t.id, fields: { title: 'Y', entityTypeId: 1300, customSections: [] } })).body.result.type;
      assert.equal(u.entityTypeId, 1200);
      assert.equal(u.title, 'Y');
      assert.equal(u.updatedBy, 5);
      assert.notEqual(u.updatedTime, t.updatedTime);
      assert.equal(fake.state.customSectionsSent.length, 2);
      assert.deepEqual(fake.state.customSectionsSent.map((c) => c.method), ['crm.type.add', 'crm.type.update']);
      assert.ok(fake.state.warnings.some((w) => w.what === 'entityTypeId ignored on update'));
    });
  });

  it('not found is error NUMBER 0 for get, getByEntityTypeId, update and delete (crm-type-get.md …)', async () => {
    await withFake({}, async (_fake, hook) => {
      for (const [method, params, text] of [
        ['crm.type.get', { id: 77 }, 'SPA not found'],
        ['crm.type.update', { id: 77, fields: { title: 'x' } }, 'SPA not found'],
        ['crm.type.delete', { id: 77 }, 'Smart process not found'],
        ['crm.type.getByEntityTypeId', { entityTypeId: 1500 }, 'Smart process not found'],
      ] as const) {
        const r = await post(hook, method, params);
        assert.equal(r.status, 400, method);
        assert.strictEqual(r.body.error, 0, method);
        assert.equal(r.body.error_description, text);
      }
    });
  });

  it('missing id: error 100 for get/update/getByEntityTypeId; delete answers result null (crm-type-delete.md)', async () => {
    await withFake({}, async (_fake, hook) => {
      assert.deepEqual((await post(hook, 'crm.type.get')).body, { error: 100, error_description: 'Could not find value for parameter {id}' });
      assert.equal((await post(hook, 'crm.type.update', { fields: {} })).body.error, 100);
      assert.equal((await post(hook, 'crm.type.getByEntityTypeId')).body.error, 100);
      const del = await post(hook, 'crm.type.delete');
      assert.equal(del.status, 200);
      assert.strictEqual(del.body.result, null);
    });
  });

  it('delete: result [] and the relations go; a type with items is BX_ERROR (crm-type-delete.md)', async () => {
    await withFake({}, async (fake, hook) => {
      const a = (await post(hook, 'crm.type.add', { fields: { title: 'A', entityTypeId: 1400 } })).body.result.type;
      const b = (await post(hook, 'crm.type.add', { fields: { title: 'B', relations: { parent: [{ entityTypeId: 1400 }] } } })).body.result.type;
      fake.state.setItemCount({ entityTypeId: 1400 }, 3);
      const refused = await post(hook, 'crm.type.delete', { id: a.id });
      assert.deepEqual([refused.status, refused.body.error, refused.body.error_description], [400, 'BX_ERROR', 'You cannot delete an entity type that has elements']);
      fake.state.setItemCount(a.id, 0);
      assert.deepEqual((await post(hook, 'crm.type.delete', { id: a.id })).body.result, []);
      assert.deepEqual((await post(hook, 'crm.type.get', { id: b.id })).body.result.type.relations.parent, []);
    });
  });

  it('ACCESS_DENIED for a user without CRM admin rights; read access allows get only; extranet users get 403 allowed_only_intranet_user', async () => {
    await withFake({ users: [{ id: 1 }, { id: 2, crmAdmin: false }, { id: 3, crmAdmin: false, canReadTypes: true }, { id: 4, intranet: false }] }, async (fake, hook) => {
      const { id } = (await post(hook, 'crm.type.add', { fields: { title: 'X' } })).body.result.type;
      const denied = await post(fake.webhookUrl(2), 'crm.type.add', { fields: { title: 'Y' } });
      assert.deepEqual([denied.status, denied.body.error], [400, 'ACCESS_DENIED']);
      assert.equal((await post(fake.webhookUrl(2), 'crm.type.get', { id })).body.error, 'ACCESS_DENIED');
      assert.equal((await post(fake.webhookUrl(3), 'crm.type.get', { id })).status, 200);
      assert.equal((await post(fake.webhookUrl(3), 'crm.type.list')).body.error, 'ACCESS_DENIED');
      const extranet = await post(fake.webhookUrl(4), 'crm.type.list');
      assert.deepEqual([extranet.status, extranet.body.error], [403, 'allowed_only_intranet_user']);
      fake.state.setUser(2, { crmAdmin: true });
      assert.equal((await post(fake.webhookUrl(2), 'crm.type.list')).status, 200);
    });
  });

  it('plan limits: CREATE_DYNAMIC_TYPE_RESTRICTED and UPDATE_DYNAMIC_TYPE_RESTRICTED', async () => {
    await withFake({ types: { maxTypes: 1 } }, async (fake, hook) => {
      const { id } = (await post(hook, 'crm.type.add', { fields: { title: 'X' } })).body.result.type;
      assert.equal((await post(hook, 'crm.type.add', { fields: { title: 'Y' } })).body.error, 'CREATE_DYNAMIC_TYPE_RESTRICTED');
      fake.inject.updateRestricted = true;
      assert.equal((await post(hook, 'crm.type.update', { id, fields: { title: 'Z' } })).body.error, 'UPDATE_DYNAMIC_TYPE_RESTRICTED');
    });
  });

  it('crm.type.fields answers the documented field table (crm-type-fields.md)', async () => {
    await withFake({}, async (_fake, hook) => {
      const f = (await post(hook, 'crm.type.fields')).body.result.fields;
      assert.deepEqual(f.entityTypeId, { type: 'integer', isRequired: true, isReadOnly: false, isImmutable: true, isMultiple: false, isDynamic: false, title: 'Type Identifier', upperName: 'ENTITY_TYPE_ID' });
      assert.equal(f.createdBy.type, 'user');
      assert.equal(Object.keys(f).length, 23);
    });
  });
});

describe('fake Bitrix24: crm.type.list', () => {
  async function seed(fake: FakeBitrix24, n: number) {
    for (let i = 1; i <= n; i++) fake.state.seedType({ title: `Smart Process #${i}`, entityTypeId: 1030 + 2 * i, isAutomationEnabled: i % 2 === 0 });
  }

  it('pages of 50 with next and total; start=-1 skips the count (crm-type-list.md, list-methods-pecularities.md, performance/huge-data.md)', async () => {
    await withFake({}, async (fake, hook) => {
      await seed(fake, 120);
      const p1 = await post(hook, 'crm.type.list');
      assert.equal(p1.body.result.types.length, 50);
      assert.equal(p1.body.total, 120);
      assert.equal(p1.body.next, 50);
      assert.equal('relations' in p1.body.result.types[0], false, 'the list has no relations/linkedUserFields');
      const p3 = await post(hook, 'crm.type.list', { start: 100 });
      assert.equal(p3.body.result.types.length, 20);
      assert.equal('next' in p3.body, false);
      const fast = await post(hook, 'crm.type.list', { start: -1, order: { id: 'ASC' }, filter: { '>id': 60 } });
      assert.equal(fast.body.total, 0);
      assert.equal('next' in fast.body, false);
      assert.equal(fast.body.result.types[0].id, 61);
    });
  });

  it('order and filter with the documented prefixes and logic OR', async () => {
    await withFake({}, async (fake, hook) => {
      await seed(fake, 12);
      const ids = (r: Reply) => r.body.result.types.map((t: { id: number }) => t.id);
      assert.deepEqual(ids(await post(hook, 'crm.type.list', { order: { id: 'DESC' }, filter: { '<=id': 3 } })), [3, 2, 1]);
      assert.deepEqual(ids(await post(hook, 'crm.type.list', { filter: { '@id': [2, 4], isAutomationEnabled: 'Y' } })), [2, 4]);
      assert.deepEqual(ids(await post(hook, 'crm.type.list', { filter: { '!@id': [1, 2, 3], '<id': 6 } })), [4, 5]);
      assert.deepEqual(ids(await post(hook, 'crm.type.list', { filter: { '%title': '#1' } })), [1, 10, 11, 12]);
      assert.deepEqual(ids(await post(hook, 'crm.type.list', { filter: { '=%title': '%#1' } })), [1]);
      assert.deepEqual(ids(await post(hook, 'crm.type.list', { filter: { '!%title': 'process #1', '>id': 8 } })), [9]);
      assert.deepEqual(ids(await post(hook, 'crm.type.list', { filter: { '!=id': 1, '<id': 3 } })), [2]);
      assert.deepEqual(ids(await post(hook, 'crm.type.list', { filter: { '>=entityTypeId': 1050, '<entityTypeId': 1054 } })), [10, 11]);
      // the docs' example: title contains 5 or 0, sorted by id DESC
      const or = { filter: { 0: { logic: 'OR', 0: { '%title': '5' }, 1: { '%title': '0' } } }, order: { id: 'DESC' } };
      assert.deepEqual(ids(await post(hook, 'crm.type.list', or)), [10, 5]);
      const form = 'filter[0][logic]=OR&filter[0][0][%25title]=5&filter[0][1][%25title]=0&order[id]=DESC';
      const viaForm = await json(await fetch(hook + 'crm.type.list', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form }));
      assert.deepEqual(ids(viaForm), [10, 5]);
    });
  });

  it('a bad filter or order field, a bad value or a bad direction is INVALID_ARG_VALUE', async () => {
    await withFake({}, async (_fake, hook) => {
      const cases: Array<[unknown, string]> = [
        [{ filter: { nope: 1 } }, "Invalid filter: field 'nope' is not allowed in filter"],
        [{ filter: { id: 'abc' } }, "Invalid filter: field 'id' has invalid value"],
        [{ order: { nope: 'ASC' } }, "Invalid order: field 'nope' is not allowed in order"],
        [{ order: { id: 'UP' } }, "Invalid order: allowed sort directions are ASC, DESC. But got 'UP' for field 'id'"],
      ];
      for (const [params, text] of cases) {
        const r = await post(hook, 'crm.type.list', params);
        assert.deepEqual([r.status, r.body.error, r.body.error_description], [400, 'INVALID_ARG_VALUE', text]);
      }
    });
  });
});

describe('fake Bitrix24: batch (settings/how-to-call-rest-api/batch.md)', () => {
  it('commands as query strings, $result references, result_error/result_total/result_next/result_time', async () => {
    await withFake({}, async (fake, hook) => {
      for (let i = 1; i <= 60; i++) fake.state.seedType({ title: `T${i}`, entityTypeId: 1030 + 2 * i });
      const r = await post(hook, 'batch', {
        halt: 0,
        cmd: {
          one: 'crm.type.get?id=1',
          byEtid: 'crm.type.getByEntityTypeId?entityTypeId=$result[one][type][entityTypeId]',
          list: 'crm.type.list?order[id]=ASC',
          missing: 'crm.type.get?id=999',
          me: 'user.current',
        },
      });
      assert.equal(r.status, 200);
      const b = r.body.result;
      assert.equal(b.result.byEtid.type.id, 1);
      assert.equal(b.result.list.types.length, 50);
      assert.deepEqual(b.result_total, { list: 60 });
      assert.deepEqual(b.result_next, { list: 50 });
      assert.deepEqual(b.result_error, { missing: { error: 0, error_description: 'SPA not found' }, me: { error: 'insufficient_scope', error_description: 'The request requires higher privileges than provided by the webhook token' } });
      assert.deepEqual(Object.keys(b.result_time), ['one', 'byEtid', 'list']);
      assert.equal('operating' in r.body.time, false, 'the outer batch is not accounted in operating (limits.md)');
      assert.equal(fake.stats.restRequests, 1);
      assert.equal(fake.calls.filter((c) => c.inBatch === fake.calls[0]!.seq).length, 5);
    });
  });

  it('halt stops at the first error; empty collections are [] as PHP writes them; nested batch is refused', async () => {
    await withFake({}, async (_fake, hook) => {
      const r = await post(hook, 'batch', { halt: 1, cmd: ['crm.type.get?id=1', 'crm.type.fields', 'batch?cmd[0]=scope'] });
      assert.deepEqual(r.body.result, { result: [], result_error: [{ error: 0, error_description: 'SPA not found' }], result_total: [], result_next: [], result_time: [] });
      const nested = await post(hook, 'batch', { cmd: { inner: 'batch?cmd[0]=scope' } });
      assert.equal(nested.body.result.result_error.inner.error, 'ERROR_BATCH_METHOD_NOT_ALLOWED');
    });
  });

  it('more than 50 commands: the ones beyond end with ERROR_BATCH_LENGTH_EXCEEDED; option "request" refuses the whole call', async () => {
    const cmd = Object.fromEntries(Array.from({ length: 52 }, (_, i) => [`c${i}`, 'scope']));
    await withFake({}, async (_fake, hook) => {
      const b = (await post(hook, 'batch', { cmd })).body.result;
      assert.equal(Object.keys(b.result).length, 50);
      assert.deepEqual(Object.keys(b.result_error), ['c50', 'c51']);
      assert.equal(b.result_error.c50.error, 'ERROR_BATCH_LENGTH_EXCEEDED');
    });
    await withFake({ batchOverLimit: 'request' }, async (_fake, hook) => {
      const r = await post(hook, 'batch', { cmd });
      assert.deepEqual([r.status, r.body.error], [400, 'ERROR_BATCH_LENGTH_EXCEEDED']);
    });
  });

  it('double-encoded commands in a query string (data-encoding.md "Double Encoding for Batch Requests")', async () => {
    await withFake({}, async (_fake, hook) => {
      const r = await json(await fetch(`${hook}batch?cmd[0]=crm.type.add%3Ffields%5Btitle%5D%3DJohn%2526Martin`));
      assert.equal(r.body.result.result[0].type.title, 'John&Martin');
    });
  });
});

describe('fake Bitrix24: limits (settings/performance/limits.md)', () => {
  it('leaky bucket: 50 requests pass, the next is 503 QUERY_LIMIT_EXCEEDED; it drains 2 per second; a batch counts once', async () => {
    const { clock, now } = frozenClock();
    await withFake({ now }, async (fake, hook) => {
      for (let i = 0; i < 50; i++) assert.equal((await post(hook, 'scope')).status, 200, `request ${i + 1}`);
      const refused = await post(hook, 'scope');
      assert.deepEqual([refused.status, refused.body], [503, { error: 'QUERY_LIMIT_EXCEEDED', error_description: 'Too many requests' }]);
      assert.equal(fake.stats.queryLimitExceeded, 1);
      clock.t += 500; // one request drained
      assert.equal((await post(hook, 'scope')).status, 200);
      assert.equal((await post(hook, 'scope')).status, 503);
      clock.t += 1000;
      assert.equal((await post(hook, 'batch', { cmd: ['scope', 'scope', 'scope'] })).status, 200);
      assert.equal((await post(hook, 'scope')).status, 200);
      assert.equal((await post(hook, 'scope')).status, 503);
      assert.equal(fake.stats.maxBucketLevel, 50);
    });
  });

  it('options: other numbers, the literal reading (burst+1 pass), a tick drain, no limits', async () => {
    const { clock, now } = frozenClock();
    await withFake({ now, limits: { burst: 5, perSecond: 5, admit: 'literal', drain: 'tick' } }, async (_fake, hook) => {
      const statuses = [];
      for (let i = 0; i < 7; i++) statuses.push((await post(hook, 'scope')).status);
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 503]);
      clock.t += 999; // still inside the same second? the tick is counted on whole seconds
      clock.t += 1;
      assert.equal((await post(hook, 'scope')).status, 200);
    });
    await withFake({ limits: false }, async (fake, hook) => {
      fake.inject.fillBucket(1000);
      assert.equal((await post(hook, 'scope')).status, 200);
    });
  });

  it('operating time: over the limit a method answers 429 OPERATION_TIME_LIMIT until operating_reset_at; other methods and credentials go on', async () => {
    const { clock, now } = frozenClock();
    await withFake({ now, operating: { limitSeconds: 10, costSeconds: { 'crm.type.list': 4 } } }, async (fake, hook) => {
      const r1 = await post(hook, 'crm.type.list');
      assert.ok(r1.body.time.operating >= 4);
      assert.equal(r1.body.time.operating_reset_at, Math.floor((now() + 600_000) / 1000));
      clock.t += 61_000;
      await post(hook, 'crm.type.list');
      await post(hook, 'crm.type.list'); // 12 s: this call ran, the next is refused
      const blocked = await post(hook, 'crm.type.list');
      assert.deepEqual([blocked.status, blocked.body.error], [429, 'OPERATION_TIME_LIMIT']);
      assert.equal((await post(hook, 'crm.type.fields')).status, 200, 'another method');
      assert.equal((await post(fake.addWebhook(), 'crm.type.list')).status, 200, 'another webhook');
      clock.t += 600_000 - 61_000; // the first minute basket (4 s) drops out: 8 s left
      assert.equal((await post(hook, 'crm.type.list')).status, 200);
      assert.equal(fake.stats.operationTimeLimit, 1);
    });
  });

  it('inject.exhaustOperating blocks a method for every credential for 10 minutes; in a batch the command fails alone', async () => {
    const { clock, now } = frozenClock();
    await withFake({ now }, async (fake, hook) => {
      fake.inject.exhaustOperating('crm.type.get');
      assert.equal((await post(hook, 'crm.type.get', { id: 1 })).status, 429);
      const b = (await post(hook, 'batch', { cmd: { a: 'crm.type.get?id=1', b: 'scope' } })).body.result;
      assert.equal(b.result_error.a.error, 'OPERATION_TIME_LIMIT');
      assert.ok(b.result.b);
      clock.t += 600_000;
      assert.equal((await post(hook, 'crm.type.get', { id: 1 })).body.error, 0);
    });
  });
});

describe('fake Bitrix24: OAuth authorization server (settings/oauth/*.md)', () => {
  it('refresh_token: a new pair with the documented fields; the used refresh token is dead (auto-renewal.md)', async () => {
    const { clock, now } = frozenClock();
    await withFake({ now }, async (fake) => {
      const first = fake.oauth.issueTokens();
      clock.t += 3_600_000;
      assert.equal((await post(fake.clientEndpoint, 'crm.type.list', { auth: first.access_token })).body.error, 'expired_token');
      const q = new URLSearchParams({ grant_type: 'refresh_token', client_id: fake.oauth.clientId, client_secret: fake.oauth.clientSecret, refresh_token: first.refresh_token });
      const r = await json(await fetch(`${fake.oauth.tokenUrl}?${q}`));
      assert.equal(r.status, 200);
      assert.deepEqual(Object.keys(r.body).sort(), ['access_token', 'client_endpoint', 'domain', 'expires', 'expires_in', 'member_id', 'refresh_token', 'scope', 'server_endpoint', 'status', 'user_id']);
      assert.equal(r.body.client_endpoint, fake.clientEndpoint);
      assert.equal(r.body.domain, 'oauth.bitrix.info', 'domain is the authorization server');
      assert.equal(r.body.expires_in, 3600);
      assert.equal(r.body.member_id, fake.memberId);
      assert.equal(r.body.scope, 'crm,user');
      assert.equal(r.body.user_id, 1);
      assert.equal((await post(fake.clientEndpoint, 'crm.type.list', { auth: r.body.access_token })).status, 200);
      const again = await json(await fetch(`${fake.oauth.tokenUrl}?${q}`));
      assert.deepEqual([again.status, again.body.error], [400, 'invalid_grant']);
      assert.equal(fake.stats.tokensRefreshed, 1);
      assert.equal(fake.stats.invalidGrant, 1);
    });
  });

  it('concurrent refreshes with one refresh token: exactly one succeeds, the rest get invalid_grant', async () => {
    await withFake({}, async (fake) => {
      const { refresh_token } = fake.oauth.issueTokens();
      const q = new URLSearchParams({ grant_type: 'refresh_token', client_id: fake.oauth.clientId, client_secret: fake.oauth.clientSecret, refresh_token });
      const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${fake.oauth.tokenUrl}?${q}`).then(json)));
      assert.equal(answers.filter((a) => a.status === 200).length, 1);
      assert.equal(answers.filter((a) => a.body.error === 'invalid_grant').length, 19);
      assert.equal(fake.stats.tokensRefreshed, 1);
      assert.equal(fake.oauth.calls.length, 20);
    });
  });

  it('token endpoint errors: invalid_request, invalid_client, PAYMENT_REQUIRED (oauth/error-codes.md); POST form works too', async () => {
    await withFake({}, async (fake) => {
      const { refresh_token } = fake.oauth.issueTokens();
      const send = (p: Record<string, string>) => fetch(fake.oauth.tokenUrl, { method: 'POST', body: new URLSearchParams(p) }).then(json);
      assert.equal((await send({ grant_type: 'refresh_token' })).body.error, 'invalid_request');
      assert.equal((await send({ grant_type: 'refresh_token', client_id: fake.oauth.clientId, client_secret: 'wrong', refresh_token })).body.error, 'invalid_client');
      fake.oauth.paymentRequired = true;
      assert.equal((await send({ grant_type: 'refresh_token', client_id: fake.oauth.clientId, client_secret: fake.oauth.clientSecret, refresh_token })).body.error, 'PAYMENT_REQUIRED');
      fake.oauth.paymentRequired = false;
      assert.equal((await send({ grant_type: 'refresh_token', client_id: fake.oauth.clientId, client_secret: fake.oauth.clientSecret, refresh_token })).status, 200);
      assert.equal(fake.oauth.isRefreshTokenAlive(refresh_token), false);
    });
  });

  it('authorize → redirect with code, state, domain, member_id, scope, server_domain; the code is single-use and lives 30 s (oauth/index.md)', async () => {
    const { clock, now } = frozenClock();
    await withFake({ now, users: [{ id: 1 }, { id: 9 }], oauth: { redirectUri: 'https://app.example.invalid/back/' } }, async (fake) => {
      fake.oauth.authorizingUserId = 9;
      const r = await fetch(fake.oauth.authorizeUrl('JJHgsdgfkdaslg7lbadsfg'), { redirect: 'manual' });
      assert.equal(r.status, 302);
      const back = new URL(r.headers.get('location')!);
      assert.equal(back.origin + back.pathname, 'https://app.example.invalid/back/');
      assert.deepEqual([...back.searchParams.keys()], ['code', 'state', 'domain', 'member_id', 'scope', 'server_domain']);
      assert.equal(back.searchParams.get('state'), 'JJHgsdgfkdaslg7lbadsfg');
      assert.equal(back.searchParams.get('domain'), fake.domain);
      assert.match(r.headers.get('location')!, /scope=crm%2Cuser/);
      const exchange = (code: string) =>
        fetch(`${fake.oauth.tokenUrl}?${new URLSearchParams({ grant_type: 'authorization_code', client_id: fake.oauth.clientId, client_secret: fake.oauth.clientSecret, code })}`).then(json);
      const tokens = await exchange(back.searchParams.get('code')!);
      assert.equal(tokens.status, 200);
      assert.equal('user_id' in tokens.body, false, "the docs' authorization_code answer has no user_id");
      assert.equal((await post(fake.clientEndpoint, 'user.current', { auth: tokens.body.access_token })).body.result.ID, '9');
      assert.equal((await exchange(back.searchParams.get('code')!)).body.error, 'invalid_grant', 'single use');

      const late = new URL((await fetch(fake.oauth.authorizeUrl(), { redirect: 'manual' })).headers.get('location')!);
      clock.t += 30_000;
      assert.equal((await exchange(late.searchParams.get('code')!)).body.error, 'invalid_grant', 'expired after 30 s');
    });
  });

  it('authorize without a redirect URI shows the code; an unknown client gets an error page without redirect', async () => {
    await withFake({}, async (fake) => {
      const page = await fetch(fake.oauth.authorizeUrl('s'), { redirect: 'manual' });
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<code id="code">[a-z0-9]{32}<\/code>/);
      const bad = await fetch(`${fake.url}/oauth/authorize/?client_id=unknown`, { redirect: 'manual' });
      assert.equal(bad.status, 400);
      assert.equal(bad.headers.get('location'), null);
    });
  });

  it('expireAccessTokens forces expired_token now; the refreshed token works', async () => {
    await withFake({}, async (fake) => {
      const t = fake.oauth.issueTokens();
      fake.oauth.expireAccessTokens();
      const r = await post(fake.clientEndpoint, 'crm.type.list', { auth: t.access_token });
      assert.deepEqual([r.status, r.body.error], [401, 'expired_token']);
    });
  });
});

describe('fake Bitrix24: fault injection', () => {
  it('latency delays the answer of the method named', async () => {
    await withFake({}, async (fake, hook) => {
      fake.inject.latency('crm.type.list', 120, 1);
      const t0 = Date.now();
      await post(hook, 'crm.type.list');
      assert.ok(Date.now() - t0 >= 110);
      const t1 = Date.now();
      await post(hook, 'crm.type.list');
      assert.ok(Date.now() - t1 < 100);
    });
  });

  it('500 INTERNAL_SERVER_ERROR and 503 OVERLOAD_LIMIT for the next N calls (system-errors.md)', async () => {
    await withFake({}, async (fake, hook) => {
      fake.inject.internalError('crm.type.list', 2);
      fake.inject.overload('crm.type.fields');
      assert.deepEqual((await post(hook, 'crm.type.list')).body, { error: 'INTERNAL_SERVER_ERROR', error_description: 'Internal server error' });
      assert.equal((await post(hook, 'crm.type.list')).status, 500);
      assert.equal((await post(hook, 'crm.type.list')).status, 200);
      const o = await post(hook, 'crm.type.fields');
      assert.deepEqual([o.status, o.body.error], [503, 'OVERLOAD_LIMIT']);
      assert.deepEqual(fake.inject.pending(), []);
    });
  });

  it('error faults reach batch commands one by one, or the whole batch when aimed at "batch"; "*" spares the token endpoint', async () => {
    await withFake({}, async (fake, hook) => {
      fake.inject.internalError('crm.type.fields');
      const b = (await post(hook, 'batch', { cmd: { f: 'crm.type.fields', s: 'scope' } })).body.result;
      assert.equal(b.result_error.f.error, 'INTERNAL_SERVER_ERROR');
      assert.ok(b.result.s);
      fake.inject.overload('batch');
      assert.equal((await post(hook, 'batch', { cmd: ['scope'] })).status, 503);
      fake.inject.drop('*');
      const { refresh_token } = fake.oauth.issueTokens();
      const q = new URLSearchParams({ grant_type: 'refresh_token', client_id: fake.oauth.clientId, client_secret: fake.oauth.clientSecret, refresh_token });
      assert.equal((await fetch(`${fake.oauth.tokenUrl}?${q}`)).status, 200);
      await assert.rejects(post(hook, 'scope'));
    });
  });

  it('a dropped connection: the socket closes before anything is done', async () => {
    await withFake({}, async (fake, hook) => {
      fake.inject.drop('crm.type.add');
      await assert.rejects(post(hook, 'crm.type.add', { fields: { title: 'X' } }));
      assert.deepEqual(fake.state.types(), []);
      assert.equal(fake.stats.dropped, 1);
    });
  });

  it('a timeout: the request is never answered; close() still ends', async () => {
    await withFake({}, async (fake, hook) => {
      fake.inject.hang('crm.type.get');
      await assert.rejects(fetch(hook + 'crm.type.get', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(150) }));
      assert.equal(fake.stats.hung, 1);
      fake.inject.hang('crm.type.get');
      void fetch(hook + 'crm.type.get', { method: 'POST' }).catch(() => {});
    });
  });

  it('a write that happens but whose answer is lost (crm.type.add applied, then the socket destroyed)', async () => {
    await withFake({}, async (fake, hook) => {
      fake.inject.loseAnswer('crm.type.add');
      await assert.rejects(post(hook, 'crm.type.add', { fields: { title: 'Ghost', entityTypeId: 1600 } }));
      assert.equal(fake.state.type({ entityTypeId: 1600 })?.title, 'Ghost');
      assert.equal(fake.stats.answersLost, 1);
      assert.equal(fake.calls.at(-1)!.fault, 'lose-answer');
    });
  });

  it('token endpoint faults: a refresh whose answer is lost kills the old refresh token', async () => {
    await withFake({}, async (fake) => {
      const { refresh_token } = fake.oauth.issueTokens();
      fake.inject.loseAnswer('oauth.token');
      const q = new URLSearchParams({ grant_type: 'refresh_token', client_id: fake.oauth.clientId, client_secret: fake.oauth.clientSecret, refresh_token });
      await assert.rejects(fetch(`${fake.oauth.tokenUrl}?${q}`));
      assert.equal(fake.oauth.isRefreshTokenAlive(refresh_token), false);
      assert.equal((await json(await fetch(`${fake.oauth.tokenUrl}?${q}`))).body.error, 'invalid_grant');
    });
  });

  it('records keep no webhook secret and no client secret', async () => {
    await withFake({}, async (fake, hook) => {
      await post(hook, 'crm.type.list');
      const secret = hook.split('/').at(-2)!;
      const dump = JSON.stringify({ calls: fake.calls, tokenCalls: fake.oauth.calls });
      assert.ok(!dump.includes(secret));
      assert.ok(!dump.includes(fake.oauth.clientSecret));
      assert.equal(fake.calls[0]!.webhookId, 1);
      assert.equal(fake.calls[0]!.userId, 1);
    });
  });
});
