//! The access decisions: who may have what, in the order the service checks it.
//! Returns domain errors; the HTTP layer turns them into responses.

pub mod cursor;
pub mod folders;
pub mod miner;
pub mod service;
pub mod throttle;
pub mod uploads;
pub mod validator;

pub use miner::{MinerGrant, MinerRequest, miner_folder};
pub use service::{Access, AccessPolicy};
pub use validator::{
    FileGrant, FolderGrant, JobFolder, MinerFolders, MinerListGrant, ValidatorGrant,
    ValidatorRequest,
};

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use chrono::{DateTime, Utc};

use crate::auth::signature::parse_signature_hex;
use crate::auth::tao::{TaoProof, nonce_ttl_secs, within_skew};
use crate::auth::timestamp::RequestTime;
use crate::auth::{
    SignatureError, Ss58Error, TimestampError, verify_bytes_with_key, verify_with_key,
};
use crate::metagraph::{LoadedMetagraph, Metagraph};
use crate::quota::{QuotaDecision, ReplayGuard, secs_until_utc_midnight};
use crate::storage::{CredentialError, ListError, PresignError};

/// The kind of the upload-check counters (`{QUOTA_KEY_PREFIX}upload-check:{hotkey}:{day}`).
pub const UPLOAD_CHECKS: &str = "upload-check";

/// Which daily counter a request is counted on.
#[derive(Debug, Clone, Copy)]
pub enum Counter<'a> {
    /// The hotkey's requests, which also count against `TOTAL_DAILY_LIMIT`.
    Requests(&'a str),
    /// The hotkey's existence checks before uploads (`DAILY_UPLOAD_CHECKS_PER_MINER`),
    /// counted apart from the global limit.
    UploadChecks(&'a str),
}

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
    /// The metagraph has not been confirmed by its source for `METAGRAPH_REFUSE_AFTER`.
    #[error("metagraph too old")]
    MetagraphTooOld,
    /// The hotkey is not registered on the subnet.
    #[error("hotkey not registered")]
    NotRegistered,
    /// The signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The caller is not a validator (not registered, no permit, or too little stake).
    #[error("not a validator")]
    NotValidator,
    /// A `miner_hotkey` was required but not given.
    #[error("miner_hotkey is required")]
    MissingMinerHotkey,
    /// The `miner_hotkey` is not an SS58 address.
    #[error("miner_hotkey is not a valid SS58 address: {0}")]
    BadMinerHotkey(Ss58Error),
    /// A request parameter is out of range (the message says which).
    #[error("{0}")]
    BadParameter(String),
    /// Server-side S3 work took longer than `S3_OPERATION_TIMEOUT`.
    #[error("S3 operation timed out")]
    S3Timeout,
    /// Server-side S3 work failed.
    #[error(transparent)]
    S3(#[from] ListError),
    /// The HeadObject that checks whether an upload's key exists failed (not a 404).
    #[error("S3 check of {key:?} failed: {message}")]
    ObjectCheck {
        /// The key checked.
        key: String,
        /// The SDK's error, with its context.
        message: String,
    },
    /// The coldkey sent is not the one that owns the hotkey on chain.
    #[error("coldkey does not own the hotkey")]
    ColdkeyMismatch,
    /// The signature was accepted before (replay protection).
    #[error("signature already used")]
    Replayed,
    /// A Tao v2 timestamp is further from now than `TAO_CLOCK_SKEW_MS`.
    #[error("tao timestamp out of skew")]
    TaoSkew,
    /// A Tao v2 nonce was accepted before.
    #[error("nonce already used")]
    NonceReused,
    /// The route takes Tao v2 header signatures only, and the request has none.
    #[error("tao v2 headers required")]
    TaoRequired,
    /// The object to upload exists already.
    #[error("file already exists")]
    FileExists,
    /// This client address failed authentication too often; it may try again later.
    #[error("too many failed authentications from this address")]
    Throttled {
        /// When the address may try again.
        retry_after: Duration,
    },
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

impl AccessError {
    /// Whether the caller failed to prove who it is (what the address throttle counts).
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            AccessError::BadSignature(_)
                | AccessError::NotRegistered
                | AccessError::NotValidator
                | AccessError::ColdkeyMismatch
                | AccessError::Replayed
                | AccessError::TaoSkew
                | AccessError::NonceReused
                | AccessError::BadHotkey(_)
                | AccessError::Timestamp(_)
        )
    }
}

