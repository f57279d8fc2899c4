'use strict';
// Public API outside the refresh loop: options, init once, promises, disconnect/abort,
// setIdentity and the callbacks array.

const test = require('node:test');
const assert = require('node:assert/strict');
const { setup, makeIdentity, sealJson, storedIdentity, eventTypes, waitFor, sdkModule } = require('../test-support/fakes');

const { UID2, IdentityStatus, EventType } = sdkModule;

test('UID2 exposes the status codes and event names pages use', () => {
  assert.deepEqual({ ...UID2.IdentityStatus }, {
    ESTABLISHED: 0,
    REFRESHED: 1,
    EXPIRED: 100,
    NO_IDENTITY: -1,
    INVALID: -2,
    REFRESH_EXPIRED: -3,
    OPTOUT: -4,
  });
  assert.deepEqual({ ...UID2.EventType }, {
    InitCompleted: 'InitCompleted',
    IdentityUpdated: 'IdentityUpdated',
    SdkLoaded: 'SdkLoaded',
    OptoutReceived: 'OptoutReceived',
  });
  assert.equal(UID2.COOKIE_NAME, '__uid_2');
  assert.equal(UID2.VERSION, sdkModule.VERSION);
});

test('init twice throws', () => {
  const t = setup();
  t.sdk.init({});
  assert.throws(() => t.sdk.init({}), TypeError);
});

test('bad init options throw TypeError or RangeError and leave the SDK uninitialised', () => {
  const cases = [
    [null, TypeError],
    ['opts', TypeError],
    [{ callback: 'not a function' }, TypeError],
    [{ refreshRetryPeriod: '5000' }, TypeError],
    [{ refreshRetryPeriod: 999 }, RangeError],
    [{ refreshRetryPeriod: NaN }, RangeError],
    // Cookie attributes are written as text: a ';' would smuggle in attributes of its own.
    [{ cookieDomain: 'example.com;secure' }, TypeError],
    [{ cookiePath: '/ x' }, TypeError],
    [{ baseUrl: 42 }, TypeError],
    [{ cookiePath: {} }, TypeError],
  ];
  for (const [opts, error] of cases) {
    const t = setup();
    assert.throws(() => t.sdk.init(opts), error, JSON.stringify(opts));
    assert.equal(t.sdk.isInitComplete(), false);
    t.sdk.init({ refreshRetryPeriod: 1000 }); // still possible after a rejected call
  }
});

test('options the official SDK tolerates are normalised, not refused', async () => {
  // Templated page configs often hold null for "not set"; a throw would end the integration.
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.sdk.init({ identity, baseUrl: null, cookieDomain: null, cookiePath: null, callback: null, useCookie: 1 });
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  assert.equal(t.document.find('__uid_2').length, 1, 'a truthy useCookie stores in the cookie');
  assert.equal(storedIdentity(t.localStorage), null);

  // Past 2^31 - 1 ms a browser timer fires at once: the period is capped instead of spinning.
  const capped = setup();
  capped.sdk.init({ identity: makeIdentity(capped.clock.now()), refreshRetryPeriod: 2 ** 40 });
  const delays = capped.clock.pendingTimers();
  assert.ok(delays.length > 0, 'a periodic check is scheduled');
  assert.ok(delays.every((ms) => ms <= 2 ** 31 - 1), 'no timer past the 32-bit limit: ' + delays);
});

test('init after disconnect or abort throws, as in the official SDK', () => {
  const disconnected = setup();
  disconnected.sdk.disconnect();
  assert.equal(disconnected.sdk.isLoginRequired(), true, 'a disconnected page needs a login');
  assert.throws(() => disconnected.sdk.init({}), /aborted or disconnected/);
  assert.equal(disconnected.sdk.isInitComplete(), false);

  const aborted = setup();
  aborted.sdk.abort();
  assert.throws(() => aborted.sdk.init({}), TypeError);
});

test('isLoginRequired and hasOptedOut are undefined before init', () => {
  const t = setup();
  assert.equal(t.sdk.isLoginRequired(), undefined);
  assert.equal(t.sdk.hasOptedOut(), undefined);
});

