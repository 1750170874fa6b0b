//! The validator flows: list URLs for all data, for one miner, for each job folder, and
//! GET URLs for chosen files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use chrono::{DateTime, Utc};

use super::cursor::check_s3_token;
use super::{Access, AccessError, Proof, QuotaUsage, miner_folder};
use crate::auth::tao::TaoProof;
use crate::auth::timestamp::RequestTime;
use crate::auth::{Commitment, decode_ss58};
use crate::storage::fit_lifetime;
use crate::storage::presign::{ListQuery, presign_list, presign_object};

/// Prefix under which every miner folder lives.
pub const DATA_PREFIX: &str = "data/hotkey=";
/// Lifetime of the global validator list URLs.
pub const VALIDATOR_LIST_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of the per-miner and per-job-folder list URLs.
pub const MINER_LIST_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// `max-keys` of the per-miner list URL.
pub const MINER_LIST_MAX_KEYS: u32 = 10_000;
/// Most file keys one request may ask for.
pub const MAX_FILE_KEYS: usize = 1000;
/// Most `miner_hotkeys` in one `/get-folder-presigned-urls` request (each is an S3 listing).
pub const MAX_MINER_HOTKEYS: usize = 256;
/// Longest S3 object key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The signed part every validator request carries.
#[derive(Debug, Clone)]
pub struct ValidatorRequest<'a> {
    /// The validator's hotkey.
    pub hotkey: &'a str,
    /// Signed timestamp (defaults to now).
    pub timestamp: Option<i64>,
    /// Hex sr25519 signature of the commitment.
    pub signature: &'a str,
    /// Requested expiry (defaults to timestamp + 24 h).
    pub expiry: Option<i64>,
    /// For list URLs: the page after this ListObjectsV2 continuation token.
    pub continuation_token: Option<&'a str>,
    /// Tao v2 headers: when present they are the proof, `hotkey` is theirs, and
    /// `timestamp` and `signature` are not used.
    pub tao: Option<&'a TaoProof>,
}

/// The answer to `/get-validator-access`.
#[derive(Debug, Clone)]
pub struct ValidatorGrant {
    /// ListObjectsV2 of everything under `data/hotkey=` (24 h).
    pub list_all_data: String,
    /// ListObjectsV2 of `data/hotkey=` with delimiter `/`: one prefix per miner (24 h).
    pub list_all_miners: String,
    /// How long the URLs are valid (24 h unless the credentials expire sooner).
    pub expires_in: Duration,
    /// Quota after this request.
    pub usage: QuotaUsage,
}

/// The answer to `/get-miner-specific-access`.
#[derive(Debug, Clone)]
pub struct MinerListGrant {
    /// `data/hotkey={miner}/`.
    pub prefix: String,
    /// ListObjectsV2 of the prefix, max-keys 10000 (3 h).
    pub miner_url: String,
    /// The request's expiry (unix seconds).
    pub expiry: i64,
    /// Quota after this request.
    pub usage: QuotaUsage,
}

/// The answer to `/get-file-presigned-urls`.
#[derive(Debug, Clone)]
pub struct FileGrant {
    /// GET URL per accepted key.
    pub urls: BTreeMap<String, String>,
    /// Keys refused (outside the miner's folder or malformed), in request order.
    pub invalid_keys: Vec<String>,
    /// How long the URLs are valid.
    pub expires_in: Duration,
    /// Quota after this request.
    pub usage: QuotaUsage,
}

/// One `job_id=` folder of a miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFolder {
    /// The job id (what follows `job_id=`).
    pub job_id: String,
    /// The folder, `data/hotkey={miner}/job_id={job}/`.
    pub path: String,
    /// ListObjectsV2 of the folder (3 h).
    pub presigned_url: String,
}

/// The job folders of one miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerFolders {
    /// `data/hotkey={miner}/`.
    pub miner_path: String,
    /// Its job folders.
    pub job_folders: Vec<JobFolder>,
}

