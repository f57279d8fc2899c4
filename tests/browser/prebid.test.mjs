// Prebid.js's own UID2 ID module (the `prebid.js` package from npm, bundled here with esbuild)
// against our operator, in headless Chromium on the demo's publisher page: the official
// ecosystem code, not ours, generates tokens client-side, refreshes them and reads the identity
// our browser SDK stored. The demo's SSP then decrypts what Prebid would put in the bid request.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { build } from 'esbuild';

import { launchChromium, newPage, uniqueEmail } from './support/browser.mjs';
import { ROOT, startDemo } from './support/demo.mjs';
import { callV2, rawUidOfEmail } from './support/operator-api.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const BUNDLE = join(ROOT, 'target', 'browser', 'prebid-uid2.js');
const PUBLISHER_SITE_ID = 1001;

let demo;
let browser;

before(async () => {
  mkdirSync(dirname(BUNDLE), { recursive: true });
  // Prebid's core, its User ID module and the UID2 submodule, as a publisher's build has them.
  await build({
    stdin: {
      contents: [
        "import pbjs from 'prebid.js';",
        "import 'prebid.js/modules/userId';",
        "import 'prebid.js/modules/uid2IdSystem';",
        'window.pbjs = pbjs;',
        'pbjs.processQueue();',
      ].join('\n'),
      resolveDir: HERE,
      loader: 'js',
    },
    bundle: true,
    format: 'iife',
    outfile: BUNDLE,
    logLevel: 'warning',
  });
  demo = await startDemo();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

// The demo's publisher page (origin localhost, the site's domain) in a fresh context, with
// Prebid loaded; page errors fail the test.
async function publisherPageWithPrebid(t) {
  const page = await newPage(browser, t);
  await page.goto(demo.publisher + '/');
  await page.addScriptTag({ path: BUNDLE });
  return page;
}

// Configures Prebid's UID2 module with `params` and returns the UID2 id Prebid resolves.
async function prebidUid2(page, params) {
  return page.evaluate(async (params) => {
    window.pbjs.setConfig({ userSync: { userIds: [{ name: 'uid2', params }], syncDelay: 0 } });
    const ids = await window.pbjs.getUserIdsAsync();
    return ids.uid2 ?? null;
  }, params);
}

// What the demo's SSP (our Rust SDK, keys from /v2/key/bidstream) reads from a token.
async function bid(token) {
  const response = await fetch(demo.ssp + '/bid', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ advertising_token: token, domain: 'localhost' }),
  });
  assert.equal(response.status, 200);
  return response.json();
}

// Watches the page's requests to the operator's `path`; returns their HTTP statuses.
function watch(page, path) {
  const statuses = [];
  page.on('response', (r) => {
    if (r.url().startsWith(demo.operator + path)) statuses.push(r.status());
  });
  return statuses;
}

test("Prebid's UID2 module generates a token client-side with our operator", async (t) => {
  const page = await publisherPageWithPrebid(t);
  const generations = watch(page, '/v2/token/client-generate');
  const email = uniqueEmail('prebid-cstg');
  const uid2 = await prebidUid2(page, {
    uid2ApiBase: demo.operator,
    serverPublicKey: demo.credentials.cstg_public_key,
    subscriptionId: demo.credentials.cstg_subscription_id,
    email,
  });
  assert.deepEqual(generations, [200], 'one client-side generation, answered');
  assert.ok(uid2?.id, 'Prebid has a UID2: ' + JSON.stringify(uid2));

  const read = await bid(uid2.id);
  assert.equal(read.status, 'success', JSON.stringify(read));
  assert.equal(read.client_side_generated, true);
  assert.equal(read.site_id, PUBLISHER_SITE_ID);
  assert.equal(read.raw_uid, await rawUidOfEmail(demo, email), 'the same user the operator maps');
});

test("Prebid's UID2 module refreshes an expired token through our operator", async (t) => {
  const email = uniqueEmail('prebid-refresh');
  const generated = await callV2(demo.operator, demo.credentials.publisher, '/v2/token/generate', { email });
  assert.equal(generated.status, 'success');
  const identity = generated.body;
  // The page ready first, so that Prebid starts as soon as the advertising token has expired
  // (the demo's lifetimes are seconds), with as much of the refresh token's life left as can be.
  const page = await publisherPageWithPrebid(t);
  const wait = Math.max(0, identity.identity_expires - Date.now() + 300);
  assert.ok(identity.refresh_expires - identity.identity_expires >= 2000, 'time left to refresh');
  await new Promise((r) => setTimeout(r, wait));

  const refreshes = watch(page, '/v2/token/refresh');
  const uid2 = await prebidUid2(page, { uid2ApiBase: demo.operator, uid2Token: identity });
  assert.deepEqual(refreshes, [200], 'one refresh, answered');
  assert.ok(uid2?.id, 'Prebid has a UID2: ' + JSON.stringify(uid2));
  assert.notEqual(uid2.id, identity.advertising_token, 'a refreshed token');

  const read = await bid(uid2.id);
  assert.equal(read.status, 'success', JSON.stringify(read));
  assert.equal(read.raw_uid, await rawUidOfEmail(demo, email));
});

test("Prebid's UID2 module reads the identity our browser SDK stored in the __uid_2 cookie", async (t) => {
  const page = await publisherPageWithPrebid(t);
  const email = uniqueEmail('prebid-cookie');
  await page.fill('#email', email);
  await Promise.all([page.waitForNavigation(), page.click('#login')]);
  await page.waitForSelector('#uid2-status[data-status="ESTABLISHED"]', { timeout: 30_000 });
  await page.addScriptTag({ path: BUNDLE });

  const uid2 = await prebidUid2(page, { uid2ApiBase: demo.operator, uid2Cookie: '__uid_2' });
  assert.ok(uid2?.id, 'Prebid has a UID2: ' + JSON.stringify(uid2));
  const read = await bid(uid2.id);
  assert.equal(read.status, 'success', JSON.stringify(read));
  assert.equal(read.client_side_generated, false);
  assert.equal(read.raw_uid, await rawUidOfEmail(demo, email), "the SDK's user, as Prebid sees it");
});
