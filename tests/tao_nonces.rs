//! Tao v2 nonces: each is accepted once, across concurrent copies and a Redis restart.

mod support;

use serde_json::json;
use support::tao::{TaoHeaders, request, sign};
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
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let req = request(&app.client, &url, &body, &h);
        running.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    }
    let mut statuses = Vec::new();
    while let Some(done) = running.join_next().await {
        statuses.push(done.expect("task").expect("answer"));
    }
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
