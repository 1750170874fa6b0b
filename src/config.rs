//! Typed configuration from the environment (and an optional `.env` file).
//!
//! Every variable has a default except `S3_BUCKET`. A bad value is reported as one line
//! naming the variable, the value and what was expected.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::access::miner::{MAX_UPLOAD_BYTES, MIN_UPLOAD_BYTES};
use crate::quota::OnRedisError;

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`: address to bind (default `0.0.0.0`).
    pub host: String,
    /// `PORT`: TCP port (default 8000).
    pub port: u16,
    /// `S3_BUCKET`: the bucket miners upload to (required).
    pub s3_bucket: String,
    /// `S3_REGION`: the bucket's region (default `us-east-2`).
    pub s3_region: String,
    /// `S3_ENDPOINT_URL`: an S3-compatible endpoint the service talks to, path-style.
    pub s3_endpoint_url: Option<String>,
    /// `S3_PUBLIC_ENDPOINT_URL`: the endpoint clients are told (default `S3_ENDPOINT_URL`).
    pub s3_public_endpoint_url: Option<String>,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`; `None` means
    /// the AWS default credential chain.
    pub aws_credentials: Option<StaticCredentials>,
    /// `NET_UID`: the subnet (default 46).
    pub net_uid: u16,
    /// `BT_NETWORK`: the Bittensor network name or endpoint (default `finney`).
    pub bt_network: String,
    /// `DAILY_LIMIT_PER_MINER` (default 50).
    pub daily_limit_per_miner: u64,
    /// `DAILY_LIMIT_PER_VALIDATOR` (default 20000).
    pub daily_limit_per_validator: u64,
    /// `TOTAL_DAILY_LIMIT` (default 500000).
    pub total_daily_limit: u64,
    /// `REDIS_URL`: quota counters in Redis; unset means in-process counters.
    pub redis_url: Option<String>,
    /// `QUOTA_ON_REDIS_ERROR`: `fallback` (default) or `reject`.
    pub quota_on_redis_error: OnRedisError,
    /// `QUOTA_KEY_PREFIX`: prefix of the Redis quota keys (default empty, as the original).
    pub quota_key_prefix: String,
    /// The Subtensor websocket endpoint: `SUBTENSOR_URL`, else derived from `BT_NETWORK`
    /// (`None` when `BT_NETWORK` names no known network and a file source is used).
    pub subtensor_url: Option<String>,
    /// `METAGRAPH_FILE`: read the metagraph from this JSON file instead of the chain.
    pub metagraph_file: Option<PathBuf>,
    /// `METAGRAPH_FILE_POLL_SECS`: how often the file is checked for changes (default 2).
    pub metagraph_file_poll: Duration,
    /// `METAGRAPH_SYNC_INTERVAL`: seconds between chain syncs (default 300).
    pub metagraph_sync_interval: Duration,
    /// `METAGRAPH_SYNC_TIMEOUT`: bound on one sync, and on each chain call (default 60 s).
    pub metagraph_sync_timeout: Duration,
    /// `METAGRAPH_SNAPSHOT_PATH`: where the last good metagraph is kept, a file path or
    /// `s3://bucket/key` (default: nowhere).
    pub metagraph_snapshot_path: Option<crate::metagraph::snapshot::SnapshotLocation>,
    /// `METAGRAPH_MAX_AGE`: older than this, `/healthcheck` says degraded (default 3600 s).
    pub metagraph_max_age: Duration,
    /// `METAGRAPH_REFUSE_AFTER`: older than this (not confirmed by its source), grants get
    /// 503 `Metagraph too old` and such a snapshot is not served at start (default 21600 s;
    /// `0` means never).
    pub metagraph_refuse_after: Option<Duration>,
    /// `REQUIRE_COLDKEY_MATCH`: a miner's coldkey must own its hotkey (default true).
    pub require_coldkey_match: bool,
    /// `VALIDATOR_MIN_ALPHA_STAKE`: alpha stake a validator must exceed (default 20000).
    pub validator_min_alpha_stake: u64,
    /// `S3_OPERATION_TIMEOUT`: bound on server-side S3 work in one request (default 60 s).
    pub s3_operation_timeout: Duration,
    /// `REQUEST_TIMEOUT`: bound on one request (default 75 s, above `S3_OPERATION_TIMEOUT`).
    pub request_timeout: Duration,
    /// `MAX_CONCURRENT_REQUESTS`: requests in flight before new ones get 503 (default 512).
    pub max_concurrent_requests: usize,
    /// `CORS_ORIGINS`: comma-separated allowed origins, or `*` (default).
    pub cors_origins: Vec<String>,
    /// `SHUTDOWN_GRACE_SECONDS`: time in-flight requests get after SIGTERM (default 25).
    pub shutdown_grace: Duration,
    /// `AWS_CREDENTIALS_SECRET_ID`: read the signing keys from this Secrets Manager secret.
    pub credentials_secret_id: Option<String>,
    /// `CREDENTIALS_REFRESH_INTERVAL`: how often the secret is re-read (default 900 s).
    pub credentials_refresh_interval: Duration,
    /// `SECRETS_MANAGER_ENDPOINT_URL`: a Secrets Manager endpoint other than AWS's.
    pub secrets_manager_endpoint_url: Option<String>,
    /// `METRICS_TOKEN`: enables `/metrics`, served only with `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// `EMF_INTERVAL_SECONDS` (with `EMF_NAMESPACE`, `EMF_SERVICE_NAME`): CloudWatch
    /// embedded-metric lines on stdout once an interval (default 0: off).
    pub emf: Option<crate::emf::EmfSettings>,
    /// `LOG_LEVEL`: a tracing filter (default `info`).
    pub log_level: String,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `REDIS_PASSWORD`: the Redis AUTH password, when not in `REDIS_URL` (ElastiCache's
    /// AUTH token injected as a secret).
    pub redis_password: Option<Secret>,
    /// `REPLAY_PROTECTION`: a signature is accepted once (default true).
    pub replay_protection: bool,
    /// Tao v2 header signatures and the upload settings.
    pub tao: TaoSettings,
    /// `TRUST_PROXY_HOPS`: proxies in front of the service whose `X-Forwarded-For` entries
    /// are trusted for the client address (default 0; the task definition sets 1 for the ALB).
    pub trust_proxy_hops: usize,
    /// `AUTH_FAILURE_BURST`: failed authentications a client address may make at once
    /// before it gets 429 (default 20).
    pub auth_failure_burst: u32,
    /// `AUTH_FAILURES_PER_MINUTE`: rate at which that allowance refills (default 30).
    pub auth_failures_per_minute: u32,
    /// `HEADER_READ_TIMEOUT`: time a connection has to send complete request headers
    /// (default 10 s; idle keep-alive connections are not under it).
    pub header_read_timeout: Duration,
    /// `BODY_READ_TIMEOUT`: time a request body has to arrive in full before 408
    /// (default 10 s).
    pub body_read_timeout: Duration,
    /// `IDLE_TIMEOUT`: idle keep-alive connections are closed after this (default 120 s,
    /// above the load balancer's idle timeout).
    pub idle_timeout: Duration,
    /// `MAX_CONNECTIONS`: connections open at once; beyond, accepting waits (default 10000).
    pub max_connections: usize,
    /// `SHUTDOWN_DELAY_SECONDS`: after SIGTERM, time the listener keeps accepting (answers
    /// carry `Connection: close`) before it closes; part of the grace period (default 3).
    pub shutdown_delay: Duration,
}

