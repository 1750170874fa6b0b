//! Without signing credentials the instance cannot serve: /healthcheck answers 503 so the
//! load balancer replaces it, and requests get 503 rather than unusable URLs.
//! (Its own test binary: it changes the process environment.)

mod support;

use serde_json::Value;
use support::{Options, TestApp};

#[tokio::test]
async fn no_credentials_means_503() {
    // SAFETY: this binary runs this single test, before any other thread reads the
    // environment; the runtime of `#[tokio::test]` is single-threaded.
    unsafe {
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            std::env::remove_var(var);
        }
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/aws-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        );
    }
    let app = TestApp::start_with(Options {
        env: vec![
            ("AWS_ACCESS_KEY_ID", String::new()),
            ("AWS_SECRET_ACCESS_KEY", String::new()),
        ],
        ..Options::default()
    })
    .await;
    let res = app.get("/healthcheck").await;
    assert_eq!(res.status(), 503);
    let h: Value = res.json().await.expect("json");
    assert_eq!(h["credentials_ok"], false);
    assert_eq!(h["status"], "degraded");

    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let r: Value = res.json().await.expect("json");
    assert_eq!(r["checks"]["credentials"], "missing");

    let res = app.post("/get-folder-access", &app.miner_request()).await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("credentials")
    );
}
