'use strict';
// The refresh state machine, driven by a manual clock and an operator that seals its answers
// with the identity's refresh_response_key.

const test = require('node:test');
const assert = require('node:assert/strict');
const { setup, makeIdentity, sealJson, storedIdentity, eventTypes, waitFor, BASE_URL, sdkModule } = require('../test-support/fakes');

const { IdentityStatus, EventType, CLIENT_VERSION } = sdkModule;
const PERIOD = 5000;

function lastStatus(statuses) {
  return statuses[statuses.length - 1].status;
}

test('init with a fresh identity: ESTABLISHED, stored, no request yet', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.sdk.init({ identity, callback: t.callback });
  assert.equal(t.statuses.length, 1);
  assert.equal(t.statuses[0].status, IdentityStatus.ESTABLISHED);
  assert.equal(t.statuses[0].advertisingToken, identity.advertising_token);
  assert.equal(t.statuses[0].advertising_token, identity.advertising_token);
  assert.equal(typeof t.statuses[0].statusText, 'string');
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  assert.deepEqual(storedIdentity(t.localStorage), identity);
  assert.equal(t.sdk.isLoginRequired(), false);
  assert.equal(t.sdk.isIdentityAvailable(), true);
  assert.equal(t.sdk.hasOptedOut(), false);
  assert.deepEqual(eventTypes(t.events), [EventType.SdkLoaded, EventType.InitCompleted]);
  assert.equal(t.events[1].payload.identity.advertising_token, identity.advertising_token);
  await t.clock.advance(PERIOD * 5);
  assert.equal(t.operator.requests.length, 0, 'refresh_from is 60 s away');
});

test('the bare init({identity}) of the seed page works without a callback', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.sdk.init({ identity });
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
});

test('refresh at refresh_from: POST with the refresh token as text, sealed success -> REFRESHED', async () => {
  const t = setup();
  const now = t.clock.now();
  const identity = makeIdentity(now, { refreshFrom: 12000 });
  const next = makeIdentity(now + 15000);
  t.operator.answerRefresh(identity, { status: 'success', body: next });
  t.sdk.init({ identity, callback: t.callback });

  await t.clock.advance(PERIOD * 2); // t = 10 s: refresh_from not reached
  assert.equal(t.operator.requests.length, 0);
  await t.clock.advance(PERIOD); // t = 15 s: the check sees refresh_from <= now
  await waitFor(() => t.statuses.length === 2, 'REFRESHED');

  const request = t.operator.requests[0];
  assert.equal(request.url, BASE_URL + '/v2/token/refresh?client=' + encodeURIComponent(CLIENT_VERSION));
  assert.match(CLIENT_VERSION, /^uid2-rs-sdk-\d+\.\d+\.\d+/);
  assert.equal(request.init.method, 'POST');
  assert.equal(request.body, identity.refresh_token);
  assert.equal(request.init.headers, undefined, 'no custom header, so no CORS preflight');

  assert.equal(lastStatus(t.statuses), IdentityStatus.REFRESHED);
  assert.equal(t.sdk.getAdvertisingToken(), next.advertising_token);
  assert.deepEqual(storedIdentity(t.localStorage), next);
  const updated = t.events.filter((e) => e.type === EventType.IdentityUpdated);
  assert.equal(updated.length, 1);
  assert.equal(updated[0].payload.identity.advertising_token, next.advertising_token);
});

test('init with refresh_from already passed refreshes immediately', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  const next = makeIdentity(t.clock.now());
  t.operator.answerRefresh(identity, { status: 'success', body: next });
  t.sdk.init({ identity, callback: t.callback });
  assert.equal(t.operator.requests.length, 1);
  await waitFor(() => t.sdk.getAdvertisingToken() === next.advertising_token, 'refreshed token');
  assert.deepEqual(t.statuses.map((s) => s.status), [IdentityStatus.ESTABLISHED, IdentityStatus.REFRESHED]);
});

