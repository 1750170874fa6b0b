//! One key, one spelling: non-canonical SS58 addresses are refused wherever an address is
//! taken (callers' hotkeys, `miner_hotkey`, `miner_hotkeys`, metagraph files), and
//! `miner_hotkeys` is bounded.

mod support;

use s3_auth_api::{Config, StartupError, build_app};
use serde_json::{Value, json};
use support::{TestApp, validator_body};

/// `//Charlie`'s key, prefix 42 written in the two-byte form.
const CHARLIE_TWO_BYTE: &str = "Zp4RBgDgd1t4ugjm1KTJnuB2HqDB9CpGKwxD7Z5PVFs2r6jgw";
/// The same key, canonically.
const CHARLIE: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";

async fn answer(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.expect("json"))
}

#[tokio::test]
async fn non_canonical_addresses_get_400_everywhere() {
    let app = TestApp::start().await;
    let k = &app.keys;

    // As a caller's hotkey.
    let mut body = app.miner_request();
    body["hotkey"] = json!(CHARLIE_TWO_BYTE);
    let (status, body) = answer(app.post("/get-folder-access", &body).await).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("canonical")),
        "{body}"
    );

    // As miner_hotkey, where the canonical spelling is accepted (an empty folder).
    for (miner, want) in [(CHARLIE_TWO_BYTE, 400), (CHARLIE, 200)] {
        let req = validator_body(
            &k.validator,
            |ts| format!("s3:validator:miner:{miner}:{ts}"),
            json!({"miner_hotkey": miner}),
        );
        let (status, body) = answer(app.post("/get-miner-specific-access", &req).await).await;
        assert_eq!(status, want, "miner_hotkey {miner}: {body}");
    }

    // In miner_hotkeys.
    let req = validator_body(
        &k.validator,
        |ts| format!("s3:validator:folders:{}:{ts}", k.validator.ss58),
        json!({"miner_hotkeys": [CHARLIE, CHARLIE_TWO_BYTE]}),
    );
    let (status, body) = answer(app.post("/get-folder-presigned-urls", &req).await).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn more_than_256_miner_hotkeys_get_422() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let many: Vec<String> = (0..300).map(|_| CHARLIE.to_owned()).collect();
    let req = validator_body(
        &k.validator,
        |ts| format!("s3:validator:folders:{}:{ts}", k.validator.ss58),
        json!({"miner_hotkeys": many}),
    );
    let (status, body) = answer(app.post("/get-folder-presigned-urls", &req).await).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "miner_hotkeys"]));
    assert_eq!(
        body["detail"][0]["msg"],
        "List should have at most 256 items after validation, not 300"
    );
}

#[tokio::test]
async fn a_metagraph_file_with_a_non_canonical_entry_is_refused_naming_it() {
    let keys = support::Keys::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metagraph.json");
    let mut doc = keys.metagraph();
    doc["neurons"][1]["hotkey"] = json!(CHARLIE_TWO_BYTE);
    support::write_json(&path, &doc);
    let env = std::collections::HashMap::from([
        ("S3_BUCKET".to_owned(), "test-bucket".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "a".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "b".to_owned()),
        ("METAGRAPH_FILE".to_owned(), path.display().to_string()),
    ]);
    let config = Config::from_map(&env).expect("config");
    match build_app(config).await {
        Ok(_) => panic!("a metagraph with a non-canonical hotkey must not load"),
        Err(StartupError::Metagraph(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("uid 1") && msg.contains(CHARLIE_TWO_BYTE),
                "{msg}"
            );
            assert!(msg.contains("canonical"), "{msg}");
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}
