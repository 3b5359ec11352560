import assert from 'node:assert/strict';
import net from 'node:net';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import qs from 'qs';
import { Bitrix24Error, Bitrix24RestClient, batchCommandText, classifyBitrix24Error, parseWebhookUrl, type Bitrix24ErrorKind } from '../../../src/portals/bitrix24/rest-client.js';
import { reply, sleep, startStub, TIME, type Stub } from './http-stub.js';

const SECRET = 'w3bh00ks3cr3tabc';
const TOKEN = 's1morf609228iwyjjpvfv6wsvuja4p8u';

/** Every way an error may end up in a log or an answer. */
function renderings(error: unknown): string[] {
  return [String(error), (error as Error).message, (error as Error).stack ?? '', inspect(error, { depth: 5 }), JSON.stringify(error), JSON.stringify({ ...(error as object) })];
}

function assertNoSecret(error: unknown, ...secrets: string[]): void {
  for (const text of renderings(error)) for (const secret of secrets) assert.ok(!text.includes(secret), `secret leaked in: ${text}`);
}

async function failure(promise: Promise<unknown>): Promise<Bitrix24Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Bitrix24Error, `expected a Bitrix24Error, got ${inspect(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

describe('Bitrix24 REST client: transports and the documented answer shapes', () => {
  let stub: Stub;
  before(async () => {
    stub = await startStub((req, res) => {
      if (req.url.endsWith('/crm.type.list.json')) return reply(res, 200, { result: { types: [{ id: 1 }] }, total: 120, next: 50, time: TIME });
      if (req.url.endsWith('/batch.json')) {
        return reply(res, 200, {
          result: {
            result: { a: { type: { id: 7 } } },
            result_error: { b: { error: 0, error_description: 'Smart process not found' } },
            result_total: { c: 3 },
            result_next: [],
            result_time: { a: TIME },
          },
          time: TIME,
        });
      }
      return reply(res, 200, { result: { type: { id: 7, entityTypeId: 1032 } }, time: TIME });
    });
  });
  after(() => stub.close());

  it('webhook: POST {base}{method}.json with a JSON body, Accept, User-Agent', async () => {
    const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
    const answer = await client.call('crm.type.get', { id: 7 });
    assert.deepEqual(answer, { result: { type: { id: 7, entityTypeId: 1032 } }, time: TIME });
    const request = stub.requests.at(-1)!;
    assert.equal(request.method, 'POST');
    assert.equal(request.url, `/rest/1/${SECRET}/crm.type.get.json`);
    assert.deepEqual(request.json, { id: 7 });
    assert.match(String(request.headers['content-type']), /^application\/json/);
    assert.equal(request.headers.accept, 'application/json');
    assert.match(String(request.headers['user-agent']), /^smartproc\//);
    assert.equal(client.domain, `127.0.0.1:${stub.port}`);
    assert.equal(client.userId, 1);
    assert.equal(client.type, 'webhook');
  });

  it('OAuth: {client_endpoint}{method}.json with auth=<token> in the body; total and next are kept', async () => {
    const client = Bitrix24RestClient.oauth(`${stub.base}/rest`);
    const answer = await client.call('crm.type.list', { start: 0 }, { auth: { accessToken: TOKEN } });
    assert.deepEqual(answer, { result: { types: [{ id: 1 }] }, total: 120, next: 50, time: TIME });
    const request = stub.requests.at(-1)!;
    assert.equal(request.url, '/rest/crm.type.list.json');
    assert.deepEqual(request.json, { start: 0, auth: TOKEN });
    assert.equal(client.userId, undefined);
  });

  it('OAuth: a client_endpoint from the latest token answer wins; a call without a token is a programming error', async () => {
    const client = Bitrix24RestClient.oauth('https://old.example.invalid/rest/');
    await client.call('crm.type.fields', {}, { auth: { accessToken: TOKEN, clientEndpoint: `${stub.base}/rest/` } });
    assert.equal(stub.requests.at(-1)!.url, '/rest/crm.type.fields.json');
    await assert.rejects(client.call('crm.type.fields'), TypeError);
  });

  it('refuses method names that could change the path', async () => {
    const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
    for (const bad of ['../x', 'crm.type.get?x=1', 'crm/type', '', 'a..b']) await assert.rejects(client.call(bad), TypeError);
  });

  it('batch: {halt, cmd} with each command as method?query (values URL-encoded once); results, errors, totals by key', async () => {
    const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
    const answer = await client.batch(
      {
        a: { method: 'crm.type.get', params: { id: 7 } },
        b: { method: 'crm.type.getByEntityTypeId', params: { entityTypeId: 1234 } },
        c: { method: 'crm.type.list', params: { filter: { title: 'A&B [x]' }, order: { id: 'ASC' }, start: -1 } },
      },
      true,
    );
    const request = stub.requests.at(-1)!;
    assert.equal(request.url, `/rest/1/${SECRET}/batch.json`);
    assert.equal(request.json.halt, 1);
    assert.deepEqual(Object.keys(request.json.cmd), ['a', 'b', 'c']);
    assert.equal(request.json.cmd.a, 'crm.type.get?id=7');
    assert.equal(request.json.cmd.b, 'crm.type.getByEntityTypeId?entityTypeId=1234');
    assert.match(request.json.cmd.c, /^crm\.type\.list\?/);
    // What PHP would parse out of the command (qs parses like PHP's parse_str).
    assert.deepEqual(qs.parse(request.json.cmd.c.split('?')[1]), { filter: { title: 'A&B [x]' }, order: { id: 'ASC' }, start: '-1' });
    assert.deepEqual(answer.result, { a: { type: { id: 7 } } });
    assert.deepEqual(answer.total, { c: 3 });
    assert.deepEqual(answer.next, {});
    assert.deepEqual(answer.times.a, TIME);
    assert.deepEqual(answer.time, TIME);
    const error = answer.errors.b;
    assert.ok(error instanceof Bitrix24Error);
    assert.equal(error.code, 0);
    assert.equal(error.kind, 'not_found', 'classified with the command method, not "batch"');
    assert.equal(error.method, 'crm.type.getByEntityTypeId');
  });

  it('batch: at most 50 commands; arrays get numeric keys; no nested batch', async () => {
    const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
    const many = Array.from({ length: 51 }, () => 'crm.type.fields');
    await assert.rejects(client.batch(many), RangeError);
    await client.batch(many.slice(0, 50));
    assert.equal(Object.keys(stub.requests.at(-1)!.json.cmd).length, 50);
    assert.equal(stub.requests.at(-1)!.json.cmd['49'], 'crm.type.fields');
    assert.equal(stub.requests.at(-1)!.json.halt, 0);
    assert.throws(() => batchCommandText({ method: 'batch' }), TypeError);
  });
});

describe('Bitrix24 REST client: native errors are one Bitrix24Error with the native code and a kind', () => {
  const cases: { name: string; status: number; body: unknown; method?: string; kind: Bitrix24ErrorKind; code: string | number }[] = [
    { name: 'numeric 0 on get', status: 400, body: { error: 0, error_description: 'SPA not found' }, kind: 'not_found', code: 0 },
    { name: 'numeric 0 on getByEntityTypeId', status: 400, body: { error: 0, error_description: 'Smart process not found' }, method: 'crm.type.getByEntityTypeId', kind: 'not_found', code: 0 },
    { name: 'numeric 0 on delete', status: 400, body: { error: 0, error_description: 'Smart process not found' }, method: 'crm.type.delete', kind: 'not_found', code: 0 },
    { name: 'string "0" on update (defensive reading)', status: 400, body: { error: '0', error_description: 'SPA not found' }, method: 'crm.type.update', kind: 'not_found', code: '0' },
    { name: '0 on add is a validation error', status: 400, body: { error: 0, error_description: 'Select a workplace' }, method: 'crm.type.add', kind: 'method', code: 0 },
    { name: 'INVALID_ARG_VALUE', status: 400, body: { error: 'INVALID_ARG_VALUE', error_description: 'entityTypeId is out of allowed range' }, method: 'crm.type.add', kind: 'method', code: 'INVALID_ARG_VALUE' },
    { name: 'BX_ERROR', status: 400, body: { error: 'BX_ERROR', error_description: 'has elements' }, method: 'crm.type.delete', kind: 'method', code: 'BX_ERROR' },
    { name: 'missing parameter 100', status: 400, body: { error: '100', error_description: 'Could not find value for parameter {fields}' }, method: 'crm.type.add', kind: 'method', code: '100' },
    { name: 'ACCESS_DENIED (400)', status: 400, body: { error: 'ACCESS_DENIED', error_description: 'Access denied' }, kind: 'access_denied', code: 'ACCESS_DENIED' },
    { name: 'insufficient_scope', status: 403, body: { error: 'insufficient_scope', error_description: '' }, kind: 'access_denied', code: 'insufficient_scope' },
    { name: 'INVALID_CREDENTIALS (user lacks rights)', status: 403, body: { error: 'INVALID_CREDENTIALS', error_description: 'Invalid request credentials' }, kind: 'access_denied', code: 'INVALID_CREDENTIALS' },
    { name: 'user_access_error', status: 403, body: { error: 'user_access_error', error_description: 'x' }, kind: 'access_denied', code: 'user_access_error' },
    { name: 'allowed_only_intranet_user', status: 403, body: { error: 'allowed_only_intranet_user', error_description: 'x' }, kind: 'access_denied', code: 'allowed_only_intranet_user' },
    { name: 'expired_token', status: 401, body: { error: 'expired_token', error_description: 'The access token provided has expired.' }, kind: 'expired_token', code: 'expired_token' },
    { name: 'NO_AUTH_FOUND', status: 401, body: { error: 'NO_AUTH_FOUND', error_description: 'Wrong authorization data' }, kind: 'invalid_credentials', code: 'NO_AUTH_FOUND' },
    { name: 'invalid_token', status: 401, body: { error: 'invalid_token', error_description: 'The access token provided is invalid.' }, kind: 'invalid_credentials', code: 'invalid_token' },
    { name: 'QUERY_LIMIT_EXCEEDED', status: 503, body: { error: 'QUERY_LIMIT_EXCEEDED', error_description: 'Too many requests' }, kind: 'query_limit', code: 'QUERY_LIMIT_EXCEEDED' },
    { name: 'OPERATION_TIME_LIMIT', status: 429, body: { error: 'OPERATION_TIME_LIMIT', error_description: 'Method is blocked due to operation time limit.' }, kind: 'operation_time_limit', code: 'OPERATION_TIME_LIMIT' },
    { name: 'OVERLOAD_LIMIT', status: 503, body: { error: 'OVERLOAD_LIMIT', error_description: 'REST API is blocked due to overload' }, kind: 'overload', code: 'OVERLOAD_LIMIT' },
    { name: 'INTERNAL_SERVER_ERROR', status: 500, body: { error: 'INTERNAL_SERVER_ERROR', error_description: 'Internal server error' }, kind: 'server', code: 'INTERNAL_SERVER_ERROR' },
    { name: 'ERROR_CORE', status: 500, body: { error: 'ERROR_CORE', error_description: 'x' }, kind: 'server', code: 'ERROR_CORE' },
    { name: 'an unknown 5xx code', status: 502, body: { error: 'SOMETHING_NEW', error_description: 'x' }, kind: 'server', code: 'SOMETHING_NEW' },
    { name: 'an HTML 502 from a proxy', status: 502, body: '<html>Bad gateway</html>', kind: 'server', code: 'HTTP_502' },
    { name: 'a 200 that is not the documented JSON', status: 200, body: '<html>maintenance</html>', kind: 'server', code: 'UNEXPECTED_ANSWER' },
  ];
  let stub: Stub;
  before(async () => {
    stub = await startStub((req, res) => {
      const chosen = cases[Number(req.json?.case)];
      reply(res, chosen.status, chosen.body);
    });
  });
  after(() => stub.close());

  for (const [index, c] of cases.entries()) {
    it(`${c.name} -> ${c.kind}`, async () => {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const method = c.method ?? 'crm.type.get';
      const error = await failure(client.call(method, { case: index }));
      assert.equal(error.kind, c.kind);
      assert.strictEqual(error.code, c.code);
      assert.equal(error.status, c.status);
      assert.equal(error.method, method);
      if (typeof c.body === 'object') assert.equal(error.description, (c.body as { error_description: string }).error_description);
      assert.equal(error.name, 'Bitrix24Error');
      assertNoSecret(error, SECRET);
    });
  }

  it('the classification never reads the (localized) description', () => {
    assert.equal(classifyBitrix24Error('QUERY_LIMIT_EXCEEDED', 503, 'crm.type.get'), 'query_limit');
    assert.equal(classifyBitrix24Error('WHATEVER', 401, 'crm.type.get'), 'invalid_credentials');
    assert.equal(classifyBitrix24Error('WHATEVER', 403, 'crm.type.get'), 'access_denied');
    assert.equal(classifyBitrix24Error('WHATEVER', 400, 'crm.type.get'), 'method');
  });

  it('an error answer that carries a time block keeps it (operating_reset_at)', async () => {
    const local = await startStub((_req, res) => reply(res, 429, { error: 'OPERATION_TIME_LIMIT', error_description: 'blocked', time: { ...TIME, operating: 481 } }, { 'retry-after': '7' }));
    try {
      const error = await failure(Bitrix24RestClient.webhook(`${local.base}/rest/1/${SECRET}/`).call('crm.type.list'));
      assert.equal(error.time?.operating_reset_at, TIME.operating_reset_at);
      assert.equal(error.retryAfterMs, 7000);
    } finally {
      await local.close();
    }
  });

  it('a redirect is not followed (the body with the token would go elsewhere)', async () => {
    const local = await startStub((_req, res) => reply(res, 302, '', { location: 'http://127.0.0.1:1/elsewhere' }));
    try {
      const error = await failure(Bitrix24RestClient.oauth(`${local.base}/rest/`).call('crm.type.list', {}, { auth: { accessToken: TOKEN } }));
      assert.equal(error.status, 302);
      assert.equal(error.kind, 'method');
      assertNoSecret(error, TOKEN);
    } finally {
      await local.close();
    }
  });
});

describe('Bitrix24 REST client: transport failures say whether the request may have been executed', () => {
  it('a connection dropped after the request arrived -> answer_lost (the write may have happened)', async () => {
    const stub = await startStub((_req, res) => void res.socket?.destroy());
    try {
      const error = await failure(Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`).call('crm.type.add', { fields: { title: 'x' } }));
      assert.equal(error.kind, 'answer_lost');
      assert.equal(error.code, 'ANSWER_LOST');
      assert.equal(error.status, 0);
      assert.equal(error.notExecuted, false);
      assert.equal(stub.requests.length, 1, 'the portal got it');
      assertNoSecret(error, SECRET);
    } finally {
      await stub.close();
    }
  });

  it('a connection dropped in the middle of the answer -> answer_lost', async () => {
    const stub = await startStub((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"result":');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    try {
      const error = await failure(Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`).call('crm.type.add', { fields: {} }));
      assert.equal(error.kind, 'answer_lost');
    } finally {
      await stub.close();
    }
  });

  it('no answer within the per-call timeout -> answer_lost after about timeoutMs', async () => {
    const stub = await startStub(() => {});
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`, { timeoutMs: 5000 });
      const started = Date.now();
      const error = await failure(client.call('crm.type.add', { fields: {} }, { timeoutMs: 150 }));
      const took = Date.now() - started;
      assert.equal(error.kind, 'answer_lost');
      assert.match(error.description, /150 ms/);
      assert.ok(took >= 140 && took < 2000, `took ${took} ms`);
      assertNoSecret(error, SECRET);
    } finally {
      await stub.close();
    }
  });

  it('connection refused -> network (never sent: safe to repeat)', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const error = await failure(Bitrix24RestClient.webhook(`http://127.0.0.1:${port}/rest/1/${SECRET}/`).call('crm.type.add', { fields: {} }));
    assert.equal(error.kind, 'network');
    assert.equal(error.causeCode, 'ECONNREFUSED');
    assert.equal(error.notExecuted, true);
    assertNoSecret(error, SECRET);
  });

  it('a timeout before the request left (TLS handshake never answered) -> timeout, not answer_lost', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const error = await failure(Bitrix24RestClient.oauth(`https://127.0.0.1:${port}/rest/`).call('crm.type.add', { fields: {} }, { auth: { accessToken: TOKEN }, timeoutMs: 150 }));
      assert.equal(error.kind, 'timeout');
      assert.equal(error.notExecuted, true);
      assertNoSecret(error, TOKEN);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('a caller abort ends the call like a timeout', async () => {
    const stub = await startStub(() => {});
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 50);
      const error = await failure(Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`).call('crm.type.get', { id: 1 }, { signal: controller.signal }));
      assert.equal(error.kind, 'answer_lost');
    } finally {
      await stub.close();
    }
  });

  it('concurrent calls are traced apart: a refused one and a sent one classify independently', async () => {
    const stub = await startStub(async (req, res) => {
      await sleep(30);
      if (req.json?.drop) res.socket?.destroy();
      else reply(res, 200, { result: true });
    });
    try {
      const client = Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`);
      const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => client.call('crm.type.get', { drop: i % 2 === 0 })));
      const kinds = outcomes.map((o) => (o.status === 'fulfilled' ? 'ok' : (o.reason as Bitrix24Error).kind));
      assert.deepEqual(kinds, Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 'answer_lost' : 'ok')));
    } finally {
      await stub.close();
    }
  });
});

