//! Mistakes a new user makes are caught where they are made and say what went wrong: a base URL
//! without its scheme is refused when the client is built (not at the first request, with
//! reqwest's bare "builder error"), and a request to a port nobody listens on says the
//! connection was refused.

use tokio::net::TcpListener;
use uid2_client::{BidstreamClient, Error, PublisherClient};

const SECRET: &str = "ioG3wKxAokmp+rERx6A4kM/13qhyolUXIu14WN16Spo=";

#[test]
fn a_base_url_must_be_an_http_url() {
    for bad in [
        "127.0.0.1:8080",
        "prod.uidapi.com",
        "ftp://prod.uidapi.com",
        "",
        "http://",
    ] {
        match BidstreamClient::new(bad, "key", SECRET) {
            Err(Error::InvalidInput(message)) => {
                assert!(
                    message.contains("http:// or https://"),
                    "{bad:?}: {message}"
                )
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    for good in [
        "https://prod.uidapi.com",
        "https://prod.uidapi.com/",
        "http://127.0.0.1:8080",
        " http://localhost:8080/ ",
    ] {
        assert!(
            PublisherClient::new(good, "key", SECRET).is_ok(),
            "{good:?}"
        );
    }
}

#[tokio::test]
async fn a_refused_connection_says_so() {
    // A port that was free a moment ago: nothing listens on it.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = BidstreamClient::new(&format!("http://127.0.0.1:{port}"), "key", SECRET).unwrap();
    let e = client.refresh().await.unwrap_err();
    assert!(matches!(e, Error::Http(_)), "{e:?}");
    let text = e.to_string().to_ascii_lowercase();
    assert!(text.contains("refused"), "{text}");
}
