'use strict';
// DII normalisation must match the operator's InputUtil exactly (vectors from the official
// operator and SDK test suites), and hashing must give the operator's identity hash.

const test = require('node:test');
const assert = require('node:assert/strict');
const { createHash } = require('node:crypto');
const { sdkModule } = require('../test-support/fakes');

const { normalizeEmail, isNormalizedPhone, isBase64Hash } = sdkModule;

const sha256b64 = (s) => createHash('sha256').update(s, 'utf8').digest('base64');

// [input, normalised or null for invalid, b64 SHA-256 of the normalised form when known]
const EMAILS = [
  ['TEst.TEST@Test.com ', 'test.test@test.com', 'dvECjPKZHya0/SIhSGwP0m8SgTv1vzLxPULUOsm880M='],
  ['test.test@gmail.com', 'testtest@gmail.com', 'LkLfFrut8Tc3h/fIvYDiBKSbaMiau/DtaLBPQYszdMw='],
  ['TEst.TEst+123@GMail.Com', 'testtest@gmail.com', 'LkLfFrut8Tc3h/fIvYDiBKSbaMiau/DtaLBPQYszdMw='],
  [' TEstTEst@GMail.Com  ', 'testtest@gmail.com', 'LkLfFrut8Tc3h/fIvYDiBKSbaMiau/DtaLBPQYszdMw='],
  ['test+test@test.com', 'test+test@test.com', 'rQ4yzdOz4uG8N54326QyZD6/JwqrXn4lmy34cVCojB8='],
  ['+test@test.com', '+test@test.com', 'weFizOVVWKlLfyorbBU8oxYDv4HJtTZCPMyZ4THzUQE='],
  ['test+test@gmail.com', 'test@gmail.com', 'h5JGBrQTGorO7q6IaFMfu5cSqqB6XTp1aybOD11spnQ='],
  ['  testtest@test.com  ', 'testtest@test.com', 'd1Lr/s4GLLX3SvQVMoQdIMfbQPMAGZYry+2V+0pZlQg='],
  ['\u{1F60A}testtest@test.com', '\u{1F60A}testtest@test.com', 'fAFEUqApQ0V/M9mLj/IO54CgKgtQuARKsOMqtFklD4k='],
  ['testtest@\u{1F60A}test.com', 'testtest@\u{1F60A}test.com', 'tcng5pttf7Y2z4ylZTROvIMw1+IVrMpR4D1KeXSrdiM='],
  ['testtest@test.com\u{1F60A}', 'testtest@test.com\u{1F60A}', '0qI21FPLkuez/8RswfmircHPYz9Dtf7/Nch1rSWEQf0='],
  ['MyEmail@example.com', 'myemail@example.com', 'FsGNM28LJQ8OLZB0Us65ZYp07NrovJSGTCMSKnLMJ6U='],
  ['JaneSaoirse+UID2@example.com', 'janesaoirse+uid2@example.com', 'bhQ2aMIGWT1ey4p7JyavdNlIQ4pe11/rrcv0u1jrxCc='],
  ['   USER@EXAMPLE.COM   ', 'user@example.com', 'tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ='],
  ['a b@x.com', 'ab@x.com'],
  [' a b @x.com', 'ab@x.com'],
  ['a@ b.com', 'a@ b.com'],
  ['a@b .com ', 'a@b .com'],
  ['a@b.com\t', 'a@b.com\t'],
  ['A.B+C@gmail.com', 'ab@gmail.com'],
  ['A.B+C@googlemail.com', 'a.b+c@googlemail.com'],
  ['a+b.c@gmail.com', 'a@gmail.com'],
  ['a.b@gmail.com.', 'a.b@gmail.com.'],
  ['a..b@x.com', 'a..b@x.com'],
  ['ÄB@x.com', 'Äb@x.com'],
  ['', null],
  [' @', null],
  ['@', null],
  ['a@', null],
  ['@b', null],
  ['@b.com', null],
  ['+', null],
  [' ', null],
  ['+@gmail.com', null],
  ['.+@gmail.com', null],
  ['.@gmail.com', null],
  ['a@ba@z.com', null],
  ['a@b@c.com', null],
];

test('email normalisation follows the operator', () => {
  for (const [input, expected] of EMAILS) {
    assert.equal(normalizeEmail(input), expected, JSON.stringify(input));
  }
  assert.equal(normalizeEmail(undefined), null);
  assert.equal(normalizeEmail(42), null);
});

test('identity hashes of normalised emails match the operator vectors', () => {
  for (const [, normalised, hash] of EMAILS) {
    if (hash) assert.equal(sha256b64(normalised), hash, normalised);
  }
});

test('phones: + and 10 to 15 ASCII digits, nothing else', () => {
  for (const phone of ['+1234567890', '+12345678901', '+123456789012345']) {
    assert.equal(isNormalizedPhone(phone), true, phone);
  }
  const invalid = ['+12345678', '+123456789', '+1234567890123456', '+1234567890A', '+1234567890 ',
    '+12345+67890', '555-555-5555', '(555) 555-5555', '+ 12345678', '1234567890', '+١٢٣٤٥٦٧٨٩٠', ''];
  for (const phone of invalid) assert.equal(isNormalizedPhone(phone), false, phone);
  assert.equal(sha256b64('+12345678901'), 'EObwtHBUqDNZR33LNSMdtt5cafsYFuGmuY4ZLenlue4=');
});

test('pre-hashed values must be 44 characters of standard base64', () => {
  assert.equal(isBase64Hash('dvECjPKZHya0/SIhSGwP0m8SgTv1vzLxPULUOsm880M='), true);
  assert.equal(isBase64Hash('dvECjPKZHya0/SIhSGwP0m8SgTv1vzLxPULUOsm880Mz'), false, '33 bytes: no digest');
  assert.equal(isBase64Hash('dvECjPKZHya0/SIhSGwP0m8SgTv1vzLxPULUOsm880=='), false, '31 bytes');
  assert.equal(isBase64Hash('dvECjPKZHya0/SIhSGwP0m8SgTv1vzLxPULUOsm880M'), false, '43 chars');
  assert.equal(isBase64Hash('dvECjPKZHya0_SIhSGwP0m8SgTv1vzLxPULUOsm880M='), false, 'base64url');
  assert.equal(isBase64Hash('dvECjPKZHya0/SIhSGwP0m8SgTv1vzLxPULUOsm88=0M'), false, 'misplaced =');
  assert.equal(isBase64Hash('76f1028cf2991f26b4fd2221486c0fd26f12813bf5bf32f13d42d43ac9bcf343'), false, 'hex');
  assert.equal(isBase64Hash(undefined), false);
});
