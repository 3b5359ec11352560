import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

/**
 * Headless Chromium for browser tests: Debian's `chromium` package driven by playwright-core.
 * `.ci/run` installs it when it is missing; a test that needs it is skipped, saying so, when
 * it is not there (`chromiumSkip`).
 */
export const CHROMIUM_PATH = process.env.SMARTPROC_TEST_CHROMIUM || '/usr/bin/chromium';

/** `{ skip: reason }` when there is no Chromium to run (node:test prints the reason), else `{}`. */
export const chromiumSkip: { skip?: string } = fs.existsSync(CHROMIUM_PATH)
  ? {}
  : { skip: `no Chromium at ${CHROMIUM_PATH}: install it (apt-get install -y chromium; .ci/run does) or set SMARTPROC_TEST_CHROMIUM` };

export interface TestBrowser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A fresh headless Chromium with its own profile folder (--user-data-dir), removed on close. */
export async function launchChromium(): Promise<TestBrowser> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'smartproc-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
