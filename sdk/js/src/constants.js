// Names and numbers that pages, Prebid.js and the operator already depend on.
// Bump VERSION when the served script changes: it reaches the operator as
// `?client=uid2-rs-sdk-<VERSION>` and is the only way to tell builds apart in its logs.
const VERSION = '0.1.5';
const CLIENT_VERSION = 'uid2-rs-sdk-' + VERSION;

const IdentityStatus = Object.freeze({
  ESTABLISHED: 0,
  REFRESHED: 1,
  EXPIRED: 100,
  NO_IDENTITY: -1,
  INVALID: -2,
  REFRESH_EXPIRED: -3,
  OPTOUT: -4,
});

const EventType = Object.freeze({
  InitCompleted: 'InitCompleted',
  IdentityUpdated: 'IdentityUpdated',
  SdkLoaded: 'SdkLoaded',
  OptoutReceived: 'OptoutReceived',
});

const DEFAULT_BASE_URL = 'https://prod.uidapi.com';
const DEFAULT_REFRESH_RETRY_PERIOD_MS = 5000;
const MIN_REFRESH_RETRY_PERIOD_MS = 1000;
// setTimeout delays are signed 32-bit milliseconds; a longer one fires at once.
const MAX_TIMER_DELAY_MS = 2147483647;
// fetch has no timeout of its own; without one a request that never answers would
// leave the refresh loop waiting forever.
const REQUEST_TIMEOUT_MS = 30000;

// Shared with Prebid.js's UID2 module and older SDK builds: do not rename.
const COOKIE_NAME = '__uid_2';
const LOCAL_STORAGE_KEY = 'UID2-sdk-identity';
// The official SDK remembers an opt-out for three days; long enough to stop a page from
// immediately asking the operator again, short enough to let a user opt back in later.
const OPTOUT_MEMORY_MS = 72 * 3600 * 1000;

// Publishers receive the CSTG key as `UID2-X-L-<b64 SPKI>`; the prefix is always 9 chars.
const SERVER_PUBLIC_KEY_PREFIX = /^(UID2|EUID)-X-[A-Z]-./;
const SERVER_PUBLIC_KEY_PREFIX_LENGTH = 9;