test('before init the getters answer from storage', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.localStorage.setItem(sdkModule.LOCAL_STORAGE_KEY, JSON.stringify(identity));
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  assert.deepEqual(t.sdk.getIdentity(), identity);
  assert.equal(t.sdk.isIdentityAvailable(), true);
});

test('init without identity loads the stored one', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.localStorage.setItem(sdkModule.LOCAL_STORAGE_KEY, JSON.stringify(identity));
  t.sdk.init({ callback: t.callback });
  assert.equal(t.statuses[0].status, IdentityStatus.ESTABLISHED);
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
});

test('getAdvertisingTokenAsync waits for init, then resolves or rejects at once', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  const early = t.sdk.getAdvertisingTokenAsync();
  t.sdk.init({ identity });
  assert.equal(await early, identity.advertising_token);
  assert.equal(await t.sdk.getAdvertisingTokenAsync(), identity.advertising_token);

  const empty = setup();
  const waiting = empty.sdk.getAdvertisingTokenAsync();
  empty.sdk.init({});
  await assert.rejects(waiting, Error);
  await assert.rejects(empty.sdk.getAdvertisingTokenAsync(), Error);
});

test('disconnect: clears both storages, rejects pending promises, token gone, IdentityUpdated(null)', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1, identityExpires: 10000 });
  t.operator.hang();
  t.sdk.init({ identity });
  t.document.cookie = '__uid_2=' + encodeURIComponent(JSON.stringify(identity)) + ';path=/';
  await waitFor(() => t.operator.requests.length === 1, 'refresh started');
  // The token is still current: an ad call is not held up by the refresh in flight.
  assert.equal(await t.sdk.getAdvertisingTokenAsync(), identity.advertising_token);
  // Once it has expired, a caller waits for the refresh still in flight (timeout: 30 s)...
  await t.clock.advance(10000);
  assert.equal(t.sdk.getAdvertisingToken(), undefined);
  assert.equal(t.operator.requests.length, 1, 'the first refresh still hangs');
  const pending = t.sdk.getAdvertisingTokenAsync();
  let settled = false;
  pending.catch(() => {}).finally(() => (settled = true));
  await t.clock.advance(10);
  assert.equal(settled, false);

  // ...until disconnect() rejects it.
  t.sdk.disconnect();
  await assert.rejects(pending, /disconnected/);
  assert.equal(storedIdentity(t.localStorage), null);
  assert.deepEqual(t.document.find('__uid_2'), []);
  assert.equal(t.sdk.getAdvertisingToken(), undefined);
  assert.equal(t.sdk.isLoginRequired(), true);
  const last = t.events[t.events.length - 1];
  assert.equal(last.type, EventType.IdentityUpdated);
  assert.equal(last.payload.identity, null);
  await t.clock.advance(60000);
  assert.equal(t.operator.requests.length, 1, 'no refresh after disconnect');
  await assert.rejects(t.sdk.getAdvertisingTokenAsync());
});

test('a refresh answer arriving after disconnect does not bring the identity back', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: -1 });
  const release = t.operator.held();
  t.sdk.init({ identity });
  t.sdk.disconnect();
  release(new Response(await sealJson(identity.refresh_response_key, { status: 'success', body: makeIdentity(0) })));
  await t.clock.advance(10000);
  assert.equal(t.sdk.getAdvertisingToken(), undefined);
  assert.equal(storedIdentity(t.localStorage), null);
});

test('abort stops the timers and rejects waiting promises', async () => {
  const t = setup();
  const waiting = t.sdk.getAdvertisingTokenAsync(); // before init: deferred
  t.sdk.abort();
  await assert.rejects(waiting, /aborted/);

  const u = setup();
  const identity = makeIdentity(u.clock.now(), { refreshFrom: 1000 });
  u.sdk.init({ identity });
  assert.equal(u.clock.pendingTimers().length, 1);
  u.sdk.abort();
  assert.deepEqual(u.clock.pendingTimers(), []);
  await u.clock.advance(60000);
  assert.equal(u.operator.requests.length, 0);
});

