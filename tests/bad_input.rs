//! Malformed requests get a clear 4xx JSON answer, never a 500.

mod support;

use serde_json::{Value, json};
use support::TestApp;

const ENDPOINT: &str = "/get-folder-access";

async fn detail_of(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(
        res.headers()["content-type"].to_str().expect("ascii"),
        "application/json"
    );
    let body: Value = res.json().await.expect("json body");
    body["detail"].clone()
}

#[tokio::test]
async fn malformed_bodies_get_fastapi_shaped_422() {
    let app = TestApp::start().await;

    let detail = detail_of(app.post_raw(ENDPOINT, "{not json").await, 422).await;
    assert_eq!(detail[0]["type"], "json_invalid");
    assert_eq!(detail[0]["loc"][0], "body");

    let detail = detail_of(app.post_raw(ENDPOINT, "").await, 422).await;
    assert_eq!(detail[0]["type"], "json_invalid");

    let detail = detail_of(app.post_raw(ENDPOINT, "[1,2]").await, 422).await;
    assert_eq!(detail[0]["type"], "model_attributes_type");

    // A missing field names the field, as FastAPI does.
    let mut body = app.miner_request();
    body.as_object_mut().expect("object").remove("signature");
    let detail = detail_of(app.post(ENDPOINT, &body).await, 422).await;
    assert_eq!(
        detail,
        json!([{"type": "missing", "loc": ["body", "signature"], "msg": "Field required"}])
    );

    // Wrong types.
    let mut body = app.miner_request();
    body["hotkey"] = json!(12345);
    body["timestamp"] = json!("soon");
    let detail = detail_of(app.post(ENDPOINT, &body).await, 422).await;
    let kinds: Vec<&str> = detail
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, vec!["string_type", "int_parsing"]);
}

#[tokio::test]
async fn odd_but_valid_json_is_not_a_500() {
    let app = TestApp::start().await;
    let cases = [
        json!({"coldkey": "", "hotkey": "", "signature": ""}),
        json!({"coldkey": "x", "hotkey": "x".repeat(10_000), "signature": "zz"}),
        json!({"coldkey": "x", "hotkey": app.keys.miner.ss58, "signature": "00", "timestamp": 1e300}),
        json!({"coldkey": "x", "hotkey": app.keys.miner.ss58, "signature": "00", "timestamp": -9_223_372_036_854_775_807i64}),
        json!({"coldkey": "x", "hotkey": app.keys.miner.ss58, "signature": "0x", "expiry": 18_446_744_073_709_551_615u64}),
        json!({"coldkey": "é\u{0000}", "hotkey": app.keys.miner.ss58, "signature": "ab".repeat(64)}),
    ];
    for body in cases {
        let res = app.post(ENDPOINT, &body).await;
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "{body}: {status}");
        let parsed: Value = res.json().await.expect("json");
        assert!(parsed.get("detail").is_some(), "{parsed}");
    }
}

#[tokio::test]
async fn a_one_mebibyte_body_is_refused_with_413() {
    let app = TestApp::start().await;
    let big = format!("{{\"coldkey\":\"{}\"}}", "a".repeat(1024 * 1024));
    let detail = detail_of(app.post_raw(ENDPOINT, big).await, 413).await;
    assert!(detail.as_str().expect("detail").contains("too large"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::start().await;
    let detail = detail_of(app.get("/nope").await, 404).await;
    assert_eq!(detail, "Not Found");
    let detail = detail_of(app.get(ENDPOINT).await, 405).await;
    assert_eq!(detail, "Method Not Allowed");
}
