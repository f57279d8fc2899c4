'use strict';
// The served file itself: up to date with the sources, harmless under plain Node, and doing
// the right thing when a browser runs it as a classic <script>.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { webcrypto } = require('node:crypto');
const { SDK_PATH, FakeClock, FakeOperator, MemoryStorage, CookieDocument, makeIdentity, waitFor, silentLogger } = require('../test-support/fakes');

const SOURCE = fs.readFileSync(SDK_PATH, 'utf8');

test('the committed uid2-sdk.js is exactly what build.mjs produces from src/', async () => {
  const { build } = await import(path.join(__dirname, '..', 'build.mjs'));
  assert.ok(SOURCE === build(), 'sdk/js/uid2-sdk.js is stale: run `node sdk/js/build.mjs`');
});

test('requiring the file in Node defines no browser globals', () => {
  const sdk = require(SDK_PATH);
  assert.equal(typeof sdk.UID2, 'function');
  assert.equal(typeof sdk.createUID2, 'function');
  assert.equal(globalThis.__uid2, undefined);
  assert.equal(globalThis.UID2, undefined);
});

// A minimal browser: the script runs with `window` as its global, no `module`.
function browser({ scriptSrc, preexisting } = {}) {
  const clock = new FakeClock();
  const operator = new FakeOperator();
  const document = new CookieDocument(clock);
  document.currentScript = scriptSrc ? { src: scriptSrc } : null;
  document.baseURI = 'https://publisher.example/page.html';
  const context = {
    document,
    localStorage: new MemoryStorage(),
    fetch: operator.fetch,
    crypto: webcrypto,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    console: silentLogger,
    URL,
    TextEncoder,
    TextDecoder,
    atob,
    btoa,
    AbortController,
  };
  // What the page ran before the SDK script, given the window it runs in.
  if (preexisting) context.__uid2 = preexisting(context);
  context.window = context;
  vm.createContext(context);
  const run = () => vm.runInContext(SOURCE, context, { filename: 'uid2-sdk.js' });
  run();
  return { window: context, operator, clock, run };
}

test('callbacks queued before the script loaded get SdkLoaded, can init, then get InitCompleted', () => {
  const seen = [];
  const queued = [];
  const identity = makeIdentity(Date.now(), { refreshFrom: 3600000, identityExpires: 7200000, refreshExpires: 9000000 });
  queued.push((type, payload) => {
    seen.push(['first', type, payload]);
    if (type === 'SdkLoaded') pageWindow.__uid2.init({ identity });
  });
  queued.push((type) => seen.push(['second', type]));
  let pageWindow;
  const { window: win } = browser({
    scriptSrc: 'https://operator.example/static/js/uid2-sdk.js',
    preexisting: (w) => {
      pageWindow = w;
      return { callbacks: queued };
    },
  });

  assert.equal(win.__uid2.callbacks, queued, 'the page-owned array is kept');
  assert.deepEqual(
    seen.map((s) => s.slice(0, 2)),
    [['first', 'SdkLoaded'], ['second', 'SdkLoaded'], ['first', 'InitCompleted'], ['second', 'InitCompleted']]
  );
  assert.equal(seen[2][2].identity.advertising_token, identity.advertising_token);
  assert.equal(win.__uid2.getAdvertisingToken(), identity.advertising_token);
  assert.equal(typeof win.UID2, 'function');
  assert.equal(win.UID2.IdentityStatus.OPTOUT, -4);
  assert.ok(win.__uid2 instanceof win.UID2);
  assert.equal(win.__uid2Helper.normalizeEmail('A.B+C@Gmail.com'), 'ab@gmail.com');
});

test('without baseUrl the SDK talks to the origin it was served from', async () => {
  const { window: win, operator } = browser({ scriptSrc: 'https://operator.example:8443/static/js/uid2-sdk.js' });
  operator.hang();
  win.__uid2.init({ identity: makeIdentity(Date.now(), { refreshFrom: -1, identityExpires: 3600000, refreshExpires: 7200000 }) });
  await waitFor(() => operator.requests.length === 1, 'refresh request');
  assert.match(operator.requests[0].url, /^https:\/\/operator\.example:8443\/v2\/token\/refresh\?client=uid2-rs-sdk-/);
});

test('an explicit baseUrl wins, and an inline copy defaults to the production operator', async () => {
  const explicit = browser({ scriptSrc: 'https://operator.example/static/js/uid2-sdk.js' });
  explicit.operator.hang();
  explicit.window.__uid2.init({ baseUrl: 'https://other.example/', identity: makeIdentity(Date.now(), { refreshFrom: -1 }) });
  await waitFor(() => explicit.operator.requests.length === 1, 'refresh request');
  assert.match(explicit.operator.requests[0].url, /^https:\/\/other\.example\/v2\/token\/refresh\?/);

  const inline = browser({});
  inline.operator.hang();
  inline.window.__uid2.init({ identity: makeIdentity(Date.now(), { refreshFrom: -1 }) });
  await waitFor(() => inline.operator.requests.length === 1, 'refresh request');
  assert.match(inline.operator.requests[0].url, /^https:\/\/prod\.uidapi\.com\/v2\/token\/refresh\?/);
});

test('loading the script twice keeps the first instance', () => {
  const b = browser({ scriptSrc: 'https://operator.example/static/js/uid2-sdk.js' });
  const first = b.window.__uid2;
  first.init({});
  b.run();
  assert.equal(b.window.__uid2, first);
});
