//! Tao v2 header signatures and the upload settings (`TAO_CLOCK_SKEW_MS`,
//! `S3_UPLOAD_METHOD`, `UPLOAD_URL_LIFETIME`, `MIN_UPLOAD_BYTES`, `MAX_UPLOAD_BYTES`,
//! `FILE_URL_MAX_EXPIRY_HOURS`).

use std::time::Duration;

use super::ConfigError;
use super::env::Env;
use crate::access::miner::{MAX_UPLOAD_BYTES, MIN_UPLOAD_BYTES};

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
    /// Reads and checks every setting.
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
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
