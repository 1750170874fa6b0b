//! Operator-facing HTTP behaviour: liveness and readiness, request ids, CORS, load
//! shedding, request timeouts, and draining in-flight requests on SIGTERM.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Options, TestApp, free_port, validator_body};

fn folders_body(app: &TestApp) -> Value {
    let k = &app.keys;
    validator_body(
        &k.validator,
        |ts| format!("s3:validator:folders:{}:{ts}", k.validator.ss58),
        json!({}),
    )
}

#[tokio::test]
async fn liveness_readiness_and_request_ids() {
    let app = TestApp::start().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"status": "ok"})
    );

    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"status": "ok", "checks": {"metagraph": "ok", "credentials": "ok", "quota": "ok", "shutdown": "no"}})
    );

    // A request id sent is echoed; otherwise one is generated.
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "req-42")
        .send()
        .await
        .expect("send");
    assert_eq!(res.headers()["x-request-id"], "req-42");
    let res = app.get("/commitment-formats").await;
    let generated = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!generated.is_empty());
    let other = app.get("/commitment-formats").await.headers()["x-request-id"].clone();
    assert_ne!(other.to_str().expect("ascii"), generated);
}

#[tokio::test]
async fn readiness_follows_the_quota_policy() {
    for (policy, status, check) in [
        ("fallback", 200, "fallback"),
        ("reject", 503, "unavailable"),
    ] {
        let app = TestApp::start_with(Options {
            env: vec![
                ("REDIS_URL", format!("redis://127.0.0.1:{}", free_port())),
                ("QUOTA_ON_REDIS_ERROR", policy.into()),
            ],
            ..Options::default()
        })
        .await;
        // `pending` (503) while the first connection attempt is under way.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (code, body) = loop {
            let res = app.get("/readyz").await;
            let code = res.status();
            let body: Value = res.json().await.expect("json");
            if body["checks"]["quota"] != "pending" {
                break (code, body);
            }
            assert_eq!(code, 503, "{policy}: pending is not ready");
            assert!(Instant::now() < deadline, "{policy}: still pending");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(code, status, "{policy}");
        assert_eq!(body["checks"]["quota"], check);
        if status == 503 {
            assert_eq!(body["status"], "degraded");
        }
    }
}

#[tokio::test]
async fn cors_allows_any_origin_by_default_and_a_list_when_configured() {
    let app = TestApp::start().await;
    let res = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/get-folder-access", app.base),
        )
        .header("origin", "https://miner.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(res.headers()["access-control-allow-origin"], "*");

    let app = TestApp::start_with(Options {
        env: vec![("CORS_ORIGINS", "https://ops.example".into())],
        ..Options::default()
    })
    .await;
    let allowed = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("origin", "https://ops.example")
        .send()
        .await
        .expect("get");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://ops.example"
    );
    let other = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("get");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_503_and_probes_still_answer() {
    let (s3, _hole) = support::black_hole().await;
    let app = TestApp::start_with(Options {
        env: vec![
            ("S3_ENDPOINT_URL", format!("http://{s3}")),
            ("S3_OPERATION_TIMEOUT", "3".into()),
            ("MAX_CONCURRENT_REQUESTS", "1".into()),
        ],
        ..Options::default()
    })
    .await;
    let slow = {
        let client = app.client.clone();
        let url = format!("{}/get-folder-presigned-urls", app.base);
        let body = folders_body(&app);
        tokio::spawn(async move {
            client.post(url).json(&body).send().await.map(|r| {
                let close = r.headers().get("connection").map(|v| v.as_bytes().to_vec());
                (r.status().as_u16(), close)
            })
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = app.post("/get-folder-access", &app.miner_request()).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Server busy; retry shortly"})
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(slow.await.expect("task").expect("response").0, 504);
    // Capacity is back once the slow request is done.
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_request_timeout_gets_504() {
    let (s3, _hole) = support::black_hole().await;
    let app = TestApp::start_with(Options {
        env: vec![
            ("S3_ENDPOINT_URL", format!("http://{s3}")),
            ("S3_OPERATION_TIMEOUT", "30".into()),
            ("REQUEST_TIMEOUT", "1".into()),
        ],
        ..Options::default()
    })
    .await;
    let started = Instant::now();
    let res = app
        .post("/get-folder-presigned-urls", &folders_body(&app))
        .await;
    assert_eq!(res.status(), 504);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Request timed out"})
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request() {
    let (s3, _hole) = support::black_hole().await;
    let keys = support::Keys::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let metagraph = dir.path().join("metagraph.json");
    support::write_json(&metagraph, &keys.metagraph());
    let port = free_port();
    let bin = env!("CARGO_BIN_EXE_s3-auth-api");
    let mut child =
        support::serve_command(bin, port, &metagraph, &format!("http://{s3}"), dir.path())
            .env("S3_OPERATION_TIMEOUT", "2")
            .env("SHUTDOWN_DELAY_SECONDS", "1")
            .env("LOG_LEVEL", "warn")
            .spawn()
            .expect("serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = validator_body(
        &keys.validator,
        |ts| format!("s3:validator:folders:{}:{ts}", keys.validator.ss58),
        json!({}),
    );
    let in_flight = {
        let client = client.clone();
        let url = format!("{base}/get-folder-presigned-urls");
        tokio::spawn(async move {
            client.post(url).json(&body).send().await.map(|r| {
                let close = r.headers().get("connection").map(|v| v.as_bytes().to_vec());
                (r.status().as_u16(), close)
            })
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    // From the signal on, readiness says so (while the listener still accepts for
    // SHUTDOWN_DELAY_SECONDS), so orchestrators that read it stop routing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz during the delay");
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));
    assert_eq!(ready.headers()["connection"], "close");
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["checks"]["shutdown"], "draining");
    // The in-flight request still gets its answer (504 from the hung S3), not a reset,
    // and it tells the client not to reuse the connection.
    let (status, close) = in_flight.await.expect("task").expect("answered");
    assert_eq!(status, 504);
    assert_eq!(close.as_deref(), Some(&b"close"[..]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // New connections are refused once it has stopped.
    assert!(client.get(format!("{base}/healthz")).send().await.is_err());
}
