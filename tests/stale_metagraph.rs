//! A metagraph its source no longer confirms stops granting after
//! `METAGRAPH_REFUSE_AFTER`, and grants again once the source is back; at start, a snapshot
//! older than that is not served.

mod support;

use std::time::{Duration, Instant, SystemTime};

use s3_auth_api::metagraph::{Metagraph, MetagraphDocument, snapshot};
use serde_json::Value;
use support::{Options, TestApp, free_port};

async fn status_of(app: &TestApp, path: &str) -> (u16, Option<String>, Value) {
    let res = if path.starts_with("/get-") {
        app.post(path, &app.miner_request()).await
    } else {
        app.get(path).await
    };
    let code = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (code, retry, res.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_stop_when_the_source_is_gone_too_long_and_resume_when_it_returns() {
    let app = TestApp::start_with(Options {
        env: vec![("METAGRAPH_REFUSE_AFTER", "3".into())],
        ..Options::default()
    })
    .await;
    assert_eq!(status_of(&app, "/get-folder-access").await.0, 200);
    let doc = std::fs::read(&app.metagraph_path).expect("metagraph");
    std::fs::remove_file(&app.metagraph_path).expect("remove the source");
    let gone = Instant::now();
    let (code, retry, body) = loop {
        let answer = status_of(&app, "/get-folder-access").await;
        if answer.0 != 200 {
            break answer;
        }
        assert!(gone.elapsed() < Duration::from_secs(8), "still granting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused_after = gone.elapsed();
    eprintln!("grants refused {refused_after:?} after the source went away");
    assert!(refused_after >= Duration::from_secs(2), "{refused_after:?}");
    assert_eq!(
        (code, body["detail"].as_str()),
        (503, Some("Metagraph too old"))
    );
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)));
    let (code, retry, body) = status_of(&app, "/healthcheck").await;
    assert_eq!(code, 503, "{body}");
    assert!(retry.is_some());
    assert_eq!(body["missing"], serde_json::json!(["fresh_metagraph"]));
    let (code, _, body) = status_of(&app, "/readyz").await;
    assert_eq!(
        (code, body["checks"]["metagraph"].as_str()),
        (503, Some("too_old"))
    );

    // The source is back: the next poll confirms the metagraph and grants resume.
    let tmp = app.metagraph_path.with_extension("tmp");
    std::fs::write(&tmp, &doc).expect("write");
    std::fs::rename(&tmp, &app.metagraph_path).expect("restore");
    let back = Instant::now();
    loop {
        if status_of(&app, "/get-folder-access").await.0 == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "grants did not resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_of(&app, "/healthcheck").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_older_than_the_refusal_age_is_not_served_at_start() {
    let keys = support::Keys::new();
    let doc: MetagraphDocument = serde_json::from_value(keys.metagraph()).expect("document");
    for (age_secs, served) in [(7_200u64, false), (60, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.json");
        let at = SystemTime::now() - Duration::from_secs(age_secs);
        snapshot::write(&path, &Metagraph::from_document(doc.clone()), at)
            .await
            .expect("snapshot");
        // The chain is down at start: only the snapshot could serve.
        let app = TestApp::start_with(Options {
            chain_url: Some(format!("ws://127.0.0.1:{}", free_port())),
            env: vec![
                ("METAGRAPH_SNAPSHOT_PATH", path.display().to_string()),
                ("METAGRAPH_REFUSE_AFTER", "3600".into()),
            ],
            ..Options::default()
        })
        .await;
        let (code, _, body) = status_of(&app, "/get-folder-access").await;
        if served {
            assert_eq!(code, 200, "a {age_secs} s old snapshot is served: {body}");
        } else {
            assert_eq!(
                (code, body["detail"].as_str()),
                (503, Some("Metagraph not yet synced")),
                "a {age_secs} s old snapshot must not be served"
            );
        }
    }
}
