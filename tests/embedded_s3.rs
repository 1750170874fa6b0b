//! The embedded S3 server meets clients where AWS would: a key with a `..` segment never
//! lands in another miner's folder, and a listing page never holds more than 1000 keys,
//! whatever `max-keys` asks (the miner-specific list URL asks for 10000).

mod support;

use serde_json::{Value, json};
use support::{TestApp, upload, validator_body};

fn between<'a>(xml: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = xml.find(open)? + open.len();
    let end = xml[start..].find(close)? + start;
    Some(&xml[start..end])
}

#[tokio::test]
async fn a_dot_dot_key_never_lands_in_another_folder() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let grant: Value = app
        .post("/get-folder-access", &app.miner_request())
        .await
        .json()
        .await
        .expect("json");
    let key = format!(
        "data/hotkey={}/../hotkey={}/job_id=j1/evil.parquet",
        k.miner.ss58, k.other_miner.ss58
    );
    let res = upload(&app.client, &grant, &key, vec![7u8; 2048]).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    assert!(
        (400..500).contains(&status),
        "a '..' key is refused: {status} {text}"
    );
    let landed = app.s3.object_path(&format!(
        "data/hotkey={}/job_id=j1/evil.parquet",
        k.other_miner.ss58
    ));
    assert!(
        !landed.exists(),
        "the upload landed in the other miner's folder"
    );
}

#[tokio::test]
async fn a_listing_page_holds_at_most_1000_keys() {
    let app = TestApp::start().await;
    let k = &app.keys;
    // 1,005 objects in one miner's folder, written straight into the server's directory.
    let folder = app
        .s3
        .object_path(&format!("data/hotkey={}/job_id=big", k.miner.ss58));
    std::fs::create_dir_all(&folder).expect("folder");
    for i in 0..1005 {
        std::fs::write(folder.join(format!("f{i:04}.bin")), [1u8; 8]).expect("write object");
    }
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut extra = json!({"miner_hotkey": k.miner.ss58});
        if let Some(t) = &token {
            extra["continuation_token"] = json!(t);
        }
        let body = validator_body(
            &k.validator,
            |ts| format!("s3:validator:miner:{}:{ts}", k.miner.ss58),
            extra,
        );
        let grant: Value = app
            .post("/get-miner-specific-access", &body)
            .await
            .json()
            .await
            .expect("json");
        let url = grant["miner_url"].as_str().expect("miner_url");
        assert!(url.contains("max-keys=10000"), "{url}");
        let xml = app
            .client
            .get(url)
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("xml");
        let keys = xml.matches("<Key>").count();
        let truncated = between(&xml, "<IsTruncated>", "</IsTruncated>") == Some("true");
        pages.push(keys);
        token =
            between(&xml, "<NextContinuationToken>", "</NextContinuationToken>").map(str::to_owned);
        if !truncated {
            break;
        }
        assert!(token.is_some(), "a truncated page carries a token: {xml}");
        assert!(pages.len() < 5, "too many pages: {pages:?}");
    }
    assert_eq!(pages, vec![1000, 5]);
}
