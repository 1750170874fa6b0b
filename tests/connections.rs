//! Connections on the real serving loop (`server::run`, in process): the header timer
//! follows the bytes of a request even when they arrived with the previous one, and the
//! connection slots cannot be hoarded by idle keep-alive connections.

mod support;

use std::time::{Duration, Instant};

use support::raw_http::{Outcome, exchange, get_request, post_request, wait_closed};
use support::{Options, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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
    let get = get_request(port(&app), "/healthz");
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

/// A connection from 127.0.0.2, another client than the test's other connections.
async fn connect_from_elsewhere(app: &TestApp) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind 127.0.0.2");
    socket
        .connect(addr(app).parse().expect("address"))
        .await
        .expect("connect from 127.0.0.2")
}

/// Sends `request` on a new connection from 127.0.0.2; the answer, which must come
/// within 2 s, and the connection.
async fn answered_within_2s(app: &TestApp, request: &[u8]) -> (Outcome, TcpStream) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(2), async {
        let mut conn = connect_from_elsewhere(app).await;
        (exchange(&mut conn, request).await, conn)
    })
    .await
    .expect("answered within 2 s");
    eprintln!(
        "{} answered in {:?}",
        String::from_utf8_lossy(request.split(|b| *b == b'\r').next().unwrap_or_default()),
        started.elapsed()
    );
    outcome
}

fn port(app: &TestApp) -> u16 {
    app.base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_at_the_cap_make_room_for_other_clients() {
    const CAP: usize = 300;
    support::raise_nofile_limit(4 * CAP as u64 + 500);
    let app = TestApp::start_with(Options {
        env: vec![("MAX_CONNECTIONS", CAP.to_string())],
        ..Options::default()
    })
    .await;
    let get = get_request(port(&app), "/healthz");
    // Every slot held by an idle keep-alive connection that was served once.
    let mut idle = Vec::with_capacity(CAP);
    for i in 0..CAP {
        let mut conn = TcpStream::connect(addr(&app)).await.expect("connect");
        assert_eq!(status(&exchange(&mut conn, &get).await), 200);
        idle.push(conn);
        if i < 2 {
            // The first two are idle the longest by a clear margin.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Another client is served: a signed request and the ALB's health check.
    let signed = post_request(
        port(&app),
        "/get-folder-access",
        &app.miner_request(),
        false,
    );
    // Both connections stay open, so each needed a slot of its own.
    let (answer, _signed_conn) = answered_within_2s(&app, &signed).await;
    assert_eq!(status(&answer), 200, "{answer:?}");
    let health = get_request(port(&app), "/healthcheck");
    let (answer, _health_conn) = answered_within_2s(&app, &health).await;
    assert_eq!(status(&answer), 200, "{answer:?}");
    // The room came from the two connections idle the longest; the others still serve.
    for (i, conn) in idle.iter_mut().take(2).enumerate() {
        let (closed, seen) = wait_closed(conn, Duration::from_secs(3)).await;
        assert!(closed.is_some(), "idle connection {i} still open");
        assert!(
            seen.is_empty(),
            "no stray bytes on a closed idle connection"
        );
    }
    let newest = idle.last_mut().expect("connections");
    assert_eq!(status(&exchange(newest, &get).await), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_answer_when_every_slot_is_mid_request() {
    const CAP: usize = 300;
    support::raise_nofile_limit(4 * CAP as u64 + 500);
    let app = TestApp::start_with(Options {
        env: vec![
            ("MAX_CONNECTIONS", CAP.to_string()),
            ("BODY_READ_TIMEOUT", "30".into()),
        ],
        ..Options::default()
    })
    .await;
    // Every slot held by a request whose body is still coming.
    let head = "POST /get-folder-access HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{";
    let mut slow = Vec::with_capacity(CAP);
    for _ in 0..CAP {
        let mut conn = TcpStream::connect(addr(&app)).await.expect("connect");
        conn.write_all(head.as_bytes()).await.expect("write");
        slow.push(conn);
    }
    // Health probes from new connections are answered, each on a reserve slot that then
    // closes.
    for path in ["/healthz", "/readyz", "/healthcheck"] {
        let (answer, _) = answered_within_2s(&app, &get_request(port(&app), path)).await;
        match answer {
            Outcome::Complete { status, close, .. } => {
                assert_eq!(status, 200, "{path}");
                assert!(close, "{path}: a reserve slot serves one request");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // Anything else on a reserve slot: 503 JSON with Retry-After and Connection: close.
    let signed = post_request(
        port(&app),
        "/get-folder-access",
        &app.miner_request(),
        false,
    );
    let mut conn = connect_from_elsewhere(&app).await;
    conn.write_all(&signed).await.expect("write");
    let (closed, seen) = wait_closed(&mut conn, Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(closed.is_some(), "closed after its answer: {text}");
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("\r\nretry-after: ") && text.contains("\r\nconnection: close"));
    assert!(text.contains("\r\nx-request-id: "), "{text}");
    assert!(
        text.contains("{\"detail\":\"too many open connections; retry shortly\"}"),
        "{text}"
    );
    // Once the slow requests go, signed requests are served again (a client that
    // follows Retry-After while their connections close gets there too).
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (answer, _) = answered_within_2s(&app, &signed).await;
        if status(&answer) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
