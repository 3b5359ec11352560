import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { ERROR_TABLE, type ErrorCode } from '../../src/errors.js';
import { INT32_MAX } from '../../src/domain/input-rules.js';
import { createTestApp, json, type TestApp } from '../helpers/app.js';

/** The seed page's PATCH body (/work/shared/seeds, "Update a smart process type"), as the hosted API's guide sends it. */
const SEED_PATCH_BODY = { title: 'Supply contracts (updated name)', code: 'supply_contracts', isAutomationEnabled: false };

type Operation = {
  operationId?: string;
  security?: Record<string, string[]>[];
  parameters?: { in: string; name: string; schema: { type: string; minimum?: number; maximum?: number }; example?: unknown }[];
  requestBody?: { content: Record<string, { example?: unknown }> };
  responses: Record<string, { description: string; content?: Record<string, { examples?: Record<string, { value: { error: { code: string } } }> }> }>;
};
type Document = { info: { title: string; description: string }; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, { type: string; scheme?: string; in?: string; name?: string }> } };

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
function operations(doc: Document): [string, string, Operation][] {
  return Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).filter(([m]) => METHODS.includes(m)).map(([m, op]) => [m.toUpperCase(), path, op] as [string, string, Operation]));
}

const BOTH_WAYS = [{ ApiKey: [] }, { ApiKey: [], Session: [] }];

