// The UID2 class: option checks, the refresh state machine and the public API.
//
// Refresh model (js-sdk.md "Refresh state machine"): there is no timer aimed at refresh_from;
// the identity is checked on init and then every refreshRetryPeriod, and only one request is
// ever in flight. Every asynchronous result carries the `_ticket` it was started under, so a
// result that arrives after abort()/disconnect()/setIdentity() is ignored instead of
// resurrecting an identity.

function resolveEnv(env, root) {
  let localStorage = null;
  if ('localStorage' in env) localStorage = env.localStorage;
  else {
    try {
      localStorage = root.localStorage || null;
    } catch (e) {
      // Reading window.localStorage throws in sandboxed frames and with storage disabled.
    }
  }
  const console = root.console;
  return {
    fetch: env.fetch || ((url, init) => root.fetch(url, init)),
    crypto: env.crypto || root.crypto,
    localStorage,
    document: 'document' in env ? env.document : root.document,
    now: env.now || (() => Date.now()),
    setTimeout: env.setTimeout || ((fn, ms) => root.setTimeout(fn, ms)),
    clearTimeout: env.clearTimeout || ((handle) => root.clearTimeout(handle)),
    logger: env.logger || {
      warn: (...args) => console && console.warn && console.warn('[UID2]', ...args),
    },
    defaultBaseUrl: env.defaultBaseUrl || DEFAULT_BASE_URL,
  };
}

// Returns the options init() works with. Throws only for what the official SDK refuses or what
// would do harm (a `;` in a cookie attribute); values it tolerates (null for "not given", a truthy
// non-boolean useCookie, a retry period past the timer limit) are normalised instead, since a
// throw here ends the publisher's whole integration.
function validateInitOptions(opts) {
  if (opts === undefined) opts = {};
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  if (opts.callback !== undefined && opts.callback !== null && typeof opts.callback !== 'function') {
    throw new TypeError('opts.callback, if provided, must be a function');
  }
  const checked = Object.assign({}, opts);
  for (const name of ['baseUrl', 'cookieDomain', 'cookiePath', 'callback', 'useCookie', 'refreshRetryPeriod']) {
    if (checked[name] === null) delete checked[name];
  }
  if (checked.refreshRetryPeriod !== undefined) {
    if (typeof checked.refreshRetryPeriod !== 'number') {
      throw new TypeError('opts.refreshRetryPeriod must be a number');
    }
    if (!(checked.refreshRetryPeriod >= MIN_REFRESH_RETRY_PERIOD_MS)) {
      throw new RangeError('opts.refreshRetryPeriod must be >= ' + MIN_REFRESH_RETRY_PERIOD_MS);
    }
    // Browsers run a longer timeout at once (the delay overflows 32 bits): a busy loop.
    checked.refreshRetryPeriod = Math.min(checked.refreshRetryPeriod, MAX_TIMER_DELAY_MS);
  }
  for (const name of ['baseUrl', 'cookieDomain', 'cookiePath']) {
    if (checked[name] !== undefined && typeof checked[name] !== 'string') {
      throw new TypeError('opts.' + name + ', if provided, must be a string');
    }
  }
  // Written into the cookie's attributes: a `;` would add attributes of its own.
  for (const name of ['cookieDomain', 'cookiePath']) {
    if (checked[name] !== undefined && /[;\s]/.test(checked[name])) {
      throw new TypeError('opts.' + name + ' must not contain ";" or white space');
    }
  }
  if (checked.useCookie !== undefined) checked.useCookie = !!checked.useCookie;
  return checked;
}

function validateClientSideOptions(opts) {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  if (typeof opts.serverPublicKey !== 'string' || !SERVER_PUBLIC_KEY_PREFIX.test(opts.serverPublicKey)) {
    throw new TypeError('opts.serverPublicKey must look like UID2-X-<env>-<base64 key>');
  }
  if (typeof opts.subscriptionId !== 'string' || opts.subscriptionId.length === 0) {
    throw new TypeError('opts.subscriptionId must be a non-empty string');
  }
}

