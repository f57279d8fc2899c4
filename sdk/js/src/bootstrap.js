// Wiring into the page (window.__uid2, window.UID2) and into Node (module.exports).

// The operator serves this file itself, so the origin it came from is the operator to talk to.
// document.currentScript is only set while the script first runs, hence read at install time.
function scriptOrigin(doc) {
  try {
    const script = doc && doc.currentScript;
    if (script && script.src) {
      const url = new URL(script.src, doc.baseURI);
      if (url.protocol === 'https:' || url.protocol === 'http:') return url.origin;
    }
  } catch (e) {
    // Fall back to the production operator below.
  }
  return DEFAULT_BASE_URL;
}

function envFromWindow(win) {
  let localStorage = null;
  try {
    localStorage = win.localStorage || null;
  } catch (e) {
    // Blocked storage: run without persistence.
  }
  return {
    fetch: (url, init) => win.fetch(url, init),
    crypto: win.crypto,
    localStorage,
    document: win.document,
    setTimeout: (fn, ms) => win.setTimeout(fn, ms),
    clearTimeout: (handle) => win.clearTimeout(handle),
  };
}

// Helpers the official SDK exposes as window.__uid2Helper for publishers hashing DII themselves.
function makeHelper(crypto) {
  return {
    normalizeEmail: (email) => normalizeEmail(email) || undefined,
    isNormalizedPhone,
    hashAndEncodeIdentifier: (value) => sha256Base64(crypto, value),
  };
}

// Creates the SDK instance for a window-like object, keeping any `callbacks` array the page
// set up before the script loaded, then raises SdkLoaded once `win.__uid2` is the instance
// (callbacks typically call `__uid2.init` from there).
function install(win, env) {
  const existing = win.__uid2;
  if (existing && typeof existing.init === 'function') {
    // Loaded twice: a second instance would run a second refresh loop on the same storage.
    return existing;
  }
  const callbacks = existing && Array.isArray(existing.callbacks) ? existing.callbacks : [];
  const options = Object.assign(
    { callbacks, defaultBaseUrl: scriptOrigin(win.document) },
    envFromWindow(win),
    env || {}
  );
  const sdk = new UID2(options);
  win.__uid2 = sdk;
  win.UID2 = UID2;
  win.__uid2Helper = makeHelper(sdk._env.crypto);
  sdk._announceLoaded();
  return sdk;
}

// For tests and embedders without a window: an instance that has already raised SdkLoaded.
function createUID2(env) {
  const sdk = new UID2(env);
  sdk._announceLoaded();
  return sdk;
}

if (typeof module === 'object' && module && module.exports) {
  module.exports = {
    UID2,
    createUID2,
    install,
    normalizeEmail,
    isNormalizedPhone,
    isBase64Hash,
    VERSION,
    CLIENT_VERSION,
    IdentityStatus,
    EventType,
    COOKIE_NAME,
    LOCAL_STORAGE_KEY,
  };
}

if (typeof window === 'object' && window !== null && typeof window.document === 'object') {
  install(window);
}
