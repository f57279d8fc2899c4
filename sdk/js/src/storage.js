// Where the identity lives between page loads. Like the current official SDK: localStorage
// by default, the `__uid_2` cookie with `useCookie: true`. Both places are always read, so an
// identity written by an older build (cookie) or by the publisher's server is still found,
// and both are cleared together.

class IdentityStore {
  // opts: { useCookie, cookieDomain, cookiePath }; env: { localStorage, document, now }.
  constructor(opts, env) {
    this._useCookie = opts.useCookie === true;
    this._cookieDomain = opts.cookieDomain;
    this._cookiePath = opts.cookiePath === undefined ? '/' : opts.cookiePath;
    this._env = env;
  }

  // The newer (by identity_expires) of the two places, as the official SDK picks.
  load() {
    const now = this._env.now();
    const fromCookie = storedValueOrNull(this._readCookie(), now);
    const fromLocal = storedValueOrNull(this._readLocal(), now);
    const [primary, secondary] = this._useCookie ? [fromCookie, fromLocal] : [fromLocal, fromCookie];
    if (!primary) return secondary;
    if (!secondary) return primary;
    return Number(secondary.identity_expires) > Number(primary.identity_expires) ? secondary : primary;
  }

  // At init: what load() finds or, when neither place holds a usable value, the stored value
  // that is not usable, so that init reports it (INVALID) as it would the same value passed as
  // opts.identity, instead of NO_IDENTITY.
  loadForInit() {
    const usable = this.load();
    if (usable) return usable;
    const [primary, secondary] = this._useCookie
      ? [this._readCookie(), this._readLocal()]
      : [this._readLocal(), this._readCookie()];
    const raw = isObject(primary) ? primary : secondary;
    return isObject(raw) ? raw : null;
  }

  // Returns true when the value can be read back, i.e. storage actually works here (cookies
  // on a wrong cookieDomain, or a blocked localStorage, fail silently).
  save(value) {
    const json = JSON.stringify(value);
    if (this._useCookie) {
      this._writeCookie(json, value.refresh_expires);
      if (this._readCookieRaw() === json) {
        // localStorage is ours alone; a stale value there (say an old opt-out marker) could
        // otherwise look newer than the cookie on a later load.
        this._removeLocal();
        return true;
      }
      // The browser refused the cookie (a cookieDomain the page is not under, cookies
      // blocked): keep the identity in localStorage instead, so that the next load finds this
      // one, not an older one (another user's, or a token from before an opt-out).
      this._writeLocal(json);
      return this._readLocalRaw() === json;
    }
    this._writeLocal(json);
    const saved = this._readLocalRaw() === json;
    // As the official SDK 6: once localStorage holds the identity, a cookie left by an older
    // build or by the server is deleted, so nothing reading `__uid_2` (Prebid.js) finds a
    // stale token there. (Older builds deleted it only with an explicit `useCookie: false`.)
    if (saved) this._removeCookie();
    return saved;
  }

  clear() {
    this._removeCookie();
    this._removeLocal();
  }

  _localStorage() {
    try {
      return this._env.localStorage || null;
    } catch (e) {
      return null;
    }
  }

  _readLocalRaw() {
    try {
      const ls = this._localStorage();
      return ls ? ls.getItem(LOCAL_STORAGE_KEY) : null;
    } catch (e) {
      return null;
    }
  }

  _readLocal() {
    return parseJsonOrNull(this._readLocalRaw());
  }

  _writeLocal(json) {
    try {
      const ls = this._localStorage();
      if (ls) ls.setItem(LOCAL_STORAGE_KEY, json);
    } catch (e) {
      // Quota or privacy mode: the identity still works for this page.
    }
  }

  _removeLocal() {
    try {
      const ls = this._localStorage();
      if (ls) ls.removeItem(LOCAL_STORAGE_KEY);
    } catch (e) {
      // Nothing to remove if storage is unavailable.
    }
  }

  _readCookieRaw() {
    const doc = this._env.document;
    let all;
    try {
      all = doc ? String(doc.cookie || '') : '';
    } catch (e) {
      return null;
    }
    for (const part of all.split(';')) {
      const row = part.trim();
      if (row.startsWith(COOKIE_NAME + '=')) {
        try {
          return decodeURIComponent(row.slice(COOKIE_NAME.length + 1));
        } catch (e) {
          return null;
        }
      }
    }
    return null;
  }

  _readCookie() {
    return parseJsonOrNull(this._readCookieRaw());
  }

  _cookieAttributes(expires) {
    let attrs = ';path=' + this._cookiePath + ';expires=' + new Date(expires).toUTCString();
    if (this._cookieDomain !== undefined) attrs += ';domain=' + this._cookieDomain;
    return attrs;
  }

  // Cookie expiries are whole seconds; rounding refresh_expires up keeps the cookie until the
  // refresh token has really expired, so the SDK sees REFRESH_EXPIRED rather than a cookie that
  // vanished early (which reads as another tab's disconnect).
  _writeCookie(json, expires) {
    const wholeSeconds = Math.ceil(Number(expires) / 1000) * 1000;
    this._setDocumentCookie(COOKIE_NAME + '=' + encodeURIComponent(json) + this._cookieAttributes(wholeSeconds));
  }

  _removeCookie() {
    this._setDocumentCookie(COOKIE_NAME + '=' + this._cookieAttributes(0));
  }

  _setDocumentCookie(text) {
    const doc = this._env.document;
    if (!doc) return;
    try {
      doc.cookie = text;
    } catch (e) {
      // Sandboxed documents throw on cookie access.
    }
  }
}

function parseJsonOrNull(text) {
  if (typeof text !== 'string' || text.length === 0) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    return null;
  }
}
