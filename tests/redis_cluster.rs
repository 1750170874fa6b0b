//! Quotas, replay records and Tao nonces on a real Redis Cluster (six `redis-server`
//! processes): detected without being told, shared by two instances that were each given
//! a different node, reported honestly when the quota script cannot run, and resumed by
//! themselves after a primary dies and its replica takes over.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cluster::RedisCluster;
use support::tao::{post_signed, sign};
use support::{Options, TestApp, miner_body, now};

/// A Tao v2 miner request body for `/get-folder-access`.
fn folder_body(app: &TestApp) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "coldkey": app.keys.miner_cold.ss58, "route": "/get-folder-access"
    }))
    .expect("json")
}

async fn start_cluster() -> RedisCluster {
    tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("cluster starts")
}

/// A password every node of the failover test's cluster requires, as ElastiCache's AUTH
/// token: new connections to nodes the cluster names must authenticate too.
const AUTH_TOKEN: &str = "cluster-auth-token-0123456789";

async fn app_on(url: String, env: Vec<(&'static str, String)>) -> TestApp {
    let mut all = vec![("QUOTA_ON_REDIS_ERROR", "reject".to_owned())];
    all.extend(env);
    TestApp::start_with(Options {
        redis_url: Some(url),
        env: all,
        ..Options::default()
    })
    .await
}

async fn healthcheck(app: &TestApp) -> Value {
    app.get("/healthcheck").await.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_cluster_share_limits_signatures_and_nonces() {
    let cluster = start_cluster().await;
    // 31 refused copies of one nonce from one address stay under the failure throttle.
    let limit = vec![
        ("DAILY_LIMIT_PER_MINER", "5".to_owned()),
        ("AUTH_FAILURE_BURST", "100".to_owned()),
    ];
    // One instance is given a primary, the other a replica: either is enough.
    let a = app_on(cluster.url(0), limit.clone()).await;
    let b = app_on(cluster.url(5), limit).await;
    for app in [&a, &b] {
        let health = healthcheck(app).await;
        assert_eq!(health["quota"]["redis_mode"], "cluster", "{health}");
        assert_eq!(health["redis_ok"], true, "{health}");
        assert_eq!(app.get("/readyz").await.status(), 200);
    }

    let body = folder_body(&a);
    let mut statuses = Vec::new();
    for i in 0..7 {
        let app = if i % 2 == 0 { &a } else { &b };
        statuses.push(
            post_signed(
                app,
                "/get-folder-access",
                &body,
                &sign(&a.keys.miner, &body),
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);

    // A body-signed request accepted by one instance is refused by the other.
    let signed = miner_body(&a.keys.other_miner, &a.keys.other_cold, now());
    assert_eq!(a.post("/get-folder-access", &signed).await.status(), 200);
    let again = b.post("/get-folder-access", &signed).await;
    assert_eq!(again.status(), 401);
    // And so is a Tao v2 nonce.
    let other = serde_json::to_vec(&json!({
        "coldkey": a.keys.other_cold.ss58, "route": "/get-folder-access"
    }))
    .expect("json");
    let headers = sign(&a.keys.other_miner, &other);
    assert_eq!(
        post_signed(&b, "/get-folder-access", &other, &headers)
            .await
            .0,
        200
    );
    assert_eq!(
        post_signed(&a, "/get-folder-access", &other, &headers)
            .await
            .0,
        401
    );

    // 32 concurrent copies of one nonce, split between the instances: one is accepted.
    let third = serde_json::to_vec(&json!({"route": "/get-validator-access"})).expect("json");
    let headers = sign(&a.keys.validator, &third);
    let copies = (0..32)
        .map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            let url = format!("{}/get-validator-access", app.base);
            support::tao::request(&app.client, &url, &third, &headers)
        })
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

    // Every key a check touches is in the slot of the `{quota}` tag, on one primary.
    let owner = cluster.index_of(cluster.primary_of(0, "{quota}"));
    let keys = cluster.query(owner, &["KEYS", "*"]);
    assert!(
        keys.contains(&format!("{{quota}}{}:", a.keys.miner.ss58)),
        "{keys}"
    );
    assert!(keys.contains("{quota}GLOBAL:"), "{keys}");
    assert!(keys.contains("{quota}tao-nonce:"), "{keys}");
    assert!(keys.contains("{quota}replay:"), "{keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_refuses_the_quota_script_is_unavailable_not_ready() {
    let cluster = start_cluster().await;
    // Forced to a single-node connection, the script's keys fall in different slots.
    let app = TestApp::start_with(Options {
        redis_url: Some(cluster.url(0)),
        redis_may_fail: true,
        env: vec![
            ("QUOTA_ON_REDIS_ERROR", "reject".into()),
            ("REDIS_MODE", "standalone".into()),
        ],
        ..Options::default()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.app_state.access.quotas.probe_redis().await != Some(false) {
        assert!(Instant::now() < deadline, "no probe result in 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["checks"]["quota"], "unavailable", "{ready}");
    let health = healthcheck(&app).await;
    assert_eq!(health["redis_ok"], false, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");

    let res = app.post("/get-folder-access", &app.miner_request()).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let detail: Value = res.json().await.expect("json");
    assert_eq!(
        detail["detail"],
        "Rate limiter unavailable; try again shortly"
    );
}

/// What one request under load got.
#[derive(Debug)]
struct Answer {
    at: Duration,
    status: Option<u16>,
    retry_after: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_resume_by_themselves_after_a_primary_dies() {
    let mut cluster =
        tokio::task::spawn_blocking(|| RedisCluster::start_with_password(Some(AUTH_TOKEN)))
            .await
            .expect("cluster starts");
    let victim = cluster.index_of(cluster.primary_of(0, "{quota}"));
    // The instance is given the very node that will die, and the password apart.
    let app = app_on(
        cluster.url(victim),
        vec![
            ("REDIS_PASSWORD", AUTH_TOKEN.into()),
            ("DAILY_LIMIT_PER_MINER", "1000000".into()),
            ("AUTH_FAILURE_BURST", "1000".into()),
        ],
    )
    .await;
    let app = std::sync::Arc::new(app);
    let started = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (app, stop) = (app.clone(), stop.clone());
        workers.spawn(async move {
            let body = folder_body(&app);
            let url = format!("{}/get-folder-access", app.base);
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let headers = sign(&app.keys.miner, &body);
                let res = support::tao::request(&app.client, &url, &body, &headers)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                answers.push(Answer {
                    at: started.elapsed(),
                    status: res.as_ref().ok().map(|r| r.status().as_u16()),
                    retry_after: res
                        .as_ref()
                        .is_ok_and(|r| r.headers().contains_key("retry-after")),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = started.elapsed();
    cluster.nodes.remove(victim).kill();
    // Wait for grants from Redis again: 200 while the quota probe passes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.app_state.access.quotas.probe_redis().await != Some(true)
        || healthcheck(&app).await["redis_ok"] != true
    {
        assert!(
            Instant::now() < deadline,
            "grants did not resume within 30 s of the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resumed_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers: Vec<Answer> = workers.join_all().await.into_iter().flatten().collect();

    let odd: Vec<&Answer> = answers
        .iter()
        .filter(|a| match a.status {
            Some(200 | 429) => false,
            Some(503) => !a.retry_after,
            _ => true,
        })
        .collect();
    assert!(
        odd.is_empty(),
        "only 200, 429 or 503 with Retry-After: {odd:?}"
    );
    let before = answers.iter().filter(|a| a.at < killed_at);
    assert!(before.clone().count() > 10);
    assert!(before.clone().all(|a| a.status == Some(200)));
    let after: Vec<&Answer> = answers.iter().filter(|a| a.at > resumed_at).collect();
    assert!(after.len() > 10, "{after:?}");
    assert!(after.iter().all(|a| a.status == Some(200)), "{after:?}");
    eprintln!(
        "primary killed at {killed_at:?}; quota path back at {resumed_at:?} ({:?} later); \
         {} answers, {} were 503",
        resumed_at - killed_at,
        answers.len(),
        answers.iter().filter(|a| a.status == Some(503)).count()
    );
}
