//! Test support: a real `redis-server`, a real S3-compatible server (s3s + s3s-fs,
//! in-process, checking SigV4 and POST-policy conditions), sr25519 test keys, and the
//! app itself on an ephemeral port.

#![allow(dead_code)]

pub mod cluster;
pub mod fake_node;
pub mod raw_http;
pub mod tao;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use s3_auth_api::auth::encode_ss58;
use s3_auth_api::{App, Config, build_app};
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Access key the test S3 server accepts.
pub const S3_ACCESS_KEY: &str = "test-access-key";
/// Secret key the test S3 server accepts.
pub const S3_SECRET_KEY: &str = "test-secret-key-0123456789";
/// The bucket the tests use.
pub const BUCKET: &str = "test-bucket";

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A `redis-server` child process on a free port, killed on drop.
pub struct RedisServer {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts `redis-server`. Fails the test with instructions when it is not installed:
    /// tests never skip silently.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts `redis-server` on `port`.
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Starts `redis-server` on `port` with `extra` arguments.
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). These tests need a real Redis: run \
                     scripts/test.sh, which installs it, or `apt-get install -y redis-server`."
                )
            });
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.ping() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not answer PING within 10 s");
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        // A server that requires a password answers, too, if only to ask for it.
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
    }

    /// Runs a command with redis-cli-like inline syntax and returns the raw reply.
    pub fn command(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s.write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An in-process S3-compatible server over a temporary directory.
pub struct S3Server {
    /// `http://127.0.0.1:{port}`.
    pub endpoint: String,
    /// Root of the stored data.
    pub root: PathBuf,
    _dir: Option<TempDir>,
    /// An SDK client for the server, with the test credentials.
    pub client: aws_sdk_s3::Client,
    task: tokio::task::JoinHandle<()>,
}

/// A bucket of an S3 endpoint started elsewhere.
pub struct RemoteS3 {
    /// An SDK client for the endpoint.
    pub client: aws_sdk_s3::Client,
    /// The bucket.
    pub bucket: String,
}

impl RemoteS3 {
    /// Stores `keys` (8 bytes each), 32 at a time.
    pub async fn put_many(&self, keys: Vec<String>) {
        put_many(&self.client, &self.bucket, keys).await;
    }
}

/// Stores `keys` (8 bytes each) in `bucket` through the S3 API, 32 at a time.
pub async fn put_many(client: &aws_sdk_s3::Client, bucket: &str, keys: Vec<String>) {
    let mut running: tokio::task::JoinSet<Result<(), String>> = tokio::task::JoinSet::new();
    for key in keys {
        if running.len() >= 32 {
            let done = running.join_next().await.expect("a running put");
            done.expect("task").expect("put");
        }
        let (client, bucket) = (client.clone(), bucket.to_owned());
        running.spawn(async move {
            client
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(vec![1u8; 8].into())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))
        });
    }
    while let Some(done) = running.join_next().await {
        done.expect("task").expect("put");
    }
}

impl S3Server {
    /// Starts the server with bucket [`BUCKET`] and the test credentials.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_in(dir.path()).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a server over `root`, keeping what an earlier server stored there.
    pub async fn start_in(root: &Path) -> Self {
        let (addr, task) = s3_auth_api::dev::start_embedded_s3(
            "127.0.0.1:0".parse().expect("addr"),
            root,
            &[BUCKET],
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
        )
        .await
        .expect("embedded S3 starts");
        let endpoint = format!("http://{addr}");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-2"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                S3_ACCESS_KEY,
                S3_SECRET_KEY,
                None,
                None,
                "tests",
            ))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build();
        Self {
            endpoint,
            root: root.to_path_buf(),
            _dir: None,
            client: aws_sdk_s3::Client::from_conf(config),
            task,
        }
    }

    /// The size of the object `key`, or `None` when there is none.
    pub async fn size(&self, key: &str) -> Option<i64> {
        let head = self
            .client
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .ok()?;
        head.content_length()
    }

    /// Stores `keys` (8 bytes each) through the S3 API, 32 at a time.
    pub async fn put_many(&self, keys: Vec<String>) {
        put_many(&self.client, BUCKET, keys).await;
    }

    /// A client of another S3 endpoint (such as `dev`'s) with `bucket`.
    pub fn client_for(endpoint: &str, access: &str, secret: &str, bucket: &str) -> RemoteS3 {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                access, secret, None, None, "tests",
            ))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build();
        RemoteS3 {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: bucket.to_owned(),
        }
    }

    /// Every key under `prefix`, through ListObjectsV2 pages.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return keys,
            }
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An sr25519 key made from a fixed seed, as Substrate derives keys from a mini secret.
#[derive(Clone)]
pub struct TestKey {
    pair: Arc<Keypair>,
    /// The SS58 address (prefix 42).
    pub ss58: String,
}