describe('Bitrix24 REST client: secrets stay out of errors, logs and inspection', () => {
  it('a description that echoes the secret or the token is masked', async () => {
    const stub = await startStub((req, res) => reply(res, 401, { error: 'invalid_token', error_description: `token ${req.json?.auth ?? ''} / hook ${SECRET} is invalid` }));
    try {
      const hook = await failure(Bitrix24RestClient.webhook(`${stub.base}/rest/1/${SECRET}/`).call('crm.type.list'));
      assertNoSecret(hook, SECRET);
      assert.match(hook.description, /\*\*\*/);
      const oauth = await failure(Bitrix24RestClient.oauth(`${stub.base}/rest/`).call('crm.type.list', {}, { auth: { accessToken: TOKEN } }));
      assertNoSecret(oauth, TOKEN);
    } finally {
      await stub.close();
    }
  });

  it('the client itself does not show the secret when inspected or serialized', () => {
    const client = Bitrix24RestClient.webhook(`https://acme.bitrix24.com/rest/12/${SECRET}/`);
    for (const text of [inspect(client, { depth: 5, showHidden: true }), JSON.stringify(client), String(client)]) assert.ok(!text.includes(SECRET), text);
    assert.equal(client.domain, 'acme.bitrix24.com');
  });

  it('parseWebhookUrl: the documented shape; errors never repeat the URL', () => {
    assert.deepEqual(parseWebhookUrl(`https://acme.bitrix24.com/rest/1/${SECRET}/`), { base: `https://acme.bitrix24.com/rest/1/${SECRET}/`, origin: 'https://acme.bitrix24.com', domain: 'acme.bitrix24.com', userId: 1, secret: SECRET });
    assert.equal(parseWebhookUrl(`https://acme.bitrix24.com/rest/1/${SECRET}`).base, `https://acme.bitrix24.com/rest/1/${SECRET}/`, 'trailing slash optional');
    assert.equal(parseWebhookUrl(`http://127.0.0.1:8080/rest/3/${SECRET}/`).userId, 3);
    for (const bad of [`ftp://acme/rest/1/${SECRET}/`, `https://acme/rest/x/${SECRET}/`, `https://acme/api/1/${SECRET}/`, `https://acme/rest/1/${SECRET}/?a=1`, `https://u:p@acme/rest/1/${SECRET}/`, 'not a url', `https://acme/rest/1/`]) {
      try {
        parseWebhookUrl(bad.replace('not a url', `not a url ${SECRET}`));
        assert.fail(`accepted ${bad}`);
      } catch (error) {
        assert.ok(error instanceof TypeError);
        assert.ok(!error.message.includes(SECRET), error.message);
      }
    }
  });
});
