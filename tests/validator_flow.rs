//! Validators read what miners uploaded: list URLs over all data, per miner and per job
//! folder, and GET URLs for chosen files, against the in-process S3 server and real Redis.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Options, TestApp, TestKey, miner_body, now, upload, validator_body};

/// Uploads `files` (job id, name, content) as `miner` through the miner flow.
async fn upload_as(
    app: &TestApp,
    miner: &TestKey,
    cold: &TestKey,
    files: &[(&str, &str, Vec<u8>)],
) -> Vec<String> {
    let res = app
        .post("/get-folder-access", &miner_body(miner, cold, now()))
        .await;
    assert_eq!(res.status(), 200);
    let grant: Value = res.json().await.expect("grant");
    let folder = grant["folder"].as_str().expect("folder").to_owned();
    let mut keys = Vec::new();
    for (job, name, content) in files {
        let key = format!("{folder}job_id={job}/{name}");
        let res = upload(&app.client, &grant, &key, content.clone()).await;
        assert_eq!(res.status(), 204, "upload {key}");
        keys.push(key);
    }
    keys
}

async fn fetch(app: &TestApp, url: &str) -> (u16, Vec<u8>) {
    let res = app.client.get(url).send().await.expect("reaches S3");
    let status = res.status().as_u16();
    (status, res.bytes().await.expect("body").to_vec())
}

fn access_msg(ts: i64) -> String {
    format!("s3:validator:access:{ts}")
}

struct World {
    app: TestApp,
    miner_keys: Vec<String>,
    other_keys: Vec<String>,
}

async fn world() -> World {
    let app = TestApp::start_with(Options {
        redis: true,
        ..Options::default()
    })
    .await;
    let k = &app.keys;
    let miner_keys = upload_as(
        &app,
        &k.miner,
        &k.miner_cold,
        &[
            ("j1", "a.parquet", vec![1u8; 1500]),
            (
                "j2",
                "b.parquet",
                (0..3000u32).map(|i| (i % 251) as u8).collect(),
            ),
        ],
    )
    .await;
    let other_keys = upload_as(
        &app,
        &k.other_miner,
        &k.other_cold,
        &[("k1", "c.parquet", vec![3u8; 1024])],
    )
    .await;
    World {
        app,
        miner_keys,
        other_keys,
    }
}

