//! Arbitrary bytes as the body of every POST endpoint of the real router, in process
//! (`AppState::start` + `api::router`, driven with `tower::ServiceExt::oneshot` on one
//! current-thread runtime), against the sample metagraph and an embedded S3 server.
//!
//! Every answer must be a non-5xx JSON answer, with a `detail` field unless it is a 200;
//! a 200 must only ever answer a request this harness signed, and must grant nothing
//! outside the folder of the hotkey it was asked for.
//!
//! So that the fuzzer reaches past the signature check, a body that is a JSON object may
//! use markers: `"timestamp": "@now"` (or `"@now+N"`, `"@now-N"`, also for `expiry`) is
//! replaced by the current unix time (plus N); `"signature": "@sign"` is replaced by a
//! real signature of the endpoint's commitment by `hotkey`, when that is one of the
//! development keys (`//Alice` .. `//Eve`) of `examples/metagraph.sample.json`.

#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use s3_auth_api::access::miner_folder;
use s3_auth_api::access::validator::valid_file_key;
use s3_auth_api::auth::Commitment;
use s3_auth_api::keys::SigningKey;
use s3_auth_api::{App, Config, build_app};
use serde_json::{Map, Value};
use tower::ServiceExt;

const ENDPOINTS: [&str; 5] = [
    "/get-folder-access",
    "/get-validator-access",
    "/get-miner-specific-access",
    "/get-file-presigned-urls",
    "/get-folder-presigned-urls",
];

const BUCKET: &str = "fuzz-bucket";
const ACCESS_KEY: &str = "fuzz-access-key";
const SECRET_KEY: &str = "fuzz-secret-key-0123456789";
const METAGRAPH: &str = include_str!("../../examples/metagraph.sample.json");
const DEV_KEYS: [&str; 5] = ["//Alice", "//Bob", "//Charlie", "//Dave", "//Eve"];

struct Harness {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    keys: Vec<SigningKey>,
    _app: (
        std::sync::Arc<s3_auth_api::AppState>,
        s3_auth_api::BackgroundTasks,
    ),
    _s3: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let metagraph = dir.path().join("metagraph.json");
        std::fs::write(&metagraph, METAGRAPH).expect("write metagraph");
        let keys: Vec<SigningKey> = DEV_KEYS
            .iter()
            .map(|uri| SigningKey::from_uri(uri).expect("dev key"))
            .collect();
        // Some objects to list: a job folder of each development key.
        let s3_root = dir.path().join("s3");
        for key in &keys {
            let job = s3_root
                .join(BUCKET)
                .join(miner_folder(key.ss58()))
                .join("job_id=job_001");
            std::fs::create_dir_all(&job).expect("job folder");
            std::fs::write(job.join("part-0.parquet"), vec![0u8; 1024]).expect("object");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (router, app, s3) = rt.block_on(async {
            let (addr, s3) = s3_auth_api::dev::start_embedded_s3(
                "127.0.0.1:0".parse().expect("addr"),
                &s3_root,
                &[BUCKET],
                ACCESS_KEY,
                SECRET_KEY,
            )
            .await
            .expect("embedded S3 starts");
            let env: HashMap<String, String> = [
                ("S3_BUCKET", BUCKET.to_owned()),
                ("S3_REGION", "us-east-1".to_owned()),
                ("S3_ENDPOINT_URL", format!("http://{addr}")),
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
                ("METAGRAPH_FILE", metagraph.display().to_string()),
                ("METAGRAPH_FILE_POLL_SECS", "3600".to_owned()),
                // Millions of signed requests must never run into a quota or be refused
                // as replays: those answers are 429/401 and would hide the grant paths.
                ("DAILY_LIMIT_PER_MINER", "1000000000000".to_owned()),
                ("DAILY_LIMIT_PER_VALIDATOR", "1000000000000".to_owned()),
                ("TOTAL_DAILY_LIMIT", "1000000000000".to_owned()),
                ("REPLAY_PROTECTION", "false".to_owned()),
                ("S3_OPERATION_TIMEOUT", "10".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let config = Config::from_map(&env).expect("fuzz config is valid");
            let App {
                router,
                state,
                tasks,
            } = build_app(config).await.expect("app starts");
            (router, (state, tasks), s3)
        });
        let loaded = app
            .0
            .access
            .metagraph
            .current()
            .expect("metagraph loaded before fuzzing");
        for key in &keys {
            assert!(
                loaded.metagraph.is_registered(key.ss58()),
                "{} is in the sample metagraph",
                key.ss58()
            );
        }
        Harness {
            rt,
            router,
            keys,
            _app: app,
            _s3: s3,
            _dir: dir,
        }
    })
}

/// `FUZZ_VERBOSE=1` prints every request and answer (to see what seeds reach).
fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("FUZZ_VERBOSE").is_some_and(|v| v != "0"))
}

fn str_field<'a>(map: &'a Map<String, Value>, name: &str) -> &'a str {
    map.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The timestamp the server will read from `map` (lax, as the body reader), or `now`.
