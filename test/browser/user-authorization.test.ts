import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { createTestApp, json, type TestApp, type TestKey } from '../helpers/app.js';

/**
 * Issue 10 in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
 * an application page on its own origin opens GET /v1/oauth/authorize in a popup, the
 * person approves on the local sandbox page, the page's polling receives the session, and
 * a PATCH made with it records that user as updatedBy. Skipped, saying so, when
 * /usr/bin/chromium is missing (.ci/run installs it).
 */

const CHROMIUM = process.env.SMARTPROC_CHROMIUM || '/usr/bin/chromium';
const skip = fs.existsSync(CHROMIUM) ? false : `needs Chromium at ${CHROMIUM} (apt-get install -y chromium; .ci/run installs it)`;

/** The application's page: the few lines of browser JavaScript of docs/build-an-application.md. */
function applicationPage(api: string, appKey: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>My app</title></head><body>
<button id="login">Sign in with smartproc</button><p id="who"></p>
<script>
const API = ${JSON.stringify(api)};
const APP_KEY = ${JSON.stringify(appKey)};
document.getElementById('login').addEventListener('click', async () => {
  const state = crypto.randomUUID();
  const query = new URLSearchParams({ app_key: APP_KEY, state });
  window.open(API + '/v1/oauth/authorize?' + query, 'smartproc-authorize', 'width=480,height=640');
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const answer = await (await fetch(API + '/v1/oauth/poll?' + query)).json();
    if (answer.status === 'complete') {
      window.session = answer;
      document.getElementById('who').textContent = 'Signed in as ' + answer.user.name;
      return;
    }
    if (!answer.success) {
      document.getElementById('who').textContent = 'Not signed in: ' + answer.error.code;
      return;
    }
  }
});
</script></body></html>`;
}

describe('user authorization in a browser (popup + polling)', { skip }, () => {
  let t: TestApp;
  let appKey: TestKey;
  let api: string;
  let site: http.Server;
  let siteUrl: string;
  let context: BrowserContext;
  let profile: string;

  before(async () => {
    t = await createTestApp({ portalKind: 'local', config: { maxEventLoopDelayMs: 0 } });
    appKey = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'], name: 'Browser app' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    api = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    site = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(applicationPage(api, appKey.secret));
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  after(async () => {
    await context?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    await new Promise((resolve) => site?.close(resolve));
    await t?.close();
  });

  it('the person approves in the popup, the page receives the session by polling, and a PATCH with it records the user', async () => {
    const page = await context.newPage();
    await page.goto(siteUrl);
    const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#login')]);
    await popup.waitForSelector('#approve');
    assert.match(popup.url(), new RegExp(`^${api}/oauth/sandbox\\?flow=`));
    assert.match(await popup.textContent('h1') ?? '', /Browser app/);
    await popup.fill('#userId', '23');
    await popup.fill('#name', 'Dana Browser');
    await popup.fill('#email', 'dana@example.com');
    await Promise.all([popup.waitForURL(`${api}/oauth/complete?status=success`), popup.click('#approve')]);
    assert.match(await popup.textContent('body') ?? '', /close this window/);

    await page.waitForFunction(() => (globalThis as unknown as { session?: unknown }).session !== undefined, undefined, { timeout: 15_000 });
    const session = await page.evaluate(() => (globalThis as unknown as { session: { access_token: string; user: unknown; expires_in: number } }).session);
    assert.deepEqual(session.user, { id: 23, name: 'Dana Browser', email: 'dana@example.com' });
    assert.equal(session.expires_in, 86400);
    assert.equal(await page.textContent('#who'), 'Signed in as Dana Browser');

    const created = await t.call('POST', '/v1/smart-processes', { title: 'Before the browser' });
    const id = json(created).data.entityTypeId;
    const patched = await fetch(`${api}/v1/smart-processes/${id}`, {
      method: 'PATCH',
      headers: { 'x-api-key': appKey.secret, authorization: `Bearer ${session.access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'Changed from the browser session' }),
    });
    const body = (await patched.json()) as { data: { updatedBy: number } };
    assert.equal(patched.status, 200, JSON.stringify(body));
    assert.equal(body.data.updatedBy, 23);
  });
});