#[tokio::test]
async fn validator_lists_everything_and_reads_files() {
    let World {
        app,
        miner_keys,
        other_keys,
    } = world().await;
    let k = &app.keys;

    // Global access: list_all_data lists both miners' files; list_all_miners their prefixes.
    let res = app
        .post(
            "/get-validator-access",
            &validator_body(&k.validator, access_msg, json!({})),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-limit"], "20000");
    let g: Value = res.json().await.expect("json");
    assert_eq!(g["bucket"], support::BUCKET);
    assert_eq!(g["region"], "us-east-1");
    assert_eq!(g["validator_hotkey"], k.validator.ss58);
    assert_eq!(g["expiry_seconds"], 86_400);
    assert!(
        chrono::NaiveDateTime::parse_from_str(
            g["expiry"].as_str().expect("expiry"),
            "%Y-%m-%dT%H:%M:%S"
        )
        .is_ok()
    );
    assert_eq!(
        g["structure_info"]["description"],
        "Job-based folder structure with explicit hotkey and job_id labels under data/ prefix"
    );
    let (status, body) = fetch(
        &app,
        g["urls"]["global"]["list_all_data"].as_str().expect("url"),
    )
    .await;
    assert_eq!(status, 200);
    let xml = String::from_utf8_lossy(&body);
    let listed = support::listed_keys(&xml);
    for key in miner_keys.iter().chain(&other_keys) {
        assert!(listed.contains(key), "{key} not in {xml}");
    }
    let (status, body) = fetch(
        &app,
        g["urls"]["miners"]["list_all_miners"]
            .as_str()
            .expect("url"),
    )
    .await;
    assert_eq!(status, 200);
    let xml = String::from_utf8_lossy(&body);
    let prefixes = support::listed_prefixes(&xml);
    for miner in [&k.miner, &k.other_miner] {
        assert!(
            prefixes.contains(&format!("data/hotkey={}/", miner.ss58)),
            "{xml}"
        );
    }
    assert!(
        !xml.contains("<Key>"),
        "delimited listing shows only prefixes: {xml}"
    );

    // Miner-specific: lists only that miner.
    let body = validator_body(
        &k.validator,
        |ts| format!("s3:validator:miner:{}:{ts}", k.miner.ss58),
        json!({"miner_hotkey": k.miner.ss58}),
    );
    let res = app.post("/get-miner-specific-access", &body).await;
    assert_eq!(res.status(), 200);
    let m: Value = res.json().await.expect("json");
    assert_eq!(m["miner_hotkey"], k.miner.ss58);
    assert_eq!(m["prefix"], format!("data/hotkey={}/", k.miner.ss58));
    let url = m["miner_url"].as_str().expect("miner_url");
    assert!(url.contains("max-keys=10000"));
    let (status, body) = fetch(&app, url).await;
    assert_eq!(status, 200);
    let xml = String::from_utf8_lossy(&body);
    assert_eq!(support::listed_keys(&xml), miner_keys, "{xml}");

    // Per-file URLs download exactly the uploaded bytes; bad keys get no URL.
    let outside = other_keys[0].clone();
    let traversal = format!(
        "data/hotkey={}/../hotkey={}/x",
        k.miner.ss58, k.other_miner.ss58
    );
    let requested = vec![
        miner_keys[0].clone(),
        miner_keys[1].clone(),
        outside.clone(),
        traversal.clone(),
        String::new(),
    ];
    let body = validator_body(
        &k.validator,
        |ts| {
            format!(
                "s3:validator:files:{}:{}:{ts}",
                k.miner.ss58, k.validator.ss58
            )
        },
        json!({"miner_hotkey": k.miner.ss58, "file_keys": requested, "expiry_hours": 2}),
    );
    let res = app.post("/get-file-presigned-urls", &body).await;
    assert_eq!(res.status(), 200);
    let f: Value = res.json().await.expect("json");
    assert_eq!(f["validator_hotkey"], k.validator.ss58);
    assert_eq!(f["miner_hotkey"], k.miner.ss58);
    assert_eq!(f["expiry_seconds"], 7200);
    assert_eq!(f["total_requested"], 5);
    assert_eq!(f["total_valid"], 2);
    assert_eq!(f["invalid_keys"], json!([outside, traversal, ""]));
    let urls = f["file_urls"].as_object().expect("file_urls");
    assert_eq!(urls.len(), 2);
    let expected_b: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let (status, bytes) = fetch(
        &app,
        urls[&miner_keys[0]]["presigned_url"].as_str().expect("url"),
    )
    .await;
    assert_eq!((status, bytes), (200, vec![1u8; 1500]));
    let (status, bytes) = fetch(
        &app,
        urls[&miner_keys[1]]["presigned_url"].as_str().expect("url"),
    )
    .await;
    assert_eq!((status, bytes), (200, expected_b));
    assert!(!urls.contains_key(&other_keys[0]));
}

#[tokio::test]
async fn job_folder_listing_covers_every_folder_with_working_urls() {
    let World {
        app,
        miner_keys,
        other_keys,
    } = world().await;
    let k = &app.keys;
    let body = validator_body(
        &k.validator,
        |ts| format!("s3:validator:folders:{}:{ts}", k.validator.ss58),
        json!({}),
    );
    let res = app.post("/get-folder-presigned-urls", &body).await;
    assert_eq!(res.status(), 200);
    let f: Value = res.json().await.expect("json");
    assert_eq!(f["total_miners"], 2);
    assert_eq!(f["expiry_seconds"], 10_800);
    let mine = &f["folder_urls"][&k.miner.ss58];
    assert_eq!(mine["miner_path"], format!("data/hotkey={}/", k.miner.ss58));
    assert_eq!(mine["total_jobs"], 2);
    let jobs: Vec<&str> = mine["job_folders"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job_id"].as_str().expect("job_id"))
        .collect();
    assert_eq!(jobs, vec!["j1", "j2"]);
    for (job, key) in mine["job_folders"]
        .as_array()
        .expect("jobs")
        .iter()
        .zip(&miner_keys)
    {
        let (status, body) = fetch(&app, job["presigned_url"].as_str().expect("url")).await;
        assert_eq!(status, 200);
        let xml = String::from_utf8_lossy(&body);
        assert_eq!(
            support::listed_keys(&xml),
            vec![key.clone()],
            "only its own folder: {xml}"
        );
    }
    let theirs = &f["folder_urls"][&k.other_miner.ss58];
    assert_eq!(theirs["total_jobs"], 1);
    assert_eq!(theirs["job_folders"][0]["job_id"], "k1");
    assert_eq!(
        theirs["job_folders"][0]["path"],
        format!("data/hotkey={}/job_id=k1/", k.other_miner.ss58)
    );
    let (status, body) = fetch(
        &app,
        theirs["job_folders"][0]["presigned_url"]
            .as_str()
            .expect("url"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        support::listed_keys(&String::from_utf8_lossy(&body)),
        vec![other_keys[0].clone()]
    );

    // miner_hotkeys narrows the listing.
    let body = validator_body(
        &k.validator,
        |ts| format!("s3:validator:folders:{}:{ts}", k.validator.ss58),
        json!({"miner_hotkeys": [k.other_miner.ss58]}),
    );
    let f: Value = app
        .post("/get-folder-presigned-urls", &body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(f["total_miners"], 1);
    assert!(f["folder_urls"].get(&k.miner.ss58).is_none());
}

#[tokio::test]
async fn only_validators_with_enough_stake_get_in() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let not_validator = json!({"detail": "You are not validator"});
    for key in [&k.miner, &k.weak_validator, &k.stranger] {
        let res = app
            .post(
                "/get-validator-access",
                &validator_body(key, access_msg, json!({})),
            )
            .await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.json::<Value>().await.expect("json"), not_validator);
    }
    // A signature over another commitment format is refused.
    let wrong = validator_body(
        &k.validator,
        |ts| format!("s3:validator:miner:{}:{ts}", k.miner.ss58),
        json!({}),
    );
    let res = app.post("/get-validator-access", &wrong).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Invalid signature"})
    );
    // ...and the other way round.
    let wrong = validator_body(
        &k.validator,
        access_msg,
        json!({"miner_hotkey": k.miner.ss58}),
    );
    assert_eq!(
        app.post("/get-miner-specific-access", &wrong)
            .await
            .status(),
        401
    );
    let wrong = validator_body(
        &k.validator,
        access_msg,
        json!({"miner_hotkey": k.miner.ss58, "file_keys": []}),
    );
    assert_eq!(
        app.post("/get-file-presigned-urls", &wrong).await.status(),
        401
    );
    let wrong = validator_body(&k.validator, access_msg, json!({}));
    assert_eq!(
        app.post("/get-folder-presigned-urls", &wrong)
            .await
            .status(),
        401
    );
    // Stale timestamp first.
    let mut stale = validator_body(&k.validator, access_msg, json!({}));
    stale["timestamp"] = json!(now() - 1000);
    assert_eq!(
        app.post("/get-validator-access", &stale).await.status(),
        400
    );
    // None of the refused requests counted.
    let rl: Value = app.get("/rate-limits").await.json().await.expect("json");
    assert_eq!(rl["current_usage"]["global_requests_today"], 0);
}

#[tokio::test]
async fn miner_hotkey_and_file_key_limits() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let miner_msg = |ts: i64| format!("s3:validator:miner:{}:{ts}", k.miner.ss58);

    let res = app
        .post(
            "/get-miner-specific-access",
            &validator_body(&k.validator, miner_msg, json!({})),
        )
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "miner_hotkey is required"})
    );

    let body = validator_body(
        &k.validator,
        miner_msg,
        json!({"miner_hotkey": "data/hotkey=x/"}),
    );
    let res = app.post("/get-miner-specific-access", &body).await;
    assert_eq!(res.status(), 400);
    assert!(
        res.json::<Value>().await.expect("json")["detail"]
            .as_str()
            .expect("detail")
            .contains("SS58")
    );

    let files_msg = |ts: i64| {
        format!(
            "s3:validator:files:{}:{}:{ts}",
            k.miner.ss58, k.validator.ss58
        )
    };
    let too_many: Vec<String> = (0..1001)
        .map(|i| format!("data/hotkey={}/job_id=j/{i}", k.miner.ss58))
        .collect();
    let body = validator_body(
        &k.validator,
        files_msg,
        json!({"miner_hotkey": k.miner.ss58, "file_keys": too_many}),
    );
    let res = app.post("/get-file-presigned-urls", &body).await;
    assert_eq!(res.status(), 400);
    assert!(
        res.json::<Value>().await.expect("json")["detail"]
            .as_str()
            .expect("detail")
            .contains("1000")
    );

    let body = validator_body(
        &k.validator,
        files_msg,
        json!({"miner_hotkey": k.miner.ss58, "file_keys": [], "expiry_hours": 25}),
    );
    assert_eq!(
        app.post("/get-file-presigned-urls", &body).await.status(),
        400
    );

    let body = validator_body(
        &k.validator,
        files_msg,
        json!({"miner_hotkey": k.miner.ss58, "file_keys": "a"}),
    );
    let res = app.post("/get-file-presigned-urls", &body).await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>().await.expect("json")["detail"][0]["type"],
        "list_type"
    );

    // Exactly 1000 is fine.
    let thousand: Vec<String> = (0..1000)
        .map(|i| format!("data/hotkey={}/job_id=j/{i}", k.miner.ss58))
        .collect();
    let body = validator_body(
        &k.validator,
        files_msg,
        json!({"miner_hotkey": k.miner.ss58, "file_keys": thousand}),
    );
    let res = app.post("/get-file-presigned-urls", &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json")["total_valid"],
        1000
    );
}

