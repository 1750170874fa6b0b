//! Typed configuration from the environment (and an optional `.env` file).
//!
//! Every variable has a default except `S3_BUCKET`. A bad value is reported as one line
//! naming the variable, the value and what was expected.

mod env;
mod load;
mod tao;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use tao::{TaoSettings, UploadMethod};

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
    pub bt_network: ConfigUrl,
    /// `DAILY_LIMIT_PER_MINER` (default 50).
    pub daily_limit_per_miner: u64,
    /// `DAILY_UPLOAD_CHECKS_PER_MINER`: existence checks (HeadObject) a miner's
    /// `/get-file-upload-url` requests may cause per UTC day, 409s included (default 20 ×
    /// `DAILY_LIMIT_PER_MINER`, at least `DAILY_LIMIT_PER_MINER`).
    pub daily_upload_checks_per_miner: u64,
    /// `DAILY_LIMIT_PER_VALIDATOR` (default 20000).
    pub daily_limit_per_validator: u64,
    /// `TOTAL_DAILY_LIMIT` (default 500000).
    pub total_daily_limit: u64,
    /// `REDIS_URL`: quota counters in Redis; unset means in-process counters.
    pub redis_url: Option<ConfigUrl>,
    /// `QUOTA_ON_REDIS_ERROR`: `fallback` (default) or `reject`.
    pub quota_on_redis_error: OnRedisError,
    /// `QUOTA_KEY_PREFIX`: prefix of the Redis quota keys (default empty, as the original).
    pub quota_key_prefix: String,
    /// `REDIS_MODE`: `auto` (default) detects a cluster; `standalone` or `cluster` forces one.
    pub redis_mode: RedisMode,
    /// The Subtensor websocket endpoint: `SUBTENSOR_URL`, else derived from `BT_NETWORK`
    /// (`None` when `BT_NETWORK` names no known network and a file source is used).
    pub subtensor_url: Option<ConfigUrl>,
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
    /// `MAX_CONNECTIONS`: connections open at once (default 10000); at the cap the
    /// longest-idle keep-alive connection closes to make room, and 16 reserve slots
    /// answer health probes only.
    pub max_connections: usize,
    /// `REQUEST_BUFFER_BUDGET_MB`: request-body bytes held in memory at once, across all
    /// connections, in bytes (default 64 MiB); when spent, body reads get 503.
    pub request_buffer_budget: usize,
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
    "DAILY_UPLOAD_CHECKS_PER_MINER",
    "DAILY_LIMIT_PER_VALIDATOR",
    "TOTAL_DAILY_LIMIT",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "QUOTA_ON_REDIS_ERROR",
    "QUOTA_KEY_PREFIX",
    "REDIS_MODE",
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
    "REQUEST_BUFFER_BUDGET_MB",
    "SHUTDOWN_DELAY_SECONDS",
];

/// Default of `DAILY_UPLOAD_CHECKS_PER_MINER`, as a multiple of `DAILY_LIMIT_PER_MINER`:
/// each granted upload takes one check, and the rest lets an uploader re-check files it
/// already sent (a 409 each) many times over.
pub const UPLOAD_CHECKS_PER_UPLOAD: u64 = 20;

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

/// A URL from configuration that may carry a key in its userinfo or query (RPC
/// providers' endpoints, a Redis password): `Debug` shows it redacted, [`ConfigUrl::as_str`]
/// is the value to connect with.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigUrl(String);

impl ConfigUrl {
    /// Wraps a configured URL.
    pub fn new(url: String) -> Self {
        Self(url)
    }

    /// The URL as configured, secrets included: only for connecting.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConfigUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", crate::redact::url(&self.0))
    }
}

/// How to connect to `REDIS_URL` (`REDIS_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// Ask the server (`CLUSTER INFO`): a cluster gets a cluster connection, anything else
    /// a single-node one.
    Auto,
    /// One node (a primary, or a cluster-mode-disabled endpoint): today's key names.
    Standalone,
    /// Redis Cluster, ElastiCache Serverless, MemoryDB: slot-aware, hash-tagged keys.
    Cluster,
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
