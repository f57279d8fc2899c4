// Shape checks for identities (the `body` of a generate/refresh response) and for the
// opt-out marker that replaces them once the operator has answered `optout`.

const IDENTITY_TIME_FIELDS = ['identity_expires', 'refresh_expires', 'refresh_from'];

function isObject(value) {
  return typeof value === 'object' && value !== null;
}

function isOptoutMarker(value) {
  return isObject(value) && value.status === 'optout';
}

function makeOptoutMarker(now) {
  const expiry = now + OPTOUT_MEMORY_MS;
  return { status: 'optout', identity_expires: expiry, refresh_expires: expiry };
}

function hasTokens(identity) {
  return (
    isObject(identity) &&
    typeof identity.advertising_token === 'string' &&
    identity.advertising_token.length > 0 &&
    typeof identity.refresh_token === 'string' &&
    identity.refresh_token.length > 0
  );
}

// Null when the identity cannot be used at all; otherwise a copy with numeric times, so that
// later comparisons never silently turn false on a string or a missing field.
function cleanIdentity(identity) {
  if (!hasTokens(identity)) return null;
  const copy = Object.assign({}, identity);
  for (const field of IDENTITY_TIME_FIELDS) {
    const n = Number(copy[field]);
    if (copy[field] === null || copy[field] === '' || !Number.isFinite(n)) return null;
    copy[field] = n;
  }
  return copy;
}

// SDK 1.x cookies held only the two tokens; give them times that make us refresh at once.
function upgradeLegacyIdentity(value, now) {
  if (!hasTokens(value)) return value;
  if (IDENTITY_TIME_FIELDS.some((f) => f in value)) return value;
  return Object.assign(
    {
      refresh_from: now,
      refresh_expires: now + 7 * 86400 * 1000,
      identity_expires: now + 4 * 3600 * 1000,
    },
    value
  );
}

// What a stored value is: an identity or opt-out marker worth keeping, or nothing.
function storedValueOrNull(value, now) {
  if (isOptoutMarker(value)) {
    return Number(value.refresh_expires) > now ? value : null;
  }
  return cleanIdentity(upgradeLegacyIdentity(value, now));
}
