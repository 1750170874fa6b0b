//! `presign_post` with arbitrary folder strings (`key_prefix`), bucket names, session tokens
//! and signing times: the base64 `policy` decodes to ASCII JSON whose two `$key`
//! `starts-with` conditions equal the prefix exactly, whose other conditions are the ones
//! asked for, and whose signature is the SigV4 signature of exactly that policy.
//!
//! Input: UTF-8 (lossy) `prefix` NUL `bucket` NUL `session token` (later parts optional),
//! the signing time taken from the length and first bytes.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use s3_auth_api::storage::post_policy::{presign_post, sign_policy};
use s3_auth_api::storage::{BucketLocation, PostPolicySpec};
use serde_json::Value;

const ACCESS_KEY: &str = "AKIAFUZZEXAMPLE";
const SECRET_KEY: &str = "fuzz-secret-key-0123456789";
const LIFETIME: Duration = Duration::from_secs(24 * 3600);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let prefix = parts.next().unwrap_or_default().to_owned();
    let bucket = parts.next().unwrap_or("fuzz-bucket").to_owned();
    let token = parts.next().map(str::to_owned);
    // 2001..2106: any time a server clock may show.
    let seed = data.iter().take(4).fold(data.len() as u64, |acc, &b| {
        acc.wrapping_mul(257) ^ u64::from(b)
    });
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000 + seed % 3_000_000_000);

    let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY, token.clone(), None, "fuzz");
    let location = BucketLocation {
        bucket: bucket.clone(),
        region: "us-east-2".into(),
        public_endpoint: None,
    };
    let spec = PostPolicySpec {
        key_prefix: prefix.clone(),
        min_size: 1024,
        max_size: 5 * 1024 * 1024 * 1024,
        expires_in: LIFETIME,
    };
    let form = presign_post(&credentials, &location, &spec, now);

    let field = |name: &str| {
        form.fields
            .get(name)
            .unwrap_or_else(|| panic!("field {name} missing"))
    };
    assert_eq!(field("key"), format!("{prefix}${{filename}}"));
    assert_eq!(form.fields.get("x-amz-security-token"), token.as_deref());
    let policy_b64 = field("policy");
    assert_eq!(
        field("x-amz-signature"),
        sign_policy(SECRET_KEY, "us-east-2", now, policy_b64)
    );

    let policy = BASE64.decode(policy_b64).expect("policy is base64");
    assert!(
        policy.iter().all(|&b| (0x20..0x7f).contains(&b)),
        "policy is printable ASCII (json.dumps with ensure_ascii)"
    );
    let doc: Value = serde_json::from_slice(&policy).expect("policy is JSON");
    let expiration: DateTime<Utc> = (now + LIFETIME).into();
    assert_eq!(
        doc["expiration"],
        expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    let conditions = doc["conditions"].as_array().expect("conditions list");
    let mut key_prefixes = Vec::new();
    let mut eq = std::collections::BTreeMap::new();
    for c in conditions {
        match c {
            Value::Array(items) if items.first() == Some(&Value::from("starts-with")) => {
                assert_eq!(items.len(), 3);
                assert_eq!(items[1], "$key", "only $key has a starts-with condition");
                key_prefixes.push(items[2].as_str().expect("prefix is a string").to_owned());
            }
            Value::Array(items) => {
                assert_eq!(items[0], "content-length-range");
                assert_eq!(items[1], 1024);
                assert_eq!(items[2], 5u64 * 1024 * 1024 * 1024);
            }
            Value::Object(map) => {
                assert_eq!(map.len(), 1);
                for (k, v) in map {
                    let v = v.as_str().expect("string condition").to_owned();
                    assert!(eq.insert(k.clone(), v).is_none(), "duplicate condition {k}");
                }
            }
            other => panic!("unexpected condition {other}"),
        }
    }
    assert_eq!(key_prefixes, vec![prefix.clone(), prefix.clone()]);
    assert_eq!(eq.get("bucket"), Some(&bucket));
    assert_eq!(eq.get("acl").map(String::as_str), Some("private"));
    assert_eq!(
        eq.get("x-amz-storage-class").map(String::as_str),
        Some("STANDARD")
    );
    assert_eq!(eq.get("x-amz-security-token"), token.as_ref());
    assert_eq!(
        eq.get("x-amz-credential").map(String::as_str),
        Some(field("x-amz-credential"))
    );
    assert_eq!(
        eq.get("x-amz-date").map(String::as_str),
        Some(field("x-amz-date"))
    );
});
