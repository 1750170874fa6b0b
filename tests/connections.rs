//! Connections on the real serving loop (`server::run`, in process): the header timer
//! follows the bytes of a request even when they arrived with the previous one, and the
//! connection slots cannot be hoarded by idle keep-alive connections.

mod support;

use std::time::{Duration, Instant};

use support::raw_http::{Outcome, exchange, get_request, wait_closed};
use support::{Options, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An app with `HEADER_READ_TIMEOUT=1` and `IDLE_TIMEOUT=30`.
async fn short_header_timer() -> TestApp {
    TestApp::start_with(Options {
        env: vec![
            ("HEADER_READ_TIMEOUT", "1".into()),
            ("IDLE_TIMEOUT", "30".into()),
        ],
        ..Options::default()
    })
    .await
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

fn status(outcome: &Outcome) -> u16 {
    match outcome {
        Outcome::Complete { status, .. } => *status,
        other => panic!("no complete response: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_head_sent_with_the_previous_request_is_closed_at_the_header_timeout() {
    let app = short_header_timer().await;
    let mut conn = TcpStream::connect(addr(&app)).await.expect("connect");
    // One write: a whole request, then most of a second head (no blank line), all of it
    // within one read of the server.
    let mut write = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    write.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    write.extend(std::iter::repeat_n(b'a', 8000));
    let sent = Instant::now();
    assert_eq!(status(&exchange(&mut conn, &write).await), 200);
    let (closed, _) = wait_closed(&mut conn, Duration::from_secs(10)).await;
    let closed = closed.map(|_| sent.elapsed());
    eprintln!("partial head behind a request: connection closed {closed:?} after the write");
    let closed = closed.expect("closed within 10 s (IDLE_TIMEOUT is 30 s)");
    assert!(
        closed <= Duration::from_secs(2),
        "closed {closed:?} after the write, expected HEADER_READ_TIMEOUT (1 s) + 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_and_pipelined_requests_are_not_under_the_header_timer() {
    let app = short_header_timer().await;
    let port = app.base.rsplit(':').next().and_then(|p| p.parse().ok());
    let get = get_request(port.expect("port"), "/healthz");
    // Two whole requests in one write: both answered.
    let mut pipelined = TcpStream::connect(addr(&app)).await.expect("connect");
    pipelined
        .write_all(&[get.as_slice(), get.as_slice()].concat())
        .await
        .expect("write");
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        while seen.windows(13).filter(|w| w == b"HTTP/1.1 200 ").count() < 2 {
            let mut chunk = [0u8; 4096];
            match pipelined.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        answered.is_ok() && seen.windows(13).filter(|w| w == b"HTTP/1.1 200 ").count() == 2,
        "two pipelined requests: {}",
        String::from_utf8_lossy(&seen)
    );
    // A body holding blank lines (Content-Length) is no head.
    let mut posted = TcpStream::connect(addr(&app)).await.expect("connect");
    let body = "{\"x\": \"\r\n\r\n\"}";
    let post = format!(
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(status(&exchange(&mut posted, post.as_bytes()).await), 405);
    // Idle with nothing buffered for three header timeouts: still served.
    let mut idle = TcpStream::connect(addr(&app)).await.expect("connect");
    assert_eq!(status(&exchange(&mut idle, &get).await), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, conn) in [
        ("idle", &mut idle),
        ("pipelined", &mut pipelined),
        ("posted", &mut posted),
    ] {
        let again = exchange(conn, &get).await;
        assert_eq!(status(&again), 200, "{name} after 3 s idle: {again:?}");
    }
}
