//! `s3-auth-api selftest` against the in-process S3 server: every step passes with the
//! right configuration and leaves nothing behind; with a wrong secret key, a missing bucket
//! or a policy the server refuses it fails, naming the step and S3's error code.
//!
//! What this cannot prove: IAM and ACL permissions (the lab's server ignores them). That
//! is what the command is for, run against the real bucket after each deploy.

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime};

use s3_auth_api::selftest::{Outcome, SELFTEST_PREFIX, Step, run};
use s3_auth_api::storage::BucketLocation;
use support::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_passes_against_the_configured_bucket_and_nothing_is_left() {
    let s3 = S3Server::start().await;
    let view = S3ServerView {
        endpoint: s3.endpoint.clone(),
        root: s3.root.clone(),
    };
    let (code, out) = tokio::task::spawn_blocking(move || view.run(BUCKET, S3_SECRET_KEY))
        .await
        .expect("join");
    assert_eq!(code, 0, "{out}");
    for step in ["presign", "upload", "download", "list", "delete"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("selftest: {step} OK"))),
            "{step} OK missing: {out}"
        );
    }
    assert!(out.contains("selftest: PASSED"), "{out}");
    assert!(
        s3.keys(SELFTEST_PREFIX).await.is_empty(),
        "the canary was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_key_or_a_missing_bucket_fails_at_the_upload() {
    let s3 = S3Server::start().await;
    let view = S3ServerView {
        endpoint: s3.endpoint.clone(),
        root: s3.root.clone(),
    };
    let (code, out) = tokio::task::spawn_blocking(move || {
        let wrong = view.run(BUCKET, "not-the-secret-key-at-all");
        let missing = view.run("no-such-bucket", S3_SECRET_KEY);
        (wrong, missing)
    })
    .await
    .map(|(wrong, missing)| {
        assert_eq!(missing.0, 1, "{}", missing.1);
        assert!(
            missing.1.contains("selftest: upload FAIL NoSuchBucket"),
            "{}",
            missing.1
        );
        assert!(
            missing.1.contains("selftest: FAILED at upload"),
            "{}",
            missing.1
        );
        wrong
    })
    .expect("join");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("selftest: upload FAIL SignatureDoesNotMatch"),
        "{out}"
    );
    assert!(out.contains("selftest: download SKIP"), "{out}");
    assert!(out.contains("selftest: FAILED at upload"), "{out}");
}

#[tokio::test]
async fn a_policy_the_server_refuses_fails_at_the_upload() {
    let s3 = S3Server::start().await;
    let credentials =
        aws_credential_types::Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test");
    let location = BucketLocation {
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        public_endpoint: Some(s3.endpoint.clone()),
    };
    // Signed two days ago: the 24 h policy has expired, and S3 refuses the form.
    let signed_at = SystemTime::now() - Duration::from_secs(48 * 3600);
    let mut seen = Vec::new();
    let ok = run(
        &credentials,
        &location,
        &s3_auth_api::config::TaoSettings::default(),
        &reqwest::Client::new(),
        signed_at,
        |step, outcome| seen.push((step, outcome.clone())),
    )
    .await;
    assert!(!ok);
    assert_eq!(seen[0].0, Step::Presign);
    assert!(matches!(seen[0].1, Outcome::Ok(_)));
    assert_eq!(seen[1].0, Step::Upload);
    let Outcome::Fail(detail) = &seen[1].1 else {
        panic!("the upload must fail: {seen:?}");
    };
    assert!(detail.contains("HTTP 4"), "{detail}");
    assert!(
        seen[2..]
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Skipped(_)))
    );
    assert!(s3.keys("").await.is_empty(), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_step_runs_the_script_on_the_configured_cluster_and_fails_where_requests_would() {
    let s3 = S3Server::start().await;
    let view = S3ServerView {
        endpoint: s3.endpoint.clone(),
        root: s3.root.clone(),
    };
    let (code, out, forced) = tokio::task::spawn_blocking(move || {
        let cluster = support::cluster::RedisCluster::start();
        let url = ("REDIS_URL", cluster.url(3));
        let (code, out) = view.run_with(BUCKET, S3_SECRET_KEY, std::slice::from_ref(&url));
        let forced = view.run_with(
            BUCKET,
            S3_SECRET_KEY,
            &[url, ("REDIS_MODE", "standalone".into())],
        );
        (code, out, forced)
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("selftest: quota OK (cluster, script ran in"),
        "{out}"
    );
    assert!(out.contains("selftest: PASSED"), "{out}");
    // Forced to a single-node connection, the script's keys span slots: the step fails,
    // the S3 steps still run, and the exit code says so.
    let (code, out) = forced;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("selftest: quota FAIL standalone: "), "{out}");
    assert!(out.contains("selftest: delete OK"), "{out}");
    assert!(out.contains("selftest: FAILED at quota"), "{out}");
}

/// What the blocking binary runs need of a server (which itself stays on the runtime).
struct S3ServerView {
    endpoint: String,
    root: std::path::PathBuf,
}

impl S3ServerView {
    /// Runs the binary's `selftest` with only the given variables: (exit code, stdout).
    fn run(&self, bucket: &str, secret: &str) -> (i32, String) {
        self.run_with(bucket, secret, &[])
    }

    /// Like [`S3ServerView::run`], with `extra` variables.
    fn run_with(&self, bucket: &str, secret: &str, extra: &[(&str, String)]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_s3-auth-api"))
            .arg("selftest")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("S3_BUCKET", bucket)
            .env("S3_REGION", "us-east-1")
            .env("S3_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&self.root)
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !stdout.contains(secret) && !stdout.contains("X-Amz-Signature"),
            "secrets or presigned URLs in the output: {stdout}"
        );
        (out.status.code().unwrap_or(-1), stdout)
    }
}
