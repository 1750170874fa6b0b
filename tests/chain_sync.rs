//! The metagraph read from a (fake) Subtensor node with subxt: initial sync, later
//! changes, outages, restarts from the snapshot, garbage and hangs, runtime upgrades.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use s3_auth_api::{Config, StartupError, build_app};
use serde_json::{Value, json};
use support::fake_node::{Chain, FakeNeuron, FakeNode, Mode};
use support::{Keys, Options, TestApp, TestKey, miner_body, now, validator_body};

/// Raw alpha (rao) just below and at the Python float32 validator boundary for 20000.
const BELOW: u64 = 20_000_999_023_437;
const AT: u64 = 20_000_999_023_438;

fn neuron(hot: &TestKey, cold: &TestKey, permit: bool, alpha_raw: u64) -> FakeNeuron {
    FakeNeuron {
        hotkey: hot.public(),
        coldkey: cold.public(),
        validator_permit: permit,
        alpha_raw,
    }
}

fn chain(keys: &Keys) -> Chain {
    Chain {
        netuid: 46,
        block: 5_000_000,
        spec_version: 365,
        neurons: vec![
            neuron(&keys.miner, &keys.miner_cold, false, 1_000_000_000),
            neuron(&keys.other_miner, &keys.other_cold, false, 0),
            neuron(&keys.validator, &keys.validator_cold, true, AT),
            neuron(&keys.weak_validator, &keys.validator_cold, true, BELOW),
        ],
        mode: Mode::Normal,
    }
}

async fn health(app: &TestApp) -> Value {
    app.get("/healthcheck").await.json().await.expect("json")
}

