// The `callbacks` array protocol. Pages push functions onto `window.__uid2.callbacks`
// possibly before this script has loaded; we keep that very array (page code may hold a
// reference to it) and hook its `push` so late subscribers still see the events they missed.

class EventHub {
  constructor(callbacks, getIdentity, logger) {
    this._callbacks = callbacks;
    this._getIdentity = getIdentity;
    this._logger = logger;
    this._sentLoaded = false;
    this._sentInit = false;
    this._initQueued = false;
    this._queue = [];
    this._dispatching = false;
    const hub = this;
    Object.defineProperty(callbacks, 'push', {
      configurable: true,
      enumerable: false,
      writable: true,
      value: function (...fns) {
        for (const fn of fns) {
          if (hub._sentLoaded) hub._run(fn, EventType.SdkLoaded, {});
          if (hub._sentInit) hub._run(fn, EventType.InitCompleted, hub._identityPayload({}));
        }
        return Array.prototype.push.apply(this, fns);
      },
    });
  }

  _identityPayload(payload) {
    return Object.assign({}, payload, { identity: this._getIdentity() || null });
  }

  // Events raised from inside a callback (typically init() called on SdkLoaded) are queued, so
  // every callback sees SdkLoaded before InitCompleted whatever the array order.
  emit(event, payload) {
    if (event === EventType.InitCompleted) this._initQueued = true;
    if (event !== EventType.SdkLoaded && !this._initQueued) return;
    const body = event === EventType.SdkLoaded ? {} : this._identityPayload(payload || {});
    this._queue.push([event, body]);
    if (this._dispatching) return;
    this._dispatching = true;
    try {
      while (this._queue.length > 0) {
        const [e, p] = this._queue.shift();
        if (e === EventType.SdkLoaded) this._sentLoaded = true;
        if (e === EventType.InitCompleted) this._sentInit = true;
        for (const fn of this._callbacks.slice()) this._run(fn, e, p);
      }
    } finally {
      this._dispatching = false;
    }
  }

  _run(fn, event, payload) {
    if (typeof fn !== 'function') {
      this._logger.warn('An SDK callback was supplied which is not a function.');
      return;
    }
    try {
      fn(event, payload);
    } catch (e) {
      // One broken page callback must not break the SDK or the other callbacks.
      this._logger.warn('SDK callback threw an exception', e);
    }
  }
}

// Promises handed out by getAdvertisingTokenAsync() before the answer is known.
class PendingTokens {
  constructor() {
    this._waiting = [];
  }

  add() {
    return new Promise((resolve, reject) => this._waiting.push({ resolve, reject }));
  }

  resolveWith(token) {
    const waiting = this._waiting;
    this._waiting = [];
    for (const p of waiting) {
      if (token) p.resolve(token);
      else p.reject(new Error('No identity available.'));
    }
  }

  rejectAll(reason) {
    const waiting = this._waiting;
    this._waiting = [];
    for (const p of waiting) p.reject(reason);
  }
}
