//! `/metrics`: off without `METRICS_TOKEN`, bearer-protected with it, and counting what
//! operators watch.

mod support;

use serde_json::json;
use support::{Options, TestApp, now, validator_body};

#[tokio::test]
async fn metrics_are_off_without_a_token() {
    let app = TestApp::start().await;
    assert_eq!(app.get("/metrics").await.status(), 404);
}

#[tokio::test]
async fn metrics_need_the_bearer_token_and_count_requests_and_failures() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("METRICS_TOKEN", "s3cr3t-token".into()),
            ("DAILY_LIMIT_PER_MINER", "1".into()),
        ],
        ..Options::default()
    })
    .await;
    let url = format!("{}/metrics", app.base);
    assert_eq!(
        app.client.get(&url).send().await.expect("get").status(),
        401
    );
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 401);

    // One success, one quota rejection, one bad signature, one stale timestamp, one non-validator.
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        429
    );
    let mut forged = app.miner_request();
    forged["signature"] = json!("00".repeat(64));
    assert_eq!(app.post("/get-folder-access", &forged).await.status(), 401);
    let stale = support::miner_body(&app.keys.miner, &app.keys.miner_cold, now() - 1000);
    assert_eq!(app.post("/get-folder-access", &stale).await.status(), 400);
    let body = validator_body(
        &app.keys.miner,
        |ts| format!("s3:validator:access:{ts}"),
        json!({}),
    );
    assert_eq!(app.post("/get-validator-access", &body).await.status(), 401);
    assert_eq!(app.get("/no-such-page").await.status(), 404);

    let res = app
        .client
        .get(&url)
        .bearer_auth("s3cr3t-token")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = res.text().await.expect("text");
    for line in [
        "s3_auth_requests_total{route=\"/get-folder-access\",status=\"200\"} 1",
        "s3_auth_requests_total{route=\"/get-folder-access\",status=\"429\"} 1",
        "s3_auth_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "s3_auth_request_duration_seconds_count{route=\"/get-folder-access\"} 4",
        "s3_auth_auth_failures_total{reason=\"bad_signature\"} 1",
        "s3_auth_auth_failures_total{reason=\"timestamp\"} 1",
        "s3_auth_auth_failures_total{reason=\"not_validator\"} 1",
        "s3_auth_quota_rejections_total{kind=\"hotkey\"} 1",
        "s3_auth_metagraph_block 4000000",
        "s3_auth_metagraph_hotkeys 4",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("no-such-page"));
}
