// Debian's Chromium (/usr/bin/chromium), headless, driven by playwright-core. Never a browser
// downloaded by Playwright. Background networking is off: this machine has no way out, and
// Chromium's own connections (updates, sync, QUIC) would otherwise stall or fail noisily.
// Playwright gives every launch a fresh temporary user-data-dir; each test gets its own context
// (its own cookies and localStorage).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const BASE_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// `extraHosts`: origins (http://name:port) whose names resolve to 127.0.0.1 and that count as
// secure contexts (WebCrypto needs one), to serve the publisher under a name that is not one
// of the site's domains.
export async function launchChromium({ extraHosts = [] } = {}) {
  const args = [...BASE_ARGS];
  if (extraHosts.length > 0) {
    const names = extraHosts.map((o) => new URL(o).hostname);
    args.push('--host-resolver-rules=' + names.map((n) => `MAP ${n} 127.0.0.1`).join(', '));
    args.push('--unsafely-treat-insecure-origin-as-secure=' + extraHosts.join(','));
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 60_000 });
}

// A fresh context of `browser` (own cookies and storage) with one page, closed when test `t`
// ends; errors the page throws fail the test.
export async function newPage(browser, t, contextOptions = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  t.after(async () => {
    await context.close();
    assert.deepEqual(errors, [], 'the page threw');
  });
  return page;
}

// An email no other test uses: `tag` plus random hex.
export function uniqueEmail(tag) {
  return `${tag}-${randomBytes(4).toString('hex')}@example.com`;
}
