//! Tao v2 nonces: each is accepted once, across concurrent copies and a Redis restart, and
//! `/get-file-upload-url` spends it before its existence check, which counts against the
//! miner's daily allowance of checks (`DAILY_UPLOAD_CHECKS_PER_MINER`), not its request
//! limit.

mod support;

use serde_json::{Value, json};
use support::tao::{TaoHeaders, post_signed, request, sign};
use support::{Options, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_accepted_once_across_32_concurrent_copies_with_redis() {
    let app = TestApp::start_with(Options {
        redis: true,
        // 31 refused copies from one address: above the default failure burst (20), some
        // would get 429 from the address throttle, depending on timing, instead of 401.
        env: vec![("AUTH_FAILURE_BURST", "100".into())],
        ..Options::default()
    })
    .await;
    let body = serde_json::to_vec(&json!({
        "coldkey": app.keys.miner_cold.ss58, "route": "/get-folder-access"
    }))
    .expect("json");
    let h = sign(&app.keys.miner, &body);
    let url = format!("{}/get-folder-access", app.base);
    let copies = (0..32)
        .map(|_| request(&app.client, &url, &body, &h))
        .collect();
    let statuses = support::tao::statuses_at_once(copies).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        31,
        "{statuses:?}"
    );
    let redis = app.redis.as_ref().expect("redis");
    let nonces = redis.command(&format!(
        "KEYS *tao-nonce:{}:{}",
        app.keys.miner.ss58, h.nonce
    ));
    assert!(
        nonces.contains("tao-nonce"),
        "the nonce is recorded in Redis: {nonces}"
    );
}

#[tokio::test]
async fn nonces_stay_single_use_through_a_redis_restart() {
    let mut app = TestApp::start_with(Options {
        redis: true,
        ..Options::default()
    })
    .await;
    let url = format!("{}/get-folder-access", app.base);
    let body = serde_json::to_vec(&json!({
        "coldkey": app.keys.miner_cold.ss58, "route": "/get-folder-access"
    }))
    .expect("json");
    let twice = |h: TaoHeaders| {
        let (client, url, body) = (app.client.clone(), url.clone(), body.clone());
        async move {
            let mut out = Vec::new();
            for _ in 0..2 {
                let res = request(&client, &url, &body, &h)
                    .send()
                    .await
                    .expect("answer");
                out.push(res.status().as_u16());
            }
            out
        }
    };
    assert_eq!(twice(sign(&app.keys.miner, &body)).await, vec![200, 401]);
    // Redis down: the in-process fallback records nonces the same way.
    let port = app.redis.as_ref().expect("redis").port;
    drop(app.redis.take());
    assert_eq!(twice(sign(&app.keys.miner, &body)).await, vec![200, 401]);
    let restarted = support::RedisServer::start_on(port);
    support::wait_for_redis(&app).await;
    let h = sign(&app.keys.miner, &body);
    assert_eq!(twice(h.clone()).await, vec![200, 401]);
    let reply = restarted.command(&format!("EXISTS {}", redis_nonce_key(&app, &h)));
    assert!(reply.contains(":1"), "recorded in the new Redis: {reply:?}");
    app.redis = Some(restarted);
}

fn redis_nonce_key(app: &TestApp, h: &TaoHeaders) -> String {
    format!(
        "{}tao-nonce:{}:{}",
        app.app_state.access.quotas.prefix(),
        app.keys.miner.ss58,
        h.nonce
    )
}

fn upload_body(filename: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"job_id": "j", "filename": filename})).expect("json")
}

#[tokio::test]
async fn a_request_answered_409_cannot_be_sent_again_and_costs_no_upload() {
    let app = TestApp::start_with(Options {
        env: vec![("DAILY_LIMIT_PER_MINER", "2".into())],
        ..Options::default()
    })
    .await;
    let miner = &app.keys.miner;
    let path = "/get-file-upload-url";
    let old = format!("data/hotkey={}/job_id=j/old.bin", miner.ss58);
    app.s3.put_many(vec![old]).await;

    let body = upload_body("old.bin");
    let h = sign(miner, &body);
    let conflict = json!({"detail": "File already exists"});
    assert_eq!(post_signed(&app, path, &body, &h).await, (409, conflict));
    // The nonce was spent before S3 was asked: the copy is refused without asking again.
    assert_eq!(
        post_signed(&app, path, &body, &h).await,
        (401, json!({"detail": "Nonce already used"}))
    );
    // Re-checking with fresh nonces costs checks, not uploads: both uploads are still there.
    for _ in 0..3 {
        assert_eq!(
            post_signed(&app, path, &body, &sign(miner, &body)).await.0,
            409
        );
    }
    for (file, remaining) in [("a.bin", "1"), ("b.bin", "0")] {
        let body = upload_body(file);
        let res = request(
            &app.client,
            &format!("{}{path}", app.base),
            &body,
            &sign(miner, &body),
        )
        .send()
        .await
        .expect("answer");
        assert_eq!(res.status(), 200, "{file}");
        assert_eq!(res.headers()["x-ratelimit-remaining"], remaining, "{file}");
    }
}

#[tokio::test]
async fn existence_checks_beyond_the_daily_allowance_get_429() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("DAILY_LIMIT_PER_MINER", "1".into()),
            ("DAILY_UPLOAD_CHECKS_PER_MINER", "3".into()),
        ],
        ..Options::default()
    })
    .await;
    let miner = &app.keys.miner;
    let path = "/get-file-upload-url";
    let files = ["a.bin", "b.bin", "c.bin", "d.bin"];
    let folder = format!("data/hotkey={}/job_id=j/", miner.ss58);
    app.s3
        .put_many(files.iter().map(|f| format!("{folder}{f}")).collect())
        .await;
    for file in &files[..3] {
        let body = upload_body(file);
        let (status, detail) = post_signed(&app, path, &body, &sign(miner, &body)).await;
        assert_eq!(status, 409, "{file}: {detail}");
    }
    let body = upload_body(files[3]);
    let res = request(
        &app.client,
        &format!("{}{path}", app.base),
        &body,
        &sign(miner, &body),
    )
    .send()
    .await
    .expect("answer");
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Daily limit of 3 upload checks exceeded."})
    );
    // Another miner's allowance is its own.
    let other = &app.keys.other_miner;
    let body = upload_body("new.bin");
    assert_eq!(
        post_signed(&app, path, &body, &sign(other, &body)).await.0,
        200
    );
}

#[tokio::test]
async fn a_granted_upload_counts_once_against_the_global_limit() {
    let app = TestApp::start_with(Options {
        env: vec![("TOTAL_DAILY_LIMIT", "2".into())],
        ..Options::default()
    })
    .await;
    let path = "/get-file-upload-url";
    // Two uploads, each an existence check and a grant: within a global limit of 2.
    for (miner, file) in [(&app.keys.miner, "a.bin"), (&app.keys.other_miner, "b.bin")] {
        let body = upload_body(file);
        let (status, detail) = post_signed(&app, path, &body, &sign(miner, &body)).await;
        assert_eq!(status, 200, "{file}: {detail}");
    }
    let body = upload_body("c.bin");
    let (status, detail) = post_signed(&app, path, &body, &sign(&app.keys.miner, &body)).await;
    assert_eq!(
        status, 429,
        "the third grant is over the global limit: {detail}"
    );
}
