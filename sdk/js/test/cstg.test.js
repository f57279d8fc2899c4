'use strict';
// Client-side token generation against a fake operator that does what the real one does:
// raw ECDH secret as the AES-256-GCM key, AAD = `[timestamp]`, answer sealed under the secret.

const test = require('node:test');
const assert = require('node:assert/strict');
const { webcrypto } = require('node:crypto');
const { setup, makeIdentity, sealJson, storedIdentity, eventTypes, waitFor, BASE_URL, sdkModule } = require('../test-support/fakes');

const { subtle } = webcrypto;
const { IdentityStatus, EventType, CLIENT_VERSION } = sdkModule;
const CURVE = { name: 'ECDH', namedCurve: 'P-256' };
const SUBSCRIPTION_ID = 'abcdefABCDEF';

async function serverKeys() {
  const pair = await subtle.generateKey(CURVE, true, ['deriveBits']);
  const spki = Buffer.from(await subtle.exportKey('spki', pair.publicKey));
  return { privateKey: pair.privateKey, serverPublicKey: 'UID2-X-L-' + spki.toString('base64') };
}

// Decrypts the request like the operator (Java KeyAgreement secret, no KDF) and answers
// answer(decryptedPayload, request) sealed under the same secret.
function cstgHandler(keys, seen, answer) {
  return async (request) => {
    const body = JSON.parse(request.body);
    seen.body = body;
    const clientKey = await subtle.importKey('spki', Buffer.from(body.public_key, 'base64'), CURVE, false, []);
    const secret = await subtle.deriveBits({ name: 'ECDH', public: clientKey }, keys.privateKey, 256);
    const key = await subtle.importKey('raw', secret, 'AES-GCM', false, ['encrypt', 'decrypt']);
    const plain = await subtle.decrypt(
      { name: 'AES-GCM', iv: Buffer.from(body.iv, 'base64'), additionalData: Buffer.from('[' + body.timestamp + ']') },
      key,
      Buffer.from(body.payload, 'base64')
    );
    seen.payload = JSON.parse(Buffer.from(plain).toString('utf8'));
    return new Response(await sealJson(key, answer(seen.payload)), { status: 200 });
  };
}

async function cstgSetup() {
  const t = setup();
  t.keys = await serverKeys();
  t.opts = { serverPublicKey: t.keys.serverPublicKey, subscriptionId: SUBSCRIPTION_ID };
  t.seen = {};
  t.sdk.init({ callback: t.callback });
  return t;
}

test('setIdentityFromEmail: normalised hash, correct envelope, sealed identity adopted', async () => {
  const t = await cstgSetup();
  const identity = makeIdentity(t.clock.now());
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  const handler = cstgHandler(t.keys, t.seen, () => ({ status: 'success', body: identity }));
  t.operator.answer(async (request) => {
    await gate;
    return handler(request);
  });
  const done = t.sdk.setIdentityFromEmail(' TEst.TEst+123@GMail.Com ', t.opts);
  await waitFor(() => t.operator.requests.length === 1, 'CSTG request');
  assert.equal(t.sdk.isLoginRequired(), false, 'a CSTG request is in flight');
  const pending = t.sdk.getAdvertisingTokenAsync(); // deferred until the request completes
  open();
  await done;

  const request = t.operator.requests[0];
  assert.equal(request.url, BASE_URL + '/v2/token/client-generate?client=' + encodeURIComponent(CLIENT_VERSION));
  assert.equal(request.init.method, 'POST');
  assert.equal(typeof request.body, 'string', 'text body: no CORS preflight');
  assert.equal(request.init.headers, undefined);
  assert.deepEqual(Object.keys(t.seen.body).sort(), ['iv', 'payload', 'public_key', 'subscription_id', 'timestamp']);
  assert.equal(t.seen.body.timestamp, t.clock.now());
  assert.equal(t.seen.body.subscription_id, SUBSCRIPTION_ID);
  assert.equal(Buffer.from(t.seen.body.iv, 'base64').length, 12);
  assert.equal(Buffer.from(t.seen.body.public_key, 'base64').length, 91, 'P-256 SubjectPublicKeyInfo');
  assert.deepEqual(t.seen.payload, { email_hash: 'LkLfFrut8Tc3h/fIvYDiBKSbaMiau/DtaLBPQYszdMw=' });

  assert.equal(t.sdk.getAdvertisingToken(), identity.advertising_token);
  assert.equal(await pending, identity.advertising_token, 'pending promise gets the new token');
  assert.deepEqual(storedIdentity(t.localStorage), identity);
  assert.equal(t.statuses[1].status, IdentityStatus.ESTABLISHED);
  assert.ok(eventTypes(t.events).includes(EventType.IdentityUpdated));
});