impl TestKey {
    /// The key for `seed` (each byte value gives a different key).
    pub fn from_seed(seed: u8) -> Self {
        let mini = MiniSecretKey::from_bytes(&[seed; 32]).expect("32-byte seed");
        let pair = mini.expand_to_keypair(ExpansionMode::Ed25519);
        let ss58 = encode_ss58(&pair.public.to_bytes());
        Self {
            pair: Arc::new(pair),
            ss58,
        }
    }

    /// The raw public key.
    pub fn public(&self) -> [u8; 32] {
        self.pair.public.to_bytes()
    }

    /// Hex sr25519 signature over `message` with context `substrate`.
    pub fn sign(&self, message: &str) -> String {
        let sig = self.pair.sign_simple(b"substrate", message.as_bytes());
        hex::encode(sig.to_bytes())
    }
}

/// The keys of the test subnet.
pub struct Keys {
    pub miner: TestKey,
    pub miner_cold: TestKey,
    pub other_miner: TestKey,
    pub other_cold: TestKey,
    pub validator: TestKey,
    pub validator_cold: TestKey,
    /// Has a validator permit but only 20000.9 alpha (not above 20000).
    pub weak_validator: TestKey,
    pub stranger: TestKey,
}

impl Keys {
    pub fn new() -> Self {
        Self {
            miner: TestKey::from_seed(1),
            miner_cold: TestKey::from_seed(101),
            other_miner: TestKey::from_seed(2),
            other_cold: TestKey::from_seed(102),
            validator: TestKey::from_seed(3),
            validator_cold: TestKey::from_seed(103),
            weak_validator: TestKey::from_seed(4),
            stranger: TestKey::from_seed(9),
        }
    }