class UID2 {
  // env (all optional; defaults are the browser globals): { callbacks, fetch, crypto,
  // localStorage, document, now, setTimeout, clearTimeout, logger, defaultBaseUrl }.
  constructor(env) {
    env = env || {};
    this._env = resolveEnv(env, root);
    this._logger = this._env.logger;
    this.callbacks = Array.isArray(env.callbacks) ? env.callbacks : [];
    this._events = new EventHub(this.callbacks, () => this.getIdentity(), this._logger);
    this._pending = new PendingTokens();
    this._opts = {};
    this._store = null;
    this._api = null;
    this._identity = null; // a clean identity, an opt-out marker, or null
    this._status = undefined;
    this._initComplete = false;
    this._stopped = false; // abort() or disconnect() was called: init() is refused from then on
    this._answerAsyncNow = false; // after init (or abort), getAdvertisingTokenAsync answers at once
    this._timer = null;
    this._ticket = 0;
    this._persisted = false; // whether storage reads back what we wrote (see _tick)
  }

  static get VERSION() {
    return VERSION;
  }

  static get COOKIE_NAME() {
    return COOKIE_NAME;
  }

  static get DEFAULT_REFRESH_RETRY_PERIOD_MS() {
    return DEFAULT_REFRESH_RETRY_PERIOD_MS;
  }

  // Google Secure Signals: the official builds expose this hook; the provider script does the work.
  static setupGoogleSecureSignals() {
    const provider = root.__uid2SecureSignalProvider;
    if (provider && typeof provider.registerSecureSignalProvider === 'function') {
      provider.registerSecureSignalProvider();
    }
  }

  static setupGoogleTag() {
    UID2.setupGoogleSecureSignals();
  }

  init(opts) {
    if (this._initComplete) throw new TypeError('Calling init() more than once is not allowed');
    // As the official SDK: abort() and disconnect() end this page's use of UID2.
    if (this._stopped) throw new TypeError('Calling init() once aborted or disconnected is not allowed');
    this._opts = validateInitOptions(opts);
    this._store = new IdentityStore(this._opts, this._env);
    this._api = new ApiClient(this._opts.baseUrl || this._env.defaultBaseUrl, this._env);
    const candidate = this._opts.identity ? this._opts.identity : this._store.loadForInit();
    this._adopt(candidate, false);
    this._initComplete = true;
    this._answerAsyncNow = true;
    this._events.emit(EventType.InitCompleted, {});
    if (isOptoutMarker(this._identity)) this._events.emit(EventType.OptoutReceived, {});
    this._settlePending();
  }

  isInitComplete() {
    return this._initComplete;
  }

  getAdvertisingToken() {
    const identity = this.getIdentity();
    return identity ? identity.advertising_token : undefined;
  }

  // After init a current token answers at once, even while a refresh is in flight (ad calls
  // must not wait on the operator); only a caller with no token to give waits for the request.
  getAdvertisingTokenAsync() {
    if (!this._answerAsyncNow) return this._pending.add();
    const token = this.getAdvertisingToken();
    if (token) return Promise.resolve(token);
    if (this._busy()) return this._pending.add();
    return Promise.reject(new Error('Identity not available'));
  }

  // Null while the advertising token is expired, even if a refresh may still bring it back.
  getIdentity() {
    const identity = this._currentOrStored();
    if (!identity || isOptoutMarker(identity)) return null;
    const now = this._now();
    if (identity.identity_expires <= now || identity.refresh_expires < now) return null;
    return Object.assign({}, identity);
  }

  isIdentityAvailable() {
    const identity = this._currentOrStored();
    const usable = !!identity && !isOptoutMarker(identity) && !(identity.refresh_expires < this._now());
    return usable || this._busy();
  }

  isLoginRequired() {
    if (this._stopped && !this._initComplete) return true;
    if (!this._initComplete) return undefined;
    return !this.isIdentityAvailable();
  }