/// Every variable [`Config`] reads. Deployment files may set only these (a test checks).
pub const ENV_VARS: &[&str] = &[
    "HOST",
    "PORT",
    "S3_BUCKET",
    "S3_REGION",
    "S3_ENDPOINT_URL",
    "S3_PUBLIC_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "NET_UID",
    "BT_NETWORK",
    "DAILY_LIMIT_PER_MINER",
    "DAILY_LIMIT_PER_VALIDATOR",
    "TOTAL_DAILY_LIMIT",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "QUOTA_ON_REDIS_ERROR",
    "QUOTA_KEY_PREFIX",
    "METAGRAPH_FILE",
    "METAGRAPH_FILE_POLL_SECS",
    "SUBTENSOR_URL",
    "METAGRAPH_SYNC_INTERVAL",
    "METAGRAPH_SYNC_TIMEOUT",
    "METAGRAPH_MAX_AGE",
    "METAGRAPH_REFUSE_AFTER",
    "METAGRAPH_SNAPSHOT_PATH",
    "REQUIRE_COLDKEY_MATCH",
    "VALIDATOR_MIN_ALPHA_STAKE",
    "S3_OPERATION_TIMEOUT",
    "REQUEST_TIMEOUT",
    "SHUTDOWN_GRACE_SECONDS",
    "MAX_CONCURRENT_REQUESTS",
    "CORS_ORIGINS",
    "METRICS_TOKEN",
    "EMF_INTERVAL_SECONDS",
    "EMF_NAMESPACE",
    "EMF_SERVICE_NAME",
    "AWS_CREDENTIALS_SECRET_ID",
    "CREDENTIALS_REFRESH_INTERVAL",
    "SECRETS_MANAGER_ENDPOINT_URL",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "REPLAY_PROTECTION",
    "TAO_CLOCK_SKEW_MS",
    "S3_UPLOAD_METHOD",
    "UPLOAD_URL_LIFETIME",
    "MIN_UPLOAD_BYTES",
    "MAX_UPLOAD_BYTES",
    "FILE_URL_MAX_EXPIRY_HOURS",
    "TRUST_PROXY_HOPS",
    "AUTH_FAILURE_BURST",
    "AUTH_FAILURES_PER_MINUTE",
    "HEADER_READ_TIMEOUT",
    "BODY_READ_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "SHUTDOWN_DELAY_SECONDS",
];