describe('the OpenAPI document (/v1/openapi.json)', () => {
  let t: TestApp;
  let doc: Document;
  before(async () => {
    t = await createTestApp();
    doc = json(await t.app.inject({ method: 'GET', url: '/v1/openapi.json' })) as unknown as Document;
  });
  after(() => t.close());

  it('passes the OpenAPI linter (@redocly/openapi-core, recommended rules) with 0 errors', async () => {
    const config = await createConfig({ extends: ['recommended'] });
    const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: 'openapi.json', config });
    const shown = problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`);
    assert.deepEqual(shown.filter((p) => p.startsWith('error')), [], shown.join('\n'));
  });

  it('the linter does find errors (it is not a test that cannot fail)', async () => {
    const broken = structuredClone(doc);
    const [, , op] = operations(broken)[0];
    op.security = [{ NoSuchScheme: [] }];
    const config = await createConfig({ extends: ['recommended'] });
    const problems = await lintFromString({ source: JSON.stringify(broken), absoluteRef: 'openapi.json', config });
    assert.ok(problems.some((p) => p.severity === 'error' && p.ruleId === 'security-defined'));
  });

  it('is titled for smartproc and explains both ways to authenticate', () => {
    assert.equal(doc.info.title, 'smartproc');
    assert.match(doc.info.description, /personal key/);
    assert.match(doc.info.description, /application key.*plus.*session/is);
    assert.deepEqual(doc.components.securitySchemes.ApiKey, { ...doc.components.securitySchemes.ApiKey, type: 'apiKey', in: 'header', name: 'X-Api-Key' });
    assert.deepEqual(doc.components.securitySchemes.Session, { ...doc.components.securitySchemes.Session, type: 'http', scheme: 'bearer' });
  });

  it('every operation has an operationId, each a different one', () => {
    const ids = operations(doc).map(([method, path, op]) => {
      assert.match(op.operationId ?? '', /^[a-z][A-Za-z]+$/, `${method} ${path} has an operationId`);
      return op.operationId;
    });
    assert.equal(new Set(ids).size, ids.length, `duplicates in ${ids.join(', ')}`);
    assert.ok(ids.includes('updateSmartProcess') && ids.includes('listSmartProcesses'));
  });

  it('portal routes take a personal key alone OR an application key with a Bearer session; management routes a key alone', () => {
    const checked = operations(doc).filter(([method, path, op]) => {
      if (path.startsWith('/v1/smart-processes') || path === '/v1/me') {
        assert.deepEqual(op.security, BOTH_WAYS, `${method} ${path}`);
        return true;
      }
      if (/^\/v1\/(keys|portals|sessions)\b/.test(path)) {
        assert.deepEqual(op.security, [{ ApiKey: [] }], `${method} ${path}`);
        return true;
      }
      return false;
    });
    assert.ok(checked.length >= 20, `${checked.length} operations checked`);
    // Every operation says how to authenticate: the Bearer scheme is attached where an application key may call.
    for (const [method, path, op] of operations(doc)) assert.ok(Array.isArray(op.security), `${method} ${path} has security`);
    assert.ok(operations(doc).some(([, , op]) => op.security?.some((s) => 'Session' in s)));
  });

  it('path ids are integers from 1 to 2^31-1 (entityTypeId, portal id); key ids stay text', () => {
    const pathParams = operations(doc).flatMap(([method, path, op]) => (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => ({ method, path, ...p })));
    const ids = pathParams.filter((p) => p.name === 'entityTypeId' || p.path.startsWith('/v1/portals/'));
    assert.ok(ids.length >= 6);
    for (const p of ids) assert.deepEqual({ ...p.schema }, { type: 'integer', minimum: 1, maximum: INT32_MAX }, `${p.method} ${p.path} ${p.name}`);
    assert.equal(ids.find((p) => p.name === 'entityTypeId')?.example, 1050, 'the seed\'s entityTypeId is the example');
    for (const p of pathParams.filter((p) => p.path.startsWith('/v1/keys/'))) assert.equal(p.schema.type, 'string');
  });

  it('object query parameters (filter, order) are deepObject with an empty example, so "Try it out" sends none by default', () => {
    const objects = operations(doc).flatMap(([method, path, op]) => (op.parameters ?? []).filter((p) => p.in === 'query' && p.schema.type === 'object').map((p) => ({ method, path, ...p })));
    assert.ok(objects.some((p) => p.name === 'filter'));
    for (const p of objects) assert.deepEqual([(p as { style?: string }).style, (p as { explode?: boolean }).explode, p.example], ['deepObject', true, {}], `${p.method} ${p.path} ${p.name}`);
  });

  it('each error answer shows an example of each of its own codes, with that status', () => {
    let count = 0;
    for (const [method, path, op] of operations(doc)) {
      for (const [status, answer] of Object.entries(op.responses).filter(([s]) => Number(s) >= 400)) {
        const examples = answer.content?.['application/json']?.examples ?? {};
        const listed = [...answer.description.matchAll(/^([A-Z_]+):/gm)].map((m) => m[1]);
        assert.deepEqual(Object.keys(examples).sort(), [...new Set(listed)].sort(), `${method} ${path} ${status}: one example per code listed`);
        for (const [name, example] of Object.entries(examples)) {
          assert.equal(example.value.error.code, name, `${method} ${path} ${status}`);
          assert.equal(ERROR_TABLE[name as ErrorCode].status, Number(status), `${name} is a ${status}`);
          count++;
        }
      }
    }
    const notFound = doc.paths['/v1/smart-processes/{entityTypeId}'].patch.responses['404'].content!['application/json'].examples!;
    assert.deepEqual(Object.keys(notFound), ['SMART_PROCESS_NOT_FOUND']);
    assert.ok(count > 100, `${count} examples`);
  });

  it('the PATCH example is the seed\'s body, and it succeeds as sent on the example id', async () => {
    const create = doc.paths['/v1/smart-processes'].post;
    const createBody = create.requestBody!.content['application/json'].example;
    const created = await t.call('POST', '/v1/smart-processes', createBody);
    assert.equal(created.statusCode, 201, created.body);

    const patch = doc.paths['/v1/smart-processes/{entityTypeId}'].patch;
    const body = patch.requestBody!.content['application/json'].example;
    assert.deepEqual(body, SEED_PATCH_BODY);
    const id = patch.parameters!.find((p) => p.name === 'entityTypeId')!.example;
    const res = await t.call('PATCH', `/v1/smart-processes/${id}`, body);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(json(res).data.title, SEED_PATCH_BODY.title);
    assert.equal(json(res).data.code, SEED_PATCH_BODY.code);
  });

  it('/docs is titled for smartproc and loads nothing from another server', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/docs/' });
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /<title>smartproc API reference<\/title>/);
    assert.doesNotMatch(res.body, /(src|href)="https?:/);
    const csp = String(res.headers['content-security-policy']);
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /upgrade-insecure-requests/, '"Try it out" must work on a plain-HTTP address');
  });
});