/// The answer to `/get-folder-presigned-urls`: one page of job folders.
#[derive(Debug, Clone)]
pub struct FolderGrant {
    /// Per miner hotkey, its job folders on this page.
    pub miners: BTreeMap<String, MinerFolders>,
    /// Token for the next page, when more folders may follow.
    pub next_continuation_token: Option<String>,
    /// How long the URLs are valid.
    pub expires_in: Duration,
    /// Quota after this request.
    pub usage: QuotaUsage,
}

/// Checks a requested file key: it must lie under `prefix`, name something inside it,
/// and hold no empty, `.` or `..` path segments and no control characters.
pub fn valid_file_key(key: &str, prefix: &str) -> bool {
    let Some(rest) = key.strip_prefix(prefix) else {
        return false;
    };
    !rest.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && !key.chars().any(char::is_control)
        && rest
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The request's S3 continuation token for a presigned list URL, if any, once checked
/// ([`check_s3_token`]); an empty one is none.
pub(super) fn s3_token<'a>(req: &ValidatorRequest<'a>) -> Result<Option<&'a str>, AccessError> {
    let token = req.continuation_token.filter(|t| !t.is_empty());
    if let Some(t) = token {
        check_s3_token(t).map_err(|e| AccessError::BadParameter(e.to_string()))?;
    }
    Ok(token)
}

pub(super) fn parse_miner_hotkey(miner_hotkey: Option<&str>) -> Result<&str, AccessError> {
    let miner = miner_hotkey
        .filter(|m| !m.is_empty())
        .ok_or(AccessError::MissingMinerHotkey)?;
    decode_ss58(miner).map_err(AccessError::BadMinerHotkey)?;
    Ok(miner)
}

impl Access {
    /// The validator checks, in the reference's order: timestamp, validator status,
    /// signature; then credentials and the validator's quota.
    pub(super) async fn authorize_validator(
        &self,
        req: &ValidatorRequest<'_>,
        message: impl FnOnce(i64) -> String,
        now: DateTime<Utc>,
    ) -> Result<(RequestTime, Arc<Credentials>, QuotaUsage), AccessError> {
        // With Tao v2 headers, `hotkey` is theirs (the handlers read it so).
        let time = self.request_time(now, req.tao, req.timestamp, req.expiry)?;
        let loaded = self.metagraph()?;
        if !loaded
            .metagraph
            .is_validator(req.hotkey, self.policy.validator_min_alpha_stake)
        {
            return Err(AccessError::NotValidator);
        }
        self.verify_proof(
            &loaded.metagraph,
            req.hotkey,
            req.tao,
            || message(time.timestamp),
            req.signature,
        )?;
        let credentials = self.signing_credentials().await?;
        let usage = self
            .charge(
                req.hotkey,
                self.policy.daily_limit_per_validator,
                Proof::of(req.tao, req.signature, time.timestamp),
                now,
            )
            .await?;
        Ok((time, credentials, usage))
    }

