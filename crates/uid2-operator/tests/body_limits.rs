//! Request bodies are memory held for as long as their senders take: a key that is no client's
//! is refused before its body is read, the endpoints anyone may call take small bodies only, and
//! the bodies being received at once share one budget, so senders that stall can delay other
//! requests (each until its timeout, a retryable 503) but never exhaust the operator's memory;
//! callers without a key have a budget of their own, and cannot delay those with one.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use common::TestOperator;
use http_body::Frame;
use tower::ServiceExt;
use uid2_operator::OperatorConfig;
use uid2_operator::http::{
    BODY_BUDGET_BYTES, MAX_BODY_BYTES, MAX_PUBLIC_BODY_BYTES, PUBLIC_BODY_BUDGET_BYTES,
};

/// A body whose sender never sends a byte.
struct Stalled;

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

fn stalled_request(path: &str, api_key: &str, declared: usize) -> http::Request<Body> {
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("Authorization", format!("Bearer {api_key}"))
        .header("Content-Length", declared.to_string())
        .body(Body::new(Stalled))
        .unwrap()
}

#[tokio::test]
async fn a_key_that_is_no_clients_is_refused_before_its_body_is_read() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    for path in ["/v2/token/generate", "/v2/identity/map", "/v2/key/sharing"] {
        let request = stalled_request(path, "UID2-C-L-999-nobody.xxxxxxxx", MAX_BODY_BYTES);
        let response =
            tokio::time::timeout(Duration::from_secs(5), t.router.clone().oneshot(request))
                .await
                .expect("answered without waiting for the body")
                .unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    // The v1 identity map keeps its plain-text refusal.
    let request = stalled_request("/v1/identity/map", "nobody", 100);
    let response = tokio::time::timeout(Duration::from_secs(5), t.router.clone().oneshot(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "text/plain");
}

#[tokio::test]
async fn endpoints_anyone_may_call_take_small_bodies() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    for path in ["/v2/token/refresh", "/v2/token/client-generate"] {
        let reply = t
            .send("POST", path, &[], vec![b'A'; MAX_PUBLIC_BODY_BYTES + 1])
            .await;
        assert_eq!(reply.status, 413, "{path}: {reply:?}");
        assert_eq!(reply.json()["status"], "client_error");
    }
    // At the limit the body is read, and judged for what it is.
    let reply = t
        .send(
            "POST",
            "/v2/token/refresh",
            &[],
            vec![b'A'; MAX_PUBLIC_BODY_BYTES],
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
}

#[tokio::test]
async fn stalled_senders_delay_other_requests_but_hold_no_more_than_the_budget() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    // Enough stalled 1 MiB bodies, from a real client, to reserve the whole budget.
    let stalled: Vec<_> = (0..BODY_BUDGET_BYTES / MAX_BODY_BYTES)
        .map(|_| {
            let router = t.router.clone();
            let request = stalled_request("/v2/identity/map", &t.mapper.api_key, MAX_BODY_BYTES);
            tokio::spawn(router.oneshot(request))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(stalled.iter().all(|s| !s.is_finished()));

    let generate = t.call(
        &t.publisher,
        "/v2/token/generate",
        serde_json::json!({"email": "waiting@example.com"}),
    );
    tokio::pin!(generate);
    tokio::select! {
        answer = &mut generate => panic!("read a body beyond the budget: {answer:?}"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    // One stalled sender gone (its connection closed) frees enough for the waiting request.
    stalled[0].abort();
    let served = generate.await.unwrap();
    assert_eq!(served["status"], "success");
    for request in &stalled {
        request.abort();
    }
}

#[tokio::test]
async fn stalled_senders_without_a_key_delay_only_each_other() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    // Enough stalled refresh bodies, from nobody in particular, to reserve the public budget.
    let mut stalled = Vec::new();
    for _ in 0..PUBLIC_BODY_BUDGET_BYTES / MAX_PUBLIC_BODY_BYTES {
        let request = http::Request::builder()
            .method("POST")
            .uri("/v2/token/refresh")
            .header("Content-Length", MAX_PUBLIC_BODY_BYTES.to_string())
            .body(Body::new(Stalled))
            .unwrap();
        stalled.push(tokio::spawn(t.router.clone().oneshot(request)));
        // On the test's single-threaded runtime this lets the new request run until it waits
        // for its body, holding its share of the budget, before the next one is made.
        tokio::task::yield_now().await;
    }
    assert!(stalled.iter().all(|s| !s.is_finished()));

    // A publisher with a key is served at once...
    let served = tokio::time::timeout(
        Duration::from_secs(5),
        t.call(
            &t.publisher,
            "/v2/token/generate",
            serde_json::json!({"email": "not-waiting@example.com"}),
        ),
    )
    .await
    .expect("a request with a key does not wait for keyless senders")
    .unwrap();
    assert_eq!(served["status"], "success");
    // So is a refresh from a publisher's server, with its key...
    let auth = format!("Bearer {}", t.publisher.api_key);
    let keyed = tokio::time::timeout(
        Duration::from_secs(5),
        t.send(
            "POST",
            "/v2/token/refresh",
            &[("Authorization", &auth)],
            b"junk".to_vec(),
        ),
    )
    .await
    .expect("a refresh with a key does not wait for keyless senders");
    assert_eq!(keyed.status, 400, "{keyed:?}");
    // ...while one more keyless body waits for its turn.
    let refresh = t.send("POST", "/v2/token/refresh", &[], b"junk".to_vec());
    tokio::pin!(refresh);
    tokio::select! {
        answer = &mut refresh => panic!("read a public body beyond its budget: {answer:?}"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    stalled[0].abort();
    let reply = refresh.await;
    assert_eq!(reply.status, 400, "{reply:?}");
    for request in &stalled {
        request.abort();
    }
}

/// Whose fault a body that did not arrive in time is: the sender's (a 408) when the server was
/// ready to read it all along, the server's (a retryable 503) when the server kept it waiting
/// for the body budget until too little time was left.
#[tokio::test]
async fn a_late_body_is_a_408_unless_the_server_kept_it_waiting() {
    let config = OperatorConfig {
        request_timeout: Duration::from_secs(2),
        ..OperatorConfig::default()
    };
    let t = TestOperator::start(config).await;
    tokio::time::pause();

    let stalled_generate = || {
        let request = stalled_request("/v2/token/generate", &t.publisher.api_key, 100);
        t.router.clone().oneshot(request)
    };

    // Nothing in the way: the sender is late.
    let alone = stalled_generate().await.unwrap();
    assert_eq!(alone.status(), 408);

    // The budget taken by stalled senders until their own timeouts, 0.1 s before this one's.
    let fillers: Vec<_> = (0..BODY_BUDGET_BYTES / MAX_BODY_BYTES)
        .map(|_| {
            let request = stalled_request("/v2/identity/map", &t.mapper.api_key, MAX_BODY_BYTES);
            tokio::spawn(t.router.clone().oneshot(request))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kept_waiting = stalled_generate().await.unwrap();
    assert_eq!(kept_waiting.status(), 503);
    for filler in fillers {
        assert_eq!(filler.await.unwrap().unwrap().status(), 408);
    }
}
