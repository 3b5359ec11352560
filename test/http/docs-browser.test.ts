import { CLI_AUDIT } from '../../src/domain/audit.js';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { createTestApp, json } from '../helpers/app.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';

const SEED_PATCH_BODY = { title: 'Supply contracts (updated name)', code: 'supply_contracts', isAutomationEnabled: false };

/** Swagger UI's "Authorize" dialog: fills the given schemes, authorizes, closes. */
async function authorize(page: Page, values: { ApiKey?: string; Session?: string }) {
  await page.click('.auth-wrapper button.authorize');
  const dialog = page.locator('.dialog-ux .modal-ux');
  await dialog.waitFor();
  for (const [scheme, value] of Object.entries(values)) {
    const container = dialog.locator('.auth-container', { has: page.locator('h4', { hasText: scheme }) });
    await container.locator('input').fill(value!);
    await container.locator('button.authorize').click();
  }
  await dialog.locator('button.btn-done').first().click();
  await dialog.waitFor({ state: 'detached' });
}

async function logout(page: Page) {
  await page.click('.auth-wrapper button.authorize');
  const dialog = page.locator('.dialog-ux .modal-ux');
  await dialog.waitFor();
  const logouts = dialog.locator('button', { hasText: 'Logout' });
  while ((await logouts.count()) > 0) await logouts.first().click();
  await dialog.locator('button.btn-done').first().click();
  await dialog.waitFor({ state: 'detached' });
}

/** Opens an operation, presses "Try it out" and "Execute" with what the page offers, and returns the status shown. */
async function tryItOut(page: Page, operationId: string, tag = 'Smart_processes'): Promise<{ status: string; body: string }> {
  const op = page.locator(`#operations-${tag}-${operationId}`);
  await op.locator('.opblock-summary').first().click();
  await op.locator('button.try-out__btn').click();
  await op.locator('button.execute').click();
  const status = op.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor();
  const body = await op.locator('.live-responses-table .response-col_description .microlight, .live-responses-table .response-col_description pre').first().innerText();
  const shown = (await status.innerText()).trim();
  // Leave the operation as found: answer cleared, "Try it out" cancelled, folded.
  await op.locator('button.btn-clear').click();
  await op.locator('button.try-out__btn').click();
  await op.locator('.opblock-summary').first().click();
  return { status: shown, body };
}

describe('/docs in a real browser (headless Chromium)', chromiumSkip, () => {
  it('authorize with a personal key, run the PATCH example as offered: 200; then with an application key and a session: 200; no console errors', async () => {
    const t = await createTestApp();
    const browser = await launchChromium();
    try {
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      const base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
      assert.equal((await t.call('POST', '/v1/smart-processes', { title: 'Supply contracts', entityTypeId: 1050 })).statusCode, 201);

      const page = await browser.context.newPage();
      const problems: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`));

      await page.goto(`${base}/docs`);
      await page.locator('#operations-Smart_processes-updateSmartProcess').waitFor();
      assert.equal(await page.title(), 'smartproc API reference');

      // A personal key alone.
      await authorize(page, { ApiKey: t.key.secret });
      const patched = await tryItOut(page, 'updateSmartProcess');
      assert.equal(patched.status, '200', patched.body);
      assert.deepEqual(JSON.parse(patched.body).data.title, SEED_PATCH_BODY.title);
      const card = json(await t.call('GET', '/v1/smart-processes/1050')).data;
      assert.deepEqual({ title: card.title, code: card.code, isAutomationEnabled: card.isAutomationEnabled }, SEED_PATCH_BODY, 'the seed\'s body was applied');

      // An application key with a user session (both fields of "Authorize").
      await logout(page);
      const app = await t.createKey({ kind: 'application', portalId: t.portal.id, scopes: ['crm'] });
      const { token } = await t.app.services.keys.mintSession({ keyId: app.record.id, userId: 7 }, CLI_AUDIT);
      await authorize(page, { ApiKey: app.secret, Session: token });
      const listed = await tryItOut(page, 'listSmartProcesses');
      assert.equal(listed.status, '200', listed.body);
      assert.deepEqual(JSON.parse(listed.body).data.map((d: { entityTypeId: number }) => d.entityTypeId), [1050]);

      // Only the application key: the page shows the refusal of the API.
      await logout(page);
      await authorize(page, { ApiKey: app.secret });
      const refused = await tryItOut(page, 'listSmartProcesses');
      assert.equal(refused.status, '401');
      assert.equal(JSON.parse(refused.body).error.code, 'TOKEN_MISSING');

      assert.deepEqual(problems.filter((p) => !p.includes('401 (Unauthorized)')), []);
    } finally {
      await browser.close();
      await t.close();
    }
  });
});