    /// The metagraph document with the miners and the validator registered.
    pub fn metagraph(&self) -> Value {
        json!({
            "netuid": 46,
            "block": 4_000_000,
            "neurons": [
                {"uid": 0, "hotkey": self.miner.ss58, "coldkey": self.miner_cold.ss58, "validator_permit": false, "alpha_stake": 10.0},
                {"uid": 1, "hotkey": self.other_miner.ss58, "coldkey": self.other_cold.ss58, "validator_permit": false, "alpha_stake": 5.0},
                {"uid": 2, "hotkey": self.validator.ss58, "coldkey": self.validator_cold.ss58, "validator_permit": true, "alpha_stake": 25_000.0},
                {"uid": 3, "hotkey": self.weak_validator.ss58, "coldkey": self.validator_cold.ss58, "validator_permit": true, "alpha_stake": 20_000.9},
            ]
        })
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The body of a miner's `/get-folder-access` request signed by `hotkey`.
pub fn miner_body(hotkey: &TestKey, coldkey: &TestKey, timestamp: i64) -> Value {
    let message = format!(
        "s3:data:access:{}:{}:{timestamp}",
        coldkey.ss58, hotkey.ss58
    );
    json!({
        "coldkey": coldkey.ss58,
        "hotkey": hotkey.ss58,
        "timestamp": timestamp,
        "signature": hotkey.sign(&message),
    })
}

/// A signed validator body: `message` builds the commitment from the timestamp.
pub fn validator_body(key: &TestKey, message: impl Fn(i64) -> String, extra: Value) -> Value {
    let ts = now();
    let mut body = json!({
        "hotkey": key.ss58,
        "timestamp": ts,
        "signature": key.sign(&message(ts)),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// A running app with its S3 server and (optionally) Redis.
pub struct TestApp {
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    pub client: reqwest::Client,
    pub app_state: Arc<s3_auth_api::AppState>,
    pub s3: S3Server,
    pub redis: Option<RedisServer>,
    pub keys: Keys,
    pub metagraph_path: PathBuf,
    _dir: TempDir,
    tasks: s3_auth_api::BackgroundTasks,
    server: tokio::task::JoinHandle<()>,
}

/// How to start a [`TestApp`].
#[derive(Default)]
pub struct Options {
    /// Start a real Redis and point `REDIS_URL` at it.
    pub redis: bool,
    /// Point `REDIS_URL` at this Redis started elsewhere (a cluster node).
    pub redis_url: Option<String>,
    /// Do not wait for `redis_url` to pass the quota probe (a test of a Redis that fails it).
    pub redis_may_fail: bool,
    /// Extra or overriding variables.
    pub env: Vec<(&'static str, String)>,
    /// Read the metagraph from this Subtensor node instead of a file.
    pub chain_url: Option<String>,
    /// Keep the S3 server's data here (across apps) instead of in a fresh directory.
    pub s3_root: Option<PathBuf>,
}

impl TestApp {
    /// Starts with in-process quotas.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts with options.
    pub async fn start_with(options: Options) -> Self {
        let keys = Keys::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let metagraph_path = dir.path().join("metagraph.json");
        write_json(&metagraph_path, &keys.metagraph());
        let s3 = match &options.s3_root {
            Some(root) => S3Server::start_in(root).await,
            None => S3Server::start().await,
        };
        let redis = options.redis.then(RedisServer::start);

        let mut env: HashMap<String, String> = HashMap::from([
            ("S3_BUCKET".into(), BUCKET.into()),
            ("S3_REGION".into(), "us-east-1".into()),
            ("S3_ENDPOINT_URL".into(), s3.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
        ]);
        match &options.chain_url {
            Some(url) => {
                env.insert("SUBTENSOR_URL".into(), url.clone());
                env.insert("METAGRAPH_SYNC_INTERVAL".into(), "1".into());
                env.insert("METAGRAPH_SYNC_TIMEOUT".into(), "2".into());
            }
            None => {
                env.insert(
                    "METAGRAPH_FILE".into(),
                    metagraph_path.display().to_string(),
                );
                env.insert("METAGRAPH_FILE_POLL_SECS".into(), "1".into());
            }
        }
        if let Some(r) = &redis {
            env.insert("REDIS_URL".into(), r.url());
        }
        if let Some(url) = &options.redis_url {
            env.insert("REDIS_URL".into(), url.clone());
        }
        for (k, v) in options.env {
            env.insert(k.into(), v);
        }
        let config = Config::from_map(&env).expect("test config is valid");
        let App {
            router,
            state,
            tasks,
        } = build_app(config).await.expect("app starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind app");
        let addr: SocketAddr = listener.local_addr().expect("app addr");
        // The library's serving loop, so tests exercise the real connection handling.
        let settings =
            s3_auth_api::server::ServeSettings::from_config(&state.config, state.draining.clone());
        let server = tokio::spawn(async move {
            let _ =
                s3_auth_api::server::run(listener, router, settings, std::future::pending()).await;
        });
        let app = Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            app_state: state,
            s3,
            redis,
            keys,
            metagraph_path,
            _dir: dir,
            tasks,
            server,
        };
        if app.redis.is_some() || (options.redis_url.is_some() && !options.redis_may_fail) {
            app.wait_for_redis().await;
        }
        app
    }

    async fn wait_for_redis(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.app_state.access.quotas.probe_redis().await == Some(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the app did not connect to redis within 10 s");
    }

    /// POSTs JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request reaches the app")
    }

    /// POSTs raw bytes with a JSON content type to `path`.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request reaches the app")
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request reaches the app")
    }

    /// A signed miner request for the main test miner.
    pub fn miner_request(&self) -> Value {
        miner_body(&self.keys.miner, &self.keys.miner_cold, now())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.tasks.abort();
        self.server.abort();
    }
}

/// The text of the first `<tag>…</tag>` in an S3 XML answer.
pub fn xml_value<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// The keys of a ListObjectsV2 answer, URL-decoded when it was asked with
/// `encoding-type=url` (as every list URL of the service is), as validators read them.
pub fn listed_keys(xml: &str) -> Vec<String> {
    s3_auth_api::client::parse_list(xml)
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// The common prefixes of a ListObjectsV2 answer, decoded as [`listed_keys`].
pub fn listed_prefixes(xml: &str) -> Vec<String> {
    s3_auth_api::client::parse_list(xml).prefixes
}

/// Waits (at most 15 s) until `app` has reconnected to a restarted Redis.
pub async fn wait_for_redis(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.app_state.access.quotas.probe_redis().await != Some(true) {
        assert!(Instant::now() < deadline, "no reconnect within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A TCP server that accepts connections and never answers (a hung S3).
pub async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    (addr, task)
}

/// Writes `value` to `path` atomically (write then rename).
pub fn write_json(path: &Path, value: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).expect("json")).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Uploads `content` as Python `requests` does: the policy's fields, then `key`, then the file.
pub async fn upload(
    client: &reqwest::Client,
    grant: &Value,
    key: &str,
    content: Vec<u8>,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in grant["fields"].as_object().expect("fields") {
        if name == "key" {
            continue;
        }
        form = form.text(
            name.clone(),
            value.as_str().expect("string field").to_owned(),
        );
    }
    form = form.text("key", key.to_owned());
    let file_name = key.rsplit('/').next().unwrap_or("file").to_owned();
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(content).file_name(file_name),
    );
    client
        .post(grant["url"].as_str().expect("url"))
        .multipart(form)
        .send()
        .await
        .expect("upload reaches S3")
}

// ---- Fault-injection helpers (tests/faults.rs) ----

impl RedisServer {
    /// Kills `redis-server` with SIGKILL (as a crash or an OOM kill would) and returns its
    /// port, so a new one can be started on it with [`RedisServer::start_on`].
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }

    /// `GET key` as a number; `None` when the key does not exist.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        let reply = self.command(&format!("GET {key}"));
        if reply.starts_with("$-1") {
            return None;
        }
        let value = reply.lines().nth(1).map(str::trim).unwrap_or_default();
        Some(
            value
                .parse()
                .unwrap_or_else(|_| panic!("GET {key}: unexpected reply {reply:?}")),
        )
    }

    /// `DBSIZE`: how many keys the server holds.
    pub fn dbsize(&self) -> u64 {
        let reply = self.command("DBSIZE");
        reply
            .trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("DBSIZE: unexpected reply {reply:?}"))
    }
}

/// Whether this is a CI run (`CI=true`): there, a missing dependency or capability fails a
/// test with a message instead of letting it run reduced.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The soft and hard limits on open files of this process (from `/proc/self/limits`).
pub fn nofile_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files in /proc/self/limits");
    let mut fields = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| {
            if v == "unlimited" {
                u64::MAX
            } else {
                v.parse().unwrap_or(0)
            }
        });
    let soft = fields.next().unwrap_or(0);
    let hard = fields.next().unwrap_or(soft);
    (soft, hard)
}

/// Raises this process's soft limit on open files towards `wanted` (at most the hard
/// limit) with util-linux `prlimit`, without linking libc; returns the soft limit then in
/// force.
pub fn raise_nofile_limit(wanted: u64) -> u64 {
    let (soft, hard) = nofile_limits();
    if soft >= wanted {
        return soft;
    }
    let target = wanted.min(hard);
    let hard_text = if hard == u64::MAX {
        "unlimited".to_owned()
    } else {
        hard.to_string()
    };
    let result = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={target}:{hard_text}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(result, Ok(s) if s.success()) {
        eprintln!("note: could not raise the open-files limit with prlimit ({result:?})");
    }
    nofile_limits().0
}

/// The server side of TCP port `port` on 127.0.0.1, from `/proc/net/tcp`: connections
/// established to it, and how many of them wait in its listen socket's accept queue (not
/// yet taken by the server).
pub fn tcp_server_side(port: u16) -> (usize, usize) {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    let (mut established, mut queued) = (0, 0);
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[1] != local {
            continue;
        }
        match f[3] {
            "01" => established += 1,
            // LISTEN: rx_queue is the accept queue's current length.
            "0A" => {
                queued = f[4]
                    .split(':')
                    .nth(1)
                    .and_then(|q| usize::from_str_radix(q, 16).ok())
                    .unwrap_or(0);
            }
            _ => {}
        }
    }
    (established, queued)
}

