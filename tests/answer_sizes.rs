//! Every answer stays within the size bound `docs/api.md` gives for it (with the tests'
//! long-term credentials; a session token adds about 1.3 KB a URL).

mod support;

use serde_json::json;
use support::{Options, TestApp, validator_body};

async fn size(res: reqwest::Response) -> (u16, usize) {
    let status = res.status().as_u16();
    (status, res.bytes().await.expect("body").len())
}

#[tokio::test]
async fn every_answer_stays_within_its_documented_bound() {
    let app = TestApp::start_with(Options {
        env: vec![("METRICS_TOKEN", "size-token".into())],
        ..Options::default()
    })
    .await;
    let k = &app.keys;
    let v = &k.validator;
    let miner = &k.miner.ss58;
    let mut seen = Vec::new();
    let mut check = |name: &str, (status, bytes): (u16, usize), bound: usize| {
        seen.push(format!("{name}: {bytes} B"));
        assert!(status < 500, "{name}: {status}");
        assert!(
            bytes <= bound,
            "{name}: {bytes} bytes, documented at most {bound}"
        );
    };
    check(
        "/get-folder-access",
        size(app.post("/get-folder-access", &app.miner_request()).await).await,
        3000,
    );
    let body = validator_body(v, |ts| format!("s3:validator:access:{ts}"), json!({}));
    check(
        "/get-validator-access",
        size(app.post("/get-validator-access", &body).await).await,
        2000,
    );
    let body = validator_body(
        v,
        |ts| format!("s3:validator:miner:{miner}:{ts}"),
        json!({"miner_hotkey": miner}),
    );
    check(
        "/get-miner-specific-access",
        size(app.post("/get-miner-specific-access", &body).await).await,
        1000,
    );
    // As many keys as fit the 256 KiB body: 1000 of about 250 bytes.
    let stem = format!("data/hotkey={miner}/job_id=epoch/");
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("{stem}{i:04}{}.parquet", "x".repeat(250 - stem.len() - 12)))
        .collect();
    let body = validator_body(
        v,
        |ts| format!("s3:validator:files:{miner}:{}:{ts}", v.ss58),
        json!({"miner_hotkey": miner, "file_keys": keys, "expiry_hours": 24}),
    );
    check(
        "/get-file-presigned-urls (1000 keys)",
        size(app.post("/get-file-presigned-urls", &body).await).await,
        900_000,
    );
    for path in [
        "/healthcheck",
        "/readyz",
        "/rate-limits",
        "/structure-info",
        "/commitment-formats",
    ] {
        check(path, size(app.get(path).await).await, 4000);
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth("size-token")
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    check("/metrics (after every route)", size(metrics).await, 20_000);
    check(
        "/openapi.json",
        size(app.get("/openapi.json").await).await,
        60_000,
    );
    let bad = json!({"hotkey": 1, "coldkey": [], "signature": {}, "timestamp": "x"});
    check(
        "a validation error",
        size(app.post("/get-folder-access", &bad).await).await,
        4000,
    );
    println!("{}", seen.join("\n"));
}
