//! Memory under floods of stalled requests: bodies are held within the request-buffer
//! budget (`REQUEST_BUFFER_BUDGET_MB`), heads within `HEAD_LIMIT` per connection, and the
//! memory comes back once the clients close. The resident size is measured on the release
//! binary (VmRSS of `/proc/<pid>/status`), at 1,000 connections with a 32 MiB budget (1,500 for heads); the
//! same measurement at the template's 2,000 connections is `scripts/flood-rss.sh`
//! (docs/benchmarks.md, "Memory after a flood").

mod support;

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use s3_auth_api::api::body::BODY_LIMIT;
use s3_auth_api::api::budget::{HEAD_LIMIT, PER_CONNECTION_BYTES};
use s3_auth_api::malloc::TRIM_ABOVE_FLOOR;
use support::raw_http::{Outcome, exchange, get_request, wait_closed};
use support::{Options, TestApp};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;
/// Connections of the body flood (the template allows 2,000; this keeps the test short).
const FLOOD: usize = 1000;
/// Connections of the head flood: enough for them to hold well over [`RETURNED`].
const HEAD_FLOOD: usize = 1500;
/// `REQUEST_BUFFER_BUDGET_MB` of the flooded server: the bodies it holds are well over
/// [`RETURNED`], a small part of the 250 MiB the flood sends.
const BUDGET_MIB: u64 = 32;
/// Allowance for what the bound does not itemise: runtime threads' stacks touched,
/// allocator bookkeeping, sampling between allocations.
const MARGIN: u64 = 16 * MIB;

fn release_bin() -> String {
    let Ok(bin) = std::env::var("S3_AUTH_API_RELEASE_BIN") else {
        panic!(
            "S3_AUTH_API_RELEASE_BIN is not set: run scripts/test.sh, which builds the release \
             binary with scripts/build-release.sh (the Dockerfile's build command) and sets it"
        );
    };
    bin
}

/// Resident bytes of process `pid` (VmRSS).
fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// The release binary serving with a 32 MiB budget and the template's `MAX_CONNECTIONS`,
/// killed on drop.
struct Release {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Release {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = support::free_port();
        let metagraph =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/metagraph.sample.json");
        let bin = release_bin();
        let child =
            support::serve_command(&bin, port, &metagraph, "http://127.0.0.1:9", dir.path())
                .env("MAX_CONNECTIONS", "2000")
                .env("REQUEST_BUFFER_BUDGET_MB", BUDGET_MIB.to_string())
                .env("LOG_LEVEL", "warn")
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "no listener");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn rss(&self) -> u64 {
        vm_rss(self.child.id())
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's resident size every 10 ms until stopped; the largest seen.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    fn start(pid: u32) -> Self {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(vm_rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Opens `n` connections that each send `payload` (as much as the server takes within
/// 5 s) and stall; the connections still open.
async fn flood(port: u16, payload: Arc<Vec<u8>>, n: usize) -> Vec<TcpStream> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let payload = Arc::clone(&payload);
            tokio::spawn(async move {
                let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(&payload)).await;
                Some(s)
            })
        })
        .collect();
    let mut open = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            open.push(s);
        }
    }
    open
}

/// How close to idle the resident size must come within 5 s of a flood's end: freed
/// memory is trimmed while the process is more than `TRIM_ABOVE_FLOOR` above its
/// post-trim floor (at most idle), plus 4 MiB for what the runtime keeps.
const RETURNED: u64 = TRIM_ABOVE_FLOOR + 4 * MIB;

/// What a flood did to the server's resident size.
#[derive(Debug, Clone, Copy)]
struct Flood {
    idle: u64,
    peak: u64,
    /// Just before the clients closed.
    held: u64,
    /// The first reading within 5 s of the close that is within [`RETURNED`] of idle, or
    /// the last one.
    after: u64,
    took: Duration,
}

/// Floods a fresh release server with `payload`, then closes the clients.
async fn flood_and_close(payload: Vec<u8>, n: usize) -> Flood {
    support::raise_nofile_limit(n as u64 + 500);
    let server = Release::start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.rss();
    let sampler = PeakSampler::start(server.child.id());
    let open = flood(server.port, Arc::new(payload), n).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let peak = sampler.finish();
    let held = server.rss();
    drop(open);
    let closed = Instant::now();
    let mut after = server.rss();
    while after > idle + RETURNED && closed.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = server.rss();
    }
    Flood {
        idle,
        peak,
        held,
        after,
        took: closed.elapsed(),
    }
}