  hasOptedOut() {
    if (!this._initComplete) return undefined;
    return isOptoutMarker(this._identity);
  }

  setIdentity(identity) {
    if (!this._initComplete) throw new Error('Cannot set identity before calling init.');
    this._cancelActivity(new Error('UID2 identity replaced.'));
    this._adopt(identity, true);
    if (isOptoutMarker(this._identity)) this._events.emit(EventType.OptoutReceived, {});
    this._events.emit(EventType.IdentityUpdated, {});
    this._settlePending();
  }

  disconnect() {
    this._stopped = true;
    this._cancelActivity(new Error('UID2 SDK disconnected.'));
    this._answerAsyncNow = true;
    this._pending.rejectAll(new Error('UID2 SDK disconnected.'));
    // Before init there are no cookie options yet: clear what the defaults can reach.
    (this._store || new IdentityStore({}, this._env)).clear();
    this._identity = null;
    this._persisted = false;
    this._status = IdentityStatus.INVALID;
    this._events.emit(EventType.IdentityUpdated, {});
  }

  abort(reason) {
    const error = reason instanceof Error ? reason : new Error(reason || 'UID2 SDK aborted.');
    this._stopped = true;
    this._cancelActivity(error);
    this._answerAsyncNow = true;
    this._pending.rejectAll(error);
  }

  // Each takes its ticket before its first await: a disconnect() while the input is still being
  // hashed cancels the generation as surely as one during the request.
  async setIdentityFromEmail(email, opts) {
    this._requireInitForCstg(opts);
    const ticket = this._ticket;
    const normalized = normalizeEmail(email);
    if (normalized === null) throw new Error('Invalid email address');
    const hash = await sha256Base64(this._env.crypto, normalized);
    await this._clientGenerate({ email_hash: hash }, opts, ticket);
  }

  async setIdentityFromEmailHash(emailHash, opts) {
    this._requireInitForCstg(opts);
    const ticket = this._ticket;
    if (!isBase64Hash(emailHash)) throw new Error('Invalid hash');
    await this._clientGenerate({ email_hash: emailHash }, opts, ticket);
  }

  async setIdentityFromPhone(phone, opts) {
    this._requireInitForCstg(opts);
    const ticket = this._ticket;
    if (!isNormalizedPhone(phone)) throw new Error('Invalid phone number');
    const hash = await sha256Base64(this._env.crypto, phone);
    await this._clientGenerate({ phone_hash: hash }, opts, ticket);
  }

  async setIdentityFromPhoneHash(phoneHash, opts) {
    this._requireInitForCstg(opts);
    const ticket = this._ticket;
    if (!isBase64Hash(phoneHash)) throw new Error('Invalid hash');
    await this._clientGenerate({ phone_hash: phoneHash }, opts, ticket);
  }

  // ---- internals ----

  _announceLoaded() {
    this._events.emit(EventType.SdkLoaded, {});
  }

  _now() {
    return this._env.now();
  }

  _busy() {
    return !!this._api && this._api.busy();
  }

  // Before init() the getters still answer from storage, as the official SDK documents.
  _currentOrStored() {
    if (this._store) return this._identity;
    return new IdentityStore({}, this._env).load();
  }

  _requireInitForCstg(opts) {
    if (!this._initComplete) throw new Error('Cannot set identity before calling init.');
    validateClientSideOptions(opts);
  }

  _report(status, statusText) {
    this._status = status;
    const callback = this._opts.callback;
    if (typeof callback !== 'function') return;
    const token = this.getAdvertisingToken();
    try {
      callback({ advertisingToken: token, advertising_token: token, status, statusText });
    } catch (e) {
      this._logger.warn('SDK init callback threw an exception', e);
    }
  }

