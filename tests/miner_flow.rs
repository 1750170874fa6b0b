//! The miner flow end to end: signed request -> POST policy -> upload to a real
//! S3-compatible server that enforces the policy -> list with the presigned list URL.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Options, TestApp, TestKey, miner_body, now, upload};

const ENDPOINT: &str = "/get-folder-access";

async fn grant(app: &TestApp) -> Value {
    let res = app.post(ENDPOINT, &app.miner_request()).await;
    assert_eq!(res.status(), 200, "grant refused: {:?}", res.text().await);
    res.json().await.expect("json grant")
}

#[tokio::test]
async fn miner_gets_access_uploads_and_lists_its_folder() {
    let app = TestApp::start_with(Options {
        redis: true,
        ..Options::default()
    })
    .await;
    let hotkey = app.keys.miner.ss58.clone();
    let res = app.post(ENDPOINT, &app.miner_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-limit"], "50");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "49");
    let grant: Value = res.json().await.expect("json");

    // The wire format of the reference, field for field.
    let folder = format!("data/hotkey={hotkey}/");
    assert_eq!(grant["folder"], folder);
    assert_eq!(
        grant["url"],
        format!("{}/{}", app.s3.endpoint, support::BUCKET)
    );
    let fields = grant["fields"].as_object().expect("fields");
    let names: Vec<&str> = fields.keys().map(String::as_str).collect();
    for name in [
        "acl",
        "x-amz-storage-class",
        "key",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "policy",
        "x-amz-signature",
    ] {
        assert!(names.contains(&name), "missing field {name} in {names:?}");
    }
    assert_eq!(fields["key"], format!("{folder}${{filename}}"));
    assert_eq!(fields["acl"], "private");
    let expiry = grant["expiry"].as_str().expect("expiry");
    assert!(
        chrono::NaiveDateTime::parse_from_str(expiry, "%Y-%m-%dT%H:%M:%S").is_ok(),
        "expiry {expiry} is not a naive ISO time"
    );
    assert_eq!(
        grant["structure_info"]["folder_structure"],
        "data/hotkey={hotkey_id}/job_id={job_id}/"
    );

    // A 2 KiB upload into the miner's own folder succeeds with 204.
    let key = format!("{folder}job_id=j1/f.parquet");
    let res = upload(&app.client, &grant, &key, vec![7u8; 2048]).await;
    assert_eq!(res.status(), 204, "upload failed: {:?}", res.text().await);
    assert_eq!(app.s3.size(&key).await, Some(2048), "object stored");

    // Another miner's folder is refused by the policy's starts-with condition.
    let foreign = format!(
        "data/hotkey={}/job_id=j1/f.parquet",
        app.keys.other_miner.ss58
    );
    let res = upload(&app.client, &grant, &foreign, vec![7u8; 2048]).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    // AWS answers 403 AccessDenied; s3s answers 400 InvalidPolicyDocument. Either way refused.
    assert!(
        status == 403 || (status == 400 && text.contains("InvalidPolicyDocument")),
        "foreign upload not refused: {status} {text}"
    );
    assert_eq!(app.s3.size(&foreign).await, None);

    // 100 bytes is below content-length-range.
    let small = format!("{folder}job_id=j1/small.parquet");
    let res = upload(&app.client, &grant, &small, vec![1u8; 100]).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    assert!(
        (400..500).contains(&status) && text.contains("EntityTooSmall"),
        "small upload not refused: {status} {text}"
    );
    assert_eq!(app.s3.size(&small).await, None);

    // The list URL lists the folder and shows the object.
    let list = app
        .client
        .get(grant["list_url"].as_str().expect("list_url"))
        .send()
        .await
        .expect("list reaches S3");
    assert_eq!(list.status(), 200);
    let xml = list.text().await.expect("list body");
    assert!(xml.contains("<EncodingType>url</EncodingType>"), "{xml}");
    assert_eq!(support::listed_keys(&xml), vec![key.clone()], "{xml}");
}

#[tokio::test]
async fn a_tampered_list_url_is_rejected_by_s3() {
    let app = TestApp::start().await;
    let grant = grant(&app).await;
    let url = grant["list_url"].as_str().expect("list_url");
    let other = url.replace(&app.keys.miner.ss58, &app.keys.other_miner.ss58);
    let res = app.client.get(other).send().await.expect("reaches S3");
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn identity_failures() {
    let app = TestApp::start().await;
    let keys = &app.keys;

    // Tampered signature: 401 Invalid signature.
    let mut body = app.miner_request();
    let sig = body["signature"].as_str().expect("sig").to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    body["signature"] = json!(format!("{flipped}{}", &sig[1..]));
    let res = app.post(ENDPOINT, &body).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Invalid signature"})
    );

    // Signature by another key over the right message.
    let ts = now();
    let mut body = miner_body(&keys.miner, &keys.miner_cold, ts);
    let message = format!(
        "s3:data:access:{}:{}:{ts}",
        keys.miner_cold.ss58, keys.miner.ss58
    );
    body["signature"] = json!(keys.other_miner.sign(&message));
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 401);

    // Stale timestamp: 400 Invalid timestamp, even with a good signature.
    let body = miner_body(&keys.miner, &keys.miner_cold, now() - 301);
    let res = app.post(ENDPOINT, &body).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Invalid timestamp"})
    );
    // Too far in the future.
    let body = miner_body(&keys.miner, &keys.miner_cold, now() + 120);
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 400);
    // Past its own expiry.
    let mut body = app.miner_request();
    body["expiry"] = json!(now() - 10);
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 400);

    // Unregistered hotkey with a valid signature of its own: 401.
    let body = miner_body(&keys.stranger, &keys.miner_cold, now());
    let res = app.post(ENDPOINT, &body).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Invalid signature"})
    );

    // The coldkey must be the one that owns the hotkey on chain.
    let body = miner_body(&keys.miner, &keys.other_cold, now());
    let res = app.post(ENDPOINT, &body).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Coldkey does not match hotkey owner"})
    );

    // A hotkey that is not an SS58 address (it would become part of an S3 prefix).
    let mut body = app.miner_request();
    body["hotkey"] = json!("../../etc");
    let res = app.post(ENDPOINT, &body).await;
    assert_eq!(res.status(), 400);
    assert!(
        res.json::<Value>().await.expect("json")["detail"]
            .as_str()
            .expect("detail")
            .contains("SS58")
    );

    // Forged requests did not use up the miner's quota.
    let res = app.post(ENDPOINT, &app.miner_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "49");
}

