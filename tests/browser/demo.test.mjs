// The publisher flow of the demo, in headless Chromium, against the real demo binary: the
// operator (uid2-operator), the publisher site (Rust SDK + the operator's browser SDK) and the
// SSP (Rust SDK bidstream client), with token lifetimes of seconds so that refreshes, expiry
// and opt-outs happen while the test watches. Nothing is mocked; page.route is used only to
// cut the network for refresh requests, as a flaky connection would.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { launchChromium, newPage as newBrowserPage, uniqueEmail } from './support/browser.mjs';
import { ROOT, startDemo } from './support/demo.mjs';
import { rawUidOfEmail } from './support/operator-api.mjs';

const SCREENSHOT = join(ROOT, 'target', 'browser', 'demo-after-login.png');
const OTHER_HOST = 'other-publisher.test';
const PUBLISHER_SITE_ID = 1001;
// Generous: every state below is reached within a few seconds on an idle machine.
const STATE_TIMEOUT = 30_000;

let demo;
let browser;
let otherOrigin;

before(async () => {
  demo = await startDemo();
  otherOrigin = demo.publisher.replace('//localhost:', `//${OTHER_HOST}:`);
  browser = await launchChromium({ extraHosts: [otherOrigin] });
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

// A fresh page at the demo's size; page errors fail the test.
function newPage(t) {
  return newBrowserPage(browser, t, { viewport: { width: 1280, height: 900 } });
}

async function waitForStatus(page, status, timeout = STATE_TIMEOUT) {
  await page.waitForSelector(`#uid2-status[data-status="${status}"]`, { timeout });
}

// Clicks a form's button and waits for the page the server redirects to. The URL may be the one
// already shown, so waiting for the URL would not wait at all: wait for the navigation's GET.
async function submitForm(page, selector, path = '/') {
  await Promise.all([
    page.waitForResponse(
      (r) =>
        r.request().isNavigationRequest() &&
        r.request().method() === 'GET' &&
        new URL(r.url()).pathname === path,
    ),
    page.click(selector),
  ]);
}

async function login(page, email, { query = '' } = {}) {
  await page.goto(demo.publisher + '/' + query);
  await page.fill('#email', email);
  await submitForm(page, '#login');
  await waitForStatus(page, 'ESTABLISHED');
}

// The identity in the `__uid_2` cookie (URI-encoded JSON), or null.
async function cookieIdentity(page) {
  const cookie = (await page.context().cookies(demo.publisher)).find((c) => c.name === '__uid_2');
  return cookie ? JSON.parse(decodeURIComponent(cookie.value)) : null;
}

async function localIdentity(page) {
  const text = await page.evaluate(() => window.localStorage.getItem('UID2-sdk-identity'));
  return text ? JSON.parse(text) : null;
}

async function shownToken(page) {
  return (await page.textContent('#advertising-token')).trim();
}

// Clicks "Send ad request" and returns what the page shows of the SSP's answer.
async function adRequest(page) {
  await page.click('#ad-request');
  await page.waitForSelector('#ad-status', { timeout: STATE_TIMEOUT });
  const status = (await page.textContent('#ad-status')).trim();
  if (status !== 'success') return { status };
  return {
    status,
    rawUid: (await page.textContent('#ad-raw-uid')).trim(),
    siteId: Number(await page.getAttribute('#ad-site-id', 'data-site-id')),
    generated: (await page.textContent('#ad-generated')).trim(),
  };
}

// Counts the refresh requests the page sends, and what came back.
function watchRefreshes(page) {
  const seen = { ok: 0, failed: 0, urls: [] };
  page.on('response', (r) => {
    if (new URL(r.url()).pathname === '/v2/token/refresh') {
      seen.urls.push(r.url());
      if (r.status() === 200) seen.ok += 1;
    }
  });
  page.on('requestfailed', (r) => {
    if (new URL(r.url()).pathname === '/v2/token/refresh') seen.failed += 1;
  });
  return seen;
}

const isRefresh = (url) => url.pathname === '/v2/token/refresh';

describe('server-side tokens (publisher login)', () => {
  test('login shows the token, and the SSP decrypts it to the raw UID the operator maps the email to', async (t) => {
    const page = await newPage(t);
    const email = uniqueEmail('login');
    await login(page, email);

    const token = await shownToken(page);
    assert.match(token, /^A4/, 'a UID2 email token, v4');
    assert.equal(await page.textContent('#account-email'), email);
    const stored = await cookieIdentity(page);
    assert.equal(stored.advertising_token, token, 'the page shows the token the SDK stored');
    assert.ok(stored.refresh_token && stored.refresh_response_key);
    assert.equal(await page.evaluate(() => window.__uid2.getAdvertisingToken()), token);

    const bid = await adRequest(page);
    assert.equal(bid.status, 'success');
    assert.equal(bid.siteId, PUBLISHER_SITE_ID);
    assert.equal(bid.generated, 'server-side');
    assert.equal(bid.rawUid, await rawUidOfEmail(demo, email), "the operator's identity map agrees");

    mkdirSync(join(ROOT, 'target', 'browser'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`screenshot of the demo after login: ${SCREENSHOT}`);
  });

  test('the SDK refreshes the token in the page, without a reload', async (t) => {
    const page = await newPage(t);
    const refreshes = watchRefreshes(page);
    const email = uniqueEmail('refresh');
    await login(page, email);
    const first = await shownToken(page);
    const firstBid = await adRequest(page);
    let navigations = 0;
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) navigations += 1;
    });

    await waitForStatus(page, 'REFRESHED');
    const second = await shownToken(page);
    assert.notEqual(second, first, 'a new advertising token');
    assert.equal(navigations, 0, 'no reload');
    assert.ok(refreshes.ok >= 1, 'the operator answered a refresh');
    assert.ok(refreshes.urls.every((u) => u.startsWith(demo.operator + '/v2/token/refresh')));
    assert.equal((await cookieIdentity(page)).advertising_token, second);
    assert.match(await page.textContent('#refresh-count'), /^\d+ times?, last at/);

    const secondBid = await adRequest(page);
    assert.equal(secondBid.status, 'success');
    assert.equal(secondBid.rawUid, firstBid.rawUid, 'the same user before and after the refresh');
  });

  test('a refresh that fails on the network is retried until it succeeds', async (t) => {
    const page = await newPage(t);
    let aborted = 0;
    await page.route(isRefresh, (route) => {
      if (aborted < 2) {
        aborted += 1;
        return route.abort('connectionreset');
      }
      return route.continue();
    });
    const refreshes = watchRefreshes(page);
    await login(page, uniqueEmail('retry'));
    const first = await shownToken(page);

    await waitForStatus(page, 'REFRESHED');
    assert.equal(aborted, 2, 'the first two refreshes failed');
    assert.equal(refreshes.failed, 2);
    assert.ok(refreshes.ok >= 1, 'a later attempt reached the operator');
    assert.notEqual(await shownToken(page), first);
    assert.equal((await cookieIdentity(page)).advertising_token, await shownToken(page));
  });

  test('opt-out: the next refresh answers optout, the SDK drops the identity and remembers the opt-out', async (t) => {
    const page = await newPage(t);
    const email = uniqueEmail('optout');
    await login(page, email);
    assert.ok((await cookieIdentity(page)).advertising_token);

    await page.click('#optout');
    await page.waitForSelector('#optout-result.good', { timeout: STATE_TIMEOUT });
    assert.match(await page.textContent('#optout-result'), /recorded the opt-out/);
    await waitForStatus(page, 'OPTOUT');

    const stored = await cookieIdentity(page);
    assert.equal(stored.status, 'optout', 'the cookie holds the opt-out marker');
    assert.equal(stored.advertising_token, undefined, 'and no token');
    assert.equal(stored.refresh_token, undefined);
    assert.equal(await shownToken(page), 'none');
    assert.equal(await page.evaluate(() => window.__uid2.hasOptedOut()), true);
    await page.click('#ad-request');
    assert.match(await page.textContent('#ad-result'), /No advertising token/);

    // Logging in again: the operator now refuses to generate a token for this user.
    await Promise.all([page.waitForURL(/logged_out=1/), page.click('#logout')]);
    await page.fill('#email', email);
    await submitForm(page, '#login');
    await page.waitForSelector('#optout-at-login');
    await waitForStatus(page, 'NO_IDENTITY');
    assert.equal(await cookieIdentity(page), null);
  });

  test('refresh-optout@example.com gets a token whose first refresh answers optout', async (t) => {
    const page = await newPage(t);
    await login(page, 'refresh-optout@example.com');
    await waitForStatus(page, 'OPTOUT');
    assert.equal((await cookieIdentity(page)).status, 'optout');
    assert.equal(await shownToken(page), 'none');
  });

  test('log out calls __uid2.disconnect(), which clears the __uid_2 cookie and storage', async (t) => {
    const page = await newPage(t);
    await login(page, uniqueEmail('logout'));
    assert.ok(await cookieIdentity(page));

    await Promise.all([page.waitForURL(/logged_out=1/), page.click('#logout')]);
    await page.waitForSelector('#logged-out');
    assert.equal(await cookieIdentity(page), null, 'no __uid_2 cookie');
    assert.equal(await localIdentity(page), null, 'nothing in localStorage');
    await waitForStatus(page, 'NO_IDENTITY');
    assert.equal(await page.evaluate(() => window.__uid2.getAdvertisingToken()), undefined);
    assert.equal(await page.evaluate(() => window.__uid2.isLoginRequired()), true);
  });

  test('an expired refresh token leaves the user logged out of UID2', async (t) => {
    const page = await newPage(t);
    await login(page, uniqueEmail('expired'));
    const { refresh_expires: refreshExpires } = await cookieIdentity(page);
    // The browser goes offline for the operator: no refresh gets through.
    let blocked = 0;
    await page.route(isRefresh, (route) => {
      blocked += 1;
      return route.abort('internetdisconnected');
    });

    await waitForStatus(page, 'EXPIRED');
    assert.equal(await page.evaluate(() => window.__uid2.getAdvertisingToken()), undefined);
    assert.ok(await cookieIdentity(page), 'kept while the refresh token is valid');
    await waitForStatus(page, 'REFRESH_EXPIRED');
    assert.ok(Date.now() >= refreshExpires, 'only once the refresh token has expired');
    assert.ok(blocked >= 2, 'the SDK kept trying meanwhile');
    assert.equal(await cookieIdentity(page), null, 'no __uid_2 cookie');
    assert.equal(await localIdentity(page), null);
    assert.equal(await page.evaluate(() => window.__uid2.isLoginRequired()), true);

    // Back online, the publisher can get the user a new token.
    await page.unroute(isRefresh);
    await page.waitForSelector('#regenerate:not([hidden])');
    await submitForm(page, '#regenerate button');
    await waitForStatus(page, 'ESTABLISHED');
    assert.match(await shownToken(page), /^A4/);
  });

  test("the seed's bare __uid2.init({identity}) works: localStorage, operator from the script's origin", async (t) => {
    const page = await newPage(t);
    const refreshes = watchRefreshes(page);
    await login(page, uniqueEmail('bare'), { query: '?init=bare' });
    assert.equal((await page.textContent('#init-call')).trim(), '__uid2.init({ identity })');
    const first = await shownToken(page);
    assert.equal((await localIdentity(page)).advertising_token, first);
    assert.equal(await cookieIdentity(page), null, 'localStorage by default, no cookie');

    // The default refreshRetryPeriod is 5 s; the refresh goes to the operator that served the SDK.
    await page.waitForFunction((t0) => window.__uid2.getAdvertisingToken() && window.__uid2.getAdvertisingToken() !== t0, first, {
      timeout: STATE_TIMEOUT,
    });
    assert.ok(refreshes.ok >= 1);
    assert.ok(refreshes.urls.every((u) => u.startsWith(demo.operator + '/v2/token/refresh')));
    assert.notEqual((await localIdentity(page)).advertising_token, first);
  });
});