test('the AAD binds the timestamp: a server using another timestamp cannot decrypt', async () => {
  const t = await cstgSetup();
  t.operator.answer(async (request) => {
    const body = JSON.parse(request.body);
    body.timestamp += 1;
    return cstgHandler(t.keys, t.seen, () => ({ status: 'optout' }))({ body: JSON.stringify(body) });
  });
  await assert.rejects(t.sdk.setIdentityFromEmail('a@b.com', t.opts));
  assert.equal(t.seen.payload, undefined);
});

test('setIdentityFromEmailHash / Phone / PhoneHash send the right field', async () => {
  const t = await cstgSetup();
  const ok = () => ({ status: 'success', body: makeIdentity(t.clock.now()) });
  const hash = 'dvECjPKZHya0/SIhSGwP0m8SgTv1vzLxPULUOsm880M=';

  t.operator.answer(cstgHandler(t.keys, t.seen, ok));
  await t.sdk.setIdentityFromEmailHash(hash, t.opts);
  assert.deepEqual(t.seen.payload, { email_hash: hash });

  t.operator.answer(cstgHandler(t.keys, t.seen, ok));
  await t.sdk.setIdentityFromPhone('+12345678901', t.opts);
  assert.deepEqual(t.seen.payload, { phone_hash: 'EObwtHBUqDNZR33LNSMdtt5cafsYFuGmuY4ZLenlue4=' });

  t.operator.answer(cstgHandler(t.keys, t.seen, ok));
  await t.sdk.setIdentityFromPhoneHash(hash, t.opts);
  assert.deepEqual(t.seen.payload, { phone_hash: hash });
  assert.equal(t.operator.requests.length, 3);
});

test('invalid DII is refused before any request', async () => {
  const t = await cstgSetup();
  await assert.rejects(t.sdk.setIdentityFromEmail('a@ba@z.com', t.opts), /Invalid email/);
  await assert.rejects(t.sdk.setIdentityFromEmail('+@gmail.com', t.opts), /Invalid email/);
  await assert.rejects(t.sdk.setIdentityFromPhone('555-555-5555', t.opts), /Invalid phone/);
  await assert.rejects(t.sdk.setIdentityFromPhone('+1234567890 ', t.opts), /Invalid phone/);
  await assert.rejects(t.sdk.setIdentityFromEmailHash('not a hash', t.opts), /Invalid hash/);
  await assert.rejects(t.sdk.setIdentityFromPhoneHash('a'.repeat(64), t.opts), /Invalid hash/);
  assert.equal(t.operator.requests.length, 0);
});

test('bad CSTG options throw TypeError; calling before init fails', async () => {
  const t = await cstgSetup();
  const email = 'a@b.com';
  await assert.rejects(t.sdk.setIdentityFromEmail(email, undefined), TypeError);
  await assert.rejects(t.sdk.setIdentityFromEmail(email, { ...t.opts, serverPublicKey: 'MFkwEwYHKoZIzj0CAQ' }), TypeError);
  await assert.rejects(t.sdk.setIdentityFromEmail(email, { ...t.opts, subscriptionId: '' }), TypeError);
  assert.equal(t.operator.requests.length, 0);

  const fresh = setup();
  await assert.rejects(fresh.sdk.setIdentityFromEmail(email, t.opts), /before calling init/);
});

