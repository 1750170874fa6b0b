//! "Tao v2" header signatures, as current Subnet 13 clients send them: the request is
//! signed by headers over `{sha256(body) hex}.{nonce}.{timestamp}`, which binds each
//! signature to its exact body bytes.
//!
//! Headers: `X-Tao-Version: 2`, `X-Tao-Timestamp` (Unix milliseconds), `X-Tao-Nonce` (a
//! UUID), `X-Tao-Signed-By` (the SS58 hotkey), `X-Tao-Signature` (sr25519, base64, or hex
//! with or without `0x`).

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::ss58::decode_ss58;

/// The one version this service speaks.
pub const TAO_VERSION: &str = "2";
/// The header names, lower case.
pub const HEADERS: [&str; 5] = [
    "x-tao-version",
    "x-tao-timestamp",
    "x-tao-nonce",
    "x-tao-signed-by",
    "x-tao-signature",
];

/// A malformed Tao header (answered 400 with the message as `detail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaoHeaderError {
    /// A Tao header is present but another one is not.
    #[error("Missing {0} header")]
    Missing(&'static str),
    /// `X-Tao-Version` is not `2`.
    #[error("Unsupported X-Tao-Version (expected 2)")]
    Version,
    /// `X-Tao-Timestamp` is not a decimal number of milliseconds.
    #[error("Invalid X-Tao-Timestamp (expected Unix time in milliseconds)")]
    Timestamp,
    /// `X-Tao-Nonce` is not a UUID.
    #[error("Invalid X-Tao-Nonce (expected a UUID)")]
    Nonce,
    /// `X-Tao-Signed-By` is not a canonical SS58 address.
    #[error("Invalid X-Tao-Signed-By (expected an SS58 address)")]
    SignedBy,
    /// `X-Tao-Signature` is not 64 bytes of base64 or hex.
    #[error("Invalid X-Tao-Signature (expected 64 bytes, base64 or hex)")]
    Signature,
}

/// A request's Tao v2 proof: its headers, parsed, and the hash of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaoProof {
    /// `X-Tao-Timestamp`, as sent (it is part of the signed message).
    pub timestamp_raw: String,
    /// `X-Tao-Timestamp` in milliseconds.
    pub timestamp_ms: i64,
    /// `X-Tao-Nonce`, as sent.
    pub nonce: String,
    /// `X-Tao-Signed-By`.
    pub hotkey: String,
    /// `X-Tao-Signature`, decoded.
    pub signature: [u8; 64],
    /// Lowercase hex SHA-256 of the body bytes as received.
    pub body_sha256: String,
}