async fn wait_for(app: &TestApp, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = health(app).await;
        if pred(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn access(ts: i64) -> String {
    format!("s3:validator:access:{ts}")
}

async fn chain_app(node: &FakeNode, env: Vec<(&'static str, String)>) -> TestApp {
    TestApp::start_with(Options {
        chain_url: Some(node.url.clone()),
        env,
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_then_changes_are_picked_up() {
    let keys = Keys::new();
    let node = FakeNode::start(chain(&keys)).await;
    let app = chain_app(&node, vec![]).await;

    let h = health(&app).await;
    let m = &h["metagraph_syncer"];
    assert_eq!(m["enabled"], true, "{h}");
    assert_eq!(m["source"], format!("chain:{}", node.url));
    assert_eq!(m["block"], 5_000_000);
    assert_eq!(m["hotkeys_count"], 4);
    // Python's float32 rule: AT is a validator, BELOW is not.
    assert_eq!(m["validators_count"], 1);
    assert!(m["last_sync"].as_str().is_some_and(|s| s.ends_with('Z')));

    // Hotkeys, coldkeys, permits and stakes as on chain.
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
    let wrong_cold = miner_body(&keys.miner, &keys.other_cold, now());
    assert_eq!(
        app.post("/get-folder-access", &wrong_cold).await.status(),
        401
    );
    let res = app
        .post(
            "/get-validator-access",
            &validator_body(&keys.validator, access, json!({})),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .post(
            "/get-validator-access",
            &validator_body(&keys.weak_validator, access, json!({})),
        )
        .await;
    assert_eq!(res.status(), 401);

    // A new neuron and a changed permit show up at the next sync.
    let newcomer = TestKey::from_seed(77);
    node.update(|c| {
        c.block += 10;
        c.neurons
            .push(neuron(&newcomer, &keys.miner_cold, false, 5));
        c.neurons[0].validator_permit = true;
        c.neurons[0].alpha_raw = 30_000_000_000_000;
    });
    wait_for(&app, "the next sync", |h| {
        h["metagraph_syncer"]["block"] == 5_000_010
    })
    .await;
    let h = health(&app).await;
    assert_eq!(h["metagraph_syncer"]["hotkeys_count"], 5);
    assert_eq!(h["metagraph_syncer"]["validators_count"], 2);
    let body = miner_body(&newcomer, &keys.miner_cold, now());
    assert_eq!(app.post("/get-folder-access", &body).await.status(), 200);
    let res = app
        .post(
            "/get-validator-access",
            &validator_body(&keys.miner, access, json!({})),
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_keeps_serving_and_recovery_resumes_syncing() {
    let keys = Keys::new();
    let mut node = FakeNode::start(chain(&keys)).await;
    let app = chain_app(&node, vec![("METAGRAPH_MAX_AGE", "2".into())]).await;
    assert_eq!(health(&app).await["metagraph_syncer"]["block"], 5_000_000);

    node.stop().await;
    let h = wait_for(&app, "a failed sync", |h| {
        h["metagraph_syncer"]["consecutive_failures"].as_u64() >= Some(1)
    })
    .await;
    assert!(h["metagraph_syncer"]["last_error"].is_string());
    let age_before = h["metagraph_syncer"]["age_seconds"].as_u64().expect("age");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let h = health(&app).await;
    assert!(h["metagraph_syncer"]["age_seconds"].as_u64().expect("age") > age_before);
    assert_eq!(h["metagraph_syncer"]["block"], 5_000_000);
    // Older than METAGRAPH_MAX_AGE: degraded, but this instance still serves (200).
    let h = wait_for(&app, "a stale metagraph", |h| {
        h["metagraph_syncer"]["stale"] == true
    })
    .await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(app.get("/healthcheck").await.status(), 200);
    // Requests keep succeeding from the last good metagraph.
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );

    node.update(|c| c.block = 5_000_100);
    node.restart().await;
    let h = wait_for(&app, "recovery", |h| {
        h["metagraph_syncer"]["block"] == 5_000_100
    })
    .await;
    assert_eq!(h["metagraph_syncer"]["consecutive_failures"], 0);
    assert!(h["metagraph_syncer"]["age_seconds"].as_u64() <= Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_hangs_do_not_wedge_the_syncer() {
    let keys = Keys::new();
    let node = FakeNode::start(chain(&keys)).await;
    let app = chain_app(&node, vec![]).await;

    node.update(|c| {
        c.mode = Mode::Garbage;
        c.block += 1;
    });
    let h = wait_for(&app, "a decode failure", |h| {
        h["metagraph_syncer"]["consecutive_failures"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(h["metagraph_syncer"]["block"], 5_000_000);
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );

    node.update(|c| {
        c.mode = Mode::Hang;
        c.block += 1;
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Handlers never wait on a sync.
    let started = Instant::now();
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    node.update(|c| {
        c.mode = Mode::Normal;
        c.block = 5_000_200;
    });
    wait_for(&app, "recovery after a hang", |h| {
        h["metagraph_syncer"]["block"] == 5_000_200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_upgrade_is_followed_without_restart() {
    let keys = Keys::new();
    let node = FakeNode::start(chain(&keys)).await;
    let app = chain_app(&node, vec![]).await;
    let metadata_fetches = |node: &FakeNode| {
        node.calls
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|n| n.starts_with("Metadata_metadata_at_version"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(metadata_fetches(&node), 1);
    node.update(|c| {
        c.spec_version = 366;
        c.block = 5_000_300;
    });
    wait_for(&app, "sync after the upgrade", |h| {
        h["metagraph_syncer"]["block"] == 5_000_300
    })
    .await;
    assert_eq!(metadata_fetches(&node), 2, "new spec version, new metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_node_down_serves_the_snapshot() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("metagraph-snapshot.json");
    let mut node = FakeNode::start(chain(&keys)).await;
    {
        let app = chain_app(
            &node,
            vec![("METAGRAPH_SNAPSHOT_PATH", snapshot.display().to_string())],
        )
        .await;
        assert_eq!(health(&app).await["metagraph_syncer"]["block"], 5_000_000);
        assert!(snapshot.exists(), "snapshot written after a sync");
    }
    node.stop().await;

    let app = chain_app(
        &node,
        vec![("METAGRAPH_SNAPSHOT_PATH", snapshot.display().to_string())],
    )
    .await;
    let h = health(&app).await;
    assert_eq!(app.get("/healthcheck").await.status(), 200);
    let m = &h["metagraph_syncer"];
    assert_eq!(m["source"], format!("snapshot:{}", snapshot.display()));
    assert_eq!(m["from_snapshot"], true);
    assert_eq!(m["block"], 5_000_000);
    assert_eq!(m["validators_count"], 1);
    assert!(m["consecutive_failures"].as_u64() >= Some(1));
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );
    let res = app
        .post(
            "/get-validator-access",
            &validator_body(&keys.weak_validator, access, json!({})),
        )
        .await;
    assert_eq!(
        res.status(),
        401,
        "the float32 decision survives the snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_node_down_serves_the_snapshot_kept_in_s3() {
    let keys = Keys::new();
    let s3_root = tempfile::tempdir().expect("tempdir");
    let key = "_service/metagraph-snapshot.json";
    let location = format!("s3://{}/{key}", support::BUCKET);
    let options = |node: &FakeNode, extra: Vec<(&'static str, String)>| {
        let mut env = vec![("METAGRAPH_SNAPSHOT_PATH", location.clone())];
        env.extend(extra);
        Options {
            chain_url: Some(node.url.clone()),
            env,
            s3_root: Some(s3_root.path().to_path_buf()),
            ..Options::default()
        }
    };
    let mut node = FakeNode::start(chain(&keys)).await;
    {
        let app = TestApp::start_with(options(&node, vec![])).await;
        assert_eq!(health(&app).await["metagraph_syncer"]["block"], 5_000_000);
        assert!(
            app.s3.size(key).await.is_some(),
            "snapshot written to S3 after a sync"
        );
    }
    node.stop().await;

    // A new task (new process, new S3 server over the same bucket), the chain still down.
    let app = TestApp::start_with(options(&node, vec![])).await;
    let h = health(&app).await;
    let m = &h["metagraph_syncer"];
    assert_eq!(m["source"], format!("snapshot:{location}"), "{h}");
    assert_eq!(m["from_snapshot"], true);
    assert_eq!(m["block"], 5_000_000);
    assert_eq!(
        app.post("/get-folder-access", &app.miner_request())
            .await
            .status(),
        200
    );

    // The same snapshot made two hours old is not served past METAGRAPH_REFUSE_AFTER.
    let object = app
        .s3
        .client
        .get_object()
        .bucket(support::BUCKET)
        .key(key)
        .send()
        .await
        .expect("snapshot object");
    let bytes = object.body.collect().await.expect("body").into_bytes();
    let mut doc: Value = serde_json::from_slice(&bytes).expect("snapshot json");
    doc["synced_at"] = json!(support::now() - 7200);
    app.s3
        .client
        .put_object()
        .bucket(support::BUCKET)
        .key(key)
        .body(serde_json::to_vec(&doc).expect("json").into())
        .send()
        .await
        .expect("put");
    drop(app);
    let app = TestApp::start_with(options(
        &node,
        vec![("METAGRAPH_REFUSE_AFTER", "3600".into())],
    ))
    .await;
    let res = app.post("/get-folder-access", &app.miner_request()).await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.expect("json")["detail"],
        "Metagraph not yet synced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metagraph_yet_means_503_not_401() {
    // Nothing listens on this port and there is no snapshot.
    let port = support::free_port();
    let app = TestApp::start_with(Options {
        chain_url: Some(format!("ws://127.0.0.1:{port}")),
        ..Options::default()
    })
    .await;
    let res = app.post("/get-folder-access", &app.miner_request()).await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "Metagraph not yet synced"})
    );
    let res = app.get("/healthcheck").await;
    assert_eq!(res.status(), 503);
    let h: Value = res.json().await.expect("json");
    assert_eq!(h["metagraph_syncer"]["enabled"], false);
    assert!(h["metagraph_syncer"]["last_error"].is_string());
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let r: Value = res.json().await.expect("json");
    assert_eq!(r["checks"]["metagraph"], "missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_that_does_not_exist_stops_startup() {
    let keys = Keys::new();
    let node = FakeNode::start(chain(&keys)).await;
    let env: HashMap<String, String> = HashMap::from([
        ("S3_BUCKET".into(), "test-bucket".into()),
        ("AWS_ACCESS_KEY_ID".into(), "a".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "b".into()),
        ("SUBTENSOR_URL".into(), node.url.clone()),
        ("NET_UID".into(), "999".into()),
        ("METAGRAPH_SYNC_TIMEOUT".into(), "5".into()),
    ]);
    let config = Config::from_map(&env).expect("config");
    match build_app(config).await {
        Err(StartupError::Metagraph(e)) => {
            assert!(e.to_string().contains("subnet 999 does not exist"), "{e}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("startup must fail for a missing subnet"),
    }
}
