//! The publisher's HTML pages: the login form, the logged-in page (identity, ad request,
//! logout and opt-out) and the client-side generation page. Plain server-rendered HTML; the
//! behaviour lives in `assets/demo.js`, which reads the page's settings from a JSON block.
//!
//! Everything from outside (the email, the identity, URLs) is escaped for where it lands.

use serde::Serialize;
use uid2_client::IdentityTokens;

use super::PublisherSettings;
use crate::setup::{PUBLISHER_DOMAIN, PUBLISHER_SITE_ID, PUBLISHER_SITE_NAME};

/// Which page is shown (the tab bar highlights it, the script adapts to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PageKind {
    /// Not logged in: the login form.
    Login,
    /// Logged in: the identity from the publisher's server.
    Account,
    /// Client-side token generation.
    ClientSide,
}

/// What a page needs besides its own content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageContext<'a> {
    /// URLs, CSTG key, lifetimes.
    pub(crate) settings: &'a PublisherSettings,
    /// Start the SDK with the seed's bare `__uid2.init({identity})`.
    pub(crate) bare_init: bool,
}

impl PageContext<'_> {
    /// The query string that keeps the init mode across links and forms.
    fn query(&self) -> String {
        super::query_string(self.bare_init, "")
    }
}

/// The settings `demo.js` reads from the page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ScriptConfig<'a> {
    page: PageKind,
    operator_url: &'a str,
    ssp_url: &'a str,
    identity: Option<&'a IdentityTokens>,
    bare_init: bool,
    refresh_retry_period: u64,
    publisher_site_id: i32,
    allowed_domain: &'static str,
    server_public_key: &'a str,
    subscription_id: &'a str,
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that is safe inside a `<script>` element: no `<`, `>` or `&` that could end it.
fn script_json(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".to_owned())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The frame of every page: header, flow strip, footer, the page settings and the scripts.
fn layout(
    ctx: PageContext<'_>,
    kind: PageKind,
    title: &str,
    body: &str,
    identity: Option<&IdentityTokens>,
) -> String {
    let s = ctx.settings;
    let config = script_json(&ScriptConfig {
        page: kind,
        operator_url: &s.operator_url,
        ssp_url: &s.ssp_url,
        identity,
        bare_init: ctx.bare_init,
        refresh_retry_period: s.refresh_retry_period_ms,
        publisher_site_id: PUBLISHER_SITE_ID,
        allowed_domain: PUBLISHER_DOMAIN,
        server_public_key: &s.cstg_public_key,
        subscription_id: &s.cstg_subscription_id,
    });
    let q = ctx.query();
    let (server_tab, client_tab) = match kind {
        PageKind::ClientSide => ("", " class=\"active\""),
        _ => (" class=\"active\"", ""),
    };
    let operator = escape(&s.operator_url);
    let ssp = escape(&s.ssp_url);
    let site = escape(PUBLISHER_SITE_NAME);
    let title = escape(title);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {site} · UID2 demo</title>
<link rel="stylesheet" href="/assets/style.css">
<link rel="icon" href="data:,">
</head>
<body>
<header class="top">
  <div class="brand"><span class="logo" aria-hidden="true">DE</span><div><strong>{site}</strong><small>a publisher site in the UID2 demo</small></div></div>
  <nav><a href="/{q}"{server_tab}>Server-side tokens</a><a href="/client-side{q}"{client_tab}>Client-side tokens</a></nav>
</header>
<main>
<ol class="flow">
  <li><b>Log in</b><span>the publisher's server gets a UID2 token from the operator</span></li>
  <li><b>Token in the page</b><span>the UID2 SDK stores it and refreshes it in the background</span></li>
  <li><b>Ad request</b><span>the SSP decrypts the token to a raw UID</span></li>
  <li><b>Log out / opt out</b><span>the token leaves the browser</span></li>
</ol>
{body}
</main>
<footer>
  <span><i class="dot operator"></i>Operator <a href="{operator}/ops/healthcheck">{operator}</a></span>
  <span><i class="dot publisher"></i>Publisher: this site (site {PUBLISHER_SITE_ID})</span>
  <span><i class="dot ssp"></i>SSP <a href="{ssp}/">{ssp}</a></span>
</footer>
<script id="demo-config" type="application/json">{config}</script>
<script src="/assets/demo.js"></script>
<script src="{operator}/static/js/uid2-sdk.js"></script>
</body>
</html>
"#
    )
}