test('abort() from an IdentityUpdated callback after a refresh stops the refresh cycle', async () => {
  const t = setup();
  const now = t.clock.now();
  const identity = makeIdentity(now, { refreshFrom: 0 });
  t.operator.answerRefresh(identity, { status: 'success', body: makeIdentity(now, { refreshFrom: 10000 }) });
  t.sdk.callbacks.push((type) => {
    if (type === EventType.IdentityUpdated) t.sdk.abort();
  });
  t.sdk.init({ identity });
  await waitFor(() => t.operator.requests.length === 1, 'the refresh');
  await waitFor(() => eventTypes(t.events).includes(EventType.IdentityUpdated), 'IdentityUpdated');
  assert.deepEqual(t.clock.pendingTimers(), [], 'no check left scheduled');
  await t.clock.advance(60000);
  assert.equal(t.operator.requests.length, 1);
});

test('abort() from the legacy callback at init keeps the identity from refreshing', async () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now(), { refreshFrom: 0 });
  t.sdk.init({ identity, callback: () => t.sdk.abort() });
  await t.clock.advance(60000);
  assert.equal(t.operator.requests.length, 0);
  assert.deepEqual(t.clock.pendingTimers(), []);
});

test('setIdentity() from the EXPIRED report wins over the expired identity\'s refresh', async () => {
  const t = setup();
  const now = t.clock.now();
  // The token expires (8 s) before refresh_from (20 s): the check at 10 s reports EXPIRED and
  // would refresh the old identity at once.
  const expiring = makeIdentity(now, { identityExpires: 8000, refreshFrom: 20000 });
  const fresh = makeIdentity(now);
  t.sdk.init({
    identity: expiring,
    callback: (result) => {
      if (result.status === IdentityStatus.EXPIRED) t.sdk.setIdentity(fresh);
    },
  });
  await t.clock.advance(10000);
  assert.equal(t.operator.requests.length, 0, 'the replaced identity was not refreshed');
  assert.equal(t.sdk.getAdvertisingToken(), fresh.advertising_token);
});

test('a stored identity without tokens is reported INVALID at init and removed', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  delete identity.refresh_token;
  t.localStorage.setItem(sdkModule.LOCAL_STORAGE_KEY, JSON.stringify(identity));
  t.sdk.init({ callback: t.callback });
  assert.equal(t.statuses[0].status, IdentityStatus.INVALID);
  assert.equal(storedIdentity(t.localStorage), null);
});

test('setIdentity replaces the identity, stores it, raises IdentityUpdated and restarts the timer', async () => {
  const t = setup();
  assert.throws(() => t.sdk.setIdentity(makeIdentity(0)), Error, 'before init');
  t.sdk.init({ callback: t.callback });
  const identity = makeIdentity(t.clock.now(), { refreshFrom: 6000 });
  const next = makeIdentity(t.clock.now());
  t.operator.answerRefresh(identity, { status: 'success', body: next });
  t.sdk.setIdentity(identity);
  assert.equal(t.statuses[1].status, IdentityStatus.ESTABLISHED);
  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  assert.deepEqual(storedIdentity(t.localStorage), identity);
  const updated = t.events.filter((e) => e.type === EventType.IdentityUpdated);
  assert.equal(updated[0].payload.identity.advertising_token, identity.advertising_token);
  await t.clock.advance(10000);
  await waitFor(() => t.sdk.getAdvertisingToken() === next.advertising_token, 'refresh of the set identity');
});

test('callbacks pushed after init receive SdkLoaded and InitCompleted immediately', () => {
  const t = setup();
  const identity = makeIdentity(t.clock.now());
  t.sdk.init({ identity });
  const seen = [];
  t.sdk.callbacks.push((type, payload) => seen.push([type, payload]));
  assert.deepEqual(seen.map((s) => s[0]), [EventType.SdkLoaded, EventType.InitCompleted]);
  assert.deepEqual(seen[0][1], {});
  assert.equal(seen[1][1].identity.advertising_token, identity.advertising_token);
});

test('a throwing callback does not stop the others', () => {
  const t = setup();
  t.sdk.callbacks.push(() => {
    throw new Error('page bug');
  });
  const seen = [];
  t.sdk.callbacks.push((type) => seen.push(type));
  t.sdk.init({});
  assert.deepEqual(seen, [EventType.SdkLoaded, EventType.InitCompleted]);
  assert.deepEqual(eventTypes(t.events), [EventType.SdkLoaded, EventType.InitCompleted]);
});
