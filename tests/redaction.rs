//! URLs from configuration keep their secrets: a password and an API key planted in
//! `SUBTENSOR_URL` and `REDIS_URL` appear in no log line, health answer, metric or error
//! message of the real binary.

mod support;

use std::time::{Duration, Instant};

use support::free_port;

const PASSWORD: &str = "hunter2-planted-password";
const API_KEY: &str = "planted-api-key-0123456789";
const REDIS_PASSWORD: &str = "planted-redis-secret";

fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, API_KEY, REDIS_PASSWORD] {
        assert!(
            !text.contains(secret),
            "{what} holds a planted secret: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_appear_nowhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("output.log");
    let out = std::fs::File::create(&log).expect("log file");
    // Nothing listens on these ports: every sync and every Redis attempt fails, and each
    // failure is logged with its error.
    let chain = format!(
        "ws://rpcuser:{PASSWORD}@127.0.0.1:{}/ws?apikey={API_KEY}",
        free_port()
    );
    let redis = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", free_port());
    let port = free_port();
    let mut child = support::serve_command(
        env!("CARGO_BIN_EXE_s3-auth-api"),
        port,
        dir.path(),
        "http://127.0.0.1:1",
        dir.path(),
    )
    .env_remove("METAGRAPH_FILE")
    .env("SUBTENSOR_URL", &chain)
    .env("METAGRAPH_SYNC_TIMEOUT", "1")
    .env("METAGRAPH_SYNC_INTERVAL", "1")
    .env("REDIS_URL", &redis)
    .env("METRICS_TOKEN", "metrics-token")
    .env("LOG_LEVEL", "debug")
    .stdout(out.try_clone().expect("log file"))
    .stderr(out)
    .spawn()
    .expect("serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Wait for a few failed syncs (their errors are in the health answer and the log).
    let health = loop {
        if let Ok(r) = http.get(format!("{base}/healthcheck")).send().await {
            let body = r.text().await.expect("body");
            if body.contains("\"consecutive_failures\":3") {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "syncs did not fail three times");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_clean("/healthcheck", &health);
    for path in ["/readyz", "/rate-limits"] {
        let text = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("answer");
        assert_clean(path, &text.text().await.expect("body"));
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth("metrics-token")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert_clean("/metrics", &metrics);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("metagraph"),
        "the log has the sync failures: {text}"
    );
    assert_clean("the log", &text);

    // A configuration error that echoes the value keeps the secrets out too.
    let bad = format!("http://rpcuser:{PASSWORD}@127.0.0.1/ws?apikey={API_KEY}");
    let output = support::serve_command(
        env!("CARGO_BIN_EXE_s3-auth-api"),
        free_port(),
        dir.path(),
        "http://127.0.0.1:1",
        dir.path(),
    )
    .env("SUBTENSOR_URL", &bad)
    .stderr(std::process::Stdio::piped())
    .output()
    .expect("serve runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SUBTENSOR_URL"), "{stderr}");
    assert_clean("the configuration error", &stderr);
}