/// The identity card: the SDK's status and the token's times, filled in by the script.
fn identity_card(email: Option<&str>, q: &str) -> String {
    let who = match email {
        Some(email) => format!(
            r#"<p class="who">Logged in to {site} as <strong id="account-email">{email}</strong></p>"#,
            site = escape(PUBLISHER_SITE_NAME),
            email = escape(email)
        ),
        None => String::new(),
    };
    let regenerate = match email {
        Some(email) => format!(
            r#"<form method="post" action="/login{q}" id="regenerate" hidden>
      <input type="hidden" name="email" value="{email}">
      <button type="submit" class="primary">Get a new UID2 token</button>
    </form>"#,
            email = escape(email)
        ),
        None => String::new(),
    };
    format!(
        r#"<section class="card" id="identity-card">
    <h2><span class="step">2</span>Your UID2 identity</h2>
    {who}
    <p class="status-line"><span id="uid2-status" class="badge" data-status="LOADING">Loading the UID2 SDK…</span>
       <span id="uid2-status-detail" class="muted"></span></p>
    {regenerate}
    <dl class="facts">
      <dt>Advertising token</dt><dd><code id="advertising-token" class="token">none</code></dd>
      <dt>Refreshed</dt><dd id="refresh-count">not yet</dd>
      <dt>Next refresh</dt><dd id="refresh-from">–</dd>
      <dt>Token expires</dt><dd id="identity-expires">–</dd>
      <dt>Refresh token expires</dt><dd id="refresh-expires">–</dd>
      <dt>Kept in</dt><dd id="storage">–</dd>
    </dl>
    <details><summary>How this page started the SDK</summary><pre id="init-call"></pre></details>
  </section>"#
    )
}

/// The ad request card.
fn ad_card(settings: &PublisherSettings) -> String {
    format!(
        r#"<section class="card" id="ad-card">
    <h2><span class="step">3</span>Send an ad request</h2>
    <p>The page sends its advertising token to the SSP (<code>{ssp}/bid</code>). The SSP decrypts it
       with the keys it fetches from the operator's <code>/v2/key/bidstream</code>.</p>
    <button type="button" id="ad-request" class="primary">Send ad request</button>
    <div id="ad-result" class="result" hidden></div>
  </section>"#,
        ssp = escape(&settings.ssp_url)
    )
}

/// The list the script fills with what the SDK did.
fn event_log() -> &'static str {
    r#"<section class="card log" id="log-card">
    <h2>What the SDK did</h2>
    <ol id="event-log" reversed></ol>
  </section>"#
}