    /// `/get-validator-access`: list URLs over all miners' data.
    pub async fn grant_validator(
        &self,
        req: &ValidatorRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<ValidatorGrant, AccessError> {
        let token = s3_token(req)?;
        let (_, credentials, usage) = self
            .authorize_validator(
                req,
                |timestamp| Commitment::ValidatorAccess { timestamp }.message(),
                now,
            )
            .await?;
        let at: SystemTime = now.into();
        let expires_in = fit_lifetime(&credentials, VALIDATOR_LIST_LIFETIME, at);
        let list = |delimiter| {
            presign_list(
                &credentials,
                &self.location,
                ListQuery {
                    prefix: DATA_PREFIX,
                    delimiter,
                    max_keys: None,
                    continuation_token: token,
                },
                at,
                expires_in,
            )
        };
        Ok(ValidatorGrant {
            list_all_data: list(None)?,
            list_all_miners: list(Some("/"))?,
            expires_in,
            usage,
        })
    }

    /// `/get-miner-specific-access`: a list URL for one miner's folder.
    pub async fn grant_miner_listing(
        &self,
        req: &ValidatorRequest<'_>,
        miner_hotkey: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<MinerListGrant, AccessError> {
        let miner = parse_miner_hotkey(miner_hotkey)?;
        let token = s3_token(req)?;
        let (time, credentials, usage) = self
            .authorize_validator(
                req,
                |timestamp| {
                    Commitment::ValidatorMiner {
                        miner_hotkey: miner,
                        timestamp,
                    }
                    .message()
                },
                now,
            )
            .await?;
        let prefix = miner_folder(miner);
        let miner_url = presign_list(
            &credentials,
            &self.location,
            ListQuery {
                prefix: &prefix,
                delimiter: None,
                max_keys: Some(MINER_LIST_MAX_KEYS),
                continuation_token: token,
            },
            now.into(),
            fit_lifetime(&credentials, MINER_LIST_LIFETIME, now.into()),
        )?;
        Ok(MinerListGrant {
            prefix,
            miner_url,
            expiry: time.expiry,
            usage,
        })
    }

    /// `/get-file-presigned-urls`: GET URLs for chosen files of one miner. Pure signing.
    pub async fn grant_files(
        &self,
        req: &ValidatorRequest<'_>,
        miner_hotkey: Option<&str>,
        file_keys: &[String],
        expiry_hours: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<FileGrant, AccessError> {
        let miner = parse_miner_hotkey(miner_hotkey)?;
        if file_keys.len() > MAX_FILE_KEYS {
            return Err(AccessError::BadParameter(format!(
                "At most {MAX_FILE_KEYS} file_keys per request (got {})",
                file_keys.len()
            )));
        }
        let hours = expiry_hours.unwrap_or(1);
        if !(1..=24).contains(&hours) {
            return Err(AccessError::BadParameter(
                "expiry_hours must be between 1 and 24".into(),
            ));
        }
        // Header-signed callers (Subnet 13's validators) get at most
        // `FILE_URL_MAX_EXPIRY_HOURS`; body-signed ones keep today's 1 to 24.
        let hours = match req.tao {
            Some(_) => hours.min(self.policy.tao.file_url_max_expiry_hours),
            None => hours,
        };
        let (_, credentials, usage) = self
            .authorize_validator(
                req,
                |timestamp| {
                    Commitment::ValidatorFiles {
                        miner_hotkey: miner,
                        hotkey: req.hotkey,
                        timestamp,
                    }
                    .message()
                },
                now,
            )
            .await?;
        let prefix = miner_folder(miner);
        let at: SystemTime = now.into();
        let expires_in = fit_lifetime(&credentials, Duration::from_secs(hours as u64 * 3600), at);
        let mut urls = BTreeMap::new();
        let mut invalid_keys = Vec::new();
        for key in file_keys {
            if !valid_file_key(key, &prefix) {
                invalid_keys.push(key.clone());
            } else if !urls.contains_key(key) {
                let url = presign_object(&credentials, &self.location, key, at, expires_in)?;
                urls.insert(key.clone(), url);
            }
        }
        Ok(FileGrant {
            urls,
            invalid_keys,
            expires_in,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_must_stay_inside_the_miner_folder() {
        let p = "data/hotkey=5M/";
        assert!(valid_file_key("data/hotkey=5M/job_id=1/a.parquet", p));
        assert!(valid_file_key("data/hotkey=5M/a", p));
        assert!(!valid_file_key("data/hotkey=5M/", p));
        assert!(!valid_file_key("", p));
        assert!(!valid_file_key("data/hotkey=5X/a", p));
        assert!(!valid_file_key("data/hotkey=5M/../5X/a", p));
        assert!(!valid_file_key("data/hotkey=5M/./a", p));
        assert!(!valid_file_key("data/hotkey=5M//a", p));
        assert!(!valid_file_key("data/hotkey=5M/job/", p));
        assert!(!valid_file_key("data/hotkey=5M/a\n", p));
        assert!(!valid_file_key("data/hotkey=5M/a\u{0}", p));
        assert!(!valid_file_key(&format!("{p}{}", "a".repeat(1100)), p));
    }
}
