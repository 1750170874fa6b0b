//! [`Config`] from the environment: every variable read, checked and defaulted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::env::{Env, valid_bucket, valid_region};
use super::{
    Config, ConfigError, ConfigUrl, DEFAULT_IDLE_TIMEOUT_SECS, LogFormat, RedisMode, Secret,
    StaticCredentials, TaoSettings,
};
use crate::quota::OnRedisError;

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
        let daily_upload_checks_per_miner = env.parsed(
            "DAILY_UPLOAD_CHECKS_PER_MINER",
            daily_limit_per_miner.saturating_mul(super::UPLOAD_CHECKS_PER_UPLOAD),
            "an integer of at least DAILY_LIMIT_PER_MINER (each granted upload takes a check)",
            |n: &u64| *n >= daily_limit_per_miner,
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
        if quota_key_prefix.contains(['{', '}']) {
            // A brace would move or empty the hash tag that keeps a check's keys in one
            // cluster slot.
            return Err(ConfigError {
                var: "QUOTA_KEY_PREFIX",
                value: quota_key_prefix,
                expected: "a prefix without `{` or `}`".into(),
            });
        }
        let redis_mode = match env.string("REDIS_MODE", "auto").as_str() {
            "auto" => RedisMode::Auto,
            "standalone" => RedisMode::Standalone,
            "cluster" => RedisMode::Cluster,
            other => {
                return Err(ConfigError {
                    var: "REDIS_MODE",
                    value: other.to_owned(),
                    expected: "auto, standalone or cluster".into(),
                });
            }
        };
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
        let budget_mib = env.parsed(
            "REQUEST_BUFFER_BUDGET_MB",
            crate::api::budget::DEFAULT_BUDGET_MIB,
            "a number of MiB from 1 to 65536",
            |n: &usize| (1..=65_536).contains(n),
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
            bt_network: ConfigUrl::new(bt_network),
            daily_limit_per_miner,
            daily_upload_checks_per_miner,
            daily_limit_per_validator,
            total_daily_limit,
            redis_url: redis_url.map(ConfigUrl::new),
            quota_on_redis_error,
            quota_key_prefix,
            subtensor_url: subtensor_url.map(ConfigUrl::new),
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
            redis_mode,
            replay_protection,
            tao,
            trust_proxy_hops,
            auth_failure_burst,
            auth_failures_per_minute,
            header_read_timeout,
            body_read_timeout,
            idle_timeout,
            max_connections,
            request_buffer_budget: budget_mib << 20,
            shutdown_delay: Duration::from_secs(shutdown_delay),
        })
    }
}
