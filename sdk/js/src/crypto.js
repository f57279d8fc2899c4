// Byte encodings and the WebCrypto operations the protocol needs. Everything goes
// through the injected `crypto` so that Node tests use real AES-GCM/ECDH too.

function bytesToBase64(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let bin = '';
  // Chunked: String.fromCharCode(...bigArray) overflows the stack on large inputs.
  for (let i = 0; i < u8.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

function base64ToBytes(text) {
  const bin = atob(String(text).trim());
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function utf8Encode(text) {
  return new TextEncoder().encode(text);
}

function utf8Decode(bytes) {
  // fatal: a garbled plaintext must fail like a bad tag does, not turn into U+FFFD.
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

// b64(SHA-256(UTF-8(value))): the "identity hash" the operator computes for raw DII.
async function sha256Base64(crypto, value) {
  const digest = await crypto.subtle.digest('SHA-256', utf8Encode(value));
  return bytesToBase64(new Uint8Array(digest));
}

function importAesKey(crypto, keyB64, usages) {
  return crypto.subtle.importKey('raw', base64ToBytes(keyB64), { name: 'AES-GCM' }, false, usages);
}

// The operator's sealed responses (refresh and CSTG) are b64(IV(12) ‖ ciphertext ‖ tag),
// no AAD, holding UTF-8 JSON.
async function openSealedJson(crypto, key, sealedB64) {
  const bytes = base64ToBytes(sealedB64);
  if (bytes.length < 12 + 16) throw new Error('sealed response too short');
  const plain = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: bytes.subarray(0, 12), tagLength: 128 },
    key,
    bytes.subarray(12)
  );
  return JSON.parse(utf8Decode(new Uint8Array(plain)));
}

// Client-side token generation box: an ephemeral P-256 key pair whose ECDH secret with the
// site's server key is used *directly* as the AES-256-GCM key (no KDF), as the operator does.
async function createCstgBox(crypto, serverPublicKeyB64) {
  const curve = { name: 'ECDH', namedCurve: 'P-256' };
  const serverKey = await crypto.subtle.importKey(
    'spki',
    base64ToBytes(serverPublicKeyB64),
    curve,
    false,
    []
  );
  const pair = await crypto.subtle.generateKey(curve, false, ['deriveKey']);
  const sharedKey = await crypto.subtle.deriveKey(
    { name: 'ECDH', public: serverKey },
    pair.privateKey,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt']
  );
  const publicKeySpki = new Uint8Array(await crypto.subtle.exportKey('spki', pair.publicKey));
  return {
    sharedKey,
    publicKeySpki,
    async seal(plaintext, aad) {
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const ct = await crypto.subtle.encrypt(
        { name: 'AES-GCM', iv, additionalData: aad, tagLength: 128 },
        sharedKey,
        plaintext
      );
      return { iv, ciphertext: new Uint8Array(ct) };
    },
  };
}
