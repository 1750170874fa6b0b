//! A short run of the load generator against the real binary (with Redis), so the
//! benchmark tooling keeps working: every request answered 200, none lost.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{RedisServer, free_port};

#[test]
fn load_generator_drives_the_service_without_errors() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let metagraph = dir.path().join("metagraph.json");
    let loadgen = env!("CARGO_BIN_EXE_s3-auth-loadgen");
    let status = Command::new(loadgen)
        .args(["--keys", "16", "--validators", "2", "metagraph", "--out"])
        .arg(&metagraph)
        .status()
        .expect("loadgen metagraph");
    assert!(status.success());

    let port = free_port();
    let bin = env!("CARGO_BIN_EXE_s3-auth-api");
    let mut server =
        support::serve_command(bin, port, &metagraph, "http://127.0.0.1:9", dir.path())
            .env("REDIS_URL", redis.url())
            .env("DAILY_LIMIT_PER_MINER", "1000000")
            .spawn()
            .expect("server starts");
    // The metagraph loaded and Redis answering, so every request is counted in Redis (the
    // count compared at the end).
    support::wait_ready_and(port, Duration::from_secs(20), r#""quota":"ok""#);

    let out = Command::new(loadgen)
        .args(["--keys", "16", "--validators", "2", "run", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--endpoint",
            "folder-access",
            "-c",
            "4",
            "-d",
            "2",
            "--requests",
            "20000",
        ])
        .arg("--server-pid")
        .arg(server.id().to_string())
        .arg("--json")
        .output()
        .expect("loadgen run");
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert!(
        report["requests"].as_u64().is_some_and(|n| n > 20),
        "{report}"
    );
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(
        report["statuses"].as_object().map(|s| s.len()),
        Some(1),
        "{report}"
    );
    assert!(
        report["server_rss_after_kib"]
            .as_u64()
            .is_some_and(|k| k > 0),
        "{report}"
    );
    // Redis counted exactly what the generator saw answered.
    let key = s3_auth_api::quota::global_key("", chrono::Utc::now());
    let reply = redis.command(&format!("GET {key}"));
    let counted: u64 = reply
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(Some(counted), report["requests"].as_u64(), "{report}");
}
