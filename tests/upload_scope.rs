//! Property: a miner's POST policy never admits a key outside `data/hotkey={its hotkey}/`,
//! checked with real uploads against the embedded S3 server (which keeps keys literally,
//! as AWS does), not only by evaluating the policy.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::Value;
use support::{TestApp, upload};

/// Keys a miner might try: inside its folder, in another's, near misses of its prefix,
/// path tricks and arbitrary text.
fn keys(own: String, other: String) -> impl Strategy<Value = String> {
    let tail = "[a-zA-Z0-9._=%/ -]{1,40}|(\\.\\./|\\./|//|%2e%2e/|\u{e9}){1,4}[a-z]{1,8}";
    let own_hotkey = own
        .trim_start_matches("data/hotkey=")
        .trim_end_matches('/')
        .to_owned();
    let stem = own_hotkey[..own_hotkey.len() - 1].to_owned();
    prop_oneof![
        (Just(own.clone()), tail).prop_map(|(p, t)| format!("{p}{t}")),
        (Just(other.clone()), tail).prop_map(|(p, t)| format!("{p}{t}")),
        (Just(own.clone()), tail).prop_map(move |(p, t)| format!("{p}../{}{t}", &other[5..])),
        (Just(own_hotkey.clone()), "[a-zA-Z0-9]", tail)
            .prop_map(|(h, c, t)| format!("data/hotkey={h}{c}/{t}")),
        (Just(stem), tail).prop_map(|(s, t)| format!("data/hotkey={s}/{t}")),
        (Just(own.clone()), tail).prop_map(|(p, t)| format!("/{p}{t}")),
        (Just(own.clone()), tail).prop_map(|(p, t)| format!("{}{t}", p.to_uppercase())),
        "[a-zA-Z0-9._=/-]{1,80}",
    ]
}

#[test]
fn a_miners_policy_never_admits_a_key_outside_its_folder() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let app = TestApp::start().await;
        let grant: Value = app
            .post("/get-folder-access", &app.miner_request())
            .await
            .json()
            .await
            .expect("json");
        let own = format!("data/hotkey={}/", app.keys.miner.ss58);
        let other = format!("data/hotkey={}/", app.keys.other_miner.ss58);
        let strategy = keys(own.clone(), other);
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 96,
            ..ProptestConfig::default()
        });
        let admitted = AtomicUsize::new(0);
        // proptest drives the cases synchronously; each upload runs on this runtime.
        let result = tokio::task::block_in_place(|| {
            runner.run(&strategy, |key| {
                let handle = tokio::runtime::Handle::current();
                let status = handle.block_on(async {
                    upload(&app.client, &grant, &key, vec![5u8; 2048])
                        .await
                        .status()
                        .as_u16()
                });
                if status == 204 {
                    admitted.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(
                        key.starts_with(&own),
                        "admitted outside the folder: {key:?}"
                    );
                    let size = handle.block_on(app.s3.size(&key));
                    prop_assert_eq!(size, Some(2048), "stored under its literal key: {:?}", key);
                } else if !(400..500).contains(&status) {
                    return Err(TestCaseError::fail(format!("{key:?} got {status}")));
                }
                Ok(())
            })
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        let stored = app.s3.keys("").await;
        assert!(!stored.is_empty(), "some uploads into the folder succeeded");
        for key in &stored {
            assert!(key.starts_with(&own), "a key outside the folder: {key:?}");
        }
        assert!(admitted.load(Ordering::Relaxed) >= stored.len());
    });
}