/// The login form (no publisher session).
pub(crate) fn login(
    ctx: PageContext<'_>,
    email: &str,
    error: Option<&str>,
    logged_out: bool,
) -> String {
    let q = ctx.query();
    let banner = match (error, logged_out) {
        (Some(e), _) => format!(r#"<p class="banner error" id="login-error">{}</p>"#, escape(e)),
        (None, true) => r#"<p class="banner" id="logged-out">You are logged out. <code>__uid2.disconnect()</code> removed the UID2 identity from this browser.</p>"#.to_owned(),
        (None, false) => String::new(),
    };
    let body = format!(
        r#"{banner}
<div class="grid">
  <section class="card" id="login-card">
    <h2><span class="step">1</span>Log in</h2>
    <p>Log in with an email address. The publisher's server turns it into a UID2 token with the Rust
       SDK (<code>PublisherClient</code> → <code>/v2/token/generate</code>) and hands the token to this page.</p>
    <form method="post" action="/login{q}" class="inline-form">
      <input type="email" name="email" id="email" required placeholder="you@example.com" value="{email}" autocomplete="email">
      <button type="submit" id="login" class="primary">Log in</button>
    </form>
    <p class="hint">Try also
      <button type="button" class="chip" data-email="refresh-optout@example.com">refresh-optout@example.com</button>
      (gets a token, but its first refresh answers “opted out”) or
      <button type="button" class="chip" data-email="optout@example.com">optout@example.com</button>
      (always opted out).</p>
  </section>
  <section class="card" id="identity-card">
    <h2>UID2 in this browser</h2>
    <p class="status-line"><span id="uid2-status" class="badge" data-status="LOADING">Loading the UID2 SDK…</span>
       <span id="uid2-status-detail" class="muted"></span></p>
    <dl class="facts who-is-who">
      <dt><i class="dot operator"></i>Operator</dt><dd>issues and refreshes UID2 tokens, serves the browser SDK</dd>
      <dt><i class="dot publisher"></i>Publisher</dt><dd>this site: logs you in, shows ads</dd>
      <dt><i class="dot ssp"></i>SSP</dt><dd>gets ad requests, decrypts their tokens</dd>
    </dl>
    <p class="muted">Nothing to show until you log in. Or try the <a href="/client-side{q}">client-side</a> way.</p>
  </section>
</div>"#,
        email = escape(email),
    );
    layout(ctx, PageKind::Login, "Log in", &body, None)
}

/// The logged-in page. `identity` is handed to `__uid2.init` (right after login), otherwise
/// the SDK uses the identity it stored. `opted_out_at_login`: the operator refused a token.
pub(crate) fn account(
    ctx: PageContext<'_>,
    email: &str,
    identity: Option<&IdentityTokens>,
    opted_out_at_login: bool,
) -> String {
    let q = ctx.query();
    let banner = if opted_out_at_login {
        r#"<p class="banner error" id="optout-at-login">The operator answered <code>optout</code>: this user has opted out of UID2, so no token was generated.</p>"#
    } else {
        ""
    };
    let body = format!(
        r#"{banner}
<div class="grid">
  {identity_card}
  {ad_card}
  <section class="card" id="privacy-card">
    <h2><span class="step">4</span>Log out or opt out</h2>
    <div class="choice">
      <form method="post" action="/logout{q}" id="logout-form"><button type="submit" id="logout">Log out</button></form>
      <p>The page calls <code>__uid2.disconnect()</code>, which removes the token from this browser, then
         ends your session with the publisher.</p>
    </div>
    <div class="choice">
      <button type="button" id="optout" class="danger">Opt out of UID2</button>
      <p>The publisher's server calls the operator's <code>/v2/token/logout</code>. The SDK finds out at
         its next refresh and drops the token for good.</p>
    </div>
    <div id="optout-result" class="result" hidden></div>
  </section>
  {log}
</div>"#,
        identity_card = identity_card(Some(email), &q),
        ad_card = ad_card(ctx.settings),
        log = event_log(),
    );
    layout(ctx, PageKind::Account, "Your UID2", &body, identity)
}

/// The client-side token generation page.
pub(crate) fn client_side(ctx: PageContext<'_>) -> String {
    let s = ctx.settings;
    let body = format!(
        r#"<div class="grid">
  <section class="card" id="cstg-card">
    <h2><span class="step">1</span>Generate a token in the browser</h2>
    <p>No publisher server involved: the SDK normalises and hashes the email, encrypts it for the
       operator (ECDH P-256 + AES-GCM) and posts it to <code>/v2/token/client-generate</code>. The
       operator only answers pages whose origin is one of the site's domains (<code>{domain}</code>).</p>
    <p class="origin">This page's origin: <code id="page-origin"></code> <span id="origin-verdict"></span></p>
    <form id="cstg-form" class="inline-form">
      <input type="email" id="cstg-email" required placeholder="you@example.com" autocomplete="email">
      <button type="submit" id="cstg-generate" class="primary">Generate token</button>
    </form>
    <div id="cstg-result" class="result" hidden></div>
    <details><summary>The call</summary><pre>__uid2.setIdentityFromEmail(email, {{
  serverPublicKey: "{public_key}",
  subscriptionId: "{subscription}"
}})</pre></details>
  </section>
  {identity_card}
  {ad_card}
  <section class="card" id="privacy-card">
    <h2><span class="step">4</span>Disconnect</h2>
    <div class="choice">
      <button type="button" id="disconnect">Disconnect</button>
      <p>Calls <code>__uid2.disconnect()</code>: the token is removed from this browser.</p>
    </div>
  </section>
  {log}
</div>"#,
        domain = escape(PUBLISHER_DOMAIN),
        public_key = escape(&s.cstg_public_key),
        subscription = escape(&s.cstg_subscription_id),
        identity_card = identity_card(None, ""),
        ad_card = ad_card(s),
        log = event_log(),
    );
    layout(ctx, PageKind::ClientSide, "Client-side tokens", &body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PublisherSettings {
        PublisherSettings {
            operator_url: "http://localhost:8080".into(),
            ssp_url: "http://localhost:3001".into(),
            refresh_retry_period_ms: 1000,
            cstg_subscription_id: "sub".into(),
            cstg_public_key: "UID2-X-L-key".into(),
        }
    }

    #[test]
    fn user_text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let s = settings();
        let ctx = PageContext {
            settings: &s,
            bare_init: false,
        };
        let html = account(ctx, "<script>@example.com", None, false);
        assert!(!html.contains("<script>@example.com"));
        assert!(html.contains("&lt;script&gt;@example.com"));
    }

    #[test]
    fn the_identity_cannot_end_its_script_block() {
        let identity = IdentityTokens {
            advertising_token: "</script><script>alert(1)</script>".into(),
            refresh_token: "R".into(),
            identity_expires: 2,
            refresh_expires: 3,
            refresh_from: 1,
            refresh_response_key: Some("k".into()),
        };
        let s = settings();
        let ctx = PageContext {
            settings: &s,
            bare_init: true,
        };
        let html = account(ctx, "a@example.com", Some(&identity), false);
        assert!(!html.contains("</script><script>alert"));
        assert!(html.contains(r#""bareInit":true"#));
        assert!(html.contains("action=\"/logout?init=bare\""));
        assert!(html.contains(r#"<script src="http://localhost:8080/static/js/uid2-sdk.js">"#));
    }
}