test('400 client_error and 403 invalid_http_origin reject with the operator message', async () => {
  const t = await cstgSetup();
  const before = makeIdentity(t.clock.now());
  t.sdk.setIdentity(before);
  t.operator.answerPlain({ status: 'client_error', message: 'bad subscription_id' }, 400);
  await assert.rejects(t.sdk.setIdentityFromEmail('a@b.com', t.opts), /bad subscription_id/);
  t.operator.answerPlain({ status: 'invalid_http_origin', message: 'unexpected http origin' }, 403);
  await assert.rejects(t.sdk.setIdentityFromEmail('a@b.com', t.opts), /Forbidden: unexpected http origin/);
  t.operator.failNetwork();
  await assert.rejects(t.sdk.setIdentityFromEmail('a@b.com', t.opts));
  assert.equal(t.sdk.getAdvertisingToken(), before.advertising_token, 'failed CSTG keeps the old identity');
});

test('optout from CSTG: OPTOUT, marker stored, OptoutReceived', async () => {
  const t = await cstgSetup();
  t.operator.answer(cstgHandler(t.keys, t.seen, () => ({ status: 'optout' })));
  await t.sdk.setIdentityFromEmail('optout@example.com', t.opts);
  assert.equal(t.statuses[t.statuses.length - 1].status, IdentityStatus.OPTOUT);
  assert.equal(t.sdk.hasOptedOut(), true);
  assert.equal(t.sdk.getAdvertisingToken(), undefined);
  assert.equal(storedIdentity(t.localStorage).status, 'optout');
  assert.ok(eventTypes(t.events).includes(EventType.OptoutReceived));
});

test('EUID-prefixed keys are accepted and stripped the same way', async () => {
  const t = await cstgSetup();
  t.opts.serverPublicKey = 'EUID-X-I-' + t.keys.serverPublicKey.slice(9);
  t.operator.answer(cstgHandler(t.keys, t.seen, () => ({ status: 'success', body: makeIdentity(t.clock.now()) })));
  await t.sdk.setIdentityFromEmail('a@b.com', t.opts);
  assert.ok(t.sdk.getAdvertisingToken());
});

test('a disconnect() while the email is still being hashed cancels the generation', async () => {
  const t = await cstgSetup();
  t.operator.answer(cstgHandler(t.keys, t.seen, () => ({ status: 'success', body: makeIdentity(t.clock.now()) })));
  const generating = t.sdk.setIdentityFromEmail('a@example.com', t.opts);
  t.sdk.disconnect();
  await assert.rejects(generating, /aborted/);
  assert.equal(t.operator.requests.length, 0, 'nothing was sent');
  assert.equal(t.sdk.getAdvertisingToken(), undefined);
  assert.equal(storedIdentity(t.localStorage), null);
  assert.deepEqual(t.clock.pendingTimers(), []);
});

test('a disconnect() during the key agreement sends nothing and leaves no promise waiting', async () => {
  // WebCrypto that calls disconnect() as the SDK imports the server's public key.
  let onImportSpki = null;
  const subtleHooked = new Proxy(subtle, {
    get(target, name) {
      const f = target[name].bind(target);
      if (name !== 'importKey') return f;
      return (format, ...rest) => {
        if (format === 'spki' && onImportSpki) {
          const hook = onImportSpki;
          onImportSpki = null;
          hook();
        }
        return f(format, ...rest);
      };
    },
  });
  const crypto = { getRandomValues: (a) => webcrypto.getRandomValues(a), subtle: subtleHooked };
  const t = setup({ crypto });
  const keys = await serverKeys();
  const opts = { serverPublicKey: keys.serverPublicKey, subscriptionId: SUBSCRIPTION_ID };
  t.sdk.init({});
  t.operator.answer(cstgHandler(keys, {}, () => ({ status: 'success', body: makeIdentity(t.clock.now()) })));
  onImportSpki = () => t.sdk.disconnect();
  const generating = t.sdk.setIdentityFromEmail('a@example.com', opts);
  await assert.rejects(generating, /aborted/);
  assert.equal(t.operator.requests.length, 0, 'no request after the disconnect');
  assert.equal(t.sdk.isLoginRequired(), true);
  await assert.rejects(t.sdk.getAdvertisingTokenAsync(), /not available/);
  assert.deepEqual(t.clock.pendingTimers(), [], 'no request timeout left running');
});