/// A refused quota check, with what the caller needs to back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRejection {
    /// True when the service-wide limit was hit, false for the caller's own.
    pub global: bool,
    /// True when the caller's own limit hit was its daily allowance of upload existence
    /// checks (`DAILY_UPLOAD_CHECKS_PER_MINER`), not its request limit.
    pub upload_checks: bool,
    /// The limit that was hit.
    pub limit: u64,
    /// Seconds to the next UTC midnight.
    pub reset_in_secs: u64,
    /// Unix time of the next UTC midnight.
    pub reset_at: i64,
}

/// How a request proves who sent it, and what is recorded so it is accepted once.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// A commitment string signed in the body.
    Body {
        /// The hex signature.
        signature: &'a str,
        /// The signed timestamp (seconds).
        timestamp: i64,
    },
    /// Tao v2 headers over the body.
    Tao(&'a TaoProof),
}

impl<'a> Proof<'a> {
    /// The Tao v2 headers when given, else the body's `signature` over `timestamp`.
    pub fn of(tao: Option<&'a TaoProof>, signature: &'a str, timestamp: i64) -> Self {
        match tao {
            Some(tao) => Proof::Tao(tao),
            None => Proof::Body {
                signature,
                timestamp,
            },
        }
    }
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

impl Access {
    /// Checks the timestamp window.
    pub fn check_time(
        &self,
        now: DateTime<Utc>,
        timestamp: Option<i64>,
        expiry: Option<i64>,
    ) -> Result<RequestTime, AccessError> {
        Ok(self.window.check(now.timestamp(), timestamp, expiry)?)
    }

    /// The current metagraph, or [`AccessError::NoMetagraph`], or
    /// [`AccessError::MetagraphTooOld`] when its source has not confirmed it for longer
    /// than `METAGRAPH_REFUSE_AFTER` (deregistrations may have been missed).
    pub fn metagraph(&self) -> Result<Arc<LoadedMetagraph>, AccessError> {
        let loaded = self.metagraph.current().ok_or(AccessError::NoMetagraph)?;
        if self.metagraph_too_old(&loaded) {
            return Err(AccessError::MetagraphTooOld);
        }
        Ok(loaded)
    }

    /// Counts a request against `limit` and the global limit and records its (verified)
    /// proof as used, in the same round trip, refusing one used before: a body signature
    /// (with replay protection on) for as long as its timestamp could still be accepted, a
    /// Tao v2 nonce (always) for twice the clock skew plus a margin.
    pub async fn charge(
        &self,
        hotkey: &str,
        limit: u64,
        proof: Proof<'_>,
        now: DateTime<Utc>,
    ) -> Result<QuotaUsage, AccessError> {
        let replay = self.replay_guard(hotkey, proof, now)?;
        self.count(Counter::Requests(hotkey), limit, replay, proof, now)
            .await
    }

