//! A Tao v2 signature covers the body, not the route: a header-signed body is read
//! strictly against its route's model (unknown fields are 422), and on the routes whose
//! bodies could otherwise match another route's it names that route in `route`. No valid
//! header-signed body of one granting route is accepted at another. Body-signed requests
//! stay as lax as FastAPI's.

mod support;

use serde_json::{Value, json};
use support::tao::{post_signed, request, sign};
use support::{TestApp, TestKey};

/// Who may use a granting route: its miner or its validator.
fn signer<'a>(app: &'a TestApp, path: &str) -> &'a TestKey {
    match path {
        "/get-folder-access" | "/get-file-upload-url" => &app.keys.miner,
        _ => &app.keys.validator,
    }
}

/// A header-signed body each granting route accepts, as real clients send it.
fn valid_bodies(app: &TestApp) -> Vec<(&'static str, Vec<u8>)> {
    let k = &app.keys;
    let miner_key = format!("data/hotkey={}/job_id=j/a.bin", k.miner.ss58);
    [
        (
            "/get-folder-access",
            json!({"coldkey": k.miner_cold.ss58, "route": "/get-folder-access"}),
        ),
        (
            "/get-validator-access",
            json!({"route": "/get-validator-access"}),
        ),
        (
            "/get-miner-specific-access",
            json!({"miner_hotkey": k.miner.ss58, "route": "/get-miner-specific-access"}),
        ),
        (
            "/get-folder-presigned-urls",
            json!({"route": "/get-folder-presigned-urls"}),
        ),
        (
            "/get-file-upload-url",
            json!({"job_id": "j", "filename": "new.bin"}),
        ),
        (
            "/get-miner-list",
            json!({"miner_hotkey": k.miner.ss58, "continuation_token": null}),
        ),
        (
            "/get-file-presigned-urls",
            json!({"miner_hotkey": k.miner.ss58, "file_keys": [miner_key], "expiry_hours": 1}),
        ),
    ]
    .into_iter()
    .map(|(path, body)| (path, serde_json::to_vec(&body).expect("json")))
    .collect()
}

#[tokio::test]
async fn no_header_signed_body_is_accepted_at_another_granting_route() {
    let app = TestApp::start().await;
    let bodies = valid_bodies(&app);
    for (home, body) in &bodies {
        let (status, answer) = post_signed(&app, home, body, &sign(signer(&app, home), body)).await;
        assert_eq!(status, 200, "{home} accepts its own body: {answer}");
        for (other, _) in bodies.iter().filter(|(p, _)| p != home) {
            // The same bytes, freshly signed by whoever may use the other route.
            let h = sign(signer(&app, other), body);
            let (status, answer) = post_signed(&app, other, body, &h).await;
            assert_eq!(status, 422, "{home} body at {other}: {answer}");
        }
    }
}

#[tokio::test]
async fn a_miner_list_body_is_not_validator_access() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let body =
        serde_json::to_vec(&json!({"miner_hotkey": k.miner.ss58, "continuation_token": null}))
            .expect("json");
    let (status, answer) =
        post_signed(&app, "/get-miner-list", &body, &sign(&k.validator, &body)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post_signed(
        &app,
        "/get-validator-access",
        &body,
        &sign(&k.validator, &body),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        answer,
        json!({"detail": [
            {"type": "missing", "loc": ["body", "route"], "msg": "Field required"},
            {"type": "extra_forbidden", "loc": ["body", "miner_hotkey"],
             "msg": "Extra inputs are not permitted"},
        ]})
    );
}

#[tokio::test]
async fn header_signed_bodies_are_strict_and_body_signed_ones_are_not() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let cases = [
        (
            "/get-validator-access",
            json!({"route": "/get-miner-specific-access"}),
            json!({"type": "literal_error", "loc": ["body", "route"],
                   "msg": "Input should be '/get-validator-access'"}),
        ),
        (
            "/get-validator-access",
            json!({"route": "/get-validator-access", "note": 1}),
            json!({"type": "extra_forbidden", "loc": ["body", "note"],
                   "msg": "Extra inputs are not permitted"}),
        ),
        (
            "/get-miner-list",
            json!({"miner_hotkey": k.miner.ss58, "route": "/get-miner-list"}),
            json!({"type": "extra_forbidden", "loc": ["body", "route"],
                   "msg": "Extra inputs are not permitted"}),
        ),
        (
            "/get-file-presigned-urls",
            json!({"miner_hotkey": k.miner.ss58}),
            json!({"type": "missing", "loc": ["body", "file_keys"], "msg": "Field required"}),
        ),
    ];
    for (path, body, issue) in cases {
        let bytes = serde_json::to_vec(&body).expect("json");
        let answer = post_signed(&app, path, &bytes, &sign(&k.validator, &bytes)).await;
        assert_eq!(answer, (422, json!({"detail": [issue]})), "{path} {body}");
    }
    // Body-signed: unknown fields and any `route` are ignored, as FastAPI ignores extras.
    let body = support::validator_body(
        &k.validator,
        |ts| format!("s3:validator:access:{ts}"),
        json!({"route": "/get-miner-list", "note": 1}),
    );
    let res = app.post("/get-validator-access", &body).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_body_of_many_long_unknown_fields_gets_a_small_422() {
    let app = TestApp::start().await;
    let mut body = serde_json::Map::new();
    body.insert("miner_hotkey".into(), json!(app.keys.miner.ss58));
    for i in 0..2000 {
        body.insert(format!("{i:04}{}", "x".repeat(100)), json!(1));
    }
    let bytes = serde_json::to_vec(&Value::Object(body)).expect("json");
    let v = &app.keys.validator;
    let res = request(
        &app.client,
        &format!("{}/get-miner-list", app.base),
        &bytes,
        &sign(v, &bytes),
    )
    .send()
    .await
    .expect("request");
    assert_eq!(res.status(), 422);
    let answer = res.bytes().await.expect("body");
    assert!(answer.len() < 4000, "a 422 of {} bytes", answer.len());
    let detail: Value = serde_json::from_slice(&answer).expect("json");
    let issues = detail["detail"].as_array().expect("issues");
    assert!(
        !issues.is_empty() && issues.len() <= 8,
        "{} issues",
        issues.len()
    );
    assert!(issues.iter().all(|i| i["type"] == "extra_forbidden"));
}
