//! The access service: what the access decisions read and change, and nothing of the
//! app's wiring. `state.rs` builds one; handlers call its `grant_*` methods.

use std::sync::Arc;
use std::time::Duration;

use super::throttle::AuthThrottle;
use crate::auth::TimestampWindow;
use crate::config::{Config, TaoSettings};
use crate::metagraph::{LoadedMetagraph, MetagraphHandle};
use crate::quota::Quotas;
use crate::storage::{BucketLocation, CredentialSource};

/// The limits and switches the access decisions read, taken once from [`Config`].
#[derive(Debug, Clone, PartialEq)]
pub struct AccessPolicy {
    /// `DAILY_LIMIT_PER_MINER`.
    pub daily_limit_per_miner: u64,
    /// `DAILY_UPLOAD_CHECKS_PER_MINER`: HeadObject checks of `/get-file-upload-url` a day.
    pub daily_upload_checks_per_miner: u64,
    /// `DAILY_LIMIT_PER_VALIDATOR`.
    pub daily_limit_per_validator: u64,
    /// `TOTAL_DAILY_LIMIT`: grants a day across all callers.
    pub total_daily_limit: u64,
    /// `VALIDATOR_MIN_ALPHA_STAKE`: alpha stake a validator must exceed.
    pub validator_min_alpha_stake: u64,
    /// `REQUIRE_COLDKEY_MATCH`: a miner's coldkey must own its hotkey.
    pub require_coldkey_match: bool,
    /// `REPLAY_PROTECTION`: a body signature is accepted once.
    pub replay_protection: bool,
    /// `METAGRAPH_REFUSE_AFTER`: nothing is granted on a metagraph unconfirmed this long.
    pub metagraph_refuse_after: Option<Duration>,
    /// `S3_OPERATION_TIMEOUT`: bound on the S3 calls one decision makes.
    pub s3_operation_timeout: Duration,
    /// Tao v2 header signatures and the upload settings.
    pub tao: TaoSettings,
}

impl From<&Config> for AccessPolicy {
    fn from(config: &Config) -> Self {
        Self {
            daily_limit_per_miner: config.daily_limit_per_miner,
            daily_upload_checks_per_miner: config.daily_upload_checks_per_miner,
            daily_limit_per_validator: config.daily_limit_per_validator,
            total_daily_limit: config.total_daily_limit,
            validator_min_alpha_stake: config.validator_min_alpha_stake,
            require_coldkey_match: config.require_coldkey_match,
            replay_protection: config.replay_protection,
            metagraph_refuse_after: config.metagraph_refuse_after,
            s3_operation_timeout: config.s3_operation_timeout,
            tao: config.tao.clone(),
        }
    }
}

/// Who may have what: the metagraph, quotas, signer and failed-authentication throttle
/// the decisions need, with the policy they apply.
#[derive(Debug)]
pub struct Access {
    /// Limits and switches.
    pub policy: AccessPolicy,
    /// The current metagraph (swapped atomically by its syncer).
    pub metagraph: Arc<MetagraphHandle>,
    /// Daily quotas and used proofs.
    pub quotas: Quotas,
    /// Signing credentials.
    pub credentials: CredentialSource,
    /// The bucket that URLs are signed for.
    pub location: BucketLocation,
    /// S3 client for the server-side calls some decisions make (listing, HeadObject).
    pub s3: aws_sdk_s3::Client,
    /// The body-signed timestamp window.
    pub window: TimestampWindow,
    /// Failed authentications by client address.
    pub throttle: AuthThrottle,
}

impl Access {
    /// Whether `loaded` has gone unconfirmed by its source for longer than
    /// `METAGRAPH_REFUSE_AFTER`, so that nothing may be granted on it.
    pub fn metagraph_too_old(&self, loaded: &LoadedMetagraph) -> bool {
        self.policy
            .metagraph_refuse_after
            .is_some_and(|limit| loaded.age() > limit)
    }
}
