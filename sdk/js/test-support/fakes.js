'use strict';
// Test doubles for the SDK's injected environment: a manual clock with timers, in-memory
// localStorage, a cookie jar behind `document.cookie`, and a scripted operator behind `fetch`
// that seals its answers with real AES-GCM (Node's WebCrypto), so the SDK's decryption runs.

const { webcrypto } = require('node:crypto');
const path = require('node:path');

const SDK_PATH = path.join(__dirname, '..', 'uid2-sdk.js');
const sdkModule = require(SDK_PATH);

const T0 = 1700000000000;
const BASE_URL = 'https://operator.test';

class FakeClock {
  constructor(start = T0) {
    this._now = start;
    this._timers = new Map();
    this._nextId = 1;
    this.now = () => this._now;
    this.setTimeout = (fn, ms) => {
      const id = this._nextId++;
      this._timers.set(id, { at: this._now + Math.max(0, ms), fn });
      return id;
    };
    this.clearTimeout = (id) => {
      this._timers.delete(id);
    };
  }

  pendingTimers() {
    return Array.from(this._timers.values()).map((t) => t.at - this._now);
  }

  // Moves time forward, firing due timers in order and letting the real event loop run
  // after each, because WebCrypto completes on Node's thread pool, not as a microtask.
  async advance(ms) {
    const end = this._now + ms;
    for (;;) {
      await settle();
      let nextId = null;
      let next = null;
      for (const [id, t] of this._timers) {
        if (t.at <= end && (next === null || t.at < next.at)) {
          next = t;
          nextId = id;
        }
      }
      if (next === null) break;
      this._timers.delete(nextId);
      this._now = Math.max(this._now, next.at);
      next.fn();
      await settle();
    }
    this._now = end;
    await settle();
  }
}

// Lets pending promise chains, including thread-pool crypto, run to completion.
async function settle(rounds = 5) {
  for (let i = 0; i < rounds; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async function waitFor(predicate, what = 'condition') {
  for (let i = 0; i < 200; i++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error('timed out waiting for ' + what);
}

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}

// A browser-like cookie jar: cookies are keyed by name, path and domain, and a write with a
// past expiry deletes only the cookie with the same key, as browsers do.
class CookieDocument {
  constructor(clock) {
    this._clock = clock;
    this.jar = new Map();
    this.writes = [];
    // A domain the page is not under: browsers silently drop cookies set for it.
    this.foreignDomain = undefined;
  }

  get cookie() {
    const now = this._clock.now();
    const rows = [];
    for (const c of this.jar.values()) {
      if (c.expires === undefined || c.expires > now) rows.push(c.name + '=' + c.value);
    }
    return rows.join('; ');
  }

  set cookie(text) {
    this.writes.push(text);
    const [pair, ...attrs] = text.split(';');
    const eq = pair.indexOf('=');
    const cookie = { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), path: '/' };
    for (const attr of attrs) {
      const i = attr.indexOf('=');
      const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const value = i < 0 ? '' : attr.slice(i + 1).trim();
      if (key === 'path') cookie.path = value;
      if (key === 'domain') cookie.domain = value;
      if (key === 'expires') cookie.expires = Date.parse(value);
    }
    if (this.foreignDomain !== undefined && cookie.domain === this.foreignDomain) return;
    const id = cookie.name + '|' + cookie.path + '|' + (cookie.domain || '');
    if (cookie.expires !== undefined && cookie.expires <= this._clock.now()) this.jar.delete(id);
    else this.jar.set(id, cookie);
  }

  find(name) {
    return Array.from(this.jar.values()).filter((c) => c.name === name);
  }
}

function randomKeyB64() {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(32))).toString('base64');
}

let identityCounter = 0;
// Times are offsets from `now` in ms.
function makeIdentity(now, { refreshFrom = 60000, identityExpires = 120000, refreshExpires = 600000, v1 = false } = {}) {
  identityCounter++;
  const identity = {
    advertising_token: 'AT-' + identityCounter,
    refresh_token: 'RT-' + identityCounter,
    identity_expires: now + identityExpires,
    refresh_expires: now + refreshExpires,
    refresh_from: now + refreshFrom,
  };
  if (!v1) identity.refresh_response_key = randomKeyB64();
  return identity;
}