test('optout: identity cleared, OPTOUT, opt-out marker stored, refreshing stops', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  t.operator.answerRefresh(identity, { status: 'optout' });
  t.sdk.init({ identity, callback: t.callback });
  await waitFor(() => t.statuses.length === 2, 'OPTOUT');
  assert.equal(lastStatus(t.statuses), IdentityStatus.OPTOUT);
  assert.equal(t.sdk.getAdvertisingToken(), undefined);
  assert.equal(t.sdk.getIdentity(), null);
  assert.equal(t.sdk.hasOptedOut(), true);
  assert.equal(t.sdk.isLoginRequired(), true);
  const marker = storedIdentity(t.localStorage);
  assert.deepEqual(Object.keys(marker).sort(), ['identity_expires', 'refresh_expires', 'status']);
  assert.equal(marker.status, 'optout');
  assert.ok(marker.refresh_expires > t.clock.now());
  assert.ok(eventTypes(t.events).includes(EventType.OptoutReceived));
  await t.clock.advance(PERIOD * 10);
  assert.equal(t.operator.requests.length, 1);
});

test('a remembered opt-out is reported on the next page load', () => {
  const t = setup();
  t.localStorage.setItem(
    sdkModule.LOCAL_STORAGE_KEY,
    JSON.stringify({ status: 'optout', identity_expires: t.clock.now() + 1e6, refresh_expires: t.clock.now() + 1e6 })
  );
  t.sdk.init({ callback: t.callback });
  assert.equal(t.statuses[0].status, IdentityStatus.OPTOUT);
  assert.equal(t.sdk.hasOptedOut(), true);
  assert.deepEqual(eventTypes(t.events), [EventType.SdkLoaded, EventType.InitCompleted, EventType.OptoutReceived]);
  // Renewed by the visit, as the official SDK renews it: three days from now, not from the
  // opt-out.
  const renewed = storedIdentity(t.localStorage);
  assert.equal(renewed.status, 'optout');
  assert.equal(renewed.refresh_expires, t.clock.now() + 72 * 3600 * 1000);
});

test('expired_token (400 plain JSON, as API-key callers get it) -> REFRESH_EXPIRED, cleared', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  t.operator.answerPlain({ status: 'expired_token', message: 'Expired Token presented' }, 400);
  t.sdk.init({ identity, callback: t.callback });
  await waitFor(() => t.statuses.length === 2, 'REFRESH_EXPIRED');
  assert.equal(lastStatus(t.statuses), IdentityStatus.REFRESH_EXPIRED);
  assert.equal(storedIdentity(t.localStorage), null);
  assert.equal(t.sdk.isLoginRequired(), true);
  await t.clock.advance(PERIOD * 4);
  assert.equal(t.operator.requests.length, 1);
});

test('expired_token inside a sealed 200 is terminal too', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  t.operator.answerRefresh(identity, { status: 'expired_token' });
  t.sdk.init({ identity, callback: t.callback });
  await waitFor(() => t.statuses.length === 2, 'REFRESH_EXPIRED');
  assert.equal(lastStatus(t.statuses), IdentityStatus.REFRESH_EXPIRED);
});

test('network failure: identity kept, retried after refreshRetryPeriod, then succeeds', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  const next = makeIdentity(t.clock.now());
  t.operator.failNetwork().answerRefresh(identity, { status: 'success', body: next });
  t.sdk.init({ identity, refreshRetryPeriod: 7000, callback: t.callback });
  await waitFor(() => t.clock.pendingTimers().includes(7000), 'retry timer');
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token, 'old token still usable');
  assert.deepEqual(storedIdentity(t.localStorage), identity);
  await t.clock.advance(6999);
  assert.equal(t.operator.requests.length, 1, 'not before the retry period');
  await t.clock.advance(1);
  await waitFor(() => t.statuses.length === 2, 'REFRESHED');
  assert.equal(t.operator.requests.length, 2);
  assert.equal(lastStatus(t.statuses), IdentityStatus.REFRESHED);
  assert.equal(t.sdk.getAdvertisingToken(), next.advertising_token);
});