  // Takes an identity from init() or setIdentity(), classifies it, persists it, reports the
  // status and starts the refresh cycle.
  _adopt(candidate, replacing) {
    const ticket = this._ticket;
    const now = this._now();
    const hadUsable = !!this._identity && !isOptoutMarker(this._identity);
    this._clearTimer();
    if (isOptoutMarker(candidate) && Number(candidate.refresh_expires) > now) {
      // Renewed on every page that finds it, as the official SDK does: the opt-out is
      // forgotten only after three days without a visit, not three days after it was made.
      const renewed = makeOptoutMarker(now);
      this._identity = renewed;
      this._persisted = this._store.save(renewed);
      this._report(IdentityStatus.OPTOUT, 'User has opted out');
      return;
    }
    if (!candidate || isOptoutMarker(candidate)) {
      this._forget();
      this._report(IdentityStatus.NO_IDENTITY, 'Identity not available');
      return;
    }
    const identity = cleanIdentity(upgradeLegacyIdentity(candidate, now));
    if (!identity) {
      this._forget();
      const text = hasTokens(candidate)
        ? 'identity times are missing or not numbers'
        : 'advertising_token or refresh_token is not available or is not valid';
      this._report(IdentityStatus.INVALID, text);
      return;
    }
    if (identity.refresh_expires < now) {
      this._forget();
      this._report(IdentityStatus.REFRESH_EXPIRED, 'Identity expired, refresh expired');
      return;
    }
    this._identity = identity;
    this._persisted = this._store.save(identity);
    if (identity.identity_expires <= now) {
      this._report(IdentityStatus.EXPIRED, 'Identity expired, refresh still valid');
    } else if (replacing && hadUsable) {
      this._report(IdentityStatus.REFRESHED, 'Identity refreshed');
    } else {
      this._report(IdentityStatus.ESTABLISHED, 'Identity established');
    }
    // The callback may have called abort(), disconnect() or setIdentity(): then this
    // identity's refresh cycle must not start.
    if (ticket !== this._ticket) return;
    this._checkRefresh();
  }

  _forget() {
    this._clearTimer();
    this._identity = null;
    this._persisted = false;
    this._store.clear();
  }

  // A terminal outcome: the identity is gone and only a new login can bring one back.
  _drop(status, statusText) {
    this._forget();
    this._report(status, statusText);
    this._events.emit(EventType.IdentityUpdated, {});
  }

  _optedOut() {
    this._clearTimer();
    const marker = makeOptoutMarker(this._now());
    this._identity = marker;
    this._persisted = this._store.save(marker);
    this._report(IdentityStatus.OPTOUT, 'User opted out');
    this._events.emit(EventType.OptoutReceived, {});
    this._events.emit(EventType.IdentityUpdated, {});
  }

  _markExpiredOnce() {
    if (this._status === IdentityStatus.EXPIRED) return;
    this._report(IdentityStatus.EXPIRED, 'Identity expired, refresh still valid');
    this._events.emit(EventType.IdentityUpdated, {});
  }

  _checkRefresh() {
    const ticket = this._ticket;
    const identity = this._identity;
    if (!identity || isOptoutMarker(identity)) return;
    const now = this._now();
    if (identity.refresh_expires < now) {
      this._drop(IdentityStatus.REFRESH_EXPIRED, 'Refresh token expired');
      return;
    }
    const tokenExpired = identity.identity_expires <= now;
    if (tokenExpired) {
      this._markExpiredOnce();
      // A callback that aborted or set another identity has the last word.
      if (ticket !== this._ticket) return;
    }
    if (identity.refresh_from <= now || tokenExpired) this._refresh(identity);
    else this._schedule();
  }

  _refresh(identity) {
    const ticket = this._ticket;
    this._api.refresh(identity).then(
      (result) => {
        if (ticket !== this._ticket) return;
        this._onRefreshResult(result);
        this._settlePending();
      },
      (error) => this._logger.warn('Unexpected refresh error', error)
    );
  }

