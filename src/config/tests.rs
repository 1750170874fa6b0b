//! Configuration parsing: defaults, errors naming the variable, and `ENV_VARS`.

use std::collections::HashMap;

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
    assert_eq!(c.bt_network.as_str(), "finney");
    assert_eq!(
        (
            c.daily_limit_per_miner,
            c.daily_limit_per_validator,
            c.total_daily_limit
        ),
        (50, 20_000, 500_000)
    );
    assert_eq!(c.daily_upload_checks_per_miner, 1000);
    assert_eq!(c.validator_min_alpha_stake, 20_000);
    assert!(c.redis_url.is_none());
    assert_eq!(c.quota_on_redis_error, OnRedisError::Fallback);
    assert_eq!(
        c.subtensor_url.as_ref().map(ConfigUrl::as_str),
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
    let e = with(&[
        ("S3_BUCKET", "b-1"),
        ("DAILY_UPLOAD_CHECKS_PER_MINER", "49"),
    ])
    .unwrap_err();
    assert_eq!(e.var, "DAILY_UPLOAD_CHECKS_PER_MINER");
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

#[test]
fn debug_output_hides_keys_in_configured_urls() {
    let c = with(&[
        ("S3_BUCKET", "my-bucket"),
        ("REDIS_URL", "redis://:hunter2pass@cache.internal:6379/0"),
        (
            "SUBTENSOR_URL",
            "wss://user:rpcsecret@rpc.example/ws?apikey=qwerty123",
        ),
        ("BT_NETWORK", "wss://node.example/?token=tok987654"),
    ])
    .expect("valid");
    // The real values are there to connect with.
    assert!(
        c.redis_url
            .as_ref()
            .map(ConfigUrl::as_str)
            .is_some_and(|u| u.contains("hunter2pass"))
    );
    let shown = format!("{c:?}");
    for secret in ["hunter2pass", "rpcsecret", "qwerty123", "tok987654"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("cache.internal:6379"), "{shown}");
    assert!(shown.contains("rpc.example"), "{shown}");
}

#[test]
fn upload_checks_follow_the_miner_limit_unless_set() {
    let c = with(&[("S3_BUCKET", "b-1"), ("DAILY_LIMIT_PER_MINER", "7")]).expect("valid");
    assert_eq!(c.daily_upload_checks_per_miner, 140);
    let c = with(&[
        ("S3_BUCKET", "b-1"),
        ("DAILY_LIMIT_PER_MINER", "7"),
        ("DAILY_UPLOAD_CHECKS_PER_MINER", "7"),
    ])
    .expect("valid");
    assert_eq!(c.daily_upload_checks_per_miner, 7);
}

#[test]
fn redis_mode_is_detected_unless_set_and_the_prefix_cannot_move_the_hash_tag() {
    let c = with(&[("S3_BUCKET", "b-1")]).expect("valid");
    assert_eq!(c.redis_mode, RedisMode::Auto);
    for (value, mode) in [
        ("standalone", RedisMode::Standalone),
        ("cluster", RedisMode::Cluster),
    ] {
        let c = with(&[("S3_BUCKET", "b-1"), ("REDIS_MODE", value)]).expect("valid");
        assert_eq!(c.redis_mode, mode);
    }
    let e = with(&[("S3_BUCKET", "b-1"), ("REDIS_MODE", "sentinel")]).unwrap_err();
    assert_eq!(
        (e.var, e.expected.as_str()),
        ("REDIS_MODE", "auto, standalone or cluster")
    );
    for prefix in ["q{", "}q", "{x}"] {
        let e = with(&[("S3_BUCKET", "b-1"), ("QUOTA_KEY_PREFIX", prefix)]).unwrap_err();
        assert_eq!(e.var, "QUOTA_KEY_PREFIX");
    }
}