/// Checks `flood` against `bound` for the peak and [`RETURNED`] after the close.
fn check(what: &str, flood: Flood, bound: u64) {
    let Flood {
        idle,
        peak,
        held,
        after,
        took,
    } = flood;
    eprintln!(
        "{what}: idle {}, peak {} (bound {}), {} at the close, {} {took:?} after it",
        mib(idle),
        mib(peak),
        mib(bound),
        mib(held),
        mib(after)
    );
    assert!(peak <= bound, "peak {} above {}", mib(peak), mib(bound));
    assert!(
        held > idle + RETURNED,
        "the flood held only {} over idle: nothing to see come back",
        mib(held.saturating_sub(idle))
    );
    assert!(
        after <= idle + RETURNED,
        "{} 5 s after the close, idle was {}",
        mib(after),
        mib(idle)
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_flood_stays_within_the_budget_and_memory_returns() {
    // 262,000 of 262,144 declared bytes: without the budget, 1,000 such bodies are 250 MiB.
    let mut payload = format!(
        "POST /get-folder-access HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {BODY_LIMIT}\r\n\r\n{{"
    )
    .into_bytes();
    payload.resize(payload.len() + 262_000 - 1, b' ');
    let flood = flood_and_close(payload, FLOOD).await;
    let bound = flood.idle + BUDGET_MIB * MIB + (FLOOD * PER_CONNECTION_BYTES) as u64 + MARGIN;
    check("body flood", flood, bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_flood_stays_within_the_head_limit_and_memory_returns() {
    // Just under the limit, so that every connection keeps its head (beyond it, 431).
    let mut payload = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    payload.resize(HEAD_LIMIT - 512, b'a');
    let flood = flood_and_close(payload, HEAD_FLOOD).await;
    let bound = flood.idle + (HEAD_FLOOD * PER_CONNECTION_BYTES) as u64 + MARGIN;
    check("head flood", flood, bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_the_limit_gets_431_and_one_under_it_is_served() {
    let app = TestApp::start().await;
    let port: u16 = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut under = get_request(port, "/healthz");
    let pad = format!(
        "X-Pad: {}\r\n\r\n",
        "a".repeat(HEAD_LIMIT - under.len() - 200)
    );
    under.truncate(under.len() - 2);
    under.extend_from_slice(pad.as_bytes());
    let mut conn = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let answer = exchange(&mut conn, &under).await;
    assert!(
        matches!(answer, Outcome::Complete { status: 200, .. }),
        "a {} byte head: {answer:?}",
        under.len()
    );
    let mut over = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    over.resize(HEAD_LIMIT + 1024, b'a');
    let mut conn = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    conn.write_all(&over).await.expect("write");
    let (closed, seen) = wait_closed(&mut conn, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&seen);
    assert!(closed.is_some(), "the connection stayed open");
    assert!(text.starts_with("HTTP/1.1 431"), "answered {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_answers_503_with_retry_after_and_recovers() {
    let app = TestApp::start_with(Options {
        env: vec![("REQUEST_BUFFER_BUDGET_MB", "1".into())],
        ..Options::default()
    })
    .await;
    let port: u16 = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let budget = Arc::clone(&app.app_state.buffer_budget);
    // Each stalled body holds a 256 KiB buffer once past 128 KiB: six do not fit 1 MiB.
    let mut payload = format!(
        "POST /get-folder-access HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {BODY_LIMIT}\r\n\r\n{{"
    )
    .into_bytes();
    payload.resize(payload.len() + 200_000, b' ');
    let mut conns = Vec::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(&payload).await.expect("write");
        conns.push(s);
    }
    let mut refused = 0;
    let mut held = Vec::new();
    for mut s in conns {
        let (closed, seen) = wait_closed(&mut s, Duration::from_millis(1500)).await;
        if closed.is_none() {
            held.push(s);
            continue;
        }
        let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 503"), "answered {text:?}");
        assert!(text.contains("\r\nretry-after: 1\r\n"), "{text:?}");
        assert!(text.contains(r#"{"detail":"server is receiving too many request bodies"#));
        refused += 1;
    }
    eprintln!(
        "{refused} refused, {} held; {} of {} bytes charged",
        held.len(),
        budget.used(),
        budget.limit()
    );
    // How many are held depends on how the reads interleave (6 x 128 KiB fit, 6 x 256 KiB
    // do not), but some must be refused and the charge never exceeds the budget.
    assert!(refused >= 2 && !held.is_empty(), "{refused} refused");
    assert!(budget.used() <= budget.limit());
    drop(held);
    let started = Instant::now();
    while budget.used() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the charges were not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = support::miner_body(&app.keys.miner, &app.keys.miner_cold, support::now());
    let r = app
        .client
        .post(format!("{}/get-folder-access", app.base))
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200, "once the bodies are gone");
}