async function aesKey(keyOrB64, usages) {
  if (typeof keyOrB64 !== 'string') return keyOrB64;
  return webcrypto.subtle.importKey('raw', Buffer.from(keyOrB64, 'base64'), 'AES-GCM', false, usages);
}

// b64(IV ‖ ciphertext ‖ tag) of the JSON, as the operator seals refresh and CSTG answers.
async function sealJson(keyOrB64, value) {
  const key = await aesKey(keyOrB64, ['encrypt']);
  const iv = webcrypto.getRandomValues(new Uint8Array(12));
  const ct = new Uint8Array(
    await webcrypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, new TextEncoder().encode(JSON.stringify(value)))
  );
  return Buffer.concat([Buffer.from(iv), Buffer.from(ct)]).toString('base64');
}

// A scripted operator. Each request takes the next queued handler; handlers get
// { url, body, init } and return a Response, throw (network failure) or hang.
class FakeOperator {
  constructor() {
    this.requests = [];
    this._handlers = [];
    this.fetch = async (url, init) => {
      const request = { url: String(url), body: init && init.body, init };
      this.requests.push(request);
      const handler = this._handlers.shift();
      if (!handler) throw new TypeError('Failed to fetch (no scripted answer)');
      return handler(request);
    };
  }

  answer(handler) {
    this._handlers.push(handler);
    return this;
  }

  answerRefresh(identity, value, status = 200) {
    return this.answer(async () => new Response(await sealJson(identity.refresh_response_key, value), { status }));
  }

  answerPlain(value, status) {
    return this.answer(async () => new Response(JSON.stringify(value), { status }));
  }

  failNetwork() {
    return this.answer(async () => {
      throw new TypeError('Failed to fetch');
    });
  }

  // Answers only when the returned release(response) is called.
  held() {
    let release;
    const answer = new Promise((resolve) => {
      release = resolve;
    });
    this.answer(() => answer);
    return (value) => release(value);
  }

  // Never answers unless the SDK aborts the request.
  hang() {
    return this.answer(
      (request) =>
        new Promise((resolve, reject) => {
          const signal = request.init && request.init.signal;
          if (signal) signal.addEventListener('abort', () => reject(new Error('aborted')));
        })
    );
  }
}

const silentLogger = { warn() {}, log() {} };

// A fresh SDK wired to fakes. Returns the pieces plus recorders for events and legacy statuses.
function setup({ useCookieDocument = true, localStorage = new MemoryStorage(), crypto = webcrypto } = {}) {
  const clock = new FakeClock();
  const operator = new FakeOperator();
  const document = useCookieDocument ? new CookieDocument(clock) : undefined;
  const events = [];
  const callbacks = [(type, payload) => events.push({ type, payload })];
  const sdk = sdkModule.createUID2({
    callbacks,
    fetch: operator.fetch,
    crypto,
    localStorage,
    document,
    now: clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    logger: silentLogger,
    defaultBaseUrl: BASE_URL,
  });
  const statuses = [];
  const callback = (result) => statuses.push(result);
  return { sdk, clock, operator, localStorage, document, events, statuses, callback };
}

function storedIdentity(localStorage) {
  const raw = localStorage.getItem(sdkModule.LOCAL_STORAGE_KEY);
  return raw === null ? null : JSON.parse(raw);
}

function eventTypes(events) {
  return events.map((e) => e.type);
}

module.exports = {
  sdkModule,
  SDK_PATH,
  T0,
  BASE_URL,
  FakeClock,
  FakeOperator,
  MemoryStorage,
  CookieDocument,
  makeIdentity,
  sealJson,
  settle,
  waitFor,
  setup,
  silentLogger,
  storedIdentity,
  eventTypes,
  randomKeyB64,
};
