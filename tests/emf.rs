//! CloudWatch embedded-metric lines from the real binary: with `EMF_INTERVAL_SECONDS` set,
//! stdout carries, once an interval, one JSON object per line that names its metrics, with
//! the 5xx answers of the interval counted. (That CloudWatch extracts them is AWS's side;
//! the format follows AWS's EMF specification.)

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{S3Server, free_port, miner_body, now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_emf_lines_counting_5xx_answers() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut command = support::serve_command(
        env!("CARGO_BIN_EXE_s3-auth-api"),
        port,
        &dir.path().join("unused.json"),
        &s3.endpoint,
        dir.path(),
    );
    // No metagraph can load (nothing listens there): every grant is a 503.
    command
        .env_remove("METAGRAPH_FILE")
        .env("SUBTENSOR_URL", format!("ws://127.0.0.1:{}", free_port()))
        .env("EMF_INTERVAL_SECONDS", "1")
        .env("EMF_NAMESPACE", "S3AuthApiTest")
        .env("EMF_SERVICE_NAME", "emf-test")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut sent_503 = 0;
    while sent_503 < 3 && started.elapsed() < Duration::from_secs(20) {
        let keys = support::Keys::new();
        let body = miner_body(&keys.miner, &keys.miner_cold, now());
        if let Ok(res) = client
            .post(format!("{base}/get-folder-access"))
            .json(&body)
            .send()
            .await
            && res.status() == 503
        {
            sent_503 += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        sent_503, 3,
        "the grants answer 503 while no metagraph is loaded"
    );

    let mut counted = 0.0;
    let mut documents = 0;
    while counted < 3.0 && started.elapsed() < Duration::from_secs(30) {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<Value>(&line) else {
            panic!("a stdout line that is not one JSON object: {line}");
        };
        if doc.get("_aws").is_none() {
            continue;
        }
        documents += 1;
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "S3AuthApiTest", "{doc}");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Service"]]));
        assert_eq!(doc["Service"], "emf-test");
        assert!(doc["_aws"]["Timestamp"].as_u64().is_some(), "{doc}");
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("name");
            assert!(doc[name].is_number(), "{name} has a value: {doc}");
        }
        assert!(
            doc["SyncFailuresConsecutive"].as_f64() >= Some(1.0),
            "{doc}"
        );
        assert!(
            doc.get("MetagraphAgeSeconds").is_none(),
            "no metagraph yet: {doc}"
        );
        counted += doc["Http5xx"].as_f64().expect("Http5xx");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(documents >= 1, "no EMF line within 30 s");
    assert_eq!(
        counted, 3.0,
        "the three 503s are counted once each over the intervals"
    );
}