/// TCP sockets on 127.0.0.1 whose local or remote port is `port`, counted by
/// `{side}:{state}` (hex state of `/proc/net/tcp`), for failure messages.
pub fn tcp_states(port: u16) -> std::collections::BTreeMap<String, usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let end = format!("0100007F:{port:04X}");
    let mut states = std::collections::BTreeMap::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let side = if f[1] == end {
            "server"
        } else if f[2] == end {
            "client"
        } else {
            continue;
        };
        *states.entry(format!("{side}:{}", f[3])).or_insert(0) += 1;
    }
    states
}

/// `bin serve` on 127.0.0.1:`port` with a clean environment: fixed signing keys, the
/// metagraph file, S3 at `s3_endpoint`, working directory `dir`, output discarded. Callers
/// add what their test needs with `.env(..)` (a later value wins).
pub fn serve_command(
    bin: &str,
    port: u16,
    metagraph: &Path,
    s3_endpoint: &str,
    dir: &Path,
) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("S3_BUCKET", "test-bucket")
        .env("S3_ENDPOINT_URL", s3_endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("METAGRAPH_FILE", metagraph)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Blocks until the service on 127.0.0.1:`port` answers `/readyz` with 200, failing after
/// `within`. A listening socket is not enough: the metagraph is loaded after the listener
/// is up, and a signed request before then is answered 503.
pub fn wait_ready(port: u16, within: Duration) {
    wait_ready_and(port, within, "");
}

/// [`wait_ready`], and until the `/readyz` body also contains `body_has` (such as
/// `"quota":"ok"`: with the default fallback, an instance is ready while Redis is still
/// connecting, and counts in process until it is up).
pub fn wait_ready_and(port: u16, within: Duration, body_has: &str) {
    let started = Instant::now();
    let mut last = String::from("no connection");
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut answer = Vec::new();
            if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_ok()
                && s.read_to_end(&mut answer).is_ok()
            {
                last = String::from_utf8_lossy(&answer).into_owned();
                if last.starts_with("HTTP/1.1 200") && last.contains(body_has) {
                    return;
                }
            }
        }
        assert!(
            started.elapsed() < within,
            "not ready on port {port} after {within:?}; last answer: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
