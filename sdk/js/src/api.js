// HTTP calls to the operator. Bodies are posted as plain strings with no custom headers, so
// fetch sends `text/plain` and the browser makes a "simple" CORS request without a preflight;
// the client version therefore travels as `?client=` rather than X-UID2-Client-Version.

class ApiClient {
  constructor(baseUrl, env) {
    this._baseUrl = String(baseUrl).replace(/\/+$/, '');
    this._env = env;
    this._active = new Set();
  }

  busy() {
    return this._active.size > 0;
  }

  abortAll(reason) {
    for (const request of Array.from(this._active)) request.cancel(reason);
  }

  _url(path) {
    return this._baseUrl + path + '?client=' + encodeURIComponent(CLIENT_VERSION);
  }

  // Resolves { status, text }; rejects on network failure, timeout or abortAll().
  _post(path, body) {
    const env = this._env;
    return new Promise((resolve, reject) => {
      const controller = typeof AbortController === 'function' ? new AbortController() : null;
      let timer = null;
      const request = {
        cancel: (reason) => {
          finish();
          if (controller) controller.abort();
          reject(reason);
        },
      };
      const finish = () => {
        if (timer !== null) env.clearTimeout(timer);
        timer = null;
        this._active.delete(request);
      };
      this._active.add(request);
      timer = env.setTimeout(
        () => request.cancel(new Error('Request to the operator timed out')),
        REQUEST_TIMEOUT_MS
      );
      const init = { method: 'POST', body };
      if (controller) init.signal = controller.signal;
      let started;
      try {
        started = Promise.resolve(env.fetch(this._url(path), init));
      } catch (error) {
        started = Promise.reject(error);
      }
      started
        .then((response) => response.text().then((text) => ({ status: response.status, text })))
        .then(
          (result) => {
            finish();
            resolve(result);
          },
          (error) => {
            finish();
            reject(error);
          }
        );
    });
  }

  // Never rejects: { kind: 'success', identity } | { kind: 'optout' } |
  // { kind: 'expired_token' } | { kind: 'failure', reason }.
  async refresh(identity) {
    let response;
    try {
      response = await this._post('/v2/token/refresh', identity.refresh_token);
    } catch (e) {
      return { kind: 'failure', reason: e };
    }
    let json;
    try {
      if (response.status === 200 && identity.refresh_response_key) {
        const key = await importAesKey(this._env.crypto, identity.refresh_response_key, ['decrypt']);
        json = await openSealedJson(this._env.crypto, key, response.text);
      } else {
        // v1 identities get plain JSON, and error answers are always plain JSON.
        json = JSON.parse(response.text);
      }
    } catch (e) {
      return { kind: 'failure', reason: e };
    }
    const status = isObject(json) ? json.status : undefined;
    // Callers with an API key get `expired_token` as a 400; honour it whatever the HTTP code.
    if (status === 'optout') return { kind: 'optout' };
    if (status === 'expired_token') return { kind: 'expired_token' };
    if (status === 'success' && response.status === 200) {
      const fresh = cleanIdentity(json.body);
      if (fresh) return { kind: 'success', identity: fresh };
      return { kind: 'failure', reason: new Error('Refresh response has no usable identity') };
    }
    return {
      kind: 'failure',
      reason: new Error('Refresh answered HTTP ' + response.status + ' status ' + String(status)),
    };
  }

  // Resolves { kind: 'success', identity } | { kind: 'optout' }; rejects with an Error
  // carrying the operator's message otherwise. `cancelled()` is asked once the box is sealed:
  // a generation cancelled meanwhile sends nothing.
  async clientGenerate(payload, opts, cancelled) {
    const crypto = this._env.crypto;
    const box = await createCstgBox(
      crypto,
      opts.serverPublicKey.substring(SERVER_PUBLIC_KEY_PREFIX_LENGTH)
    );
    const timestamp = this._env.now();
    // The operator authenticates the timestamp only through the AAD: the compact JSON `[ts]`.
    const { iv, ciphertext } = await box.seal(
      utf8Encode(JSON.stringify(payload)),
      utf8Encode(JSON.stringify([timestamp]))
    );
    const body = JSON.stringify({
      payload: bytesToBase64(ciphertext),
      iv: bytesToBase64(iv),
      public_key: bytesToBase64(box.publicKeySpki),
      timestamp,
      subscription_id: opts.subscriptionId,
    });
    if (cancelled && cancelled()) throw new Error('UID2 SDK aborted.');
    const response = await this._post('/v2/token/client-generate', body);
    if (response.status === 200) {
      const json = await openSealedJson(crypto, box.sharedKey, response.text);
      if (isObject(json) && json.status === 'success') {
        const identity = cleanIdentity(json.body);
        if (identity) return { kind: 'success', identity };
      }
      if (isObject(json) && json.status === 'optout') return { kind: 'optout' };
      throw new Error('API error: Response body was invalid for HTTP status 200');
    }
    const json = parseJsonOrNull(response.text);
    const message = isObject(json) && typeof json.message === 'string' ? json.message : response.text;
    if (response.status === 400) throw new Error('Client error: ' + message);
    if (response.status === 403) throw new Error('Forbidden: ' + message);
    throw new Error('API error: Unexpected HTTP status ' + response.status);
  }
}