#[tokio::test]
async fn signatures_over_wrapped_bytes_and_0x_hex_are_accepted() {
    let app = TestApp::start().await;
    let keys = &app.keys;
    let ts = now();
    let message = format!(
        "s3:data:access:{}:{}:{ts}",
        keys.miner_cold.ss58, keys.miner.ss58
    );
    let body = json!({
        "coldkey": keys.miner_cold.ss58,
        "hotkey": keys.miner.ss58,
        "timestamp": ts,
        "signature": format!("0x{}", keys.miner.sign(&format!("<Bytes>{message}</Bytes>"))),
    });
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 200);
}

async fn quota_after_n(app: &TestApp) {
    for _ in 0..3 {
        assert_eq!(app.post(ENDPOINT, &app.miner_request()).await.status(), 200);
    }
    let res = app.post(ENDPOINT, &app.miner_request()).await;
    assert_eq!(res.status(), 429);
    let headers = res.headers().clone();
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=86_400).contains(&retry));
    assert_eq!(headers["x-ratelimit-limit"], "3");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let reset: i64 = headers["x-ratelimit-reset"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("unix time");
    assert_eq!(reset % 86_400, 0, "reset is a UTC midnight");
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Daily limit of 3 exceeded."})
    );
    // Another miner still has its own quota.
    let other = miner_body(&app.keys.other_miner, &app.keys.other_cold, now());
    assert_eq!(app.post(ENDPOINT, &other).await.status(), 200);
}

#[tokio::test]
async fn quota_429_after_n_in_process() {
    let app = TestApp::start_with(Options {
        env: vec![("DAILY_LIMIT_PER_MINER", "3".into())],
        ..Options::default()
    })
    .await;
    quota_after_n(&app).await;
}

