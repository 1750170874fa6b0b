//! Signing keys from Secrets Manager, against a local AWS API emulator (moto in server
//! mode, installed by scripts/test.sh): read at start, rotation picked up, and a missing
//! or malformed secret stops startup with a message naming the secret.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use s3_auth_api::{Config, build_app};
use serde_json::{Value, json};
use support::{Options, S3_ACCESS_KEY, S3_SECRET_KEY, TestApp, free_port};

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Moto {
    let bin = std::env::var("MOTO_SERVER_BIN").unwrap_or_else(|_| {
        panic!("MOTO_SERVER_BIN is not set: run scripts/test.sh, which installs moto[server] and sets it")
    });
    let port = free_port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

fn client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

async fn create(sm: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    sm.create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_read_from_the_secret_and_rotations_are_picked_up() {
    let moto = start_moto();
    let sm = client(&moto.endpoint);
    let keys = json!({"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY});
    create(&sm, "subnet46/aws-credentials", &keys.to_string()).await;
    let app = TestApp::start_with(Options {
        env: vec![
            (
                "AWS_CREDENTIALS_SECRET_ID",
                "subnet46/aws-credentials".into(),
            ),
            ("SECRETS_MANAGER_ENDPOINT_URL", moto.endpoint.clone()),
            ("CREDENTIALS_REFRESH_INTERVAL", "1".into()),
        ],
        ..Options::default()
    })
    .await;
    let h: Value = app.get("/healthcheck").await.json().await.expect("json");
    assert_eq!(h["credentials"]["source"], "secrets-manager");

    // Signed with the secret's keys: the upload is accepted by S3.
    let grant: Value = app
        .post("/get-folder-access", &app.miner_request())
        .await
        .json()
        .await
        .expect("json");
    let key = format!(
        "{}job_id=j/f.parquet",
        grant["folder"].as_str().expect("folder")
    );
    assert_eq!(
        support::upload(&app.client, &grant, &key, vec![1u8; 2048])
            .await
            .status(),
        204
    );

    // Rotate: the next refresh (1 s) signs with the new key id.
    let rotated =
        json!({"AWS_ACCESS_KEY_ID": "ROTATEDKEY", "AWS_SECRET_ACCESS_KEY": "rotated-secret"});
    sm.put_secret_value()
        .secret_id("subnet46/aws-credentials")
        .secret_string(rotated.to_string())
        .send()
        .await
        .expect("rotate");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let g: Value = app
            .post("/get-folder-access", &app.miner_request())
            .await
            .json()
            .await
            .expect("json");
        if g["fields"]["x-amz-credential"]
            .as_str()
            .is_some_and(|c| c.starts_with("ROTATEDKEY/"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotation not picked up: {}",
            g["fields"]["x-amz-credential"]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn startup_error(moto: &Moto, secret_id: &str) -> String {
    let env: HashMap<String, String> = HashMap::from([
        ("S3_BUCKET".into(), "test-bucket".into()),
        ("S3_REGION".into(), "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_CREDENTIALS_SECRET_ID".into(), secret_id.into()),
        ("SECRETS_MANAGER_ENDPOINT_URL".into(), moto.endpoint.clone()),
        (
            "METAGRAPH_FILE".into(),
            format!(
                "{}/examples/metagraph.sample.json",
                env!("CARGO_MANIFEST_DIR")
            ),
        ),
    ]);
    let config = Config::from_map(&env).expect("config");
    match build_app(config).await {
        Ok(_) => panic!("startup must fail for secret {secret_id}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_malformed_secret_stops_startup_naming_it() {
    let moto = start_moto();
    let sm = client(&moto.endpoint);
    let err = startup_error(&moto, "does/not-exist").await;
    assert!(err.contains("cannot read secret does/not-exist"), "{err}");
    assert!(err.contains("ResourceNotFoundException"), "{err}");

    create(&sm, "bad/not-json", "hunter2-not-json").await;
    let err = startup_error(&moto, "bad/not-json").await;
    assert!(err.contains("secret bad/not-json is not JSON"), "{err}");
    assert!(!err.contains("hunter2"), "the secret's value leaked: {err}");

    create(
        &sm,
        "bad/missing-key",
        &json!({"AWS_ACCESS_KEY_ID": "A"}).to_string(),
    )
    .await;
    let err = startup_error(&moto, "bad/missing-key").await;
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
}

/// A TCP proxy to `target` that holds each connection `delay` before passing it on (a
/// Secrets Manager endpoint that is slow to answer).
async fn slow_proxy(target: String, delay: Duration) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("http://{addr}"), task)
}

/// `serve` with the signing keys in secret `secret_id` at `endpoint`.
fn serve_with_secret(endpoint: &str, secret_id: &str, dir: &std::path::Path, port: u16) -> Child {
    let keys = support::Keys::new();
    let metagraph = dir.join("metagraph.json");
    support::write_json(&metagraph, &keys.metagraph());
    support::serve_command(
        env!("CARGO_BIN_EXE_s3-auth-api"),
        port,
        &metagraph,
        "http://127.0.0.1:1",
        dir,
    )
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("S3_REGION", "us-east-1")
    .env("AWS_CREDENTIALS_SECRET_ID", secret_id)
    .env("SECRETS_MANAGER_ENDPOINT_URL", endpoint)
    // Logs go to stdout; stderr carries only a start-up failure's one line.
    .stderr(Stdio::piped())
    .spawn()
    .expect("serve starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_secrets_manager_does_not_keep_the_listener_down() {
    let moto = start_moto();
    let sm = client(&moto.endpoint);
    let keys = json!({"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY});
    create(&sm, "slow/aws-credentials", &keys.to_string()).await;
    let target = moto.endpoint.trim_start_matches("http://").to_owned();
    let (endpoint, _proxy) = slow_proxy(target, Duration::from_secs(4)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let started = Instant::now();
    let mut child = serve_with_secret(&endpoint, "slow/aws-credentials", dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "/healthz did not answer within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "/healthz answered {:?} after start, secret still loading",
        started.elapsed()
    );
    for path in ["/healthcheck", "/readyz"] {
        let r = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 503, "{path}");
        assert!(r.headers().contains_key("retry-after"), "{path}");
        let body: Value = r.json().await.expect("json");
        assert!(body.to_string().contains("credentials"), "{path}: {body}");
    }
    let k = support::Keys::new();
    let grant = || {
        http.post(format!("{base}/get-folder-access"))
            .json(&support::miner_body(
                &k.miner,
                &k.miner_cold,
                support::now(),
            ))
            .send()
    };
    // The metagraph file loads within milliseconds; the secret takes 4 s. Until then a
    // grant is 503 with Retry-After, naming what is missing.
    let loading = Instant::now();
    loop {
        let r = grant().await.expect("answer");
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        let detail = r.json::<Value>().await.expect("json")["detail"].clone();
        if detail == "Signing credentials unavailable; try again shortly" {
            break;
        }
        assert_eq!(detail, "Metagraph not yet synced");
        assert!(
            loading.elapsed() < Duration::from_secs(2),
            "metagraph never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Once the secret arrives, the same instance becomes ready and grants.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let Ok(r) = http.get(format!("{base}/readyz")).send().await else {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            panic!("serve stopped while the secret loaded: {stderr}");
        };
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {}",
            r.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("ready {:?} after start", started.elapsed());
    assert_eq!(grant().await.expect("answer").status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_still_stops_the_binary_with_its_message() {
    let moto = start_moto();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = serve_with_secret(&moto.endpoint, "does/not-exist", dir.path(), free_port());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve kept running without its secret"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(1), "exit code of a start-up failure");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(
        stderr.contains("error: cannot start: cannot read secret does/not-exist"),
        "{stderr}"
    );
}
