// The demo publisher's page script. It registers with the UID2 SDK before the SDK loads
// (window.__uid2.callbacks), calls __uid2.init when the SDK says SdkLoaded, and from then on
// shows what the SDK holds: status, token, refresh times, where it is stored. It also sends ad
// requests to the SSP, opts out through the publisher's server, logs out with
// __uid2.disconnect(), and generates tokens client-side on the client-side page.
//
// Settings come from the page's <script id="demo-config" type="application/json">.
(function () {
  'use strict';

  const config = JSON.parse(document.getElementById('demo-config').textContent);
  const STATUS_NAMES = {
    0: 'ESTABLISHED',
    1: 'REFRESHED',
    100: 'EXPIRED',
    '-1': 'NO_IDENTITY',
    '-2': 'INVALID',
    '-3': 'REFRESH_EXPIRED',
    '-4': 'OPTOUT',
  };
  const STATUS_TEXT = {
    LOADING: ['Loading the UID2 SDK…', 'neutral'],
    ESTABLISHED: ['Token established', 'good'],
    REFRESHED: ['Token refreshed', 'good'],
    EXPIRED: ['Token expired, refreshing…', 'warn'],
    NO_IDENTITY: ['No UID2 token', 'neutral'],
    INVALID: ['No UID2 token', 'neutral'],
    REFRESH_EXPIRED: ['Refresh token expired: log in again', 'bad'],
    OPTOUT: ['Opted out of UID2', 'bad'],
  };

  const state = {
    callbackStatus: null, // the legacy init callback's last status name (not with bare init)
    disconnected: false,
    lastToken: null,
    refreshes: 0,
    lastRefreshAt: null,
    expectNewIdentity: false, // the page itself is replacing the identity (CSTG)
  };

  const $ = (id) => document.getElementById(id);
  const sdk = () => window.__uid2;
  const sdkReady = () => {
    const s = sdk();
    return !!s && typeof s.isInitComplete === 'function' && s.isInitComplete();
  };

  // ---- the SDK -------------------------------------------------------------------------------

  window.__uid2 = window.__uid2 || {};
  window.__uid2.callbacks = window.__uid2.callbacks || [];
  window.__uid2.callbacks.push(function (eventType) {
    if (eventType === 'SdkLoaded') {
      log('UID2 SDK loaded from the operator');
      startSdk();
      return;
    }
    log('event ' + eventType);
    render();
  });

  function startSdk() {
    const identity = config.identity || undefined;
    if (config.bareInit) {
      showInitCall('__uid2.init({ identity' + (identity ? '' : ' /* none: use the stored one */') + ' })');
      sdk().init({ identity });
    } else {
      showInitCall(
        '__uid2.init({\n' +
          '  identity' + (identity ? ',  // from /v2/token/generate, via the publisher\'s server' : ': undefined,  // use the stored one') + '\n' +
          '  baseUrl: ' + JSON.stringify(config.operatorUrl) + ',\n' +
          '  useCookie: true,  // keep it in the __uid_2 cookie\n' +
          '  refreshRetryPeriod: ' + config.refreshRetryPeriod + ',\n' +
          '  callback: onStatus,\n' +
          '})'
      );
      sdk().init({
        identity,
        baseUrl: config.operatorUrl,
        useCookie: true,
        refreshRetryPeriod: config.refreshRetryPeriod,
        callback: onStatus,
      });
    }
  }

  function onStatus(result) {
    const name = STATUS_NAMES[result.status] || String(result.status);
    state.callbackStatus = name;
    log('status ' + name + ': ' + result.statusText);
    render();
  }

  function showInitCall(text) {
    const el = $('init-call');
    if (el) el.textContent = text;
  }

  // The status to show, from the SDK's own answers (the callback's status refines it).
  function currentStatus() {
    if (!sdkReady()) return 'LOADING';
    const s = sdk();
    if (s.hasOptedOut()) return 'OPTOUT';
    if (s.getAdvertisingToken()) {
      if (state.callbackStatus === 'ESTABLISHED' || state.callbackStatus === 'REFRESHED') {
        return state.callbackStatus;
      }
      return state.refreshes > 0 ? 'REFRESHED' : 'ESTABLISHED';
    }
    if (s.isIdentityAvailable()) return 'EXPIRED';
    if (state.disconnected) return 'INVALID';
    if (state.callbackStatus === 'REFRESH_EXPIRED' || state.callbackStatus === 'INVALID') {
      return state.callbackStatus;
    }
    return 'NO_IDENTITY';
  }

  // Where the SDK keeps the identity: the __uid_2 cookie or localStorage.
  function storagePlace() {
    const inCookie = document.cookie.split(';').some((c) => c.trim().startsWith('__uid_2='));
    let inLocal = false;
    try {
      inLocal = !!window.localStorage.getItem('UID2-sdk-identity');
    } catch (e) {
      // Storage blocked.
    }
    const what = sdkReady() && sdk().hasOptedOut() ? ' (the opt-out, no token)' : '';
    if (inCookie && inLocal) return 'the __uid_2 cookie and localStorage' + what;
    if (inCookie) return 'the __uid_2 cookie' + what;
    if (inLocal) return 'localStorage (UID2-sdk-identity)' + what;
    return 'nowhere: nothing stored';
  }

  // ---- rendering -----------------------------------------------------------------------------

  function relative(ms) {
    if (typeof ms !== 'number' || !isFinite(ms)) return '–';
    const delta = Math.round((ms - Date.now()) / 1000);
    const span = (s) => {
      s = Math.abs(s);
      if (s < 90) return s + ' s';
      if (s < 5400) return Math.round(s / 60) + ' min';
      if (s < 172800) return Math.round(s / 3600) + ' h';
      return Math.round(s / 86400) + ' days';
    };
    return delta >= 0 ? 'in ' + span(delta) : span(delta) + ' ago';
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function render() {
    const status = currentStatus();
    const s = sdkReady() ? sdk() : null;
    const token = s ? s.getAdvertisingToken() : undefined;
    if (token && token !== state.lastToken) {
      if (state.lastToken && !state.expectNewIdentity) {
        state.refreshes += 1;
        state.lastRefreshAt = Date.now();
        log('new advertising token (refresh ' + state.refreshes + ')');
      }
      state.expectNewIdentity = false;
      state.lastToken = token;
    }

    const badge = $('uid2-status');
    if (badge) {
      const [text, tone] = STATUS_TEXT[status] || [status, 'neutral'];
      badge.textContent = text;
      badge.dataset.status = status;
      badge.className = 'badge ' + tone;
      $('uid2-status-detail').textContent = status === 'LOADING' ? '' : 'UID2.IdentityStatus ' + status;
    }
    const regenerate = $('regenerate');
    if (regenerate) regenerate.hidden = !(status === 'NO_IDENTITY' || status === 'REFRESH_EXPIRED');

    const tokenEl = $('advertising-token');
    if (!tokenEl) return;
    tokenEl.textContent = token || 'none';
    tokenEl.classList.toggle('empty', !token);
    const identity = s ? s.getIdentity() : null;
    $('refresh-count').textContent =
      state.refreshes === 0
        ? 'not yet'
        : state.refreshes + (state.refreshes === 1 ? ' time' : ' times') + ', last at ' + clock(state.lastRefreshAt);
    $('refresh-from').textContent = identity ? relative(identity.refresh_from) : '–';
    $('identity-expires').textContent = identity ? relative(identity.identity_expires) : '–';
    $('refresh-expires').textContent = identity ? relative(identity.refresh_expires) : '–';
    $('storage').textContent = storagePlace();
  }

  function log(text) {
    const list = $('event-log');
    if (!list) return;
    const item = document.createElement('li');
    const time = document.createElement('time');
    time.textContent = clock(Date.now());
    item.append(time, ' ' + text);
    list.prepend(item);
    while (list.children.length > 40) list.lastElementChild.remove();
  }

  function showResult(id, tone, rows, text) {
    const box = $(id);
    box.hidden = false;
    box.className = 'result ' + tone;
    box.replaceChildren();
    if (text) {
      const p = document.createElement('p');
      p.textContent = text;
      box.append(p);
    }
    if (rows && rows.length) {
      const dl = document.createElement('dl');
      dl.className = 'facts';
      for (const [label, value, testId] of rows) {
        const dt = document.createElement('dt');
        dt.textContent = label;
        const dd = document.createElement('dd');
        dd.textContent = value;
        if (testId) dd.id = testId;
        dl.append(dt, dd);
      }
      box.append(dl);
    }
  }

  // ---- actions -------------------------------------------------------------------------------

  async function sendAdRequest() {
    const token = sdkReady() ? sdk().getAdvertisingToken() : undefined;
    if (!token) {
      showResult('ad-result', 'bad', null, 'No advertising token to send: the SSP would see an anonymous user.');
      return;
    }
    log('ad request sent to the SSP');
    try {
      const response = await fetch(config.sspUrl + '/bid', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ advertising_token: token, domain: location.hostname }),
      });
      const answer = await response.json();
      if (!answer.decrypted) {
        showResult('ad-result', 'bad', [['Decryption', answer.status, 'ad-status']], 'The SSP could not decrypt the token.');
        return;
      }
      const site =
        answer.site_id === config.publisherSiteId ? answer.site_id + ' (this publisher)' : String(answer.site_id);
      showResult(
        'ad-result',
        'good',
        [
          ['Decryption', answer.status, 'ad-status'],
          ['Raw UID', answer.raw_uid, 'ad-raw-uid'],
          ['Publisher site id', site, 'ad-site-id'],
          ['Identity type', answer.identity_type || '–', 'ad-identity-type'],
          ['Generated', answer.client_side_generated ? 'client-side (in the browser)' : 'server-side', 'ad-generated'],
          ['Identity established', answer.established_ms ? new Date(answer.established_ms).toLocaleString() : '–'],
        ],
        'The SSP decrypted the token. The raw UID stays the same for this email across refreshes and sites.'
      );
      $('ad-site-id').dataset.siteId = String(answer.site_id);
    } catch (e) {
      showResult('ad-result', 'bad', null, 'The SSP did not answer: ' + e.message);
    }
  }

  async function optOut() {
    const button = $('optout');
    button.disabled = true;
    try {
      const response = await fetch('/optout', { method: 'POST' });
      const answer = await response.json();
      log(answer.ok ? 'opt-out recorded by the operator' : 'opt-out failed');
      showResult('optout-result', answer.ok ? 'good' : 'bad', null, answer.message);
    } catch (e) {
      showResult('optout-result', 'bad', null, 'The publisher did not answer: ' + e.message);
    } finally {
      button.disabled = false;
    }
  }

  function disconnect() {
    if (sdkReady()) sdk().disconnect();
    state.disconnected = true;
    state.lastToken = null;
    log('__uid2.disconnect()');
    render();
  }

  async function generateClientSide(event) {
    event.preventDefault();
    const email = $('cstg-email').value;
    if (!sdkReady()) return;
    $('cstg-generate').disabled = true;
    state.expectNewIdentity = true;
    state.disconnected = false;
    log('__uid2.setIdentityFromEmail(…)');
    try {
      await sdk().setIdentityFromEmail(email, {
        serverPublicKey: config.serverPublicKey,
        subscriptionId: config.subscriptionId,
      });
      const ok = !!sdk().getAdvertisingToken();
      showResult(
        'cstg-result',
        ok ? 'good' : 'bad',
        null,
        ok ? 'The operator generated a token for this page.' : 'The operator answered that this user has opted out.'
      );
    } catch (e) {
      state.expectNewIdentity = false;
      log('client-side generation failed: ' + e.message);
      showResult('cstg-result', 'bad', [['Operator answer', e.message, 'cstg-error']], 'The operator refused to generate a token.');
    } finally {
      $('cstg-generate').disabled = false;
      render();
    }
  }

  function wire() {
    const on = (id, event, fn) => {
      const el = $(id);
      if (el) el.addEventListener(event, fn);
    };
    on('ad-request', 'click', sendAdRequest);
    on('optout', 'click', optOut);
    on('disconnect', 'click', disconnect);
    on('cstg-form', 'submit', generateClientSide);
    // Logging out: first the SDK forgets the identity, then the form ends the session.
    on('logout-form', 'submit', disconnect);
    for (const chip of document.querySelectorAll('[data-email]')) {
      chip.addEventListener('click', () => {
        $('email').value = chip.dataset.email;
        $('email').focus();
      });
    }
    const origin = $('page-origin');
    if (origin) {
      origin.textContent = location.origin;
      const host = location.hostname;
      // The operator compares the origin's registrable domain with the site's list; for the
      // demo's `localhost` that is localhost itself or one label under it (x.localhost).
      const domain = config.allowedDomain;
      const allowed =
        host === domain ||
        (domain === 'localhost' ? /^[^.]+\.localhost$/.test(host) : host.endsWith('.' + domain));
      $('origin-verdict').textContent = allowed
        ? '✓ one of the site’s domains'
        : '✗ not one of the site’s domains: expect the operator to refuse (403 invalid_http_origin)';
      $('origin-verdict').className = allowed ? 'ok' : 'warn';
    }
    render();
    setInterval(render, 500);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
  else wire();
})();
