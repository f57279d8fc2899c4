//! The publisher site: an axum server with a login form. On login its server generates a UID2
//! identity with the Rust SDK (`uid2_client::PublisherClient`, `/v2/token/generate`) and renders
//! it into the page, which loads the operator's browser SDK and calls `__uid2.init`. From there
//! the SDK keeps and refreshes the identity; the page sends ad requests to the SSP, logs out
//! with `__uid2.disconnect()`, and asks this server to opt the user out (`/v2/token/logout`).
//! A second page does client-side token generation (`__uid2.setIdentityFromEmail`).
//!
//! Routes: `GET /` (login form or the logged-in page), `POST /login`, `POST /logout`,
//! `POST /optout`, `GET /client-side`, `GET /assets/{demo.js,style.css}`. `?init=bare` makes the
//! pages call the seed's bare `__uid2.init({identity})`.

mod page;
mod session;

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uid2_client::{OptOutClient, PublisherClient, TokenGenerateInput, TokenGenerateResponse};

use page::PageContext;
use session::{Notice, Session, Sessions};

/// The page script.
const DEMO_JS: &str = include_str!("../../assets/demo.js");
/// The stylesheet.
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// What the publisher's pages need to know about the other participants.
#[derive(Debug, Clone)]
pub(crate) struct PublisherSettings {
    /// The operator as browsers reach it (the SDK's `baseUrl` and script origin).
    pub(crate) operator_url: String,
    /// The SSP as browsers reach it.
    pub(crate) ssp_url: String,
    /// How often the SDK checks its identity (`refreshRetryPeriod`, ms, ≥ 1000).
    pub(crate) refresh_retry_period_ms: u64,
    /// Client-side generation: the subscription id.
    pub(crate) cstg_subscription_id: String,
    /// Client-side generation: the operator's public key (`UID2-X-L-…`).
    pub(crate) cstg_public_key: String,
}

/// The publisher site.
#[derive(Debug)]
pub(crate) struct Publisher {
    settings: PublisherSettings,
    tokens: PublisherClient,
    optout: OptOutClient,
    sessions: Sessions,
}

impl Publisher {
    /// A publisher generating tokens with `tokens` and recording opt-outs with `optout`.
    pub(crate) fn new(
        settings: PublisherSettings,
        tokens: PublisherClient,
        optout: OptOutClient,
    ) -> Self {
        Self {
            settings,
            tokens,
            optout,
            sessions: Sessions::default(),
        }
    }

    /// The site's routes.
    pub(crate) fn router(self) -> Router {
        Router::new()
            .route("/", get(home))
            .route("/login", post(login))
            .route("/logout", post(logout))
            .route("/optout", post(optout))
            .route("/client-side", get(client_side))
            .route("/assets/demo.js", get(demo_js))
            .route("/assets/style.css", get(style_css))
            .with_state(Arc::new(self))
    }

    /// What every page of a request needs.
    fn context(&self, query: &PageQuery) -> PageContext<'_> {
        PageContext {
            settings: &self.settings,
            bare_init: query.bare_init(),
        }
    }
}

/// Query parameters every page understands.
#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    /// `bare`: call `__uid2.init({identity})` with no other option.
    #[serde(default)]
    init: Option<String>,
    /// Set after logout, to say what happened.
    #[serde(default)]
    logged_out: Option<String>,
}

impl PageQuery {
    /// Whether the pages call the bare `__uid2.init({identity})`.
    fn bare_init(&self) -> bool {
        self.init.as_deref() == Some("bare")
    }

    /// The query that keeps the init mode, for redirects.
    fn keep(&self, extra: &str) -> String {
        query_string(self.bare_init(), extra)
    }
}

