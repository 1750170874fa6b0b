//! The access decisions: who may have what, in the order the service checks it.
//! Returns domain errors; the HTTP layer turns them into responses.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use chrono::{DateTime, Utc};

use crate::auth::timestamp::RequestTime;
use crate::auth::{
    Commitment, SignatureError, Ss58Error, TimestampError, decode_ss58, verify_signature,
};
use crate::metagraph::LoadedMetagraph;
use crate::quota::{QuotaDecision, secs_until_utc_midnight};
use crate::state::AppState;
use crate::storage::post_policy::presign_post;
use crate::storage::presign::presign_list;
use crate::storage::{CredentialError, PostPolicyForm, PostPolicySpec, PresignError};

/// The folder of a miner: `data/hotkey={hotkey}/`.
pub fn miner_folder(hotkey: &str) -> String {
    format!("data/hotkey={hotkey}/")
}

/// Lifetime of the miner's POST policy.
pub const MINER_POLICY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of the miner's list URL.
pub const MINER_LIST_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// Smallest upload a miner may make, in bytes.
pub const MIN_UPLOAD_BYTES: u64 = 1024;
/// Largest upload a miner may make, in bytes (5 GiB, S3's single-PUT limit).
pub const MAX_UPLOAD_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Why access was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The timestamp is outside the window.
    #[error("invalid timestamp: {0}")]
    Timestamp(#[from] TimestampError),
    /// The caller's hotkey is not an SS58 address.
    #[error("hotkey is not a valid SS58 address: {0}")]
    BadHotkey(Ss58Error),
    /// No metagraph has been loaded yet.
    #[error("metagraph not loaded")]
    NoMetagraph,
    /// The hotkey is not registered on the subnet.
    #[error("hotkey not registered")]
    NotRegistered,
    /// The signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The coldkey sent is not the one that owns the hotkey on chain.
    #[error("coldkey does not own the hotkey")]
    ColdkeyMismatch,
    /// A daily limit is used up.
    #[error("quota exhausted")]
    Quota(QuotaRejection),
    /// Quotas cannot be checked (Redis down and fallback off).
    #[error("quota store unavailable")]
    QuotaUnavailable,
    /// No credentials to sign with.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// Signing failed.
    #[error(transparent)]
    Presign(#[from] PresignError),
}

/// A refused quota check, with what the caller needs to back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRejection {
    /// True when the service-wide limit was hit, false for the caller's own.
    pub global: bool,
    /// The limit that was hit.
    pub limit: u64,
    /// Seconds to the next UTC midnight.
    pub reset_in_secs: u64,
    /// Unix time of the next UTC midnight.
    pub reset_at: i64,
}

/// Quota state of an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUsage {
    /// The caller's limit.
    pub limit: u64,
    /// Requests left today.
    pub remaining: u64,
    /// Seconds to the next UTC midnight.
    pub reset_in_secs: u64,
    /// Unix time of the next UTC midnight.
    pub reset_at: i64,
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
}

impl AppState {
    /// Checks the timestamp window.
    pub fn check_time(
        &self,
        now: DateTime<Utc>,
        timestamp: Option<i64>,
        expiry: Option<i64>,
    ) -> Result<RequestTime, AccessError> {
        Ok(self.window.check(now.timestamp(), timestamp, expiry)?)
    }

    /// The current metagraph, or [`AccessError::NoMetagraph`].
    pub fn metagraph(&self) -> Result<Arc<LoadedMetagraph>, AccessError> {
        self.metagraph.current().ok_or(AccessError::NoMetagraph)
    }

    /// Counts a request against `limit` and the global limit.
    pub async fn charge(
        &self,
        hotkey: &str,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<QuotaUsage, AccessError> {
        let global_limit = self.config.total_daily_limit;
        let outcome = self
            .quotas
            .acquire(hotkey, limit, global_limit, now)
            .await
            .map_err(|_| AccessError::QuotaUnavailable)?;
        let reset_in_secs = secs_until_utc_midnight(now);
        let reset_at = now.timestamp() + reset_in_secs as i64;
        match outcome.decision {
            QuotaDecision::Allowed { used } => Ok(QuotaUsage {
                limit,
                remaining: limit.saturating_sub(used),
                reset_in_secs,
                reset_at,
            }),
            QuotaDecision::HotkeyExhausted => Err(AccessError::Quota(QuotaRejection {
                global: false,
                limit,
                reset_in_secs,
                reset_at,
            })),
            QuotaDecision::GlobalExhausted => Err(AccessError::Quota(QuotaRejection {
                global: true,
                limit: global_limit,
                reset_in_secs,
                reset_at,
            })),
        }
    }

    /// Current signing credentials.
    pub async fn signing_credentials(&self) -> Result<Arc<Credentials>, AccessError> {
        Ok(self.credentials.get().await?)
    }

    /// The miner flow: timestamp, hotkey, registration, signature, coldkey, quota; then
    /// the POST policy and list URL.
    pub async fn grant_miner(
        &self,
        req: &MinerRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<MinerGrant, AccessError> {
        let time = self.check_time(now, req.timestamp, req.expiry)?;
        let public_key = decode_ss58(req.hotkey).map_err(AccessError::BadHotkey)?;
        let loaded = self.metagraph()?;
        let neuron = loaded
            .metagraph
            .get(req.hotkey)
            .ok_or(AccessError::NotRegistered)?;
        let commitment = Commitment::MinerAccess {
            coldkey: req.coldkey,
            hotkey: req.hotkey,
            timestamp: time.timestamp,
        };
        verify_signature(&public_key, &commitment.message(), req.signature)?;
        if neuron.coldkey != req.coldkey {
            return Err(AccessError::ColdkeyMismatch);
        }
        // Credentials before the quota: a request that cannot be signed costs nothing.
        let credentials = self.signing_credentials().await?;
        let usage = self
            .charge(req.hotkey, self.config.daily_limit_per_miner, now)
            .await?;
        let folder = miner_folder(req.hotkey);
        let signed_at: SystemTime = now.into();
        let form = presign_post(
            &credentials,
            &self.location,
            &PostPolicySpec {
                key_prefix: folder.clone(),
                min_size: MIN_UPLOAD_BYTES,
                max_size: MAX_UPLOAD_BYTES,
                expires_in: MINER_POLICY_LIFETIME,
            },
            signed_at,
        );
        let list_url = presign_list(
            &credentials,
            &self.location,
            &folder,
            None,
            None,
            signed_at,
            MINER_LIST_LIFETIME,
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
