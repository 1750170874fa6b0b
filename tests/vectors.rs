//! The auth core and the POST-policy signer against vectors made by the Python libraries
//! that real clients use (substrate-interface and botocore). See tests/fixtures/README.md.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use chrono::NaiveDateTime;
use s3_auth_api::auth::{decode_ss58, encode_ss58, verify_signature};
use s3_auth_api::storage::BucketLocation;
use s3_auth_api::storage::post_policy::{PostPolicySpec, presign_post, sign_policy};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .to_owned()
}

#[test]
fn every_sr25519_vector_verifies_or_fails_as_listed() {
    let doc = load("sr25519_vectors.json");
    let cases = doc["sr25519"].as_array().expect("sr25519 cases");
    assert!(cases.len() >= 60, "expected the full vector set");
    let mut valid = 0;
    for case in cases {
        let key_hex = s(case, "public_key_hex");
        let mut key = [0u8; 32];
        hex::decode_to_slice(&key_hex, &mut key).expect("public key hex");
        let message = s(case, "message");
        let sig = s(case, "signature_hex");
        let expected = case["valid"].as_bool().expect("valid flag");
        let result = verify_signature(&key, &message, &sig);
        assert_eq!(
            result.is_ok(),
            expected,
            "case {} {} wrapped={} note={:?}: got {result:?}",
            s(case, "key"),
            s(case, "kind"),
            case["wrapped"],
            case.get("note")
        );
        if expected {
            valid += 1;
            // With a 0x prefix it verifies the same.
            assert!(verify_signature(&key, &message, &format!("0x{sig}")).is_ok());
        }
    }
    assert!(valid > 0 && valid < cases.len());
}

#[test]
fn every_ss58_case_decodes_or_fails_as_listed() {
    let doc = load("sr25519_vectors.json");
    for case in doc["ss58"]["valid"].as_array().expect("valid ss58") {
        let addr = s(case, "ss58");
        let key = decode_ss58(&addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert_eq!(hex::encode(key), s(case, "public_key_hex"));
        assert_eq!(encode_ss58(&key), addr);
    }
    for case in doc["ss58"]["invalid"].as_array().expect("invalid ss58") {
        let input = s(case, "input");
        assert!(
            decode_ss58(&input).is_err(),
            "{input} ({}) must not decode",
            s(case, "why")
        );
    }
}

fn signing_time(case: &Value) -> SystemTime {
    let t = NaiveDateTime::parse_from_str(&s(case, "signing_time"), "%Y%m%dT%H%M%SZ")
        .expect("signing_time");
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.and_utc().timestamp() as u64)
}

#[test]
fn post_policy_signatures_match_botocore() {
    let doc = load("sigv4_post_policy_vectors.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let fields = &case["fields"];
        let sig = sign_policy(
            &s(case, "secret_access_key"),
            &s(case, "region"),
            signing_time(case),
            &s(fields, "policy"),
        );
        assert_eq!(sig, s(fields, "x-amz-signature"));
    }
}

#[test]
fn post_policy_document_is_byte_identical_to_botocore() {
    let doc = load("sigv4_post_policy_vectors.json");
    for case in doc["cases"].as_array().expect("cases") {
        let fields = &case["fields"];
        let creds = Credentials::new(
            s(case, "access_key_id"),
            s(case, "secret_access_key"),
            None,
            None,
            "vector",
        );
        let location = BucketLocation {
            bucket: s(case, "bucket"),
            region: s(case, "region"),
            public_endpoint: None,
        };
        let key = s(fields, "key");
        let prefix = key.trim_end_matches("${filename}").to_owned();
        let spec = PostPolicySpec {
            key_prefix: prefix,
            min_size: 1024,
            max_size: 5_368_709_120,
            expires_in: Duration::from_secs(case["expires_in_seconds"].as_u64().expect("expiry")),
        };
        let form = presign_post(&creds, &location, &spec, signing_time(case));
        let ours: Vec<(&str, &str)> = form
            .fields
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let theirs: Vec<(&str, &str)> = fields
            .as_object()
            .expect("fields")
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().expect("string field")))
            .collect();
        let mut ours_sorted = ours.clone();
        let mut theirs_sorted = theirs.clone();
        ours_sorted.sort();
        theirs_sorted.sort();
        assert_eq!(ours_sorted, theirs_sorted, "bucket {}", s(case, "bucket"));
    }
}