/// Default of `IDLE_TIMEOUT`: it must stay above the load balancer's idle timeout
/// (`aws/s3-auth-api.yaml` sets the ALB's; a test compares them).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 120;

/// Fixed AWS keys. `Debug` never prints the secret or the token.
#[derive(Clone)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A secret string; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (CloudWatch).
    Json,
}

/// A variable has a value the service cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// The value found (secrets are never put here; URLs lose their userinfo and query).
    pub value: String,
    /// What would have been accepted.
    pub expected: String,
}

/// How `/get-file-upload-url` hands out uploads (`S3_UPLOAD_METHOD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMethod {
    /// A POST policy for exactly the key (S3's browser uploads; size range enforced).
    Post,
    /// A presigned PUT (for backends without POST policies, e.g. Cloudflare R2); a PUT URL
    /// cannot cap the size.
    Put,
}

/// Tao v2 and upload settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaoSettings {
    /// `TAO_CLOCK_SKEW_MS`: how far `X-Tao-Timestamp` may be from now, either way (8000).
    pub clock_skew_ms: u64,
    /// `S3_UPLOAD_METHOD`: `post` (default) or `put`.
    pub upload_method: UploadMethod,
    /// `UPLOAD_URL_LIFETIME`: lifetime of a per-file upload policy or URL (3600 s).
    pub upload_url_lifetime: Duration,
    /// `MIN_UPLOAD_BYTES`: smallest upload a POST policy admits (1024).
    pub min_upload_bytes: u64,
    /// `MAX_UPLOAD_BYTES`: largest upload a POST policy admits (5 GiB).
    pub max_upload_bytes: u64,
    /// `FILE_URL_MAX_EXPIRY_HOURS`: cap on `expiry_hours` of header-signed file URLs (3).
    pub file_url_max_expiry_hours: i64,
}

impl Default for TaoSettings {
    /// The defaults of every setting.
    fn default() -> Self {
        Self {
            clock_skew_ms: 8000,
            upload_method: UploadMethod::Post,
            upload_url_lifetime: Duration::from_secs(3600),
            min_upload_bytes: MIN_UPLOAD_BYTES,
            max_upload_bytes: MAX_UPLOAD_BYTES,
            file_url_max_expiry_hours: 3,
        }
    }
}