describe('client-side token generation', () => {
  test('works from an allowed origin (localhost); the token decrypts at the SSP as client-side generated', async (t) => {
    const page = await newPage(t);
    const email = 'CSTG.User-' + randomBytes(3).toString('hex') + '@Example.COM';
    await page.goto(demo.publisher + '/client-side');
    await waitForStatus(page, 'NO_IDENTITY');
    await page.fill('#cstg-email', email);
    const [response] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/v2/token/client-generate'),
      page.click('#cstg-generate'),
    ]);
    assert.equal(response.status(), 200);
    await waitForStatus(page, 'ESTABLISHED');
    const token = await shownToken(page);
    assert.match(token, /^A4/);
    assert.equal((await cookieIdentity(page)).advertising_token, token);

    const bid = await adRequest(page);
    assert.equal(bid.status, 'success');
    assert.equal(bid.siteId, PUBLISHER_SITE_ID);
    assert.equal(bid.generated, 'client-side (in the browser)');
    assert.equal(bid.rawUid, await rawUidOfEmail(demo, email), 'the browser normalised the email as the operator does');

    await page.click('#disconnect');
    await waitForStatus(page, 'INVALID');
    assert.equal(await cookieIdentity(page), null);
    assert.equal(await localIdentity(page), null);
  });

  for (const [what, origin] of [
    ['the loopback IP (IP-address origins are refused)', () => demo.publisherAtIp],
    ['a host name that is not one of the site domains', () => otherOrigin],
  ]) {
    test(`is refused with 403 invalid_http_origin from ${what}`, async (t) => {
      const page = await newPage(t);
      await page.goto(origin() + '/client-side');
      await waitForStatus(page, 'NO_IDENTITY');
      assert.match(await page.textContent('#origin-verdict'), /not one of/);
      await page.fill('#cstg-email', uniqueEmail('refused'));
      const [response] = await Promise.all([
        page.waitForResponse((r) => new URL(r.url()).pathname === '/v2/token/client-generate'),
        page.click('#cstg-generate'),
      ]);
      assert.equal(response.status(), 403);
      assert.equal((await response.json()).status, 'invalid_http_origin');
      await page.waitForSelector('#cstg-error');
      assert.match(await page.textContent('#cstg-error'), /Forbidden/);
      assert.equal(await shownToken(page), 'none');
      assert.equal(await page.evaluate(() => window.__uid2.getAdvertisingToken()), undefined);
    });
  }
});
