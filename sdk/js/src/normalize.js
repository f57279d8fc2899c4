// Directly identifying information must be normalised exactly as the operator does it
// (InputUtil.normalizeEmailString), otherwise a client-side generated token belongs to a
// different UID2 than the one the publisher's server would get for the same address.
// The official JS SDK trims/lower-cases differently and hashes the raw input; we don't.

function isAsciiUpper(c) {
  return c >= 'A' && c <= 'Z';
}

// Returns the normalised address, or null when the operator would reject it.
// One pass over UTF-16 code units, like the Java original, so surrogate pairs pass through.
function normalizeEmail(email) {
  if (typeof email !== 'string' || email.length === 0) return null;
  let local = '';
  let gmailLocal = '';
  let inExtension = false;
  let afterAt = false;
  let domain = '';
  let heldSpaces = '';
  for (let i = 0; i < email.length; i++) {
    let c = email[i];
    if (isAsciiUpper(c)) c = c.toLowerCase();
    if (!afterAt) {
      if (c === ' ') continue;
      if (c === '@') {
        afterAt = true;
        continue;
      }
      local += c;
      if (c === '+') inExtension = true;
      if (!inExtension && c !== '.') gmailLocal += c;
    } else {
      if (c === '@') return null;
      // Trailing spaces vanish but interior ones survive: hold them until a non-space.
      if (c === ' ') {
        heldSpaces += c;
        continue;
      }
      domain += heldSpaces + c;
      heldSpaces = '';
    }
  }
  if (domain.length === 0) return null;
  const chosenLocal = domain === 'gmail.com' ? gmailLocal : local;
  if (chosenLocal.length === 0) return null;
  return chosenLocal + '@' + domain;
}

// E.164 as the operator accepts it; phones are never normalised, only checked.
function isNormalizedPhone(phone) {
  return typeof phone === 'string' && /^\+[0-9]{10,15}$/.test(phone);
}

// The base64 of a 32-byte SHA-256 digest: 43 characters and one '='. (Other 44-character
// base64 decodes to 31 or 33 bytes, which this operator refuses as no digest.)
function isBase64Hash(value) {
  return typeof value === 'string' && /^[A-Za-z0-9+/]{43}=$/.test(value);
}