impl TaoSettings {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let clock_skew_ms = env.parsed(
            "TAO_CLOCK_SKEW_MS",
            8000u64,
            "1 to 300000 milliseconds",
            |v| (1..=300_000).contains(v),
        )?;
        let upload_method = match env.string("S3_UPLOAD_METHOD", "post").trim() {
            "post" | "POST" => UploadMethod::Post,
            "put" | "PUT" => UploadMethod::Put,
            other => {
                return Err(ConfigError {
                    var: "S3_UPLOAD_METHOD",
                    value: other.to_owned(),
                    expected: "post or put".into(),
                });
            }
        };
        let lifetime = env.parsed(
            "UPLOAD_URL_LIFETIME",
            3600u64,
            "60 to 604800 seconds",
            |v| (60..=604_800).contains(v),
        )?;
        let min_upload_bytes =
            env.parsed("MIN_UPLOAD_BYTES", 1024u64, "0 to 5368709120 bytes", |v| {
                *v <= 5 * 1024 * 1024 * 1024
            })?;
        let max_upload_bytes = env.parsed(
            "MAX_UPLOAD_BYTES",
            5 * 1024 * 1024 * 1024u64,
            "1 to 5368709120 bytes (S3's single-upload limit), at least MIN_UPLOAD_BYTES",
            |v| (min_upload_bytes.max(1)..=5 * 1024 * 1024 * 1024).contains(v),
        )?;
        let file_url_max_expiry_hours =
            env.parsed("FILE_URL_MAX_EXPIRY_HOURS", 3i64, "1 to 24 hours", |v| {
                (1..=24).contains(v)
            })?;
        Ok(Self {
            clock_skew_ms,
            upload_method,
            upload_url_lifetime: Duration::from_secs(lifetime),
            min_upload_bytes,
            max_upload_bytes,
            file_url_max_expiry_hours,
        })
    }
}

struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The variable's value; empty counts as unset.
    fn raw(&self, var: &str) -> Option<String> {
        (self.get)(var).filter(|v| !v.trim().is_empty())
    }

    fn string(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or_else(|| default.to_owned())
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        expected: &str,
        valid: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<T>() {
                Ok(parsed) if valid(&parsed) => Ok(parsed),
                _ => Err(ConfigError {
                    var,
                    value: v,
                    expected: expected.to_owned(),
                }),
            },
        }
    }

    fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(v) = self.raw(var) else {
            return Ok(default);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(ConfigError {
                var,
                value: v,
                expected: "true or false".into(),
            }),
        }
    }

    fn url(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.raw(var) else {
            return Ok(None);
        };
        let trimmed = v.trim().trim_end_matches('/').to_owned();
        let ok = trimmed
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
            .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
            .filter(|u| u.query().is_none())
            .filter(|u| u.authority().is_some_and(|a| !a.as_str().contains('@')))
            .is_some();
        if ok {
            Ok(Some(trimmed))
        } else {
            Err(ConfigError {
                var,
                value: crate::redact::url(&v),
                expected: "an http:// or https:// URL with a host, no user info and no query"
                    .into(),
            })
        }
    }
}

fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && name
            .as_bytes()
            .last()
            .is_some_and(u8::is_ascii_alphanumeric)
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the configuration from a map (for tests and tools).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| map.get(name).cloned())
    }

    /// Reads the configuration through `get`, which returns a variable's value.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { get };
        let port = env.parsed("PORT", 8000u16, "a TCP port number (0-65535)", |_| true)?;
        let host = env.string("HOST", "0.0.0.0");
        if host.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError {
                var: "HOST",
                value: host,
                expected: "an IP address to bind, e.g. 0.0.0.0 or 127.0.0.1".into(),
            });
        }
        let s3_bucket = env.raw("S3_BUCKET").unwrap_or_default();
        if !valid_bucket(&s3_bucket) {
            return Err(ConfigError {
                var: "S3_BUCKET",
                value: s3_bucket,
                expected: "an S3 bucket name (3-63 lowercase letters, digits, '-' or '.')".into(),
            });
        }
        let s3_region = env.string("S3_REGION", "us-east-2");
        if !valid_region(&s3_region) {
            return Err(ConfigError {
                var: "S3_REGION",
                value: s3_region,
                expected: "an AWS region name such as us-east-2".into(),
            });
        }
        let s3_endpoint_url = env.url("S3_ENDPOINT_URL")?;
        let s3_public_endpoint_url = env
            .url("S3_PUBLIC_ENDPOINT_URL")?
            .or_else(|| s3_endpoint_url.clone());

        let aws_credentials = match (
            env.raw("AWS_ACCESS_KEY_ID"),
            env.raw("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(access_key_id), Some(secret_access_key)) => Some(StaticCredentials {
                access_key_id,
                secret_access_key,
                session_token: env.raw("AWS_SESSION_TOKEN"),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError {
                    var: "AWS_SECRET_ACCESS_KEY",
                    value: String::new(),
                    expected: "a secret key, since AWS_ACCESS_KEY_ID is set".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    var: "AWS_ACCESS_KEY_ID",
                    value: String::new(),
                    expected: "an access key id, since AWS_SECRET_ACCESS_KEY is set".into(),
                });
            }
        };

        let net_uid = env.parsed("NET_UID", 46u16, "a subnet id (0-65535)", |_| true)?;
        let bt_network = env.string("BT_NETWORK", "finney");
        let positive = |n: &u64| *n > 0;
        let daily_limit_per_miner = env.parsed(
            "DAILY_LIMIT_PER_MINER",
            50u64,
            "a positive integer",
            positive,
        )?;
        let daily_limit_per_validator = env.parsed(
            "DAILY_LIMIT_PER_VALIDATOR",
            20_000u64,
            "a positive integer",
            positive,
        )?;
        let total_daily_limit = env.parsed(
            "TOTAL_DAILY_LIMIT",
            500_000u64,
            "a positive integer",
            positive,
        )?;
        let redis_url = env.raw("REDIS_URL");
        if let Some(url) = &redis_url
            && redis::Client::open(url.as_str()).is_err()
        {
            // The URL may hold a password: never echo it.
            return Err(ConfigError {
                var: "REDIS_URL",
                value: "<hidden>".into(),
                expected: "a redis:// or rediss:// URL".into(),
            });
        }
        let quota_on_redis_error = match env.string("QUOTA_ON_REDIS_ERROR", "fallback").as_str() {
            "fallback" => OnRedisError::Fallback,
            "reject" => OnRedisError::Reject,
            other => {
                return Err(ConfigError {
                    var: "QUOTA_ON_REDIS_ERROR",
                    value: other.to_owned(),
                    expected: "fallback or reject".into(),
                });
            }
        };
        let quota_key_prefix = env.string("QUOTA_KEY_PREFIX", "");
        let metagraph_file = env.raw("METAGRAPH_FILE").map(PathBuf::from);
        let subtensor_url = match env.raw("SUBTENSOR_URL") {
            Some(url) if url.starts_with("ws://") || url.starts_with("wss://") => Some(url),
            Some(url) => {
                return Err(ConfigError {
                    var: "SUBTENSOR_URL",
                    value: crate::redact::url(&url),
                    expected: "a ws:// or wss:// URL".into(),
                });
            }
            None => crate::metagraph::chain::network_endpoint(&bt_network),
        };
        if subtensor_url.is_none() && metagraph_file.is_none() {
            return Err(ConfigError {
                var: "BT_NETWORK",
                value: crate::redact::url(&bt_network),
                expected:
                    "finney, test, local or a ws(s):// URL (or set SUBTENSOR_URL or METAGRAPH_FILE)"
                        .into(),
            });
        }
        let secs = |var: &'static str, default: u64| {
            env.parsed(var, default, "a positive number of seconds", |n: &u64| {
                *n > 0
            })
            .map(Duration::from_secs)
        };
        let metagraph_sync_interval = secs("METAGRAPH_SYNC_INTERVAL", 300)?;
        let metagraph_sync_timeout = secs("METAGRAPH_SYNC_TIMEOUT", 60)?;
        let metagraph_max_age = secs("METAGRAPH_MAX_AGE", 3600)?;
        let refuse_after = env.parsed(
            "METAGRAPH_REFUSE_AFTER",
            21_600u64,
            "a number of seconds (0 = never refuse)",
            |_| true,
        )?;
        let metagraph_refuse_after = (refuse_after > 0).then(|| Duration::from_secs(refuse_after));
        let metagraph_snapshot_path = match env.raw("METAGRAPH_SNAPSHOT_PATH") {
            None => None,
            Some(v) => Some(
                crate::metagraph::snapshot::SnapshotLocation::parse(v.trim()).ok_or_else(|| {
                    ConfigError {
                        var: "METAGRAPH_SNAPSHOT_PATH",
                        value: v.clone(),
                        expected: "a file path, or s3://bucket/key".into(),
                    }
                })?,
            ),
        };
        let require_coldkey_match = env.flag("REQUIRE_COLDKEY_MATCH", true)?;
        let poll = env.parsed(
            "METAGRAPH_FILE_POLL_SECS",
            2u64,
            "a positive number of seconds",
            positive,
        )?;
        let validator_min_alpha_stake = env.parsed(
            "VALIDATOR_MIN_ALPHA_STAKE",
            20_000u64,
            "a non-negative integer amount of alpha",
            |_| true,
        )?;
        let s3_operation_timeout = env.parsed(
            "S3_OPERATION_TIMEOUT",
            60u64,
            "a positive number of seconds",
            positive,
        )?;
        let request_timeout = secs("REQUEST_TIMEOUT", 75)?;
        let shutdown_grace = secs("SHUTDOWN_GRACE_SECONDS", 25)?;
        let max_concurrent_requests = env.parsed(
            "MAX_CONCURRENT_REQUESTS",
            512usize,
            "a positive integer",
            |n: &usize| *n > 0,
        )?;
        let cors_origins: Vec<String> = env
            .string("CORS_ORIGINS", "*")
            .split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        let metrics_token = env.raw("METRICS_TOKEN").map(Secret);
        let emf_interval = env.parsed(
            "EMF_INTERVAL_SECONDS",
            0u64,
            "0 (off) or 1 to 3600 seconds",
            |s| *s <= 3600,
        )?;
        let emf_name = |var: &'static str, default: &str| {
            let value = env.string(var, default);
            let ok = !value.is_empty()
                && value.len() <= 255
                && value.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if ok {
                Ok(value)
            } else {
                Err(ConfigError {
                    var,
                    value,
                    expected: "1 to 255 printable ASCII characters without ':'".into(),
                })
            }
        };
        // Read (and checked) even when off, so a typo shows before it is turned on.
        let namespace = emf_name("EMF_NAMESPACE", "S3AuthApi")?;
        let service = emf_name("EMF_SERVICE_NAME", "s3-auth-api")?;
        let emf = (emf_interval > 0).then(|| crate::emf::EmfSettings {
            interval: Duration::from_secs(emf_interval),
            namespace,
            service,
        });
        let credentials_secret_id = env.raw("AWS_CREDENTIALS_SECRET_ID");
        let credentials_refresh_interval = secs("CREDENTIALS_REFRESH_INTERVAL", 900)?;
        let secrets_manager_endpoint_url = env.url("SECRETS_MANAGER_ENDPOINT_URL")?;
        let log_level = env.string("LOG_LEVEL", "info");
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError {
                var: "LOG_LEVEL",
                value: log_level,
                expected: "a level (error, warn, info, debug, trace) or a tracing filter".into(),
            });
        }
        let log_format = match env.string("LOG_FORMAT", "text").as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError {
                    var: "LOG_FORMAT",
                    value: other.to_owned(),
                    expected: "text or json".into(),
                });
            }
        };
        let redis_password = env.raw("REDIS_PASSWORD").map(Secret);
        let replay_protection = env.flag("REPLAY_PROTECTION", true)?;
        let tao = TaoSettings::read(&env)?;
        let trust_proxy_hops = env.parsed(
            "TRUST_PROXY_HOPS",
            0usize,
            "a number of proxies (0-8)",
            |n: &usize| *n <= 8,
        )?;
        let auth_failure_burst = env.parsed(
            "AUTH_FAILURE_BURST",
            20u32,
            "a positive integer",
            |n: &u32| *n > 0,
        )?;
        let auth_failures_per_minute = env.parsed(
            "AUTH_FAILURES_PER_MINUTE",
            30u32,
            "a positive integer",
            |n: &u32| *n > 0,
        )?;
        let bounded_secs = |var: &'static str, default: u64| {
            env.parsed(
                var,
                default,
                "a number of seconds from 1 to 86400",
                |n: &u64| (1..=86_400).contains(n),
            )
            .map(Duration::from_secs)
        };
        let header_read_timeout = bounded_secs("HEADER_READ_TIMEOUT", 10)?;
        let body_read_timeout = bounded_secs("BODY_READ_TIMEOUT", 10)?;
        let idle_timeout = bounded_secs("IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT_SECS)?;
        let max_connections = env.parsed(
            "MAX_CONNECTIONS",
            10_000usize,
            "a number of connections from 1 to 1000000",
            |n: &usize| (1..=1_000_000).contains(n),
        )?;
        let shutdown_delay = env.parsed(
            "SHUTDOWN_DELAY_SECONDS",
            3u64.min(shutdown_grace.as_secs()),
            "a number of seconds, at most SHUTDOWN_GRACE_SECONDS",
            |n: &u64| *n <= shutdown_grace.as_secs(),
        )?;
        Ok(Self {
            host,
            port,
            s3_bucket,
            s3_region,
            s3_endpoint_url,
            s3_public_endpoint_url,
            aws_credentials,
            net_uid,
            bt_network,
            daily_limit_per_miner,
            daily_limit_per_validator,
            total_daily_limit,
            redis_url,
            quota_on_redis_error,
            quota_key_prefix,
            subtensor_url,
            metagraph_file,
            metagraph_file_poll: Duration::from_secs(poll),
            metagraph_sync_interval,
            metagraph_sync_timeout,
            metagraph_snapshot_path,
            metagraph_max_age,
            metagraph_refuse_after,
            require_coldkey_match,
            validator_min_alpha_stake,
            s3_operation_timeout: Duration::from_secs(s3_operation_timeout),
            request_timeout,
            max_concurrent_requests,
            cors_origins,
            shutdown_grace,
            metrics_token,
            emf,
            credentials_secret_id,
            credentials_refresh_interval,
            secrets_manager_endpoint_url,
            log_level,
            log_format,
            redis_password,
            replay_protection,
            tao,
            trust_proxy_hops,
            auth_failure_burst,
            auth_failures_per_minute,
            header_read_timeout,
            body_read_timeout,
            idle_timeout,
            max_connections,
            shutdown_delay: Duration::from_secs(shutdown_delay),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_map(&map)
    }

    #[test]
    fn defaults_match_the_original() {
        let c = with(&[("S3_BUCKET", "my-bucket")]).expect("valid");
        assert_eq!(c.port, 8000);
        assert_eq!(c.s3_region, "us-east-2");
        assert_eq!(c.net_uid, 46);
        assert_eq!(c.bt_network, "finney");
        assert_eq!(
            (
                c.daily_limit_per_miner,
                c.daily_limit_per_validator,
                c.total_daily_limit
            ),
            (50, 20_000, 500_000)
        );
        assert_eq!(c.validator_min_alpha_stake, 20_000);
        assert!(c.redis_url.is_none());
        assert_eq!(c.quota_on_redis_error, OnRedisError::Fallback);
        assert_eq!(
            c.subtensor_url.as_deref(),
            Some("wss://entrypoint-finney.opentensor.ai:443")
        );
        assert_eq!(c.metagraph_sync_interval, Duration::from_secs(300));
        assert_eq!(c.metagraph_max_age, Duration::from_secs(3600));
        assert!(c.require_coldkey_match);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = with(&[("S3_BUCKET", "b-1"), ("PORT", "eighty")]).unwrap_err();
        assert_eq!(e.var, "PORT");
        assert_eq!(e.value, "eighty");
        assert!(e.to_string().contains("PORT=\"eighty\""));
        let e = with(&[("S3_BUCKET", "b-1"), ("DAILY_LIMIT_PER_MINER", "0")]).unwrap_err();
        assert_eq!(e.var, "DAILY_LIMIT_PER_MINER");
        let e = with(&[]).unwrap_err();
        assert_eq!(e.var, "S3_BUCKET");
        let e = with(&[("S3_BUCKET", "b-1"), ("S3_ENDPOINT_URL", "localhost:9000")]).unwrap_err();
        assert_eq!(e.var, "S3_ENDPOINT_URL");
        let e = with(&[("S3_BUCKET", "b-1"), ("QUOTA_ON_REDIS_ERROR", "ignore")]).unwrap_err();
        assert_eq!(e.var, "QUOTA_ON_REDIS_ERROR");
        let e = with(&[("S3_BUCKET", "b-1"), ("AWS_ACCESS_KEY_ID", "AKIA")]).unwrap_err();
        assert_eq!(e.var, "AWS_SECRET_ACCESS_KEY");
        let e = with(&[("S3_BUCKET", "b-1"), ("REDIS_URL", "http://:secret@h")]).unwrap_err();
        assert_eq!(e.var, "REDIS_URL");
        assert!(!e.to_string().contains("secret"));
        let e = with(&[("S3_BUCKET", "b-1"), ("BT_NETWORK", "mainnet")]).unwrap_err();
        assert_eq!(e.var, "BT_NETWORK");
        let e = with(&[("S3_BUCKET", "b-1"), ("SUBTENSOR_URL", "http://x")]).unwrap_err();
        assert_eq!(e.var, "SUBTENSOR_URL");
        let e = with(&[("S3_BUCKET", "b-1"), ("REQUIRE_COLDKEY_MATCH", "maybe")]).unwrap_err();
        assert_eq!(e.var, "REQUIRE_COLDKEY_MATCH");
    }

    #[test]
    fn env_vars_lists_exactly_what_is_read() {
        use std::sync::Mutex;
        let read = Mutex::new(std::collections::BTreeSet::new());
        // Two lookups between them reach every conditional read.
        for keys in [true, false] {
            let lookup = |name: &str| {
                read.lock().expect("lock").insert(name.to_owned());
                match name {
                    "S3_BUCKET" => Some("b-1".to_owned()),
                    "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" if keys => Some("k".to_owned()),
                    _ => None,
                }
            };
            Config::from_lookup(&lookup).expect("valid");
        }
        let read = read.into_inner().expect("lock");
        let listed: std::collections::BTreeSet<String> =
            ENV_VARS.iter().map(|v| (*v).to_owned()).collect();
        assert_eq!(read, listed);
    }

    #[test]
    fn proxy_hops_default_to_zero_even_on_ecs() {
        let c = with(&[("S3_BUCKET", "b-1")]).expect("valid");
        assert_eq!(c.trust_proxy_hops, 0);
        assert!(c.replay_protection);
        // A task with a public IP and no load balancer must not trust X-Forwarded-For:
        // being on ECS says nothing about a proxy in front.
        let c = with(&[
            ("S3_BUCKET", "b-1"),
            ("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/x"),
        ])
        .expect("valid");
        assert_eq!(c.trust_proxy_hops, 0);
        let e = with(&[("S3_BUCKET", "b-1"), ("REPLAY_PROTECTION", "off")]).unwrap_err();
        assert_eq!(e.var, "REPLAY_PROTECTION");
    }

    #[test]
    fn public_endpoint_defaults_to_endpoint() {
        let c = with(&[
            ("S3_BUCKET", "b-1"),
            ("S3_ENDPOINT_URL", "http://127.0.0.1:9000/"),
        ])
        .expect("valid");
        assert_eq!(c.s3_endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            c.s3_public_endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
    }
}