fn timestamp(map: &Map<String, Value>, now: i64) -> i64 {
    match map.get("timestamp") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(now),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(now),
        _ => now,
    }
}

/// The body to send to `endpoint`: the input itself, or with its markers replaced.
/// Returns the body and whether the harness signed it.
fn prepare(data: &[u8], endpoint: &str, keys: &[SigningKey], now: i64) -> (Vec<u8>, bool) {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(data) else {
        return (data.to_vec(), false);
    };
    let mut changed = false;
    for name in ["timestamp", "expiry"] {
        if let Some(Value::String(s)) = map.get(name)
            && let Some(offset) = s.strip_prefix("@now")
        {
            let offset = if offset.is_empty() {
                0
            } else {
                offset.parse::<i64>().unwrap_or(0)
            };
            map.insert(name.into(), Value::from(now.saturating_add(offset)));
            changed = true;
        }
    }
    let mut signed = false;
    if map.get("signature").and_then(Value::as_str) == Some("@sign")
        && let Some(key) = keys.iter().find(|k| k.ss58() == str_field(&map, "hotkey"))
    {
        let ts = timestamp(&map, now);
        let hotkey = str_field(&map, "hotkey");
        let miner_hotkey = str_field(&map, "miner_hotkey");
        let commitment = match endpoint {
            "/get-folder-access" => Commitment::MinerAccess {
                coldkey: str_field(&map, "coldkey"),
                hotkey,
                timestamp: ts,
            },
            "/get-validator-access" => Commitment::ValidatorAccess { timestamp: ts },
            "/get-miner-specific-access" => Commitment::ValidatorMiner {
                miner_hotkey,
                timestamp: ts,
            },
            "/get-file-presigned-urls" => Commitment::ValidatorFiles {
                miner_hotkey,
                hotkey,
                timestamp: ts,
            },
            _ => Commitment::ValidatorFolders {
                hotkey,
                timestamp: ts,
            },
        };
        let signature = key.sign_hex(&commitment.message());
        map.insert("signature".into(), Value::String(signature));
        changed = true;
        signed = true;
    }
    if changed {
        (
            serde_json::to_vec(&Value::Object(map)).expect("serialises"),
            signed,
        )
    } else {
        (data.to_vec(), false)
    }
}

/// What a 200 may grant: nothing outside the folder of the hotkey it was asked for.
fn check_grant(endpoint: &str, sent: &Map<String, Value>, answer: &Value) {
    match endpoint {
        "/get-folder-access" => {
            let folder = miner_folder(str_field(sent, "hotkey"));
            assert_eq!(answer["folder"], folder.as_str());
            let fields = &answer["fields"];
            assert_eq!(fields["key"], format!("{folder}${{filename}}").as_str());
            let policy = base64::engine::general_purpose::STANDARD
                .decode(fields["policy"].as_str().expect("policy"))
                .expect("base64 policy");
            let policy: Value = serde_json::from_slice(&policy).expect("JSON policy");
            let prefixes: Vec<&Value> = policy["conditions"]
                .as_array()
                .expect("conditions")
                .iter()
                .filter(|c| c[0] == "starts-with")
                .collect();
            assert_eq!(prefixes.len(), 2);
            for c in prefixes {
                assert_eq!(c[1], "$key");
                assert_eq!(c[2], folder.as_str());
            }
        }
        "/get-miner-specific-access" => {
            let folder = miner_folder(str_field(sent, "miner_hotkey"));
            assert_eq!(answer["prefix"], folder.as_str());
        }
        "/get-file-presigned-urls" => {
            let folder = miner_folder(str_field(sent, "miner_hotkey"));
            let urls = answer["file_urls"].as_object().expect("file_urls");
            for key in urls.keys() {
                assert!(valid_file_key(key, &folder), "URL granted for {key:?}");
            }
            let requested = sent
                .get("file_keys")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            assert_eq!(answer["total_requested"], requested);
            assert_eq!(answer["total_valid"], urls.len());
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let now = chrono::Utc::now().timestamp();
    for endpoint in ENDPOINTS {
        let (body, signed) = prepare(data, endpoint, &h.keys, now);
        let request = Request::post(endpoint)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.clone()))
            .expect("request");
        let (status, bytes) = h.rt.block_on(async {
            let response = h.router.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            (status, bytes)
        });
        let shown = || {
            format!(
                "{endpoint} answered {status} to {:?}: {:?}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&bytes)
            )
        };
        if verbose() {
            eprintln!("{}", shown());
        }
        assert!(!status.is_server_error(), "{}", shown());
        let answer: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", shown()));
        if status == StatusCode::OK {
            assert!(
                signed,
                "200 for a request the harness did not sign: {}",
                shown()
            );
            let Ok(Value::Object(sent)) = serde_json::from_slice::<Value>(&body) else {
                panic!("200 for a body that is not an object: {}", shown());
            };
            check_grant(endpoint, &sent, &answer);
        } else {
            assert!(answer.get("detail").is_some(), "no detail: {}", shown());
        }
    }
});
