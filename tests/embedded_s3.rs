//! The embedded S3 server meets clients where AWS would: keys are kept literally (a key
//! with a `..` segment stays in the miner's own folder), keys of up to 1024 bytes are
//! stored, and a listing page never holds more than 1000 keys, whatever `max-keys` asks
//! (the miner-specific list URL asks for 10000), and names are URL-encoded when a listing
//! asks for `encoding-type=url`.

mod support;

use serde_json::{Value, json};
use support::{TestApp, upload, validator_body, xml_value};

#[tokio::test]
async fn a_dot_dot_key_is_kept_literally_in_the_miners_own_folder() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let grant: Value = app
        .post("/get-folder-access", &app.miner_request())
        .await
        .json()
        .await
        .expect("json");
    let own = format!("data/hotkey={}/", k.miner.ss58);
    let other = format!("data/hotkey={}/", k.other_miner.ss58);
    let key = format!(
        "{own}../hotkey={}/job_id=j1/evil.parquet",
        k.other_miner.ss58
    );
    // As on AWS: the key starts with the miner's folder, so the policy admits it, and it
    // is stored as written, under the miner's own prefix.
    let res = upload(&app.client, &grant, &key, vec![7u8; 2048]).await;
    let status = res.status().as_u16();
    assert_eq!(status, 204, "{}", res.text().await.unwrap_or_default());
    assert_eq!(app.s3.keys(&own).await, vec![key.clone()]);
    assert_eq!(app.s3.size(&key).await, Some(2048));
    assert!(
        app.s3.keys(&other).await.is_empty(),
        "nothing landed in the other miner's folder"
    );
    let resolved = format!("{other}job_id=j1/evil.parquet");
    assert_eq!(app.s3.size(&resolved).await, None);
    let dot = format!("{own}./job_id=j1/x.parquet");
    let res = upload(&app.client, &grant, &dot, vec![7u8; 2048]).await;
    assert_eq!(res.status(), 204);
    assert!(app.s3.keys(&own).await.contains(&dot));
}

#[tokio::test]
async fn keys_up_to_1024_bytes_are_stored_and_longer_ones_refused() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let grant: Value = app
        .post("/get-folder-access", &app.miner_request())
        .await
        .json()
        .await
        .expect("json");
    let folder = format!("data/hotkey={}/job_id=epoch/", k.miner.ss58);
    let name = |total: usize| {
        let stem = "s".repeat(total - folder.len() - ".parquet".len());
        format!("{folder}{stem}.parquet")
    };
    for len in [169, 1000, 1024] {
        let key = name(len);
        assert_eq!(key.len(), len);
        let res = upload(&app.client, &grant, &key, vec![3u8; 2048]).await;
        let status = res.status().as_u16();
        assert_eq!(
            status,
            204,
            "a {len}-byte key uploads: {}",
            res.text().await.unwrap_or_default()
        );
        assert_eq!(app.s3.size(&key).await, Some(2048), "{len}-byte key stored");
    }
    let listed = app.s3.keys(&folder).await;
    assert_eq!(listed, vec![name(169), name(1000), name(1024)]);
    let res = upload(&app.client, &grant, &name(1025), vec![3u8; 2048]).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    assert!(
        status == 400 && text.contains("KeyTooLong"),
        "a 1025-byte key is refused as on AWS: {status} {text}"
    );
}

#[tokio::test]
async fn a_listing_page_holds_at_most_1000_keys() {
    let app = TestApp::start().await;
    let k = &app.keys;
    // 1,005 objects in one miner's folder.
    let folder = format!("data/hotkey={}/job_id=big/", k.miner.ss58);
    app.s3
        .put_many((0..1005).map(|i| format!("{folder}f{i:04}.bin")).collect())
        .await;
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
        let truncated = xml_value(&xml, "IsTruncated") == Some("true");
        pages.push(keys);
        token = xml_value(&xml, "NextContinuationToken").map(str::to_owned);
        if !truncated {
            break;
        }
        assert!(token.is_some(), "a truncated page carries a token: {xml}");
        assert!(pages.len() < 5, "too many pages: {pages:?}");
    }
    assert_eq!(pages, vec![1000, 5]);
}

#[tokio::test]
async fn listings_asked_for_url_encoding_encode_keys_and_prefixes_as_s3_does() {
    let s3 = support::S3Server::start().await;
    let folder = "data/hotkey=5M/job_id=a b+c/";
    let key = format!("{folder}é 1.parquet");
    s3.put_many(vec![key.clone()]).await;
    let list = |encoded: bool| {
        let mut req = s3
            .client
            .list_objects_v2()
            .bucket(support::BUCKET)
            .prefix("data/hotkey=5M/");
        if encoded {
            req = req.encoding_type(aws_sdk_s3::types::EncodingType::Url);
        }
        req
    };
    let literal = list(false).send().await.expect("list");
    assert_eq!(literal.contents()[0].key(), Some(key.as_str()));
    let encoded = list(true).send().await.expect("list");
    // The SDK does not decode: the names are as the server sent them.
    assert_eq!(
        encoded.contents()[0].key(),
        Some("data/hotkey%3D5M/job_id%3Da%20b%2Bc/%C3%A9%201.parquet")
    );
    assert_eq!(encoded.prefix(), Some("data/hotkey%3D5M/"));
    let by_folder = list(true).delimiter("/").send().await.expect("list");
    assert_eq!(
        by_folder.common_prefixes()[0].prefix(),
        Some("data/hotkey%3D5M/job_id%3Da%20b%2Bc/")
    );
}