impl TaoProof {
    /// The signed message: `{sha256(body)}.{nonce}.{timestamp}`.
    pub fn message(&self) -> String {
        format!("{}.{}.{}", self.body_sha256, self.nonce, self.timestamp_raw)
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Decodes a signature sent as base64 (standard or URL-safe, padded or not) or hex.
pub fn decode_signature(value: &str) -> Option<[u8; 64]> {
    let value = value.trim();
    let hex_part = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .unwrap_or(value);
    if hex_part.len() == 128 {
        let mut out = [0u8; 64];
        if hex::decode_to_slice(hex_part, &mut out).is_ok() {
            return Some(out);
        }
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(value).ok())
        .and_then(|bytes| <[u8; 64]>::try_from(bytes.as_slice()).ok())
}

/// Reads the Tao headers through `get` (by lower-case name). `None` when the request
/// carries none of them (it is body-signed, or unsigned).
pub fn parse_headers<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
) -> Option<Result<TaoProof, TaoHeaderError>> {
    if HEADERS.iter().all(|h| get(h).is_none()) {
        return None;
    }
    let need = |name: &'static str, shown: &'static str| {
        get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(TaoHeaderError::Missing(shown))
    };
    Some((|| {
        let version = need("x-tao-version", "X-Tao-Version")?;
        if version != TAO_VERSION {
            return Err(TaoHeaderError::Version);
        }
        let timestamp_raw = need("x-tao-timestamp", "X-Tao-Timestamp")?;
        let timestamp_ms = timestamp_raw
            .parse::<i64>()
            .ok()
            .filter(|t| *t >= 0 && timestamp_raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(TaoHeaderError::Timestamp)?;
        let nonce = need("x-tao-nonce", "X-Tao-Nonce")?;
        if !is_uuid(nonce) {
            return Err(TaoHeaderError::Nonce);
        }
        let hotkey = need("x-tao-signed-by", "X-Tao-Signed-By")?;
        decode_ss58(hotkey).map_err(|_| TaoHeaderError::SignedBy)?;
        let signature = decode_signature(need("x-tao-signature", "X-Tao-Signature")?)
            .ok_or(TaoHeaderError::Signature)?;
        Ok(TaoProof {
            timestamp_raw: timestamp_raw.to_owned(),
            timestamp_ms,
            nonce: nonce.to_owned(),
            hotkey: hotkey.to_owned(),
            signature,
            body_sha256: hex::encode(Sha256::digest(body)),
        })
    })())
}

/// Whether `timestamp_ms` lies within `skew_ms` of `now_ms`, in either direction.
pub fn within_skew(timestamp_ms: i64, now_ms: i64, skew_ms: u64) -> bool {
    timestamp_ms.abs_diff(now_ms) <= skew_ms
}

/// How long a nonce record must live: past every moment its timestamp is accepted (2 ×
/// skew), plus a margin.
pub fn nonce_ttl_secs(skew_ms: u64) -> u64 {
    (2 * skew_ms).div_ceil(1000) + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    fn headers(sig: &str) -> HashMap<&'static str, String> {
        HashMap::from([
            ("x-tao-version", "2".to_owned()),
            ("x-tao-timestamp", "1764590400123".to_owned()),
            (
                "x-tao-nonce",
                "0f8fad5b-d9cb-469f-a165-70867728950e".to_owned(),
            ),
            ("x-tao-signed-by", ALICE.to_owned()),
            ("x-tao-signature", sig.to_owned()),
        ])
    }

    #[test]
    fn headers_parse_into_the_signed_message() {
        let sig = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        let h = headers(&sig);
        let proof = parse_headers(|n| h.get(n).map(String::as_str), b"{\"a\": 1}")
            .expect("tao headers")
            .expect("valid");
        assert_eq!(proof.signature, [7u8; 64]);
        assert_eq!(
            proof.message(),
            format!(
                "{}.0f8fad5b-d9cb-469f-a165-70867728950e.1764590400123",
                hex::encode(Sha256::digest(b"{\"a\": 1}"))
            )
        );
        assert_eq!(
            decode_signature(&format!("0x{}", "07".repeat(64))),
            Some([7u8; 64])
        );
        assert_eq!(decode_signature(&"07".repeat(64)), Some([7u8; 64]));
        assert!(parse_headers(|_| None, b"").is_none());
    }

    #[test]
    fn each_malformed_header_has_its_own_error() {
        let sig = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        for (name, value, want) in [
            ("x-tao-version", "1", TaoHeaderError::Version),
            ("x-tao-timestamp", "1.5", TaoHeaderError::Timestamp),
            ("x-tao-timestamp", "-5", TaoHeaderError::Timestamp),
            ("x-tao-nonce", "not-a-uuid", TaoHeaderError::Nonce),
            ("x-tao-signed-by", "5abc", TaoHeaderError::SignedBy),
            ("x-tao-signature", "AAAA", TaoHeaderError::Signature),
            (
                "x-tao-signature",
                "",
                TaoHeaderError::Missing("X-Tao-Signature"),
            ),
        ] {
            let mut h = headers(&sig);
            h.insert(name, value.to_owned());
            let got = parse_headers(|n| h.get(n).map(String::as_str), b"").expect("present");
            assert_eq!(got, Err(want), "{name}={value}");
        }
        assert!(within_skew(10_000, 18_000, 8000));
        assert!(!within_skew(10_000, 18_001, 8000));
        assert!(!within_skew(18_001, 10_000, 8000));
        assert_eq!(nonce_ttl_secs(8000), 18);
    }
}
