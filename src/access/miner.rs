//! The miner flow: upload access to the miner's own folder.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::{Access, AccessError, Proof, QuotaUsage};
use crate::auth::{Commitment, decode_ss58};
use crate::storage::post_policy::presign_post;
use crate::storage::presign::{ListQuery, presign_list};
use crate::storage::{PostPolicyForm, PostPolicySpec, fit_lifetime};

/// The folder of a miner: `data/hotkey={hotkey}/`.
pub fn miner_folder(hotkey: &str) -> String {
    format!("data/hotkey={hotkey}/")
}

/// Lifetime of the miner's POST policy.
pub const MINER_POLICY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of the miner's list URL.
pub const MINER_LIST_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// Smallest upload a policy admits by default (`MIN_UPLOAD_BYTES`), in bytes.
pub const MIN_UPLOAD_BYTES: u64 = 1024;
/// Largest upload a policy admits by default (`MAX_UPLOAD_BYTES`), and the most it may be:
/// 5 GiB, S3's single-PUT limit.
pub const MAX_UPLOAD_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// The upload policy a miner gets, for keys under `key_prefix` (the selftest signs the
/// same one for its own prefix).
pub fn upload_spec(
    key_prefix: &str,
    credentials: &aws_credential_types::Credentials,
    signed_at: SystemTime,
    sizes: &crate::config::TaoSettings,
) -> PostPolicySpec {
    PostPolicySpec {
        key_prefix: key_prefix.to_owned(),
        min_size: sizes.min_upload_bytes,
        max_size: sizes.max_upload_bytes,
        expires_in: fit_lifetime(credentials, MINER_POLICY_LIFETIME, signed_at),
    }
}

/// What a miner receives.
#[derive(Debug, Clone)]
pub struct MinerGrant {
    /// `data/hotkey={hotkey}/`.
    pub folder: String,
    /// The signed upload form.
    pub form: PostPolicyForm,
    /// The request's expiry (unix seconds).
    pub expiry: i64,
    /// Presigned ListObjectsV2 URL of the folder.
    pub list_url: String,
    /// Quota after this request.
    pub usage: QuotaUsage,
}

/// A miner's request for upload access.
#[derive(Debug, Clone)]
pub struct MinerRequest<'a> {
    /// The coldkey the miner claims owns its hotkey.
    pub coldkey: &'a str,
    /// The miner's hotkey.
    pub hotkey: &'a str,
    /// Signed timestamp (defaults to now).
    pub timestamp: Option<i64>,
    /// Hex sr25519 signature of the commitment.
    pub signature: &'a str,
    /// Requested expiry (defaults to timestamp + 24 h).
    pub expiry: Option<i64>,
    /// Tao v2 headers: when present they are the proof, and `hotkey` is theirs.
    pub tao: Option<&'a crate::auth::tao::TaoProof>,
}

impl Access {
    /// The miner flow: timestamp, hotkey, registration, signature, coldkey, quota; then
    /// the POST policy and list URL.
    pub async fn grant_miner(
        &self,
        req: &MinerRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<MinerGrant, AccessError> {
        let time = self.request_time(now, req.tao, req.timestamp, req.expiry)?;
        decode_ss58(req.hotkey).map_err(AccessError::BadHotkey)?;
        let loaded = self.metagraph()?;
        let neuron = loaded
            .metagraph
            .get(req.hotkey)
            .ok_or(AccessError::NotRegistered)?;
        self.verify_proof(
            &loaded.metagraph,
            req.hotkey,
            req.tao,
            || {
                Commitment::MinerAccess {
                    coldkey: req.coldkey,
                    hotkey: req.hotkey,
                    timestamp: time.timestamp,
                }
                .message()
            },
            req.signature,
        )?;
        if self.policy.require_coldkey_match && neuron.coldkey != req.coldkey {
            return Err(AccessError::ColdkeyMismatch);
        }
        // Credentials before the quota: a request that cannot be signed costs nothing.
        let credentials = self.signing_credentials().await?;
        let usage = self
            .charge(
                req.hotkey,
                self.policy.daily_limit_per_miner,
                Proof::of(req.tao, req.signature, time.timestamp),
                now,
            )
            .await?;
        let folder = miner_folder(req.hotkey);
        let signed_at: SystemTime = now.into();
        let form = presign_post(
            &credentials,
            &self.location,
            &upload_spec(&folder, &credentials, signed_at, &self.policy.tao),
            signed_at,
        );
        let list_url = presign_list(
            &credentials,
            &self.location,
            ListQuery::prefix(&folder),
            signed_at,
            fit_lifetime(&credentials, MINER_LIST_LIFETIME, signed_at),
        )?;
        Ok(MinerGrant {
            folder,
            form,
            expiry: time.expiry,
            list_url,
            usage,
        })
    }
}