#[tokio::test]
async fn validator_calls_count_against_the_validator_limit() {
    let app = TestApp::start_with(Options {
        redis: true,
        env: vec![("DAILY_LIMIT_PER_VALIDATOR", "2".into())],
        ..Options::default()
    })
    .await;
    let k = &app.keys;
    for remaining in ["1", "0"] {
        let res = app
            .post(
                "/get-validator-access",
                &validator_body(&k.validator, access_msg, json!({})),
            )
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-ratelimit-remaining"], remaining);
    }
    let res = app
        .post(
            "/get-validator-access",
            &validator_body(&k.validator, access_msg, json!({})),
        )
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Daily limit of 2 exceeded."})
    );
    let rl: Value = app.get("/rate-limits").await.json().await.expect("json");
    assert_eq!(rl["current_usage"]["global_requests_today"], 2);
    assert_eq!(rl["current_usage"]["global_remaining"], 500_000 - 2);
}

#[tokio::test]
async fn a_hung_s3_gives_504_within_the_operation_timeout() {
    let (addr, hold) = support::black_hole().await;
    let app = TestApp::start_with(Options {
        env: vec![
            ("S3_ENDPOINT_URL", format!("http://{addr}")),
            ("S3_OPERATION_TIMEOUT", "1".into()),
        ],
        ..Options::default()
    })
    .await;
    let k = &app.keys;
    let body = validator_body(
        &k.validator,
        |ts| format!("s3:validator:folders:{}:{ts}", k.validator.ss58),
        json!({}),
    );
    let started = std::time::Instant::now();
    let res = app.post("/get-folder-presigned-urls", &body).await;
    assert_eq!(res.status(), 504);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "S3 operation timeout - try again"})
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Pure-signing endpoints are unaffected.
    let res = app
        .post(
            "/get-validator-access",
            &validator_body(&k.validator, access_msg, json!({})),
        )
        .await;
    assert_eq!(res.status(), 200);
    hold.abort();
}