#[tokio::test]
async fn quota_429_after_n_in_redis_with_expiring_keys() {
    let app = TestApp::start_with(Options {
        redis: true,
        env: vec![("DAILY_LIMIT_PER_MINER", "3".into())],
        ..Options::default()
    })
    .await;
    quota_after_n(&app).await;
    let redis = app.redis.as_ref().expect("redis");
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let key = format!("{}:{day}", app.keys.miner.ss58);
    assert_eq!(
        redis.command(&format!("GET {key}")).trim(),
        "$1\r\n3".trim()
    );
    let ttl: i64 = redis
        .command(&format!("TTL {key}"))
        .trim()
        .trim_start_matches(':')
        .parse()
        .expect("ttl");
    assert!(ttl > 0 && ttl <= 86_400 + 60, "ttl {ttl}");
    let global = redis.command(&format!("GET GLOBAL:{day}"));
    assert!(global.contains("\r\n4"), "global counter {global:?}");
}

#[tokio::test]
async fn global_limit_applies_across_miners_in_process() {
    global_limit_applies_across_miners(false).await;
}

#[tokio::test]
async fn global_limit_applies_across_miners_in_redis() {
    global_limit_applies_across_miners(true).await;
}

async fn global_limit_applies_across_miners(redis: bool) {
    let app = TestApp::start_with(Options {
        redis,
        env: vec![("TOTAL_DAILY_LIMIT", "1".into())],
        ..Options::default()
    })
    .await;
    assert_eq!(app.post(ENDPOINT, &app.miner_request()).await.status(), 200);
    let other = miner_body(&app.keys.other_miner, &app.keys.other_cold, now());
    let res = app.post(ENDPOINT, &other).await;
    assert_eq!(res.status(), 429);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Global request limit reached."})
    );
}

async fn exactly_limit_under_concurrency(app: TestApp) {
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = app.client.clone();
        let url = format!("{}{ENDPOINT}", app.base);
        // Freshly signed each time, as honest clients do (a signature is accepted once).
        let body = app.miner_request();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("task").expect("response") {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (10, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_give_exactly_ten_in_process() {
    let app = TestApp::start_with(Options {
        env: vec![("DAILY_LIMIT_PER_MINER", "10".into())],
        ..Options::default()
    })
    .await;
    exactly_limit_under_concurrency(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_give_exactly_ten_in_redis() {
    let app = TestApp::start_with(Options {
        redis: true,
        env: vec![("DAILY_LIMIT_PER_MINER", "10".into())],
        ..Options::default()
    })
    .await;
    exactly_limit_under_concurrency(app).await;
}

#[tokio::test]
async fn metagraph_file_changes_are_picked_up() {
    let app = TestApp::start().await;
    let newcomer = TestKey::from_seed(42);
    let body = miner_body(&newcomer, &app.keys.miner_cold, now());
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 401);
    let mut doc = app.keys.metagraph();
    doc["block"] = json!(4_000_100);
    doc["neurons"].as_array_mut().expect("neurons").push(
        json!({"uid": 3, "hotkey": newcomer.ss58, "coldkey": app.keys.miner_cold.ss58,
                     "validator_permit": false, "alpha_stake": 1.0}),
    );
    support::write_json(&app.metagraph_path, &doc);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = miner_body(&newcomer, &app.keys.miner_cold, now());
        if app.post(ENDPOINT, &body).await.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reload not seen in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health: Value = app.get("/healthcheck").await.json().await.expect("json");
    assert_eq!(health["metagraph_syncer"]["block"], 4_000_100);
    assert_eq!(health["metagraph_syncer"]["hotkeys_count"], 5);

    // A broken file keeps the last good metagraph serving.
    std::fs::write(&app.metagraph_path, b"{ not json").expect("write");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let body = miner_body(&newcomer, &app.keys.miner_cold, now());
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 200);
}

#[tokio::test]
async fn coldkey_binding_can_be_turned_off() {
    let app = TestApp::start_with(Options {
        env: vec![("REQUIRE_COLDKEY_MATCH", "false".into())],
        ..Options::default()
    })
    .await;
    let body = miner_body(&app.keys.miner, &app.keys.other_cold, now());
    assert_eq!(app.post(ENDPOINT, &body).await.status(), 200);
}
