//! A client cannot hold the operator: requests that stall are cut off (an unfinished head, a
//! body that never arrives, a connection that idles), and connections past the cap wait to be
//! accepted instead of using up the process's file descriptors.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{OperatorProcess, init};

/// Longest a test waits for the operator to act on a limit of one or two seconds.
const PATIENCE: Duration = Duration::from_secs(30);

fn operator(extra: &[&str]) -> (tempfile::TempDir, OperatorProcess) {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    init(&store);
    let operator = OperatorProcess::start(&store, extra);
    (dir, operator)
}

fn connect(operator: &OperatorProcess) -> TcpStream {
    let addr = operator.url.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Everything the operator sends until it closes the connection; fails the test if it keeps
/// the connection open past [`PATIENCE`].
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        // Closed with a reset rather than a FIN: closed all the same.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the operator kept the connection open ({e}); it sent {:?}",
            String::from_utf8_lossy(&got)
        ),
    }
    String::from_utf8_lossy(&got).into_owned()
}

const HEALTHCHECK: &[u8] = b"GET /ops/healthcheck HTTP/1.1\r\nHost: uid2\r\n\r\n";

#[test]
fn stalled_requests_are_cut_off() {
    // The idle limit is longer than the test's patience: each cut-off below is another limit's.
    let (_dir, operator) = operator(&[
        "--header-read-timeout",
        "1",
        "--request-timeout",
        "1",
        "--idle-timeout",
        "60",
    ]);

    // A head that never ends: the connection is closed.
    let mut head = connect(&operator);
    head.write_all(b"GET /ops/healthcheck HTTP/1.1\r\nHost: uid2\r\n")
        .unwrap();
    let answer = read_until_closed(&mut head);
    assert!(!answer.contains("200 OK"), "{answer}");
    // However it begins: blank lines first (which hyper skips), or a method that looks like
    // the start of HTTP/2.
    for opening in [
        &b"\r\n\r\nGET /ops/healthcheck HTTP/1.1\r\nHost: uid2\r\n"[..],
        b"PRI /ops/healthcheck HTTP/1.1\r\nHost: uid2\r\n",
    ] {
        let mut head = connect(&operator);
        head.write_all(opening).unwrap();
        let answer = read_until_closed(&mut head);
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    // A body that never arrives: the sender's doing, a 408 with the status JSON, CORS included.
    let mut body = connect(&operator);
    body.write_all(
        b"POST /v2/token/refresh HTTP/1.1\r\nHost: uid2\r\nOrigin: https://pub.example\r\n\
          Content-Length: 100\r\nConnection: close\r\n\r\nAB",
    )
    .unwrap();
    let answer = read_until_closed(&mut body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(!answer.contains("retry-after"), "{answer}");
    assert!(
        answer.contains("access-control-allow-origin: https://pub.example"),
        "{answer}"
    );
    assert!(
        answer.ends_with(
            r#"{"status":"client_error","message":"Request body not received in time"}"#
        )
    );

    // None of it got in the way of anyone else.
    let mut fresh = connect(&operator);
    fresh.write_all(HEALTHCHECK).unwrap();
    let mut buf = [0u8; 64];
    let n = fresh.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
}

#[test]
fn connections_past_the_cap_wait_their_turn() {
    let (_dir, operator) = operator(&["--max-connections", "2", "--idle-timeout", "600"]);
    let first = connect(&operator);
    let _second = connect(&operator);

    // The kernel takes the third connection, the operator does not: no answer while two
    // others are open.
    let mut third = connect(&operator);
    third.write_all(HEALTHCHECK).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    let waited = third.read(&mut buf);
    assert!(
        matches!(&waited, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "answered past the cap: {waited:?}"
    );

    // One closes: the third is accepted and answered.
    drop(first);
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let n = third.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200 OK"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// A kept-alive connection waits for its next request past the head limit (a load balancer
/// reuses it up to its own idle limit), and is closed once it has idled for the idle limit.
#[test]
fn a_kept_alive_connection_outlives_the_head_limit_and_closes_once_idle() {
    let (_dir, operator) = operator(&["--header-read-timeout", "1", "--idle-timeout", "4"]);
    let mut kept = connect(&operator);
    let mut buf = [0u8; 4096];
    for _ in 0..2 {
        kept.write_all(HEALTHCHECK).unwrap();
        let n = kept.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200 OK"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        // Twice the head limit between requests.
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(read_until_closed(&mut kept), "");
}

/// An answer still on its way to a slow reader keeps its connection open however long it
/// takes, as long as bytes move: the idle limit is for connections where nothing does. (A
/// bidder fetching every salt bucket over a slow link must not get a truncated answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_the_whole_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use uid2_proto::cipher::GcmKey;
    use uid2_proto::encoding::{base64_decode, base64_encode};
    use uid2_proto::envelope::{open_response, seal_request};

    const IDLE_SECS: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    // Enough buckets for an answer of about 10 MB, more than the socket buffers hold.
    let out = support::uid2_command()
        .args(["--store", &store, "--salt-buckets", "131072", "init"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    support::cli(
        &store,
        &["site", "add", "--id", "2001", "--name", "Advertiser"],
    );
    let mapper = support::add_client(&store, "mapper", 2001, "mapper");
    let operator = OperatorProcess::start(&store, &["--idle-timeout", &IDLE_SECS.to_string()]);

    let key = GcmKey::new(&mapper.secret);
    let nonce = [7u8; 8];
    let sealed = seal_request(
        &key,
        uid2_operator::now_ms(),
        nonce,
        br#"{"since_timestamp":"2000-01-01T00:00:00"}"#,
        &mut rand::rng(),
    );
    let body = base64_encode(&sealed);
    let request = format!(
        "POST /v2/identity/buckets HTTP/1.1\r\nHost: uid2\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        mapper.key,
        body.len()
    );
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window: the operator's writes wait on this reader.
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let addr = operator.url.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();

    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 512 << 10];
    loop {
        // Half a megabyte at a time, then a pause well inside the idle limit.
        let mut got = 0;
        while got < chunk.len() {
            match stream.read(&mut chunk[got..]).await.unwrap() {
                0 => break,
                n => got += n,
            }
        }
        received.extend_from_slice(&chunk[..got]);
        if got < chunk.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let took = started.elapsed();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        received.len() - head_end,
        length,
        "truncated after {took:?}"
    );
    assert!(
        took > Duration::from_secs(2 * IDLE_SECS),
        "the transfer took {took:?}: too quick to show anything"
    );
    let opened =
        open_response(&key, &base64_decode(&received[head_end..]).unwrap(), nonce).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&opened.payload).unwrap();
    assert_eq!(json["body"].as_array().unwrap().len(), 131_072);
}
