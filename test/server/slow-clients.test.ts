import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { ERROR_TABLE } from '../../src/errors.js';
import { openTestStore, type TestStore } from '../helpers/test-store.js';

/**
 * Slow and stalled clients do not hold a connection forever (issue 7, defect 9): the
 * headers must arrive within HEADERS_TIMEOUT_MS and the whole request within
 * REQUEST_TIMEOUT_MS; the client is then told so in the envelope (408) and the
 * connection is closed.
 */

interface Exchange {
  answer: string;
  closedAfterMs: number;
}

/** Opens a raw connection, lets `talk` write to it, and collects what comes back until the server closes it (or `giveUpMs`). */
function rawExchange(port: number, talk: (socket: net.Socket) => void, giveUpMs: number): Promise<Exchange> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1', () => talk(socket));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.on('error', () => {});
    const giveUp = setTimeout(() => socket.destroy(), giveUpMs);
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ answer, closedAfterMs: Date.now() - started });
    });
  });
}

function envelopeOf(answer: string) {
  const [head, body] = answer.split('\r\n\r\n');
  return { statusLine: head.split('\r\n')[0], head, body: JSON.parse(body) };
}

describe('slow clients', () => {
  let testStore: TestStore;
  let app: FastifyInstance;
  let port: number;
  let key: string;
  before(async () => {
    testStore = openTestStore();
    const config = { ...loadConfig({ HEADERS_TIMEOUT_MS: '600', REQUEST_TIMEOUT_MS: '1200' }), redisUrl: null };
    app = await buildApp({ config, store: testStore.store, logger: false });
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as net.AddressInfo).port;
    const portal = await app.services.portals.create({ name: 'Slow', timeZone: 'UTC' });
    key = (await app.services.keys.create({ kind: 'personal', portalId: portal.id, requestsPerSecond: null }, null)).secret;
  });
  after(async () => {
    await app.close();
    await testStore.drop();
  });

  it('a connection that never sends a byte is answered 408 REQUEST_TIMEOUT in the envelope and closed after the headers timeout', async () => {
    const { answer, closedAfterMs } = await rawExchange(port, () => {}, 5000);
    assert.ok(closedAfterMs < 3000, `closed after ${closedAfterMs} ms`);
    const { statusLine, body } = envelopeOf(answer);
    assert.match(statusLine, /^HTTP\/1\.1 408 /);
    assert.equal(body.success, false);
    assert.equal(body.error.code, 'REQUEST_TIMEOUT');
    assert.equal(ERROR_TABLE.REQUEST_TIMEOUT.status, 408);
    assert.match(body.error.requestId, /^req_[0-9a-f]{16}$/);
  });

  it('headers that trickle in byte by byte are cut off at the headers timeout', async () => {
    let timer: NodeJS.Timeout | undefined;
    const { answer, closedAfterMs } = await rawExchange(port, (socket) => {
      socket.write('GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      timer = setInterval(() => socket.writable && socket.write('a'), 100);
    }, 5000);
    clearInterval(timer);
    assert.ok(closedAfterMs < 3000, `closed after ${closedAfterMs} ms`);
    assert.equal(envelopeOf(answer).body.error.code, 'REQUEST_TIMEOUT');
  });

  it('a body that trickles in is cut off at the request timeout, and nothing is written', async () => {
    let timer: NodeJS.Timeout | undefined;
    const { answer, closedAfterMs } = await rawExchange(port, (socket) => {
      socket.write(`POST /v1/smart-processes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Api-Key: ${key}\r\nContent-Length: 500\r\n\r\n{"title":"`);
      timer = setInterval(() => socket.writable && socket.write('a'), 100);
    }, 6000);
    clearInterval(timer);
    assert.ok(closedAfterMs < 4000, `closed after ${closedAfterMs} ms`);
    const { statusLine, body } = envelopeOf(answer);
    assert.match(statusLine, /^HTTP\/1\.1 408 /);
    assert.equal(body.error.code, 'REQUEST_TIMEOUT');
    const list = await fetch(`http://127.0.0.1:${port}/v1/smart-processes`, { headers: { 'x-api-key': key } });
    assert.equal(((await list.json()) as { meta: { total: number } }).meta.total, 0);
  });

  it('after an early answer (a refused key) a trickling body gets no second answer: the connection is just closed', async () => {
    let timer: NodeJS.Timeout | undefined;
    const { answer, closedAfterMs } = await rawExchange(port, (socket) => {
      socket.write('POST /v1/smart-processes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Api-Key: vibe_api_none\r\nContent-Length: 500\r\n\r\n{"title":"');
      timer = setInterval(() => socket.writable && socket.write('a'), 100);
    }, 6000);
    clearInterval(timer);
    assert.ok(closedAfterMs < 4000, `closed after ${closedAfterMs} ms`);
    assert.equal(answer.match(/HTTP\/1\.1 /g)?.length, 1, answer);
    assert.match(answer, /^HTTP\/1\.1 401 /);
  });

  it('a client that sends its request in time is served as usual', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/health`);
    assert.equal(res.status, 200);
  });
});

describe('timeouts are settings', () => {
  it('defaults: headers 10 s, whole request 30 s, keep-alive 72 s; each can be set', () => {
    const defaults = loadConfig({});
    assert.deepEqual([defaults.headersTimeoutMs, defaults.requestTimeoutMs, defaults.keepAliveTimeoutMs], [10_000, 30_000, 72_000]);
    const set = loadConfig({ HEADERS_TIMEOUT_MS: '2000', REQUEST_TIMEOUT_MS: '5000', KEEP_ALIVE_TIMEOUT_MS: '1000' });
    assert.deepEqual([set.headersTimeoutMs, set.requestTimeoutMs, set.keepAliveTimeoutMs], [2000, 5000, 1000]);
  });

  it('a headers timeout longer than the request timeout, or a value that is not a whole number of ms, is refused at start', () => {
    assert.throws(() => loadConfig({ HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '1000' }), /HEADERS_TIMEOUT_MS/);
    assert.throws(() => loadConfig({ REQUEST_TIMEOUT_MS: 'soon' }), /REQUEST_TIMEOUT_MS/);
  });
});