#[tokio::test]
async fn structure_info_and_rate_limits_have_the_reference_fields() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("DAILY_LIMIT_PER_MINER", "7".into()),
            ("TOTAL_DAILY_LIMIT", "100".into()),
        ],
        ..Options::default()
    })
    .await;
    let s: Value = app.get("/structure-info").await.json().await.expect("json");
    assert_eq!(
        s["folder_structure"],
        "data/hotkey={hotkey_id}/job_id={job_id}/"
    );
    assert!(s["example_paths"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(s["upload_flow"].is_array());

    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
    let res = app.get("/rate-limits").await;
    assert_eq!(res.status(), 200);
    let r: Value = res.json().await.expect("json");
    assert_eq!(r["rate_limits"]["daily_limit_per_miner"], 7);
    assert_eq!(r["rate_limits"]["daily_limit_per_validator"], 20_000);
    assert_eq!(r["rate_limits"]["total_daily_limit"], 100);
    assert_eq!(r["current_usage"]["global_requests_today"], 1);
    assert_eq!(r["current_usage"]["global_remaining"], 99);
    assert_eq!(r["current_usage"]["reset_time"], "Midnight UTC daily");
    assert_eq!(r["environment"]["network"], "finney");
    assert_eq!(r["environment"]["subnet_id"], 46);
    assert_eq!(r["environment"]["bucket"], support::BUCKET);
    assert_eq!(r["environment"]["region"], "us-east-1");
    assert!(r["limits_explanation"].is_object());
}

#[tokio::test]
async fn list_urls_carry_a_continuation_token_when_asked() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let body = validator_body(
        &k.validator,
        |ts| format!("s3:validator:miner:{}:{ts}", k.miner.ss58),
        json!({"miner_hotkey": k.miner.ss58, "continuation_token": "page/2+x"}),
    );
    let m: Value = app
        .post("/get-miner-specific-access", &body)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        m["miner_url"]
            .as_str()
            .expect("url")
            .contains("continuation-token=page%2F2%2Bx&")
    );
    let body = validator_body(
        &k.validator,
        access_msg,
        json!({"continuation_token": "t1"}),
    );
    let g: Value = app
        .post("/get-validator-access", &body)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        g["urls"]["global"]["list_all_data"]
            .as_str()
            .expect("url")
            .contains("continuation-token=t1&")
    );
    // Without one, no such parameter (the reference's URLs).
    let body = validator_body(&k.validator, access_msg, json!({}));
    let g: Value = app
        .post("/get-validator-access", &body)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        !g["urls"]["global"]["list_all_data"]
            .as_str()
            .expect("url")
            .contains("continuation-token")
    );
}
