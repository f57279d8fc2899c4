//! The Rust SDK (`uid2-client`) end to end against the real `uid2 serve` binary on a fresh
//! SQLite store: every client talks to it over HTTP, set up with the admin CLI as an operator
//! would. No mocks, nothing in-process.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ClientCreds, OperatorProcess, add_client, cli};
use uid2_client::identity_map::UnmappedIdentityReason;
use uid2_client::{
    BidstreamClient, DecryptionStatus, Error, IdentityMapClient, IdentityMapInput,
    IdentityMapV3Input, IdentityTokens, IdentityType, OptOutClient, PublisherClient, SharingClient,
    TokenGenerateInput, TokenGenerateResponse, TokenRefreshResponse, TokenVersion,
};
use uid2_operator::now_ms;
use uid2_proto::cstg::{decode_key_text, seal_request};
use uid2_proto::encoding::base64_decode;
use uid2_proto::envelope::open_bare_response;
use uid2_proto::identity::HashedIdentity;

const PUBLISHER_SITE: i32 = 1001;
const DSP_SITE: i32 = 2001;

/// A CSTG key pair, as `uid2 cstg add --json` prints it.
struct Cstg {
    subscription_id: String,
    public_key: String,
}

struct Fixture {
    store: String,
    url: String,
    publisher: ClientCreds,
    dsp: ClientCreds,
    mapper: ClientCreds,
    sharer: ClientCreds,
    optout: ClientCreds,
    cstg: Cstg,
    _operator: OperatorProcess,
    _dir: tempfile::TempDir,
}

fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    support::init(&store);
    for (id, name, domain) in [
        (PUBLISHER_SITE, "publisher", Some("example.com")),
        (DSP_SITE, "dsp", None),
    ] {
        let id = id.to_string();
        let mut args = vec!["site", "add", "--id", &id, "--name", name];
        if let Some(domain) = domain {
            args.extend(["--domain", domain]);
        }
        cli(&store, &args);
    }
    let client = |name: &str, site: i32, role: &str| add_client(&store, name, site, role);
    let publisher = client("publisher", PUBLISHER_SITE, "generator");
    let dsp = client("dsp", DSP_SITE, "id_reader");
    let mapper = client("mapper", DSP_SITE, "mapper");
    let sharer = client("sharer", PUBLISHER_SITE, "sharer");
    let optout = client("optout-portal", PUBLISHER_SITE, "optout");
    let v: Value = serde_json::from_str(&cli(
        &store,
        &[
            "cstg",
            "add",
            "--site-id",
            &PUBLISHER_SITE.to_string(),
            "--json",
        ],
    ))
    .unwrap();
    let cstg = Cstg {
        subscription_id: v["subscription_id"].as_str().unwrap().to_owned(),
        public_key: v["public_key"].as_str().unwrap().to_owned(),
    };
    let operator = OperatorProcess::start(&store, &["--sync-interval-ms", "100"]);
    Fixture {
        url: operator.url.clone(),
        store,
        publisher,
        dsp,
        mapper,
        sharer,
        optout,
        cstg,
        _operator: operator,
        _dir: dir,
    }
}

impl Fixture {
    fn cli(&self, args: &[&str]) -> String {
        cli(&self.store, args)
    }

    fn publisher(&self) -> PublisherClient {
        PublisherClient::new(
            &self.url,
            &self.publisher.key,
            &self.publisher.secret_base64(),
        )
        .unwrap()
    }

    fn bidstream(&self) -> BidstreamClient {
        BidstreamClient::new(&self.url, &self.dsp.key, &self.dsp.secret_base64()).unwrap()
    }

    fn sharing(&self) -> SharingClient {
        SharingClient::new(&self.url, &self.sharer.key, &self.sharer.secret_base64()).unwrap()
    }

    fn optout(&self) -> OptOutClient {
        OptOutClient::new(&self.url, &self.optout.key, &self.optout.secret_base64()).unwrap()
    }

