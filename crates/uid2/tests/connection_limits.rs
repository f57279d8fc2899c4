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
    let (_dir, operator) = operator(&[
        "--header-read-timeout",
        "1",
        "--request-timeout",
        "1",
        "--idle-timeout",
        "2",
    ]);

    // A head that never ends: the connection is closed.
    let mut head = connect(&operator);
    head.write_all(b"GET /ops/healthcheck HTTP/1.1\r\nHost: uid2\r\n")
        .unwrap();
    let answer = read_until_closed(&mut head);
    assert!(!answer.contains("200 OK"), "{answer}");

    // A body that never arrives: a retryable 503 with the status JSON, CORS included.
    let mut body = connect(&operator);
    body.write_all(
        b"POST /v2/token/refresh HTTP/1.1\r\nHost: uid2\r\nOrigin: https://pub.example\r\n\
          Content-Length: 100\r\nConnection: close\r\n\r\nAB",
    )
    .unwrap();
    let answer = read_until_closed(&mut body);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 2"), "{answer}");
    assert!(
        answer.contains("access-control-allow-origin: https://pub.example"),
        "{answer}"
    );
    assert!(answer.ends_with(r#"{"status":"unknown","message":"request timed out"}"#));

    // A kept-alive connection is answered, then closed once it idles.
    let mut idle = connect(&operator);
    idle.write_all(HEALTHCHECK).unwrap();
    let answer = read_until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

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
