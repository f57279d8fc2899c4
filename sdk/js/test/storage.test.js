'use strict';
// Where identities are kept: localStorage by default, the `__uid_2` cookie with useCookie,
// both read, both cleared; and identities changed by another tab.

const test = require('node:test');
const assert = require('node:assert/strict');
const { setup, makeIdentity, storedIdentity, waitFor, sdkModule } = require('../test-support/fakes');

const { IdentityStatus, EventType, LOCAL_STORAGE_KEY } = sdkModule;

function cookieValue(document) {
  const cookies = document.find('__uid_2');
  assert.equal(cookies.length, 1);
  return JSON.parse(decodeURIComponent(cookies[0].value));
}

test('useCookie writes __uid_2 with path, domain and expiry at refresh_expires (whole seconds, rounded up); not localStorage', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.sdk.init({ identity, useCookie: true, cookieDomain: 'example.com', cookiePath: '/shop' });
  const cookies = t.document.find('__uid_2');
  assert.equal(cookies.length, 1);
  assert.equal(cookies[0].path, '/shop');
  assert.equal(cookies[0].domain, 'example.com');
  assert.equal(cookies[0].expires, Math.ceil(identity.refresh_expires / 1000) * 1000);
  assert.equal(cookies[0].value, encodeURIComponent(JSON.stringify(identity)));
  assert.equal(t.localStorage.getItem(LOCAL_STORAGE_KEY), null);
});

test('useCookie defaults: path / and no domain attribute', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.sdk.init({ identity, useCookie: true });
  assert.deepEqual(cookieValue(t.document), identity);
  const write = t.document.writes.find((w) => w.startsWith('__uid_2=%7B'));
  assert.match(write, /;path=\/;/);
  assert.doesNotMatch(write, /domain=/i);
  assert.match(write, /;expires=[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT/);
});

test('cookie mode: refresh rewrites the cookie, disconnect removes it with the same path/domain', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  const next = makeIdentity(t.clock.now());
  t.operator.answerRefresh(identity, { status: 'success', body: next });
  t.sdk.init({ identity, useCookie: true, cookieDomain: 'example.com', cookiePath: '/shop' });
  await waitFor(() => t.sdk.getAdvertisingToken() === next.advertising_token, 'refresh');
  assert.deepEqual(cookieValue(t.document), next);
  t.sdk.disconnect();
  assert.deepEqual(t.document.find('__uid_2'), []);
});

test('localStorage mode moves an identity an older build left in the cookie, and deletes the cookie', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.document.cookie = '__uid_2=' + encodeURIComponent(JSON.stringify(identity)) + ';path=/';
  t.sdk.init({ callback: t.callback });
  assert.equal(t.statuses[0].status, IdentityStatus.ESTABLISHED);
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  assert.deepEqual(storedIdentity(t.localStorage), identity);
  assert.deepEqual(t.document.find('__uid_2'), [], 'nothing stale left for Prebid.js to read');
});

test('localStorage mode deletes a stale cookie when it stores a newer identity', () => {
  const t = setup();
  const stale = makeIdentity(t.clock.now(), { identityExpires: 100000 });
  t.document.cookie = '__uid_2=' + encodeURIComponent(JSON.stringify(stale)) + ';path=/';
  const current = makeIdentity(t.clock.now(), { identityExpires: 200000 });
  t.sdk.init({ identity: current });
  assert.deepEqual(storedIdentity(t.localStorage), current);
  assert.deepEqual(t.document.find('__uid_2'), []);
});

test('useCookie: false moves a cookie identity into localStorage and deletes the cookie', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.document.cookie = '__uid_2=' + encodeURIComponent(JSON.stringify(identity)) + ';path=/';
  t.sdk.init({ useCookie: false });
  assert.deepEqual(storedIdentity(t.localStorage), identity);
  assert.deepEqual(t.document.find('__uid_2'), []);
});

