//! A miner gains when validators see less of its rivals. These tests name objects as such
//! a miner would and check that every other miner's folders are still listed:
//! - against `s3-auth-api dev`, a page that ends on an empty job id (`job_id=/`) does not
//!   end the listing;
//! - 20,000 plain objects next to a miner's job folders do not make each request read
//!   them all: every request reads at most its budget and answers with where it stopped.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use s3_auth_api::keys::SigningKey;
use s3_auth_api::storage::listing::MAX_LIST_ENTRIES;
use serde_json::{Value, json};
use support::{Options, S3Server, TestApp, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_s3-auth-api");

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every page of `/get-folder-presigned-urls` from `api`, signed by `sign`, to the end.
async fn all_pages(
    http: &reqwest::Client,
    api: &str,
    hotkey: &str,
    sign: impl Fn(&str) -> String,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let ts = support::now();
        let body = json!({"hotkey": hotkey, "timestamp": ts,
            "signature": sign(&format!("s3:validator:folders:{hotkey}:{ts}")),
            "continuation_token": token});
        let res = http
            .post(format!("{api}/get-folder-presigned-urls"))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.expect("json");
        let mut paths = Vec::new();
        for entry in page["folder_urls"]
            .as_object()
            .expect("folder_urls")
            .values()
        {
            for job in entry["job_folders"].as_array().expect("job_folders") {
                paths.push(job["path"].as_str().expect("path").to_owned());
            }
        }
        pages.push(paths);
        assert!(pages.len() <= 50, "the pages never end");
        match page["next_continuation_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn a_page_ending_on_an_empty_job_id_does_not_end_the_listing_on_dev() {
    let data = tempfile::tempdir().expect("tempdir");
    let (port, s3_port) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["dev", "--port", &port.to_string()])
        .args(["--s3-port", &s3_port.to_string()])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dev starts");
    let _dev = Dev(child);
    support::wait_ready(port, Duration::from_secs(30));
    let api = format!("http://127.0.0.1:{port}");
    let s3 = S3Server::client_for(
        &format!("http://127.0.0.1:{s3_port}"),
        s3_auth_api::dev::DEV_ACCESS_KEY,
        s3_auth_api::dev::DEV_SECRET_KEY,
        s3_auth_api::dev::DEV_BUCKET,
    );
    let key = |uri: &str| SigningKey::from_uri(uri).expect("dev key");
    let (dave, charlie, eve) = (key("//Dave"), key("//Charlie"), key("//Eve"));
    // Dave's hotkey sorts before the others': his folders come first.
    assert!(dave.ss58() < charlie.ss58() && dave.ss58() < eve.ss58());
    let folder = |who: &SigningKey, job: &str| format!("data/hotkey={}/job_id={job}/", who.ss58());
    let mut keys: Vec<String> = (0..999)
        .map(|i| format!("{}f", folder(&dave, &format!("-{i:03}"))))
        .collect();
    keys.push(format!("{}f", folder(&dave, "0zz")));
    keys.push(format!("{}f", folder(&charlie, "victim")));
    keys.push(format!("{}f", folder(&eve, "victim")));
    s3.put_many(keys).await;
    let alice = key("//Alice");
    let http = reqwest::Client::new();
    let sign = |m: &str| alice.sign_hex(m);
    let sizes = |pages: &[Vec<String>]| pages.iter().map(Vec::len).collect::<Vec<_>>();
    let before = all_pages(&http, &api, alice.ss58(), sign).await;
    assert_eq!(sizes(&before), vec![1000, 2]);

    // One object whose folder has an empty job id sorts right after Dave's 999 folders.
    s3.put_many(vec![format!("{}f", folder(&dave, ""))]).await;
    let after = all_pages(&http, &api, alice.ss58(), sign).await;
    assert_eq!(sizes(&after), vec![1000, 3], "pages");
    assert_eq!(after[0].last(), Some(&folder(&dave, "")));
    let union: BTreeSet<&String> = after.iter().flatten().collect();
    assert_eq!(union.len(), 1003, "no folder twice");
    for expected in [
        folder(&dave, "0zz"),
        folder(&charlie, "victim"),
        folder(&eve, "victim"),
    ] {
        assert!(union.contains(&expected), "{expected} is listed");
    }
}

#[tokio::test]
async fn twenty_thousand_plain_objects_do_not_stall_the_listing() {
    let root = tempfile::tempdir().expect("tempdir");
    let k = support::Keys::new();
    let (attacker, victim) = if k.miner.ss58 < k.other_miner.ss58 {
        (&k.miner.ss58, &k.other_miner.ss58)
    } else {
        (&k.other_miner.ss58, &k.miner.ss58)
    };
    const LOOSE: usize = 20_000;
    let mut keys: Vec<String> = (0..LOOSE)
        .map(|i| format!("data/hotkey={attacker}/job_id=~loose{i:05}"))
        .collect();
    keys.push(format!("data/hotkey={attacker}/job_id=a/f"));
    keys.push(format!("data/hotkey={attacker}/job_id=~zz/f"));
    keys.push(format!("data/hotkey={victim}/job_id=victim/f"));
    s3_auth_api::dev::aws_like::index::seed(root.path(), support::BUCKET, keys, &[1; 1024])
        .expect("seed the bucket");
    let app = TestApp::start_with(Options {
        s3_root: Some(root.path().to_path_buf()),
        ..Options::default()
    })
    .await;
    let k = &app.keys;
    let http = reqwest::Client::new();
    let pages = all_pages(&http, &app.base, &k.validator.ss58, |m| k.validator.sign(m)).await;
    let union: BTreeSet<&String> = pages.iter().flatten().collect();
    for expected in [
        format!("data/hotkey={attacker}/job_id=a/"),
        format!("data/hotkey={attacker}/job_id=~zz/"),
        format!("data/hotkey={victim}/job_id=victim/"),
    ] {
        assert!(union.contains(&expected), "{expected} is listed: {pages:?}");
    }
    assert_eq!(union.len(), 3);
    // No request read all 20,000: one listing reads its budget and at most one page more,
    // then the request answers with where it stopped.
    let per_request = MAX_LIST_ENTRIES + 1000;
    assert!(
        pages.len() >= LOOSE / per_request,
        "{} pages for {LOOSE} plain objects",
        pages.len()
    );
    assert!(
        pages.len() <= LOOSE / MAX_LIST_ENTRIES + 3,
        "{}",
        pages.len()
    );
}
