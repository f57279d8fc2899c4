// Calls the operator's v2 API directly from node, the way every UID2 SDK does, to check the
// demo against the operator's own answers: base64(0x01 ‖ AES-256-GCM(secret, timestamp ‖
// nonce ‖ JSON)) with a Bearer API key; the answer is AES-256-GCM(secret, timestamp ‖ nonce ‖ JSON).

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

function seal(secret, plaintext) {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', secret, iv);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

function open(secret, sealed) {
  const decipher = createDecipheriv('aes-256-gcm', secret, sealed.subarray(0, 12));
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]);
}

export async function callV2(operatorUrl, { key, secret }, path, json) {
  const secretBytes = Buffer.from(secret, 'base64');
  const nonce = randomBytes(8);
  const timestamp = Buffer.alloc(8);
  timestamp.writeBigInt64BE(BigInt(Date.now()));
  const payload = Buffer.concat([timestamp, nonce, Buffer.from(JSON.stringify(json))]);
  const envelope = Buffer.concat([Buffer.from([1]), seal(secretBytes, payload)]);
  const response = await fetch(operatorUrl + path, {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'text/plain' },
    body: envelope.toString('base64'),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${path} answered ${response.status}: ${text}`);
  const plain = open(secretBytes, Buffer.from(text, 'base64'));
  if (!plain.subarray(8, 16).equals(nonce)) throw new Error(`${path}: the answer echoes another nonce`);
  return JSON.parse(plain.subarray(16).toString('utf8'));
}

// The raw UID (base64) the operator's identity map gives for an email.
export async function rawUidOfEmail(demo, email) {
  const answer = await callV2(demo.operator, demo.credentials.advertiser, '/v2/identity/map', { email: [email] });
  if (answer.status !== 'success' || answer.body.mapped.length !== 1) {
    throw new Error('identity map did not map ' + email + ': ' + JSON.stringify(answer));
  }
  return answer.body.mapped[0].advertising_id;
}