test('a stale cookie never beats a newer localStorage identity', async () => {
  const t = setup();
  const stale = makeIdentity(t.clock.now(), { identityExpires: 100000 });
  t.document.cookie = '__uid_2=' + encodeURIComponent(JSON.stringify(stale)) + ';path=/';
  const current = makeIdentity(t.clock.now(), { identityExpires: 200000 });
  t.sdk.init({ identity: current });
  await t.clock.advance(20000);
  assert.equal(t.sdk.getAdvertisingToken(), current.advertising_token);
});

test('cookie mode finds an identity in localStorage; the newer of the two wins', () => {
  const t = setup();
  const older = makeIdentity(t.clock.now(), { identityExpires: 100000 });
  const newer = makeIdentity(t.clock.now(), { identityExpires: 200000 });
  t.localStorage.setItem(LOCAL_STORAGE_KEY, JSON.stringify(newer));
  t.document.cookie = '__uid_2=' + encodeURIComponent(JSON.stringify(older)) + ';path=/';
  t.sdk.init({ useCookie: true });
  assert.equal(t.sdk.getAdvertisingToken(), newer.advertising_token);
  assert.deepEqual(cookieValue(t.document), newer);
});

test('cookie mode keeps the localStorage copy when the browser refuses the cookie', () => {
  const t = setup();
  t.document.foreignDomain = 'wrong.example';
  const identity = makeIdentity(t.clock.now());
  t.localStorage.setItem(LOCAL_STORAGE_KEY, JSON.stringify(identity));
  t.sdk.init({ useCookie: true, cookieDomain: 'wrong.example', callback: t.callback });
  assert.equal(t.statuses[0].status, IdentityStatus.ESTABLISHED);
  assert.equal(t.document.find('__uid_2').length, 0);
  assert.deepEqual(storedIdentity(t.localStorage), identity, 'the only stored copy survives');
});

test('cookie mode keeps the newest identity in localStorage when the browser refuses the cookie', async () => {
  const t = setup();
  t.document.foreignDomain = 'wrong.example';
  const older = makeIdentity(t.clock.now());
  t.localStorage.setItem(LOCAL_STORAGE_KEY, JSON.stringify(older));
  t.sdk.init({ useCookie: true, cookieDomain: 'wrong.example' });
  const newer = makeIdentity(t.clock.now());
  t.sdk.setIdentity(newer);
  assert.deepEqual(storedIdentity(t.localStorage), newer, 'the next load finds the new identity');
  // An opt-out on refresh replaces it too: the old token does not come back on reload.
  t.operator.answerRefresh(newer, { status: 'optout' });
  await t.clock.advance(newer.refresh_from - t.clock.now() + 1);
  await waitFor(() => t.sdk.hasOptedOut(), 'opt-out');
  const stored = storedIdentity(t.localStorage);
  assert.equal(stored.status, 'optout');
  assert.equal(stored.advertising_token, undefined);
  assert.equal(t.document.find('__uid_2').length, 0);
});

test('an SDK 1.x cookie holding only the tokens is upgraded and refreshed at once', async () => {
  const t = setup();
  const next = makeIdentity(t.clock.now());
  t.document.cookie = '__uid_2=' + encodeURIComponent(JSON.stringify({ advertising_token: 'old-at', refresh_token: 'old-rt' }));
  t.operator.answerPlain({ status: 'success', body: next }, 200);
  t.sdk.init({});
  assert.equal(t.sdk.getAdvertisingToken(), 'old-at');
  await waitFor(() => t.sdk.getAdvertisingToken() === next.advertising_token, 'refresh');
  assert.equal(t.operator.requests[0].body, 'old-rt');
});

test('garbage in storage counts as no identity', () => {
  const t = setup();
  t.localStorage.setItem(LOCAL_STORAGE_KEY, '{not json');
  t.document.cookie = '__uid_2=%E0%A4%A';
  t.sdk.init({ callback: t.callback });
  assert.equal(t.statuses[0].status, IdentityStatus.NO_IDENTITY);
});

