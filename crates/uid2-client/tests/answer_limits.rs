//! How much of an answer the SDK reads: a key endpoint that answers more than 16 MiB is refused
//! before its body is read, while the same answer from the buckets endpoint (whose honest
//! answers reach about 95 MB) is read in full. The server is a real socket on this machine.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uid2_client::{BidstreamClient, Error, IdentityMapClient};

/// The length of the answer the server announces and sends: over the key limit, under the
/// buckets limit.
const ANSWER_BYTES: usize = 17 << 20;

/// Serves every connection the same HTTP 200 of `ANSWER_BYTES` bytes (not base64, so an SDK
/// that reads it all then finds it malformed).
async fn oversized_operator() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                // Reads the request head and body (the SDK sends both at once; a small one).
                let mut request = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {ANSWER_BYTES}\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'!'; 1 << 20];
                for _ in 0..ANSWER_BYTES >> 20 {
                    if socket.write_all(&chunk).await.is_err() {
                        return; // the SDK stopped reading
                    }
                }
            });
        }
    });
    url
}

const SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[tokio::test]
async fn a_key_answer_over_its_limit_is_refused_and_a_buckets_answer_that_size_is_read() {
    let url = oversized_operator().await;

    let bidstream = BidstreamClient::new(&url, "key", SECRET).unwrap();
    match bidstream.refresh().await {
        Err(Error::ResponseTooLarge(limit)) => assert_eq!(limit, 16 << 20),
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
    assert!(bidstream.keys().is_none());

    let mapper = IdentityMapClient::new(&url, "key", SECRET).unwrap();
    match mapper.get_identity_buckets(0).await {
        // Read whole, then found not to be an envelope.
        Err(Error::MalformedResponse(_)) => {}
        other => panic!("expected a malformed answer, got {other:?}"),
    }
}
