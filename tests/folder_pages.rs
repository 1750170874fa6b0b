//! `/get-folder-presigned-urls` answers in bounded pages: at most 1000 job folders each,
//! resumed with `continuation_token`, with no folder twice and none skipped, across miners.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::{TestApp, TestKey, validator_body};

/// Follows `next_continuation_token` to the end; returns each page's folder paths.
async fn all_pages(app: &TestApp, validator: &TestKey, extra: Value) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = extra.clone();
        if let Some(t) = &token {
            body["continuation_token"] = json!(t);
        }
        let req = validator_body(
            validator,
            |ts| format!("s3:validator:folders:{}:{ts}", validator.ss58),
            body,
        );
        let res = app.post("/get-folder-presigned-urls", &req).await;
        assert_eq!(res.status(), 200);
        let bytes = res.bytes().await.expect("body");
        // About 520 bytes a folder with these (long-term) test credentials.
        assert!(bytes.len() < 600 * 1000, "a page of {} bytes", bytes.len());
        let page: Value = serde_json::from_slice(&bytes).expect("json");
        let mut paths = Vec::new();
        for (miner, entry) in page["folder_urls"].as_object().expect("folder_urls") {
            let jobs = entry["job_folders"].as_array().expect("job_folders");
            assert_eq!(entry["total_jobs"], jobs.len());
            for job in jobs {
                let path = job["path"].as_str().expect("path");
                assert!(path.starts_with(&format!("data/hotkey={miner}/job_id=")));
                paths.push(path.to_owned());
            }
        }
        assert!(paths.len() <= 1000, "a page holds {} folders", paths.len());
        pages.push(paths);
        assert!(pages.len() <= 10, "the pages never end");
        match page["next_continuation_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => {
                assert!(page["next_continuation_token"].is_null());
                return pages;
            }
        }
    }
}

fn folders(miner: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("data/hotkey={miner}/job_id=j{i}/f.parquet"))
        .collect()
}

#[tokio::test]
async fn thousands_of_job_folders_come_in_pages_whose_union_is_exact() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let mut keys = folders(&k.miner.ss58, 2500);
    keys.extend(folders(&k.other_miner.ss58, 7));
    // A second object in a folder does not make it count twice.
    keys.push(format!("data/hotkey={}/job_id=j5/g.parquet", k.miner.ss58));
    // Objects next to the job folders are not job folders.
    keys.push(format!("data/hotkey={}/notes.txt", k.miner.ss58));
    app.s3.put_many(keys).await;

    let pages = all_pages(&app, &k.validator, json!({})).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![1000, 1000, 507], "pages: {sizes:?}");
    let flat: Vec<&String> = pages.iter().flatten().collect();
    let union: BTreeSet<&String> = flat.iter().copied().collect();
    assert_eq!(flat.len(), union.len(), "a folder came twice");
    let expected: BTreeSet<String> = folders(&k.miner.ss58, 2500)
        .into_iter()
        .chain(folders(&k.other_miner.ss58, 7))
        .map(|key| key.trim_end_matches("f.parquet").to_owned())
        .collect();
    assert_eq!(union, expected.iter().collect());

    // Narrowed to one miner, its 2,500 folders page the same way.
    let pages = all_pages(&app, &k.validator, json!({"miner_hotkeys": [k.miner.ss58]})).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);
    let union: BTreeSet<&String> = pages.iter().flatten().collect();
    assert_eq!(union.len(), 2500);
}

#[tokio::test]
async fn a_token_the_service_did_not_issue_gets_400() {
    let app = TestApp::start().await;
    let k = &app.keys;
    for token in ["garbage", "f1.!!!", "f1.ZGF0YS9ob3RrZXk9eC9qb2JfaWQ9eS8"] {
        let req = validator_body(
            &k.validator,
            |ts| format!("s3:validator:folders:{}:{ts}", k.validator.ss58),
            json!({"continuation_token": token}),
        );
        let res = app.post("/get-folder-presigned-urls", &req).await;
        assert_eq!(res.status(), 400, "{token}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body, json!({"detail": "Invalid continuation_token"}));
    }
}