test('works when localStorage and cookies are unavailable', async () => {
  const throwing = {
    getItem() {
      throw new Error('SecurityError');
    },
    setItem() {
      throw new Error('QuotaExceededError');
    },
    removeItem() {
      throw new Error('SecurityError');
    },
  };
  const t = setup({ useCookieDocument: false, localStorage: throwing });
  const identity = makeIdentity(t.clock.now(), { refreshFrom: 6000 });
  t.sdk.init({ identity });
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  await t.clock.advance(5000);
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token, 'not mistaken for a logout elsewhere');
});

test('an identity refreshed by another tab is picked up at the next check, without a request', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: 60000 });
  t.sdk.init({ identity, callback: t.callback });
  const fromOtherTab = makeIdentity(t.clock.now() + 1000);
  t.localStorage.setItem(LOCAL_STORAGE_KEY, JSON.stringify(fromOtherTab));
  await t.clock.advance(5000);
  assert.equal(t.sdk.getAdvertisingToken(), fromOtherTab.advertising_token);
  assert.equal(t.statuses[1].status, IdentityStatus.REFRESHED);
  const updated = t.events.filter((e) => e.type === EventType.IdentityUpdated);
  assert.equal(updated[0].payload.identity.advertising_token, fromOtherTab.advertising_token);
  assert.equal(t.operator.requests.length, 0);
});

test('an opt-out or a logout in another tab is picked up too', async () => {
  const optout = setup();
  optout.sdk.init({ identity: makeIdentity(optout.clock.now()), callback: optout.callback });
  optout.localStorage.setItem(
    LOCAL_STORAGE_KEY,
    JSON.stringify({ status: 'optout', identity_expires: optout.clock.now() + 1e6, refresh_expires: optout.clock.now() + 1e6 })
  );
  await optout.clock.advance(5000);
  assert.equal(optout.statuses[1].status, IdentityStatus.OPTOUT);
  assert.equal(optout.sdk.hasOptedOut(), true);
  assert.equal(optout.sdk.getAdvertisingToken(), undefined);

  const logout = setup();
  logout.sdk.init({ identity: makeIdentity(logout.clock.now()), callback: logout.callback });
  logout.localStorage.removeItem(LOCAL_STORAGE_KEY);
  await logout.clock.advance(5000);
  assert.equal(logout.statuses[1].status, IdentityStatus.NO_IDENTITY);
  assert.equal(logout.sdk.getAdvertisingToken(), undefined);
  assert.equal(logout.sdk.isLoginRequired(), true);
});

test('an older identity written by another tab does not replace ours', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { identityExpires: 200000 });
  t.sdk.init({ identity });
  t.localStorage.setItem(LOCAL_STORAGE_KEY, JSON.stringify(makeIdentity(t.clock.now(), { identityExpires: 100000 })));
  await t.clock.advance(5000);
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
});

test('cookie mode: the cookie outlives refresh_expires, so its expiry reads as REFRESH_EXPIRED, not as a removal', async () => {
  const t = setup();
  // Operators' times are milliseconds; a cookie's expiry is whole seconds. Rounded down, the
  // browser would drop the cookie up to a second early, and the next check would take the
  // missing cookie for another tab's disconnect (NO_IDENTITY) instead of an expired refresh token.
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1, identityExpires: 3000, refreshExpires: 12500 });
  for (let i = 0; i < 30; i++) t.operator.failNetwork();
  t.sdk.init({ identity, useCookie: true, refreshRetryPeriod: 1000, callback: t.callback });
  assert.equal(t.document.find('__uid_2')[0].expires, Math.ceil(identity.refresh_expires / 1000) * 1000);
  await t.clock.advance(15000);
  const codes = t.statuses.map((s) => s.status);
  assert.deepEqual(codes, [IdentityStatus.ESTABLISHED, IdentityStatus.EXPIRED, IdentityStatus.REFRESH_EXPIRED]);
  assert.doesNotMatch(t.document.cookie, /__uid_2=/);
  assert.equal(t.sdk.isLoginRequired(), true);
});