test('an undecryptable 200 does not stall: retried after the period', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  const next = makeIdentity(t.clock.now());
  const wrongKey = { ...identity, refresh_response_key: makeIdentity(0).refresh_response_key };
  t.operator.answerRefresh(wrongKey, { status: 'success', body: makeIdentity(0) });
  t.operator.answerRefresh(identity, { status: 'success', body: next });
  t.sdk.init({ identity, callback: t.callback });
  await waitFor(() => t.clock.pendingTimers().includes(PERIOD), 'retry timer');
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  await t.clock.advance(PERIOD);
  await waitFor(() => t.sdk.getAdvertisingToken() === next.advertising_token, 'second attempt');
  assert.equal(t.operator.requests.length, 2);
});

test('non-base64 garbage and 400 {"status":"error"} are transient too', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  t.operator.answer(async () => new Response('%%% not base64', { status: 200 }));
  t.operator.answerPlain({ status: 'error', message: 'Error refreshing token' }, 400);
  t.operator.answerPlain({ status: 'unknown' }, 500);
  t.sdk.init({ identity, callback: t.callback });
  await waitFor(() => t.clock.pendingTimers().includes(PERIOD), 'first retry');
  await t.clock.advance(PERIOD);
  await waitFor(() => t.operator.requests.length === 2 && t.clock.pendingTimers().includes(PERIOD), 'second retry');
  await t.clock.advance(PERIOD);
  await waitFor(() => t.operator.requests.length === 3 && t.clock.pendingTimers().includes(PERIOD), 'third retry');
  assert.deepEqual(t.statuses.map((s) => s.status), [IdentityStatus.ESTABLISHED]);
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
});

test('advertising token expiring while retrying -> EXPIRED, token unavailable, then recovers', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1, identityExpires: 8000 });
  const next = makeIdentity(t.clock.now() + 15000);
  t.operator.failNetwork().failNetwork();
  const release = t.operator.held();
  t.sdk.init({ identity, callback: t.callback });
  await t.clock.advance(PERIOD); // t = 5 s, still valid; second attempt fails
  assert.equal(t.operator.requests.length, 2);
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  assert.deepEqual(t.statuses.map((s) => s.status), [IdentityStatus.ESTABLISHED]);
  await t.clock.advance(PERIOD); // t = 10 s: token expired; third attempt in flight
  assert.equal(t.operator.requests.length, 3);
  assert.equal(t.statuses[1].status, IdentityStatus.EXPIRED);
  assert.equal(t.statuses[1].advertisingToken, undefined);
  assert.equal(t.sdk.getAdvertisingToken(), undefined);
  assert.equal(t.sdk.getIdentity(), null);
  assert.equal(t.sdk.isLoginRequired(), false, 'temporarily unavailable, not logged out');
  assert.deepEqual(storedIdentity(t.localStorage), identity, 'kept for the retry');
  const asyncToken = t.sdk.getAdvertisingTokenAsync(); // waits for the in-flight refresh
  release(new Response(await sealJson(identity.refresh_response_key, { status: 'success', body: next })));
  assert.equal(await asyncToken, next.advertising_token);
  assert.equal(lastStatus(t.statuses), IdentityStatus.REFRESHED);
  assert.equal(t.sdk.getAdvertisingToken(), next.advertising_token);
});

test('a refresh failing after the token expired in flight reports EXPIRED at once', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1, identityExpires: 2000 });
  const release = t.operator.held();
  t.sdk.init({ identity, callback: t.callback });
  await t.clock.advance(3000); // token expires while the request is pending
  assert.deepEqual(t.statuses.map((s) => s.status), [IdentityStatus.ESTABLISHED]);
  release(new Response('{"status":"error","message":"Error refreshing token"}', { status: 400 }));
  await waitFor(() => t.statuses.length === 2, 'EXPIRED');
  assert.equal(t.statuses[1].status, IdentityStatus.EXPIRED);
  const expiredEvents = t.events.filter((e) => e.type === EventType.IdentityUpdated);
  assert.equal(expiredEvents.length, 1);
  assert.equal(expiredEvents[0].payload.identity, null);
});