    /// What records `proof` by `hotkey` as used: a Tao v2 nonce always, a body signature
    /// when replay protection is on.
    pub fn replay_guard(
        &self,
        hotkey: &str,
        proof: Proof<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<ReplayGuard>, AccessError> {
        let prefix = self.quotas.prefix();
        let replay = match proof {
            Proof::Body {
                signature,
                timestamp,
            } if self.policy.replay_protection => Some(ReplayGuard::new(
                prefix,
                hotkey,
                &parse_signature_hex(signature)?,
                self.window.replay_ttl_secs(timestamp, now.timestamp()),
            )),
            Proof::Body { .. } => None,
            Proof::Tao(tao) => Some(ReplayGuard::nonce(
                prefix,
                hotkey,
                &tao.nonce,
                nonce_ttl_secs(self.policy.tao.clock_skew_ms),
            )),
        };
        Ok(replay)
    }

    /// Counts one request on the daily counter `counter` against `limit` (and, for
    /// requests, the global limit), recording `replay` as used in the same round trip; a
    /// replay is refused as `proof`'s kind of reuse.
    pub async fn count(
        &self,
        counter: Counter<'_>,
        limit: u64,
        replay: Option<ReplayGuard>,
        proof: Proof<'_>,
        now: DateTime<Utc>,
    ) -> Result<QuotaUsage, AccessError> {
        let global_limit = self.policy.total_daily_limit;
        let outcome = match counter {
            Counter::Requests(hotkey) => {
                self.quotas
                    .acquire(hotkey, limit, global_limit, replay, now)
                    .await
            }
            Counter::UploadChecks(hotkey) => {
                self.quotas
                    .acquire_apart(UPLOAD_CHECKS, hotkey, limit, replay, now)
                    .await
            }
        }
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
                upload_checks: false,
                limit,
                reset_in_secs,
                reset_at,
            })),
            QuotaDecision::Replayed => Err(match proof {
                Proof::Tao(_) => AccessError::NonceReused,
                Proof::Body { .. } => AccessError::Replayed,
            }),
            QuotaDecision::GlobalExhausted => Err(AccessError::Quota(QuotaRejection {
                global: true,
                upload_checks: false,
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

    /// Runs `attempt` (an access decision) for a caller at `client`: refused at once when
    /// that address has used up its failed authentications, and charged one when the
    /// attempt fails authentication. `None` (address unknown) is never throttled.
    pub async fn throttled<T>(
        &self,
        client: Option<IpAddr>,
        attempt: impl Future<Output = Result<T, AccessError>>,
    ) -> Result<T, AccessError> {
        if let Some(ip) = client
            && let Err(retry_after) = self.throttle.check(ip, Instant::now())
        {
            return Err(AccessError::Throttled { retry_after });
        }
        let result = attempt.await;
        if let (Some(ip), Err(err)) = (client, &result)
            && err.is_auth_failure()
        {
            self.throttle.record_failure(ip, Instant::now());
        }
        result
    }

    /// A request's timestamp window. Body-signed: its own `timestamp` (300 s back, 60 s
    /// ahead). Tao v2: the headers' timestamp within `TAO_CLOCK_SKEW_MS` either way, the
    /// expiry then counting from now.
    pub fn request_time(
        &self,
        now: DateTime<Utc>,
        tao: Option<&TaoProof>,
        timestamp: Option<i64>,
        expiry: Option<i64>,
    ) -> Result<RequestTime, AccessError> {
        match tao {
            Some(tao) => {
                if !within_skew(
                    tao.timestamp_ms,
                    now.timestamp_millis(),
                    self.policy.tao.clock_skew_ms,
                ) {
                    return Err(AccessError::TaoSkew);
                }
                self.check_time(now, Some(now.timestamp()), expiry)
            }
            None => self.check_time(now, timestamp, expiry),
        }
    }

    /// Verifies a request's proof by `hotkey`'s key in `metagraph`: the Tao v2 headers'
    /// signature over `{sha256(body)}.{nonce}.{timestamp}`, else the hex `signature` over
    /// the commitment `message` (either raw or `<Bytes>`-wrapped).
    pub fn verify_proof(
        &self,
        metagraph: &Metagraph,
        hotkey: &str,
        tao: Option<&TaoProof>,
        message: impl FnOnce() -> String,
        signature: &str,
    ) -> Result<(), AccessError> {
        match tao {
            Some(tao) => {
                let key = metagraph
                    .public_key(hotkey)
                    .ok_or(AccessError::BadSignature(SignatureError::BadPublicKey))?;
                Ok(verify_bytes_with_key(key, &tao.message(), &tao.signature)?)
            }
            None => self.verify(metagraph, hotkey, &message(), signature),
        }
    }

    /// Verifies `signature` by the registered `hotkey` over the commitment `message`,
    /// with the public key the metagraph decoded.
    pub fn verify(
        &self,
        metagraph: &Metagraph,
        hotkey: &str,
        message: &str,
        signature: &str,
    ) -> Result<(), AccessError> {
        // A hotkey in the metagraph that is not SS58 cannot have signed anything.
        let key = metagraph
            .public_key(hotkey)
            .ok_or(AccessError::BadSignature(SignatureError::BadPublicKey))?;
        Ok(verify_with_key(key, message, signature)?)
    }
}
