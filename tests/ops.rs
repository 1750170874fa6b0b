//! /healthcheck and /commitment-formats, and how the service degrades when Redis fails.

mod support;

use serde_json::Value;
use support::{Options, TestApp, free_port};

#[tokio::test]
async fn healthcheck_reports_the_reference_fields() {
    let app = TestApp::start_with(Options {
        redis: true,
        ..Options::default()
    })
    .await;
    // `s3_ok` and `s3_latency_ms` are null until the first HeadBucket probe has answered,
    // which on a busy machine may be after the first request.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let h = loop {
        let res = app.get("/healthcheck").await;
        assert_eq!(res.status(), 200);
        let h: Value = res.json().await.expect("json");
        if h["s3_ok"] != Value::Null || std::time::Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["bucket"], support::BUCKET);
    assert_eq!(h["region"], "us-east-1");
    assert_eq!(
        h["folder_structure"],
        "data/hotkey={hotkey_id}/job_id={job_id}/"
    );
    assert_eq!(h["s3_ok"], true, "{h}");
    assert!(h["s3_latency_ms"].is_number());
    assert_eq!(h["redis_ok"], true);
    assert_eq!(h["credentials_ok"], true);
    assert_eq!(h["credentials"]["source"], "environment");
    assert!(h["credentials"]["expires_at"].is_null());
    assert!(h["timestamp"].is_f64());
    assert_eq!(h["metagraph_syncer"]["enabled"], true);
    assert_eq!(h["metagraph_syncer"]["netuid"], 46);
    assert_eq!(h["metagraph_syncer"]["hotkeys_count"], 4);
    assert_eq!(h["metagraph_syncer"]["block"], 4_000_000);
    for k in [
        "uptime_hours",
        "total_requests",
        "total_errors",
        "error_rate",
        "requests_per_hour",
    ] {
        assert!(h["stats"][k].is_number(), "stats.{k} in {h}");
    }
}

#[tokio::test]
async fn s3_down_is_degraded_but_still_200() {
    let app = TestApp::start_with(Options {
        env: vec![(
            "S3_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )],
        ..Options::default()
    })
    .await;
    // null until the first HeadBucket probe answers, then false.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let h = loop {
        let res = app.get("/healthcheck").await;
        assert_eq!(res.status(), 200);
        let h: Value = res.json().await.expect("json");
        if h["s3_ok"] != Value::Null {
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no S3 probe result: {h}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["s3_ok"], false);
    // Presigning needs no S3 round trip: miners are still served.
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn redis_down_falls_back_to_in_process_counters() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("REDIS_URL", format!("redis://127.0.0.1:{}", free_port())),
            ("DAILY_LIMIT_PER_MINER", "2".into()),
        ],
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            app.post("/get-folder-access", &app.miner_request())
                .await
                .status(),
            200
        );
    }
    // The fallback still enforces the limit.
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        429
    );
    let res = app.get("/healthcheck").await;
    assert_eq!(res.status(), 200);
    let h: Value = res.json().await.expect("json");
    assert_eq!(h["redis_ok"], false);
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["quota"]["backend"], "memory");
    assert!(h["quota"]["fallback_activations"].as_u64().expect("count") >= 3);
}

#[tokio::test]
async fn redis_down_with_reject_policy_answers_503() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("REDIS_URL", format!("redis://127.0.0.1:{}", free_port())),
            ("QUOTA_ON_REDIS_ERROR", "reject".into()),
        ],
        ..Options::default()
    })
    .await;
    let res = app.post("/get-folder-access", &app.miner_request()).await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.expect("json");
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn redis_restart_is_survived() {
    let mut app = TestApp::start_with(Options {
        redis: true,
        ..Options::default()
    })
    .await;
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
    // Kill Redis: requests keep succeeding through the fallback.
    let port = app.redis.as_ref().expect("redis").port;
    drop(app.redis.take());
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
    // Bring it back on the same port: the app reconnects by itself.
    let restarted = support::RedisServer::start_on(port);
    support::wait_for_redis(&app).await;
    let res = app.post("/get-folder-access", &app.miner_request()).await;
    assert_eq!(res.status(), 200);
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let reply = restarted.command(&format!("GET {}:{day}", app.keys.miner.ss58));
    assert!(
        reply.contains("\r\n1"),
        "counted in the new redis: {reply:?}"
    );
    app.redis = Some(restarted);
}

#[tokio::test]
async fn commitment_formats_lists_the_strings_to_sign() {
    let app = TestApp::start().await;
    let res = app.get("/commitment-formats").await;
    assert_eq!(res.status(), 200);
    let f: Value = res.json().await.expect("json");
    assert_eq!(
        f["miner_format"],
        "s3:data:access:{coldkey}:{hotkey}:{timestamp}"
    );
    assert_eq!(f["validator_format"], "s3:validator:access:{timestamp}");
    assert_eq!(
        f["miner_specific_format"],
        "s3:validator:miner:{miner_hotkey}:{timestamp}"
    );
    assert!(f["folder_structure"]["example_paths"].is_array());
    assert_eq!(
        f["tao_v2"]["message"],
        "{sha256(body bytes as sent) lowercase hex}.{X-Tao-Nonce}.{X-Tao-Timestamp}"
    );
    assert_eq!(f["tao_v2"]["headers"]["X-Tao-Version"], "2");
}