test('EXPIRED with no request in flight: getAdvertisingTokenAsync rejects', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1, identityExpires: 1000 });
  t.operator.failNetwork().failNetwork();
  t.sdk.init({ identity, callback: t.callback });
  await t.clock.advance(PERIOD);
  assert.equal(t.statuses[1].status, IdentityStatus.EXPIRED);
  await assert.rejects(t.sdk.getAdvertisingTokenAsync(), /identity/i);
});

test('refresh_expires passing while retrying -> REFRESH_EXPIRED, identity removed, no more requests', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1, identityExpires: 3000, refreshExpires: 12000 });
  for (let i = 0; i < 5; i++) t.operator.failNetwork();
  t.sdk.init({ identity, callback: t.callback });
  await t.clock.advance(PERIOD * 4);
  const codes = t.statuses.map((s) => s.status);
  assert.deepEqual(codes, [IdentityStatus.ESTABLISHED, IdentityStatus.EXPIRED, IdentityStatus.REFRESH_EXPIRED]);
  assert.equal(storedIdentity(t.localStorage), null);
  assert.equal(t.sdk.isLoginRequired(), true);
  const count = t.operator.requests.length;
  await t.clock.advance(PERIOD * 4);
  assert.equal(t.operator.requests.length, count);
  assert.deepEqual(t.clock.pendingTimers(), []);
});

test('identities without refresh_response_key (v1) get plain JSON answers', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1, v1: true });
  const next = makeIdentity(t.clock.now());
  t.operator.answerPlain({ status: 'success', body: next }, 200);
  t.sdk.init({ identity, callback: t.callback });
  await waitFor(() => t.sdk.getAdvertisingToken() === next.advertising_token, 'plain refresh');
});

test('a request that never answers times out and is retried', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1, identityExpires: 3600000, refreshExpires: 7200000 });
  const next = makeIdentity(t.clock.now());
  t.operator.hang().answerRefresh(identity, { status: 'success', body: next });
  t.sdk.init({ identity });
  await t.clock.advance(30000); // request timeout
  await t.clock.advance(PERIOD);
  await waitFor(() => t.sdk.getAdvertisingToken() === next.advertising_token, 'retry after timeout');
  assert.equal(t.operator.requests.length, 2);
});

test('init states: no identity, invalid identity, refresh already expired', () => {
  const none = setup();
  none.sdk.init({ callback: none.callback });
  assert.equal(none.statuses[0].status, IdentityStatus.NO_IDENTITY);
  assert.equal(none.sdk.isLoginRequired(), true);
  assert.equal(none.events[1].payload.identity, null);

  const invalid = setup();
  invalid.sdk.init({ identity: { advertising_token: 'x' }, callback: invalid.callback });
  assert.equal(invalid.statuses[0].status, IdentityStatus.INVALID);
  assert.equal(invalid.sdk.getAdvertisingToken(), undefined);

  const expired = setup();
  const identity = makeIdentity(expired.clock.now(), { refreshFrom: -3000, identityExpires: -2000, refreshExpires: -1000 });
  expired.sdk.init({ identity, callback: expired.callback });
  assert.equal(expired.statuses[0].status, IdentityStatus.REFRESH_EXPIRED);
  assert.equal(storedIdentity(expired.localStorage), null);
  assert.equal(expired.operator.requests.length, 0);
});

test('init with an expired advertising token but live refresh token: EXPIRED, then refreshed', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -2000, identityExpires: -1000 });
  const next = makeIdentity(t.clock.now());
  t.operator.answerRefresh(identity, { status: 'success', body: next });
  t.sdk.init({ identity, callback: t.callback });
  assert.equal(t.statuses[0].status, IdentityStatus.EXPIRED);
  assert.equal(t.sdk.getAdvertisingToken(), undefined);
  assert.equal(await t.sdk.getAdvertisingTokenAsync(), next.advertising_token, 'waits for the refresh');
});
