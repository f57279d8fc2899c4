//! An operator over a fresh SQLite store, in process, with one client per role, and helpers to
//! send it real encrypted requests through its router.

#![allow(dead_code, unreachable_pub)]

pub mod cstg;
pub mod refresh;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;
use uid2_operator::admin::{NewClient, add_client, add_site, ensure_initialized};
use uid2_operator::deployment::{GivenSettings, settle};
use uid2_operator::{Operator, OperatorConfig, http::router, now_ms};
use uid2_proto::cipher::GcmKey;
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::envelope::{open_response, seal_request};
use uid2_store::{Role, SiteRecord, Store};

/// Percent-encodes the base64 characters that mean something in a query string.
pub fn percent_encode(text: &str) -> String {
    text.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

pub struct TestOperator {
    pub operator: Arc<Operator>,
    pub router: Router,
    pub publisher: NewClient,
    pub dsp: NewClient,
    pub mapper: NewClient,
    pub sharer: NewClient,
    pub optout: NewClient,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} {}: {}",
            self.status,
            self.content_type,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

impl TestOperator {
    pub async fn start(config: OperatorConfig) -> Self {
        Self::start_wrapped(config, |store| store).await
    }

    /// As [`start`](Self::start), with the operator (not the set-up) using the store `wrap`
    /// makes of the real one.
    pub async fn start_wrapped(
        config: OperatorConfig,
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = uid2_store::open(&format!("sqlite://{}/uid2.db", dir.path().display()))
            .await
            .unwrap();
        let mut rng = rand::rng();
        let now = now_ms();
        ensure_initialized(store.as_ref(), &config, 64, now, &mut rng)
            .await
            .unwrap();
        for (id, name, domains) in [
            (1001, "publisher", vec!["localhost".to_owned()]),
            (2001, "dsp", vec![]),
        ] {
            let site = SiteRecord {
                id,
                name: name.into(),
                enabled: true,
                domain_names: domains,
                app_names: vec![],
                created_s: now / 1000,
            };
            add_site(store.as_ref(), site, now, &mut rng).await.unwrap();
        }
        let s = store.as_ref();
        let publisher = add_client(
            s,
            &config,
            "publisher",
            1001,
            vec![Role::Generator],
            now,
            &mut rng,
        )
        .await
        .unwrap();
        let dsp = add_client(s, &config, "dsp", 2001, vec![Role::IdReader], now, &mut rng)
            .await
            .unwrap();
        let mapper = add_client(
            s,
            &config,
            "mapper",
            2001,
            vec![Role::Mapper],
            now,
            &mut rng,
        )
        .await
        .unwrap();
        let sharer = add_client(
            s,
            &config,
            "sharer",
            1001,
            vec![Role::Sharer],
            now,
            &mut rng,
        )
        .await
        .unwrap();
        let optout = add_client(
            s,
            &config,
            "optout",
            1001,
            vec![Role::Optout],
            now,
            &mut rng,
        )
        .await
        .unwrap();
        let given = GivenSettings::all(config.raw_uid_settings());
        let settled = settle(wrap(store), &given).await.unwrap();
        let operator = Operator::load(settled, config).await.unwrap();
        let router = router(operator.clone());
        Self {
            operator,
            router,
            publisher,
            dsp,
            mapper,
            sharer,
            optout,
            _dir: dir,
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut req = http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            content_type,
            headers,
            body,
        }
    }

    /// Seals `payload` for `client` and returns the base64 body and the nonce.
    pub fn seal(client: &NewClient, payload: &[u8], timestamp_ms: i64) -> (Vec<u8>, [u8; 8]) {
        let key = GcmKey::new(&base64_decode(&client.secret).unwrap().try_into().unwrap());
        let nonce: [u8; 8] = rand::random();
        let sealed = seal_request(&key, timestamp_ms, nonce, payload, &mut rand::rng());
        (base64_encode(&sealed).into_bytes(), nonce)
    }

    /// Records the opt-out of `identity` (`{"email": …}` or another identity field) through
    /// `/v2/token/logout`, as the opt-out portal does, and checks it was acknowledged.
    pub async fn opt_out(&self, identity: serde_json::Value) {
        let logout = self
            .call(&self.optout, "/v2/token/logout", identity.clone())
            .await
            .unwrap_or_else(|e| panic!("opt-out of {identity}: {e:?}"));
        assert_eq!(logout["status"], "success", "opt-out of {identity}");
    }

    /// A full envelope round trip; returns the decrypted JSON on 200, else the error reply.
    pub async fn call(
        &self,
        client: &NewClient,
        path: &str,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, Reply> {
        let json = if payload.is_null() {
            Vec::new()
        } else {
            payload.to_string().into_bytes()
        };
        let (body, nonce) = Self::seal(client, &json, now_ms());
        let auth = format!("Bearer {}", client.api_key);
        let reply = self
            .send("POST", path, &[("Authorization", &auth)], body)
            .await;
        if reply.status != 200 {
            return Err(reply);
        }
        let key = GcmKey::new(&base64_decode(&client.secret).unwrap().try_into().unwrap());
        let opened = open_response(&key, &base64_decode(&reply.body).unwrap(), nonce).unwrap();
        Ok(serde_json::from_slice(&opened.payload).unwrap())
    }
}
