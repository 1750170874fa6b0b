//! A Tao v2 signer for the tests, written from the protocol: headers `X-Tao-Version: 2`,
//! `X-Tao-Timestamp` (ms), `X-Tao-Nonce` (UUID), `X-Tao-Signed-By`, `X-Tao-Signature`
//! (base64 sr25519 over `{sha256(body) hex}.{nonce}.{timestamp}`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::TestKey;

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// A fresh UUID-shaped nonce (version 4 layout).
pub fn nonce() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (t >> 32) as u32,
        (t >> 16) as u16,
        (n >> 12) & 0xfff,
        n & 0xfff,
        t & 0xffff_ffff_ffff
    )
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What goes into the headers; each part can be spoiled by a test.
#[derive(Debug, Clone)]
pub struct TaoHeaders {
    /// `X-Tao-Version`.
    pub version: String,
    /// `X-Tao-Timestamp`.
    pub timestamp: String,
    /// `X-Tao-Nonce`.
    pub nonce: String,
    /// `X-Tao-Signed-By`.
    pub signed_by: String,
    /// `X-Tao-Signature`.
    pub signature: String,
}

/// Signs `body` as `key` now with a fresh nonce.
pub fn sign(key: &TestKey, body: &[u8]) -> TaoHeaders {
    sign_at(key, body, now_ms(), &nonce())
}

/// Signs `body` as `key` with the given timestamp and nonce.
pub fn sign_at(key: &TestKey, body: &[u8], timestamp_ms: i64, nonce: &str) -> TaoHeaders {
    let message = format!(
        "{}.{nonce}.{timestamp_ms}",
        hex::encode(Sha256::digest(body))
    );
    let signature = hex::decode(key.sign(&message)).expect("hex signature");
    TaoHeaders {
        version: "2".into(),
        timestamp: timestamp_ms.to_string(),
        nonce: nonce.to_owned(),
        signed_by: key.ss58.clone(),
        signature: base64::engine::general_purpose::STANDARD.encode(signature),
    }
}

/// A POST of `body` with `headers`.
pub fn request(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    headers: &TaoHeaders,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("X-Tao-Version", &headers.version)
        .header("X-Tao-Timestamp", &headers.timestamp)
        .header("X-Tao-Nonce", &headers.nonce)
        .header("X-Tao-Signed-By", &headers.signed_by)
        .header("X-Tao-Signature", &headers.signature)
        .body(body.to_vec())
}

/// Sends every request at once and returns their statuses in completion order.
pub async fn statuses_at_once(requests: Vec<reqwest::RequestBuilder>) -> Vec<u16> {
    let mut running = tokio::task::JoinSet::new();
    for req in requests {
        running.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    }
    running
        .join_all()
        .await
        .into_iter()
        .map(|s| s.expect("an answer"))
        .collect()
}

/// Sends `body` signed with `headers` to `path` of `app`: the status and the JSON answer
/// (`null` when the answer is not JSON).
pub async fn post_signed(
    app: &super::TestApp,
    path: &str,
    body: &[u8],
    headers: &TaoHeaders,
) -> (u16, serde_json::Value) {
    let res = request(&app.client, &format!("{}{path}", app.base), body, headers)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}
