//! `/rate-limits`: the configured limits and today's global usage, with the original
//! service's fields under their names and this service's additions beside them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The 200 answer of `/rate-limits`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitsResponse {
    /// The daily limits.
    pub rate_limits: DailyLimits,
    /// Today's global count.
    pub current_usage: CurrentUsage,
    /// Where the service runs.
    pub environment: Environment,
    /// The limits in words.
    pub limits_explanation: LimitsExplanation,
}

/// The daily limits, per UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyLimits {
    /// Requests a miner hotkey may make.
    pub daily_limit_per_miner: u64,
    /// Existence checks of `/get-file-upload-url` a miner hotkey may make (an addition).
    pub daily_upload_checks_per_miner: u64,
    /// Requests a validator hotkey may make.
    pub daily_limit_per_validator: u64,
    /// Requests the service grants in total.
    pub total_daily_limit: u64,
}

/// Today's global count.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentUsage {
    /// Requests counted today.
    pub global_requests_today: u64,
    /// Requests left today.
    pub global_remaining: u64,
    /// When the counts reset, in words.
    pub reset_time: &'static str,
    /// Seconds until the reset (an addition).
    pub reset_in_seconds: u64,
    /// Unix time of the reset (an addition).
    pub reset_at: i64,
}

/// Where the service runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Environment {
    /// The Subtensor network (credentials in a URL are hidden).
    pub network: String,
    /// The subnet.
    pub subnet_id: u16,
    /// The bucket.
    pub bucket: String,
    /// The bucket's region.
    pub region: String,
}

/// The limits in words: the original's four sentences, then this service's.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsExplanation {
    /// A miner's daily limit.
    pub miner_limit: String,
    /// A validator's daily limit.
    pub validator_limit: String,
    /// The total daily limit.
    pub total_limit: String,
    /// When the limits reset.
    pub reset_frequency: &'static str,
    /// A miner's daily limit, and what it counts (an addition).
    pub miners: String,
    /// A miner's daily existence checks (an addition).
    pub upload_checks: String,
    /// A validator's daily limit (an addition).
    pub validators: String,
    /// The total daily limit, and what it counts (an addition).
    pub global: String,
    /// Which requests count (an addition).
    pub counting: &'static str,
}

/// The configured limits and today's global usage.
#[utoipa::path(
    get,
    path = "/rate-limits",
    tag = "info",
    responses(
        (status = 200, description = "Configured limits and the day's global usage", body = RateLimitsResponse),
    )
)]
pub async fn rate_limits(State(state): State<Arc<AppState>>) -> Json<RateLimitsResponse> {
    let now = chrono::Utc::now();
    let used = state.access.quotas.global_usage(now).await;
    let config = &state.config;
    let (miner, checks, validator, total) = (
        config.daily_limit_per_miner,
        config.daily_upload_checks_per_miner,
        config.daily_limit_per_validator,
        config.total_daily_limit,
    );
    let reset_in = crate::quota::secs_until_utc_midnight(now);
    Json(RateLimitsResponse {
        rate_limits: DailyLimits {
            daily_limit_per_miner: miner,
            daily_upload_checks_per_miner: checks,
            daily_limit_per_validator: validator,
            total_daily_limit: total,
        },
        current_usage: CurrentUsage {
            global_requests_today: used,
            global_remaining: total.saturating_sub(used),
            reset_time: "Midnight UTC daily",
            reset_in_seconds: reset_in,
            reset_at: now.timestamp().saturating_add_unsigned(reset_in),
        },
        environment: Environment {
            network: crate::redact::url(config.bt_network.as_str()),
            subnet_id: config.net_uid,
            bucket: config.s3_bucket.clone(),
            region: config.s3_region.clone(),
        },
        limits_explanation: LimitsExplanation {
            miner_limit: format!("Each miner can make {miner} requests per day"),
            validator_limit: format!("Each validator can make {validator} requests per day"),
            total_limit: format!("All users combined can make {total} requests per day"),
            reset_frequency: "Limits reset at midnight UTC every day",
            miners: format!(
                "Each miner hotkey may request upload access {miner} times per UTC day"
            ),
            upload_checks: format!(
                "Each miner hotkey's /get-file-upload-url requests may check {checks} keys per UTC day (a 409 costs one check, a granted upload one check and one request)"
            ),
            validators: format!("Each validator hotkey may make {validator} requests per UTC day"),
            global: format!(
                "The service grants at most {total} requests per UTC day in total; each upload check counts once more"
            ),
            counting: "Only requests that pass the timestamp and signature checks are counted",
        },
    })
}