/// `?init=bare` when the pages use the bare init, then `extra`; empty when there is neither.
fn query_string(bare_init: bool, extra: &str) -> String {
    let parts: Vec<&str> = [bare_init.then_some("init=bare"), Some(extra)]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// `GET /`: the login form, or the logged-in page.
async fn home(
    State(site): State<Arc<Publisher>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Html<String> {
    let ctx = site.context(&query);
    Html(match site.sessions.take_for_page(&headers) {
        Some(s) => page::account(
            ctx,
            &s.email,
            s.fresh_identity.as_ref(),
            s.notice == Some(Notice::OptedOutAtLogin),
        ),
        None => page::login(ctx, "", None, query.logged_out.is_some()),
    })
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginForm {
    email: String,
}

/// `POST /login`: generates an identity for the email and starts a session.
async fn login(
    State(site): State<Arc<Publisher>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let email = form.email.trim();
    let ctx = site.context(&query);
    let refuse = |code: StatusCode, message: &str| {
        (code, Html(page::login(ctx, email, Some(message), false))).into_response()
    };
    let session = match site
        .tokens
        .generate_token(&TokenGenerateInput::from_email(email))
        .await
    {
        Ok(TokenGenerateResponse::Success(identity)) => {
            Session::new(email.to_owned(), Some(identity), None)
        }
        Ok(TokenGenerateResponse::OptOut) => {
            Session::new(email.to_owned(), None, Some(Notice::OptedOutAtLogin))
        }
        Ok(TokenGenerateResponse::InsufficientUserConsent) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "The operator needs the user's consent (EUID) to generate a token.",
            );
        }
        // The SDK refuses what UID2 would not accept before anything is sent.
        Err(uid2_client::Error::InvalidInput(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "That is not an email address UID2 accepts.",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "token generation failed");
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("The operator did not generate a token: {e}"),
            );
        }
    };
    site.sessions.remove(&headers);
    let id = site.sessions.create(session);
    (
        [(header::SET_COOKIE, session::set_cookie(&id))],
        Redirect::to(&format!("/{}", query.keep(""))),
    )
        .into_response()
}

/// `POST /logout`: ends the publisher session (the page has already called `disconnect()`).
async fn logout(
    State(site): State<Arc<Publisher>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    site.sessions.remove(&headers);
    (
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to(&format!("/{}", query.keep("logged_out=1"))),
    )
        .into_response()
}

/// The answer of `POST /optout`.
#[derive(Debug, Serialize)]
struct OptoutAnswer {
    /// Whether the operator recorded the opt-out.
    ok: bool,
    /// What happened, for the page.
    message: String,
}

/// `POST /optout`: the operator's `/v2/token/logout` for the session's email.
async fn optout(State(site): State<Arc<Publisher>>, headers: HeaderMap) -> Response {
    let answer = |code: StatusCode, ok: bool, message: String| {
        (code, Json(OptoutAnswer { ok, message })).into_response()
    };
    let Some(email) = site.sessions.email(&headers) else {
        return answer(
            StatusCode::UNAUTHORIZED,
            false,
            "Log in first: the publisher opts out the logged-in user.".into(),
        );
    };
    match site
        .optout
        .opt_out(&TokenGenerateInput::from_email(&email))
        .await
    {
        Ok(()) => answer(
            StatusCode::OK,
            true,
            format!(
                "The operator recorded the opt-out of {email}. The SDK finds out at its next refresh."
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "opt-out failed");
            answer(
                StatusCode::BAD_GATEWAY,
                false,
                format!("The operator did not record the opt-out: {e:#}"),
            )
        }
    }
}

/// `GET /client-side`: client-side token generation.
async fn client_side(
    State(site): State<Arc<Publisher>>,
    Query(query): Query<PageQuery>,
) -> Html<String> {
    Html(page::client_side(site.context(&query)))
}

/// `GET /assets/demo.js`.
async fn demo_js() -> Response {
    asset("text/javascript; charset=utf-8", DEMO_JS)
}

/// `GET /assets/style.css`.
async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// A static asset, revalidated on every load (the demo is edited while it runs).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
