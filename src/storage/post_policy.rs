//! S3 POST policies for browser-style uploads, byte for byte as botocore's
//! `generate_presigned_post` builds them, signed with SigV4.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::sign::v4::calculate_signature;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;

use super::BucketLocation;

/// What an upload policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicySpec {
    /// Every key must start with this (e.g. `data/hotkey=5F.../`).
    pub key_prefix: String,
    /// Smallest accepted object, in bytes.
    pub min_size: u64,
    /// Largest accepted object, in bytes.
    pub max_size: u64,
    /// How long the policy is valid.
    pub expires_in: Duration,
}

/// Form fields in the order botocore returns them; serialised as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormFields(pub Vec<(String, String)>);

impl FormFields {
    /// The value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_owned(), value.into()));
    }
}

impl Serialize for FormFields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A signed upload form: POST `url` with `fields` plus the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicyForm {
    /// Where to POST.
    pub url: String,
    /// The form fields, `policy` and `x-amz-signature` included.
    pub fields: FormFields,
}

/// Writes `s` as a JSON string the way Python's `json.dumps` does (ASCII only).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_eq(out: &mut String, name: &str, value: &str) {
    out.push('{');
    push_json_str(out, name);
    out.push_str(": ");
    push_json_str(out, value);
    out.push('}');
}

fn push_starts_with(out: &mut String, field: &str, prefix: &str) {
    out.push_str("[\"starts-with\", ");
    push_json_str(out, field);
    out.push_str(", ");
    push_json_str(out, prefix);
    out.push(']');
}

/// The SigV4 signature of a base64 policy: HMAC-SHA256 with the derived signing key.
pub fn sign_policy(
    secret_access_key: &str,
    region: &str,
    time: SystemTime,
    policy_b64: &str,
) -> String {
    let key = super::signing_key::signing_key(secret_access_key, time, region);
    calculate_signature(key, policy_b64.as_bytes())
}

/// Builds and signs the upload policy for `spec` at `now`: any key under its prefix.
pub fn presign_post(
    credentials: &Credentials,
    location: &BucketLocation,
    spec: &PostPolicySpec,
    now: SystemTime,
) -> PostPolicyForm {
    sign_form(credentials, location, spec, None, now)
}

/// Builds and signs an upload policy for exactly `key` (an `eq` condition), with the size
/// range and lifetime of `spec` (whose prefix `key` must start with).
pub fn presign_post_exact(
    credentials: &Credentials,
    location: &BucketLocation,
    spec: &PostPolicySpec,
    key: &str,
    now: SystemTime,
) -> PostPolicyForm {
    sign_form(credentials, location, spec, Some(key), now)
}

fn sign_form(
    credentials: &Credentials,
    location: &BucketLocation,
    spec: &PostPolicySpec,
    exact_key: Option<&str>,
    now: SystemTime,
) -> PostPolicyForm {
    let now_utc: DateTime<Utc> = now.into();
    let expiration: DateTime<Utc> = (now + spec.expires_in).into();
    let amz_date = crate::timefmt::amz_date(&now_utc);
    let credential = format!(
        "{}/{}/{}/s3/aws4_request",
        credentials.access_key_id(),
        crate::timefmt::amz_day(&now_utc),
        location.region
    );
    let key_template = match exact_key {
        Some(key) => key.to_owned(),
        None => format!("{}${{filename}}", spec.key_prefix),
    };
    let key_condition = |policy: &mut String| match exact_key {
        Some(key) => push_eq(policy, "key", key),
        None => push_starts_with(policy, "$key", &spec.key_prefix),
    };

    let mut policy = String::with_capacity(1024);
    policy.push_str("{\"expiration\": ");
    push_json_str(&mut policy, &crate::timefmt::iso_seconds(&expiration, true));
    policy.push_str(", \"conditions\": [");
    push_eq(&mut policy, "acl", "private");
    policy.push_str(", ");
    key_condition(&mut policy);
    let _ = write!(
        policy,
        ", [\"content-length-range\", {}, {}], ",
        spec.min_size, spec.max_size
    );
    push_eq(&mut policy, "x-amz-storage-class", "STANDARD");
    // What botocore appends: the bucket, the key condition again, then the signing fields.
    policy.push_str(", ");
    push_eq(&mut policy, "bucket", &location.bucket);
    policy.push_str(", ");
    key_condition(&mut policy);
    policy.push_str(", ");
    push_eq(&mut policy, "x-amz-algorithm", "AWS4-HMAC-SHA256");
    policy.push_str(", ");
    push_eq(&mut policy, "x-amz-credential", &credential);
    policy.push_str(", ");
    push_eq(&mut policy, "x-amz-date", &amz_date);
    if let Some(token) = credentials.session_token() {
        policy.push_str(", ");
        push_eq(&mut policy, "x-amz-security-token", token);
    }
    policy.push_str("]}");

    let policy_b64 = BASE64.encode(policy.as_bytes());
    let signature = sign_policy(
        credentials.secret_access_key(),
        &location.region,
        now,
        &policy_b64,
    );

    let mut fields = FormFields::default();
    fields.push("acl", "private");
    fields.push("x-amz-storage-class", "STANDARD");
    fields.push("key", key_template);
    fields.push("x-amz-algorithm", "AWS4-HMAC-SHA256");
    fields.push("x-amz-credential", credential);
    fields.push("x-amz-date", amz_date);
    if let Some(token) = credentials.session_token() {
        fields.push("x-amz-security-token", token);
    }
    fields.push("policy", policy_b64);
    fields.push("x-amz-signature", signature);
    PostPolicyForm {
        url: location.upload_url(),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json_escaping() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\é\n");
        assert_eq!(s, r#""a\"b\\\u00e9\n""#);
    }
}