    /// The publisher's key (role GENERATOR only) used for an opt-out.
    fn publisher_as_optout(&self) -> OptOutClient {
        OptOutClient::new(
            &self.url,
            &self.publisher.key,
            &self.publisher.secret_base64(),
        )
        .unwrap()
    }

    fn mapper(&self) -> IdentityMapClient {
        IdentityMapClient::new(&self.url, &self.mapper.key, &self.mapper.secret_base64()).unwrap()
    }

    async fn generate(&self, input: TokenGenerateInput) -> IdentityTokens {
        match self.publisher().generate_token(&input).await.unwrap() {
            TokenGenerateResponse::Success(identity) => identity,
            other => panic!("expected an identity, got {other:?}"),
        }
    }

    /// Generates for `email` until the operator has synced a rotation and mints with a site key
    /// that `bidstream` has not loaded yet; returns the identity and that key's id.
    async fn generate_with_new_key(
        &self,
        bidstream: &BidstreamClient,
        email: &str,
    ) -> (IdentityTokens, u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let identity = self.generate(TokenGenerateInput::from_email(email)).await;
            let r = bidstream.decrypt_token_into_raw_uid(&identity.advertising_token, None);
            // A rotation gives every keyset a key, the master keyset too: the outer layer
            // fails first.
            if r.status == DecryptionStatus::NotAuthorizedForMasterKey {
                let site_key = site_key_id(&self.store, &identity.advertising_token);
                assert!(bidstream.keys().unwrap().key(site_key).is_none());
                return (identity, site_key);
            }
            assert!(r.is_success(), "{:?}", r.status);
            assert!(
                Instant::now() < deadline,
                "the operator never minted with the rotated key"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The site key id of `token`, read with `uid2 token inspect` (the operator's own keys).
fn site_key_id(store: &str, token: &str) -> u32 {
    let v: Value = serde_json::from_str(&cli(store, &["token", "inspect", token])).unwrap();
    v["site_key_id"].as_u64().unwrap() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_bidstream_sharing_and_identity_map_agree() {
    let f = start();
    let email = "Jane.Doe@Example.com";
    let identity = f.generate(TokenGenerateInput::from_email(email)).await;
    let now = now_ms();
    assert!(identity.advertising_token.starts_with("A4"));
    assert_eq!(identity.refresh_token.len(), 388);
    assert!(!identity.is_due_for_refresh(now));
    assert!(!identity.is_expired(now));
    assert!(identity.is_refreshable(now));
    // Production lifetimes: refresh after an hour, expire after three days.
    assert!(identity.is_due_for_refresh(now + 3_601_000));
    assert!(identity.is_expired(now + 259_201_000));

    let bidstream = f.bidstream();
    bidstream.refresh().await.unwrap();
    let decrypted = bidstream.decrypt_token_into_raw_uid(&identity.advertising_token, None);
    assert_eq!(decrypted.status, DecryptionStatus::Success);
    assert_eq!(decrypted.site_id, Some(PUBLISHER_SITE));
    assert_eq!(decrypted.advertising_token_version, Some(TokenVersion::V4));
    assert_eq!(decrypted.identity_type, Some(IdentityType::Email));
    assert!(!decrypted.is_client_side_generated);
    let raw_uid = decrypted.uid().unwrap();

    let sharing = f.sharing();
    sharing.refresh().await.unwrap();
    let shared_view = sharing.decrypt_token_into_raw_uid(&identity.advertising_token);
    assert_eq!(shared_view.status, DecryptionStatus::Success);
    assert_eq!(shared_view.uid().as_deref(), Some(raw_uid.as_str()));

    // Identity map v2 and v3 give the same raw UID for the same email.
    let mapper = f.mapper();
    assert!(IdentityMapInput::from_emails([email, "not-an-email@"]).is_err());
    let v2 = mapper
        .generate_identity_map(&IdentityMapInput::from_emails([email]).unwrap())
        .await
        .unwrap();
    let mapped = &v2.mapped[email];
    assert_eq!(mapped.raw_uid, raw_uid);
    assert!(!mapped.bucket_id.is_empty());
    let v3 = mapper
        .generate_identity_map_v3(
            &IdentityMapV3Input::from_emails([email])
                .unwrap()
                .with_phone("+12345678901")
                .unwrap()
                .with_hashed_email("not a hash"),
        )
        .await
        .unwrap();
    assert_eq!(v3.mapped[email].current_raw_uid, raw_uid);
    assert!(v3.mapped[email].refresh_from_ms > now);
    assert!(v3.mapped.contains_key("+12345678901"));
    assert_eq!(
        v3.unmapped["not a hash"].reason,
        UnmappedIdentityReason::InvalidIdentifier
    );
    // Hashed input maps to the same raw UID.
    let hash = HashedIdentity::from_email(email).unwrap().hash;
    let by_hash = mapper
        .generate_identity_map(&IdentityMapInput::from_hashed_emails([hash.as_str()]))
        .await
        .unwrap();
    assert_eq!(by_hash.mapped[hash.as_str()].raw_uid, raw_uid);

    // Every bucket was written at bootstrap: all are reported since the year 2000.
    let buckets = mapper.get_identity_buckets(946_684_800_000).await.unwrap();
    assert_eq!(buckets.len(), support::SALT_BUCKETS);
    assert!(buckets.iter().any(|b| b.bucket_id == mapped.bucket_id));
    assert!(
        mapper
            .get_identity_buckets(now + 86_400_000)
            .await
            .unwrap()
            .is_empty()
    );

    // Refresh: a new identity for the same user.
    let refreshed = match f.publisher().refresh_token(&identity).await.unwrap() {
        TokenRefreshResponse::Success(id) => id,
        TokenRefreshResponse::OptOut => panic!("not opted out"),
    };
    assert_ne!(refreshed.advertising_token, identity.advertising_token);
    assert_ne!(
        refreshed.refresh_response_key,
        identity.refresh_response_key
    );
    let again = bidstream.decrypt_token_into_raw_uid(&refreshed.advertising_token, None);
    assert_eq!(again.uid().as_deref(), Some(raw_uid.as_str()));
    assert_eq!(again.established_ms, decrypted.established_ms);

    // Sharing: encrypt the raw UID, decrypt it back; the bidstream client can read the keys but
    // refuses the 30-day lifetime of a sharing token.
    let shared = sharing.encrypt_raw_uid_into_token(&raw_uid).unwrap();
    let back = sharing.decrypt_token_into_raw_uid(&shared);
    assert_eq!(back.status, DecryptionStatus::Success);
    assert_eq!(back.uid().as_deref(), Some(raw_uid.as_str()));
    assert_eq!(back.site_id, Some(PUBLISHER_SITE));
    assert_eq!(
        bidstream.decrypt_token_into_raw_uid(&shared, None).status,
        DecryptionStatus::InvalidTokenLifetime
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_users_get_no_tokens() {
    let f = start();
    let publisher = f.publisher();
    for input in [
        TokenGenerateInput::from_email("optout@example.com"),
        TokenGenerateInput::from_phone("+00000000000"),
        TokenGenerateInput::from_hashed_email(
            HashedIdentity::from_email("optout@example.com")
                .unwrap()
                .hash
                .as_str(),
        ),
    ] {
        assert_eq!(
            publisher.generate_token(&input).await.unwrap(),
            TokenGenerateResponse::OptOut
        );
    }
    // Generates, then every refresh answers optout.
    let identity = f
        .generate(TokenGenerateInput::from_email("refresh-optout@example.com"))
        .await;
    assert_eq!(
        publisher.refresh_token(&identity).await.unwrap(),
        TokenRefreshResponse::OptOut
    );
    let mapper = f.mapper();
    let v2 = mapper
        .generate_identity_map(&IdentityMapInput::from_emails(["optout@example.com"]).unwrap())
        .await
        .unwrap();
    assert_eq!(v2.unmapped["optout@example.com"].reason, "optout");
    let v3 = mapper
        .generate_identity_map_v3(&IdentityMapV3Input::from_emails(["optout@example.com"]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        v3.unmapped["optout@example.com"].reason,
        UnmappedIdentityReason::OptOut
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_is_honoured_everywhere() {
    let f = start();
    let email = "changed-my-mind@example.com";
    let identity = f.generate(TokenGenerateInput::from_email(email)).await;
    let mapper = f.mapper();
    let raw_uid = mapper
        .generate_identity_map(&IdentityMapInput::from_emails([email]).unwrap())
        .await
        .unwrap()
        .mapped[email]
        .raw_uid
        .clone();
    // The mapper's key may ask about opt-outs; nobody has opted out yet.
    let status = OptOutClient::new(&f.url, &f.mapper.key, &f.mapper.secret_base64()).unwrap();
    assert!(status.opted_out_since([&raw_uid]).await.unwrap().is_empty());

    let before = now_ms();
    f.optout()
        .opt_out(&TokenGenerateInput::from_email(email))
        .await
        .unwrap();
    let since = status.opted_out_since([&raw_uid]).await.unwrap();
    let at = since[&raw_uid];
    // Second precision, as the official operator answers.
    assert!(at >= before / 1000 * 1000 && at <= now_ms(), "{at}");
    assert_eq!(
        f.publisher()
            .generate_token(&TokenGenerateInput::from_email(email))
            .await
            .unwrap(),
        TokenGenerateResponse::OptOut
    );
    assert_eq!(
        f.publisher().refresh_token(&identity).await.unwrap(),
        TokenRefreshResponse::OptOut
    );
    let v2 = mapper
        .generate_identity_map(&IdentityMapInput::from_emails([email]).unwrap())
        .await
        .unwrap();
    assert_eq!(v2.unmapped[email].reason, "optout");

    // The roles are enforced, and the batch limit is checked before anything is sent.
    let err = f
        .publisher_as_optout()
        .opt_out(&TokenGenerateInput::from_email("someone@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.api_status(), Some("unauthorized"), "{err}");
    let too_many = vec![raw_uid.as_str(); 5_001];
    assert!(matches!(
        status.opted_out_since(too_many).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_errors_are_typed() {
    let f = start();
    // A key without the GENERATOR role.
    let wrong_role = PublisherClient::new(&f.url, &f.dsp.key, &f.dsp.secret_base64()).unwrap();
    let err = wrong_role
        .generate_token(&TokenGenerateInput::from_email("a@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.api_status(), Some("unauthorized"), "{err}");
    // The right key with another secret: the operator cannot open the envelope.
    let wrong_secret = PublisherClient::new(
        &f.url,
        &f.publisher.key,
        "ioG3wKxAokmp+rERx6A4kM/13qhyolUXIu14WN16Spo=",
    )
    .unwrap();
    let err = wrong_secret
        .generate_token(&TokenGenerateInput::from_email("a@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.api_status(), Some("client_error"), "{err}");
    // Invalid input never leaves the process.
    assert!(matches!(
        f.publisher()
            .generate_token(&TokenGenerateInput::from_email("nope"))
            .await,
        Err(Error::InvalidInput(_))
    ));
    // Raw input is normalised by the operator when the SDK does not hash it.
    let raw = f
        .generate(TokenGenerateInput::from_email("User@Example.com").do_not_hash())
        .await;
    let hashed = f
        .generate(TokenGenerateInput::from_email("user@example.com"))
        .await;
    let bidstream = f.bidstream();
    bidstream.refresh().await.unwrap();
    assert_eq!(
        bidstream
            .decrypt_token_into_raw_uid(&raw.advertising_token, None)
            .uid(),
        bidstream
            .decrypt_token_into_raw_uid(&hashed.advertising_token, None)
            .uid()
    );
    // A tampered refresh token is refused by the operator.
    let mut bad = hashed.clone();
    bad.refresh_token = bad.refresh_token.replace('A', "B");
    let err = f.publisher().refresh_token(&bad).await.unwrap_err();
    assert!(
        matches!(err.api_status(), Some("client_error" | "invalid_token")),
        "{err}"
    );
    // The bidstream key endpoint refuses a publisher key; the keys stay unloaded.
    let not_a_dsp =
        BidstreamClient::new(&f.url, &f.publisher.key, &f.publisher.secret_base64()).unwrap();
    assert_eq!(
        not_a_dsp.refresh().await.unwrap_err().api_status(),
        Some("unauthorized")
    );
    assert_eq!(
        not_a_dsp
            .decrypt_token_into_raw_uid(&hashed.advertising_token, None)
            .status,
        DecryptionStatus::NotInitialized
    );
    // Nobody listening.
    let nowhere = BidstreamClient::new("http://127.0.0.1:9", "k", &f.dsp.secret_base64()).unwrap();
    assert!(matches!(nowhere.refresh().await, Err(Error::Http(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_generated_tokens_are_domain_checked() {
    let f = start();
    // A browser's request to /v2/token/client-generate, sealed to the site's CSTG key.
    let server_key = decode_key_text(&f.cstg.public_key).unwrap();
    let hash = HashedIdentity::from_email("cstg-user@example.com")
        .unwrap()
        .hash;
    let payload = format!(r#"{{"email_hash":"{}"}}"#, hash.as_str());
    let (request, shared) = seal_request(
        &server_key,
        &f.cstg.subscription_id,
        now_ms(),
        None,
        payload.as_bytes(),
        &mut rand::rng(),
    )
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/v2/token/client-generate", f.url))
        .header("Origin", "https://www.example.com")
        .body(serde_json::to_string(&request).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sealed = base64_decode(response.text().await.unwrap().trim()).unwrap();
    let json = open_bare_response(&shared, &sealed).unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let identity = IdentityTokens::from_json_str(&answer["body"].to_string()).unwrap();

    let bidstream = f.bidstream();
    bidstream.refresh().await.unwrap();
    let token = &identity.advertising_token;
    let ok = bidstream.decrypt_token_into_raw_uid(token, Some("example.com"));
    assert_eq!(ok.status, DecryptionStatus::Success);
    assert!(ok.is_client_side_generated);
    assert_eq!(ok.site_id, Some(PUBLISHER_SITE));
    for other in [Some("evil.example"), Some("www.example.com"), None] {
        assert_eq!(
            bidstream.decrypt_token_into_raw_uid(token, other).status,
            DecryptionStatus::DomainNameCheckFailed,
            "{other:?}"
        );
    }
    // Sharers do not check domains.
    let sharing = f.sharing();
    sharing.refresh().await.unwrap();
    let shared_view = sharing.decrypt_token_into_raw_uid(token);
    assert_eq!(shared_view.status, DecryptionStatus::Success);
    assert_eq!(shared_view.uid(), ok.uid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refresher_picks_up_a_new_key() {
    let f = start();
    let bidstream = f.bidstream();
    bidstream.refresh().await.unwrap();

    // New keys for every keyset, active at once: once the operator has synced (within a
    // second), it encrypts with the publisher's new key.
    f.cli(&["keys", "rotate", "--activation-lead", "0"]);
    let identity = f
        .generate_with_new_key(&bidstream, "new-key@example.com")
        .await;
    let next_id = identity.1;
    let identity = identity.0;
    let before = bidstream.decrypt_token_into_raw_uid(&identity.advertising_token, None);
    assert_eq!(before.status, DecryptionStatus::NotAuthorizedForMasterKey);
    assert!(bidstream.keys().unwrap().key(next_id).is_none());

    let refresher = bidstream.start_auto_refresh(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = bidstream.decrypt_token_into_raw_uid(&identity.advertising_token, None);
        if r.is_success() {
            break;
        }
        assert_eq!(r.status, DecryptionStatus::NotAuthorizedForMasterKey);
        assert!(
            Instant::now() < deadline,
            "the refresher never loaded the new key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refresher.successes() >= 1);
    assert_eq!(refresher.failures(), 0);
    assert_eq!(refresher.consecutive_failures(), 0);
    assert!(refresher.last_success_ms().is_some());
    assert!(refresher.last_error().is_none() && refresher.last_failure_ms().is_none());
    assert!(bidstream.keys().unwrap().key(next_id).is_some());

    // The DSP's key is disabled: refreshes fail, are counted, and the keys in use stay.
    f.cli(&["client", "disable", "dsp"]);
    let failing = bidstream.start_auto_refresh(Duration::from_secs(1));
    drop(refresher);
    let deadline = Instant::now() + Duration::from_secs(10);
    while failing.failures() == 0 {
        assert!(Instant::now() < deadline, "no failure recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failing.last_error().unwrap().contains("unauthorized"));
    assert!(failing.consecutive_failures() >= 1);
    assert!(failing.last_failure_ms().is_some());
    assert!(
        bidstream
            .decrypt_token_into_raw_uid(&identity.advertising_token, None)
            .is_success()
    );
    failing.stop();
}

/// After two key rotations a bidder and a sharer that fetch their keys afresh still decrypt
/// tokens minted before them (the old keys stay published until those tokens expire), and the
/// old identity still refreshes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_before_key_rotations_decrypt_with_keys_fetched_after_them() {
    let f = start();
    let identity = f
        .generate(TokenGenerateInput::from_email("rotated@example.com"))
        .await;
    let sharing = f.sharing();
    sharing.refresh().await.unwrap();
    let raw_uid = sharing
        .decrypt_token_into_raw_uid(&identity.advertising_token)
        .uid()
        .unwrap();
    let shared = sharing.encrypt_raw_uid_into_token(&raw_uid).unwrap();
    let old_site_key = site_key_id(&f.store, &identity.advertising_token);

    // The operator mints with a rotation's key once it has synced it. Each rotation is waited
    // for, so that the keys fetched below are all the keys the operator will mint with.
    let mut previous_key = old_site_key;
    let mut fresh = None;
    for _ in 0..2 {
        f.cli(&["keys", "rotate", "--activation-lead", "0"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        fresh = Some(loop {
            let fresh = f
                .generate(TokenGenerateInput::from_email("rotated@example.com"))
                .await;
            let key = site_key_id(&f.store, &fresh.advertising_token);
            if key != previous_key {
                previous_key = key;
                break fresh;
            }
            assert!(Instant::now() < deadline, "the rotation never took effect");
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
    }
    let fresh = fresh.unwrap();

    let bidstream = f.bidstream();
    bidstream.refresh().await.unwrap();
    let sharing = f.sharing();
    sharing.refresh().await.unwrap();
    for token in [&identity.advertising_token, &fresh.advertising_token] {
        let r = bidstream.decrypt_token_into_raw_uid(token, None);
        assert_eq!(r.status, DecryptionStatus::Success);
        assert_eq!(r.uid().as_deref(), Some(raw_uid.as_str()));
    }
    let r = sharing.decrypt_token_into_raw_uid(&shared);
    assert_eq!(r.status, DecryptionStatus::Success);
    assert_eq!(r.uid().as_deref(), Some(raw_uid.as_str()));

    let refreshed = match f.publisher().refresh_token(&identity).await.unwrap() {
        TokenRefreshResponse::Success(id) => id,
        TokenRefreshResponse::OptOut => panic!("not opted out"),
    };
    assert_ne!(
        site_key_id(&f.store, &refreshed.advertising_token),
        old_site_key
    );
    let r = bidstream.decrypt_token_into_raw_uid(&refreshed.advertising_token, None);
    assert_eq!(r.uid().as_deref(), Some(raw_uid.as_str()));
}