  _onRefreshResult(result) {
    // The next check is scheduled before anyone is told, so that an abort() or setIdentity()
    // from a callback cancels it rather than being undone by it.
    if (result.kind === 'success') {
      this._identity = result.identity;
      this._persisted = this._store.save(result.identity);
      this._schedule();
      this._report(IdentityStatus.REFRESHED, 'Identity refreshed');
      this._events.emit(EventType.IdentityUpdated, {});
      return;
    }
    if (result.kind === 'optout') {
      this._optedOut();
      return;
    }
    if (result.kind === 'expired_token') {
      this._drop(IdentityStatus.REFRESH_EXPIRED, 'Refresh token expired');
      return;
    }
    // Transient: keep the identity and try again after refreshRetryPeriod.
    this._logger.warn('Token refresh failed; will retry', result.reason);
    const identity = this._identity;
    if (!identity || isOptoutMarker(identity)) return;
    const now = this._now();
    if (identity.refresh_expires < now) {
      this._drop(IdentityStatus.REFRESH_EXPIRED, 'Refresh expired; token refresh failed');
      return;
    }
    this._schedule();
    if (identity.identity_expires <= now) this._markExpiredOnce();
  }

  _schedule() {
    this._clearTimer();
    const period = this._opts.refreshRetryPeriod || DEFAULT_REFRESH_RETRY_PERIOD_MS;
    this._timer = this._env.setTimeout(() => this._tick(), period);
  }

  _clearTimer() {
    if (this._timer !== null) this._env.clearTimeout(this._timer);
    this._timer = null;
  }

  // Periodic check. Another tab sharing this storage may have refreshed, opted out or
  // disconnected since the last look; its result wins over ours.
  _tick() {
    this._timer = null;
    const ticket = this._ticket;
    const current = this._identity;
    if (!current || isOptoutMarker(current)) return;
    const stored = this._store.load();
    if (isOptoutMarker(stored)) {
      this._identity = stored;
      this._report(IdentityStatus.OPTOUT, 'User opted out');
      this._events.emit(EventType.OptoutReceived, {});
      this._events.emit(EventType.IdentityUpdated, {});
      return;
    }
    if (
      stored &&
      stored.advertising_token !== current.advertising_token &&
      stored.identity_expires >= current.identity_expires
    ) {
      this._identity = stored;
      const usable = stored.identity_expires > this._now();
      if (usable) {
        this._report(IdentityStatus.REFRESHED, 'Identity refreshed');
        this._events.emit(EventType.IdentityUpdated, {});
      }
    } else if (!stored && this._persisted && !(current.refresh_expires < this._now())) {
      this._identity = null;
      this._persisted = false;
      this._report(IdentityStatus.NO_IDENTITY, 'Identity removed from storage');
      this._events.emit(EventType.IdentityUpdated, {});
      return;
    }
    if (ticket !== this._ticket) return;
    this._checkRefresh();
  }

  _cancelActivity(reason) {
    this._ticket++;
    this._clearTimer();
    if (this._api) this._api.abortAll(reason);
  }

  _settlePending() {
    if (this._busy()) return;
    this._pending.resolveWith(this.getAdvertisingToken());
  }

  // `ticket`: taken when the public call began; anything since (disconnect, abort, another
  // identity) cancels this generation, even before its request is sent.
  async _clientGenerate(payload, opts, ticket) {
    const cancelled = () => ticket !== this._ticket;
    if (cancelled()) throw new Error('UID2 SDK aborted.');
    let result;
    try {
      result = await this._api.clientGenerate(payload, opts, cancelled);
    } catch (error) {
      // A failed or cancelled CSTG must not leave getAdvertisingTokenAsync() callers waiting.
      this._settlePending();
      throw error;
    }
    if (cancelled()) {
      this._settlePending();
      throw new Error('UID2 SDK aborted.');
    }
    if (result.kind === 'success') {
      this.setIdentity(result.identity);
      return;
    }
    this._cancelActivity(new Error('UID2 identity replaced.'));
    this._optedOut();
    this._settlePending();
  }
}

UID2.IdentityStatus = IdentityStatus;
UID2.EventType = EventType;
