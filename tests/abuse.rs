//! Replay protection and the failed-authentication throttle per client address.

mod support;

use serde_json::{Value, json};
use support::{Options, TestApp};

const ENDPOINT: &str = "/get-folder-access";

async fn replayed_signature_is_refused(redis: bool) {
    let app = TestApp::start_with(Options {
        redis,
        env: vec![("DAILY_LIMIT_PER_MINER", "10".into())],
        ..Options::default()
    })
    .await;
    let body = app.miner_request();
    let first = app.post(ENDPOINT, &body).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-remaining"], "9");

    let again = app.post(ENDPOINT, &body).await;
    assert_eq!(again.status(), 401);
    assert_eq!(
        again.json::<Value>().await.expect("json"),
        json!({"detail": "Signature already used"})
    );
    // Another spelling of the same signature bytes is the same signature.
    let mut shouty = body.clone();
    let sig = body["signature"].as_str().expect("signature");
    shouty["signature"] = json!(format!("0x{}", sig.to_uppercase()));
    assert_eq!(app.post(ENDPOINT, &shouty).await.status(), 401);

    // The replays were not counted: a fresh signature still has 8 left after it.
    let fresh = app.post(ENDPOINT, &app.miner_request()).await;
    assert_eq!(fresh.status(), 200);
    assert_eq!(fresh.headers()["x-ratelimit-remaining"], "8");
}

#[tokio::test]
async fn a_signature_is_accepted_once_in_process() {
    replayed_signature_is_refused(false).await;
}

#[tokio::test]
async fn a_signature_is_accepted_once_in_redis() {
    replayed_signature_is_refused(true).await;
}

#[tokio::test]
async fn replay_protection_can_be_turned_off() {
    let app = TestApp::start_with(Options {
        env: vec![("REPLAY_PROTECTION", "false".into())],
        ..Options::default()
    })
    .await;
    let body = app.miner_request();
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 200);
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 200);
}

fn forged(app: &TestApp) -> Value {
    let mut body = app.miner_request();
    body["signature"] = json!("00".repeat(64));
    body
}

async fn post_from(app: &TestApp, forwarded_for: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{}{ENDPOINT}", app.base))
        .header("x-forwarded-for", forwarded_for)
        .json(body)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_throttled_before_crypto() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("AUTH_FAILURE_BURST", "3".into()),
            ("AUTH_FAILURES_PER_MINUTE", "1".into()),
            ("TRUST_PROXY_HOPS", "1".into()),
            ("DAILY_LIMIT_PER_MINER", "1000".into()),
        ],
        ..Options::default()
    })
    .await;
    // Successes cost nothing: many in a row from one address all pass.
    for _ in 0..10 {
        let res = post_from(&app, "198.51.100.1", &app.miner_request()).await;
        assert_eq!(res.status(), 200);
    }
    for _ in 0..3 {
        let res = post_from(&app, "198.51.100.2", &forged(&app)).await;
        assert_eq!(res.status(), 401);
    }
    let res = post_from(&app, "198.51.100.2", &forged(&app)).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    let detail = res.json::<Value>().await.expect("json")["detail"].clone();
    assert!(
        detail
            .as_str()
            .is_some_and(|d| d.contains("failed authentication"))
    );
    // Entries the client adds left of the proxy's own are not believed.
    let res = post_from(&app, "203.0.113.50, 198.51.100.2", &app.miner_request()).await;
    assert_eq!(res.status(), 429);
    // Other addresses are unaffected.
    let res = post_from(&app, "198.51.100.3", &app.miner_request()).await;
    assert_eq!(res.status(), 200);

    let mut metrics = String::new();
    app.app_state.metrics.render(&mut metrics);
    assert!(metrics.contains("s3_auth_auth_failures_total{reason=\"throttled\"} 2"));
}
