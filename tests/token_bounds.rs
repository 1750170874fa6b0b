//! Continuation tokens are bounded and checked before they reach S3 or an answer:
//! - an S3 token passed through to a presigned list URL is at most 1024 bytes of
//!   printable ASCII (else 400), so `/get-validator-access`, `/get-miner-specific-access`
//!   and `/get-miner-list` answers stay within their documented bounds;
//! - a folder-listing token is at most 1400 bytes; one whose position holds characters
//!   S3's XML cannot carry still works (names go to S3 URL-encoded), and never gives 503.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use s3_auth_api::access::cursor::{MAX_FOLDER_TOKEN_BYTES, MAX_S3_TOKEN_BYTES};
use serde_json::{Value, json};
use support::tao::{request, sign};
use support::{TestApp, validator_body};

/// The status, detail and size of an answer.
async fn answer(res: reqwest::Response) -> (u16, Value, usize) {
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, bytes.len())
}

/// Posts `token` to each route that passes S3 tokens through, signed as each expects.
async fn pass_through(app: &TestApp, token: &str) -> Vec<(String, u16, Value, usize)> {
    let k = &app.keys;
    let (v, miner) = (&k.validator, &k.miner.ss58);
    let mut out = Vec::new();
    let body = validator_body(
        v,
        |ts| format!("s3:validator:access:{ts}"),
        json!({"continuation_token": token}),
    );
    let (s, b, n) = answer(app.post("/get-validator-access", &body).await).await;
    out.push(("/get-validator-access".to_owned(), s, b, n));
    let body = validator_body(
        v,
        |ts| format!("s3:validator:miner:{miner}:{ts}"),
        json!({"miner_hotkey": miner, "continuation_token": token}),
    );
    let (s, b, n) = answer(app.post("/get-miner-specific-access", &body).await).await;
    out.push(("/get-miner-specific-access".to_owned(), s, b, n));
    let bytes = serde_json::to_vec(&json!({"miner_hotkey": miner, "continuation_token": token}))
        .expect("json");
    let res = request(
        &app.client,
        &format!("{}/get-miner-list", app.base),
        &bytes,
        &sign(v, &bytes),
    )
    .send()
    .await
    .expect("request");
    let (s, b, n) = answer(res).await;
    out.push(("/get-miner-list".to_owned(), s, b, n));
    out
}

#[tokio::test]
async fn s3_tokens_over_the_bound_or_not_printable_ascii_get_400() {
    let app = TestApp::start().await;
    let huge = "A".repeat(200_000);
    for token in [
        huge.as_str(),
        &"A".repeat(MAX_S3_TOKEN_BYTES + 1),
        "abc\u{FFFF}",
        "abc def",
        "abc\u{1}",
    ] {
        for (route, status, body, size) in pass_through(&app, token).await {
            assert_eq!(
                (status, &body),
                (400, &json!({"detail": "Invalid continuation_token"})),
                "{route} with a token of {} bytes",
                token.len()
            );
            assert!(size < 100, "{route}: {size} bytes");
        }
    }
}

#[tokio::test]
async fn the_longest_s3_token_keeps_each_answer_within_its_documented_bound() {
    let app = TestApp::start().await;
    // Every byte one that a URL must percent-encode: the largest answer a token can make.
    let token = "+".repeat(MAX_S3_TOKEN_BYTES);
    let bounds = [
        ("/get-validator-access", 8000),
        ("/get-miner-specific-access", 4000),
        ("/get-miner-list", 4000),
    ];
    for ((route, status, body, size), (documented, bound)) in
        pass_through(&app, &token).await.into_iter().zip(bounds)
    {
        assert_eq!(route, documented);
        assert_eq!(status, 200, "{route}: {body}");
        println!("{route}: {size} bytes with a {MAX_S3_TOKEN_BYTES}-byte token");
        assert!(
            size <= bound,
            "{route}: {size} bytes, documented at most {bound}"
        );
    }
}

/// `/get-folder-presigned-urls` from `token`.
async fn folders(app: &TestApp, token: String) -> (u16, Value, usize) {
    let k = &app.keys;
    let body = validator_body(
        &k.validator,
        |ts| format!("s3:validator:folders:{}:{ts}", k.validator.ss58),
        json!({"continuation_token": token}),
    );
    answer(app.post("/get-folder-presigned-urls", &body).await).await
}

#[tokio::test]
async fn folder_tokens_are_bounded_and_any_position_s3_can_name_works() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let (status, body, _) =
        folders(&app, format!("f2.{}", "A".repeat(MAX_FOLDER_TOKEN_BYTES))).await;
    assert_eq!(
        (status, body),
        (400, json!({"detail": "Invalid continuation_token"}))
    );
    app.s3
        .put_many(vec![
            format!("data/hotkey={}/job_id=\u{FFFF}/f", k.miner.ss58),
            format!("data/hotkey={}/job_id=\u{1}x/f", k.miner.ss58),
            format!("data/hotkey={}/job_id=z/f", k.miner.ss58),
        ])
        .await;
    // Resuming right after a folder named with characters XML cannot carry.
    let position = format!("data/hotkey={}/job_id=\u{1}x0", k.miner.ss58);
    let (status, body, _) =
        folders(&app, format!("f2.{}", URL_SAFE_NO_PAD.encode(&position))).await;
    assert_eq!(status, 200, "{body}");
    let jobs: Vec<&str> = body["folder_urls"][&k.miner.ss58]["job_folders"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["job_id"].as_str())
        .collect();
    assert_eq!(jobs, vec!["z", "\u{FFFF}"]);
    assert!(body["next_continuation_token"].is_null());
}
