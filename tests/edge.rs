//! The edge of the real binary, as hostile or unlucky clients meet it: half-sent headers,
//! idle keep-alive connections, slow bodies, running out of file descriptors, a chain
//! node that never answers, and the health probes' first answers.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::raw_http::{Outcome, exchange, get_request, post_request, wait_closed};
use support::{Keys, RedisServer, S3Server, free_port, miner_body, now};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_s3-auth-api");

/// A `serve` process on a free port with the test metagraph, killed on drop.
struct Serve {
    child: Child,
    port: u16,
    base: String,
    keys: Keys,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `serve` (under `wrapper`, e.g. `prlimit`, when given) with `env` added.
    fn spawn(s3: &str, env: &[(&str, String)], wrapper: &[&str]) -> Self {
        let keys = Keys::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let metagraph = dir.path().join("metagraph.json");
        support::write_json(&metagraph, &keys.metagraph());
        let port = free_port();
        // The service logs to stdout; both go to one file.
        let stderr = dir.path().join("output.log");
        let out = std::fs::File::create(&stderr).expect("log file");
        let mut command = if wrapper.is_empty() {
            Command::new(BIN)
        } else {
            let mut c = Command::new(wrapper[0]);
            c.args(&wrapper[1..]).arg(BIN);
            c
        };
        command
            .arg("serve")
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("S3_BUCKET", support::BUCKET)
            .env("S3_REGION", "us-east-1")
            .env("S3_ENDPOINT_URL", s3)
            .env("AWS_ACCESS_KEY_ID", support::S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", support::S3_SECRET_KEY)
            .env("METAGRAPH_FILE", &metagraph)
            .env("DAILY_LIMIT_PER_MINER", "1000000")
            .env("LOG_LEVEL", "warn");
        for (k, v) in env {
            if v.is_empty() {
                command.env_remove(k);
            } else {
                command.env(k, v);
            }
        }
        let child = command
            .current_dir(dir.path())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("serve starts");
        Self {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            keys,
            stderr,
            _dir: dir,
        }
    }

    /// Waits until `/healthz` answers; the time that took.
    async fn up(&self) -> Duration {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await {
                assert_eq!(r.status(), 200);
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve did not answer /healthz; stderr: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `/readyz` answers 200 (see `support::wait_ready`).
    async fn ready(&self) {
        self.up().await;
        let port = self.port;
        tokio::task::spawn_blocking(move || support::wait_ready(port, Duration::from_secs(20)))
            .await
            .expect("serve became ready");
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn miner_request(&self) -> Vec<u8> {
        let body = miner_body(&self.keys.miner, &self.keys.miner_cold, now());
        post_request(self.port, "/get-folder-access", &body, false)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(outcome: &Outcome) -> u16 {
    match outcome {
        Outcome::Complete { status, .. } => *status,
        other => panic!("no complete response: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_closed_and_idle_keep_alive_is_not() {
    let s3 = S3Server::start().await;
    let serve = Serve::spawn(&s3.endpoint, &[("HEADER_READ_TIMEOUT", "2".into())], &[]);
    serve.up().await;
    // Half of a request's headers, on a new connection and after a first request.
    let mut fresh = TcpStream::connect(serve.addr()).await.expect("connect");
    let mut reused = TcpStream::connect(serve.addr()).await.expect("connect");
    assert_eq!(
        status(&exchange(&mut reused, &get_request(serve.port, "/healthz")).await),
        200
    );
    let half = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ";
    fresh.write_all(half).await.expect("write");
    reused.write_all(half).await.expect("write");
    let (a, b) = tokio::join!(
        wait_closed(&mut fresh, Duration::from_secs(6)),
        wait_closed(&mut reused, Duration::from_secs(6))
    );
    for (name, (closed, _)) in [("fresh", a), ("reused", b)] {
        let closed = closed.unwrap_or_else(|| panic!("{name}: still open after 6 s"));
        eprintln!("{name} connection with half-sent headers closed after {closed:?}");
        assert!(
            closed >= Duration::from_millis(1500) && closed <= Duration::from_secs(3),
            "{name}: closed after {closed:?}, expected HEADER_READ_TIMEOUT (2 s) to 3 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_idle_longer_than_the_header_timeout_still_serves() {
    let s3 = S3Server::start().await;
    let serve = Serve::spawn(&s3.endpoint, &[("HEADER_READ_TIMEOUT", "3".into())], &[]);
    serve.ready().await;
    let mut conn = TcpStream::connect(serve.addr()).await.expect("connect");
    let first = exchange(&mut conn, &serve.miner_request()).await;
    assert_eq!(status(&first), 200, "first request: {first:?}");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let again = exchange(&mut conn, &serve.miner_request()).await;
    assert_eq!(status(&again), 200, "after 20 s idle: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout() {
    let s3 = S3Server::start().await;
    let idle = Duration::from_secs(8);
    let serve = Serve::spawn(&s3.endpoint, &[("IDLE_TIMEOUT", "8".into())], &[]);
    serve.up().await;
    let mut short = TcpStream::connect(serve.addr()).await.expect("connect");
    let mut long = TcpStream::connect(serve.addr()).await.expect("connect");
    for c in [&mut short, &mut long] {
        assert_eq!(
            status(&exchange(c, &get_request(serve.port, "/healthz")).await),
            200
        );
    }
    let (closed, short_answer) = tokio::join!(
        wait_closed(&mut long, idle + Duration::from_secs(5)),
        async {
            // Idle for IDLE_TIMEOUT - 5 s: still served.
            tokio::time::sleep(idle - Duration::from_secs(5)).await;
            exchange(&mut short, &get_request(serve.port, "/healthz")).await
        }
    );
    assert_eq!(status(&short_answer), 200);
    let closed = closed
        .0
        .expect("a connection idle for IDLE_TIMEOUT + 5 s was closed by the server");
    eprintln!("idle connection closed by the server after {closed:?} (IDLE_TIMEOUT 8 s)");
    assert!(closed >= idle - Duration::from_millis(200) && closed <= idle + Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_do_not_starve_signed_requests() {
    const SLOW: usize = 600;
    support::raise_nofile_limit(4 * SLOW as u64 + 500);
    let s3 = S3Server::start().await;
    let serve = Serve::spawn(&s3.endpoint, &[("BODY_READ_TIMEOUT", "4".into())], &[]);
    serve.ready().await;
    let head = "POST /get-validator-access HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{";
    let mut slow = Vec::with_capacity(SLOW);
    let started = Instant::now();
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(serve.addr()).await.expect("connect");
        s.write_all(head.as_bytes()).await.expect("write");
        slow.push((s, Instant::now()));
    }
    eprintln!("{SLOW} slow bodies open after {:?}", started.elapsed());
    // More slow bodies than MAX_CONCURRENT_REQUESTS (512): a signed request is still served.
    let t = Instant::now();
    let mut conn = TcpStream::connect(serve.addr()).await.expect("connect");
    let answer = tokio::time::timeout(
        Duration::from_secs(3),
        exchange(&mut conn, &serve.miner_request()),
    )
    .await
    .expect("signed request answered within 3 s");
    assert_eq!(status(&answer), 200, "{answer:?}");
    eprintln!(
        "signed request during the attack answered in {:?}",
        t.elapsed()
    );
    // Each slow body is answered 408 (JSON) and closed within BODY_READ_TIMEOUT + 1 s.
    let waits = slow.into_iter().map(|(mut s, sent)| async move {
        let (closed, seen) = wait_closed(&mut s, Duration::from_secs(8)).await;
        (sent.elapsed(), closed.is_some(), seen)
    });
    let results = join_all(waits).await;
    let mut worst = Duration::ZERO;
    for (took, closed, seen) in &results {
        let text = String::from_utf8_lossy(seen);
        assert!(*closed, "a slow body's connection stayed open");
        assert!(
            text.starts_with("HTTP/1.1 408") && text.contains("\"detail\""),
            "slow body answered {text:?}"
        );
        assert!(text.to_ascii_lowercase().contains("connection: close"));
        worst = worst.max(*took);
    }
    eprintln!("{SLOW} slow bodies answered 408 and closed; the last {worst:?} after its headers");
    assert!(worst <= Duration::from_secs(5), "slowest close {worst:?}");
}

/// Waits for every future (the test crate has no `futures` dependency).
async fn join_all<F: std::future::Future + Send + 'static>(
    items: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = items.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_end_the_process() {
    let s3 = S3Server::start().await;
    let mut serve = Serve::spawn(&s3.endpoint, &[], &["prlimit", "--nofile=256:256", "--"]);
    serve.up().await;
    let mut conns = Vec::new();
    for _ in 0..300 {
        conns.push(
            TcpStream::connect(serve.addr())
                .await
                .expect("connect (backlog)"),
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        serve.child.try_wait().expect("wait").is_none(),
        "serve exited with 300 connections under a 256-descriptor limit: {}",
        serve.log()
    );
    drop(conns);
    // Once they close it serves normally.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let mut c = TcpStream::connect(serve.addr()).await.expect("connect");
        let a = exchange(&mut c, &serve.miner_request()).await;
        if matches!(a, Outcome::Complete { status: 200, .. }) || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status(&answer), 200, "{answer:?}");
    let log = serve.log();
    let warnings = log.matches("accept failed").count();
    eprintln!("accept errors logged {warnings} times over about 3 s");
    assert!(warnings >= 1, "the accept errors were logged: {log}");
    assert!(
        warnings <= 8,
        "accept errors are logged at most once a second: {warnings}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_chain_node_does_not_keep_the_listener_down() {
    let s3 = S3Server::start().await;
    let (chain, _hole) = support::black_hole().await;
    let serve = Serve::spawn(
        &s3.endpoint,
        &[
            ("METAGRAPH_FILE", String::new()),
            ("SUBTENSOR_URL", format!("ws://{chain}")),
            ("METAGRAPH_SYNC_TIMEOUT", "30".into()),
        ],
        &[],
    );
    let up = serve.up().await;
    eprintln!("/healthz answered {up:?} after start with a hung chain node");
    assert!(up < Duration::from_secs(1), "/healthz took {up:?}");
    let client = reqwest::Client::new();
    for path in ["/healthcheck", "/readyz"] {
        let r = client
            .get(format!("{}{path}", serve.base))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 503, "{path}");
        assert!(r.headers().contains_key("retry-after"), "{path}");
        let body: Value = r.json().await.expect("json");
        let missing = if path == "/readyz" {
            body["checks"]["metagraph"].clone()
        } else {
            body["missing"].clone()
        };
        assert!(
            missing.to_string().contains("metagraph") || missing == "missing",
            "{path}: {body}"
        );
    }
    let r = client
        .post(format!("{}/get-folder-access", serve.base))
        .json(&miner_body(
            &serve.keys.miner,
            &serve.keys.miner_cold,
            now(),
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 503);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    assert_eq!(
        r.json::<Value>().await.expect("json")["detail"],
        "Metagraph not yet synced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_never_report_false_right_after_start() {
    let s3 = S3Server::start().await;
    let redis = RedisServer::start();
    let serve = Serve::spawn(&s3.endpoint, &[("REDIS_URL", redis.url())], &[]);
    serve.up().await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (mut answers, mut both_true) = (0, None);
    while started.elapsed() < Duration::from_secs(3) {
        let body: Value = client
            .get(format!("{}/healthcheck", serve.base))
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        answers += 1;
        for field in ["s3_ok", "redis_ok"] {
            assert_ne!(
                body[field],
                Value::Bool(false),
                "{field} after {:?}: {body}",
                started.elapsed()
            );
        }
        if both_true.is_none() && body["s3_ok"] == true && body["redis_ok"] == true {
            both_true = Some(started.elapsed());
        }
    }
    let both_true = both_true.expect("S3 and Redis reported up within 3 s");
    eprintln!("{answers} /healthcheck answers; S3 and Redis both up {both_true:?} after the first");
}
