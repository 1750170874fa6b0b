//! The keys, limits and TTLs of one quota check, and of a signature's replay record.

use chrono::{DateTime, Utc};

/// The keys and limits of one quota check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCheck {
    /// Counter of the caller for the day: `{prefix}{hotkey}:{YYYY-MM-DD}`.
    pub hotkey_key: String,
    /// Counter of the service for the day: `{prefix}GLOBAL:{YYYY-MM-DD}`.
    pub global_key: String,
    /// Requests the caller may make in the day.
    pub limit: u64,
    /// Requests the service accepts in the day.
    pub global_limit: u64,
    /// Seconds until the counters may be forgotten (a little after the UTC day ends).
    pub ttl_secs: u64,
    /// The signature to record as used, when replay protection is on.
    pub replay: Option<ReplayGuard>,
}

/// A signature that may be accepted only once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayGuard {
    /// `{prefix}replay:{hotkey}:{signature hex}`.
    pub key: String,
    /// How long the record is kept: as long as the signed timestamp stays acceptable.
    pub ttl_secs: u64,
}

impl ReplayGuard {
    /// The record of `signature` (its 64 bytes, so no spelling of the hex can slip past)
    /// by `hotkey`, kept for `ttl_secs`.
    pub fn new(prefix: &str, hotkey: &str, signature: &[u8; 64], ttl_secs: u64) -> Self {
        Self {
            key: format!("{prefix}replay:{hotkey}:{}", hex::encode(signature)),
            ttl_secs: ttl_secs.max(1),
        }
    }
}

impl ReplayGuard {
    /// The record of a Tao v2 `nonce` by `hotkey`, kept for `ttl_secs`.
    pub fn nonce(prefix: &str, hotkey: &str, nonce: &str, ttl_secs: u64) -> Self {
        Self {
            key: format!("{prefix}tao-nonce:{hotkey}:{nonce}"),
            ttl_secs: ttl_secs.max(1),
        }
    }
}

impl QuotaCheck {
    /// The check for `hotkey` at `now`, with keys under `prefix`.
    pub fn new(
        prefix: &str,
        hotkey: &str,
        limit: u64,
        global_limit: u64,
        now: DateTime<Utc>,
    ) -> Self {
        let day = day_key(now);
        Self {
            hotkey_key: format!("{prefix}{hotkey}:{day}"),
            global_key: global_key(prefix, now),
            limit,
            global_limit,
            ttl_secs: secs_until_utc_midnight(now) + 60,
            replay: None,
        }
    }
}

/// The UTC date of `now` as `YYYY-MM-DD`.
pub fn day_key(now: DateTime<Utc>) -> String {
    crate::timefmt::iso_day(&now)
}

/// The global counter's key for the day of `now`.
pub fn global_key(prefix: &str, now: DateTime<Utc>) -> String {
    format!("{prefix}GLOBAL:{}", day_key(now))
}

/// Seconds from `now` to the next UTC midnight (at least 1).
pub fn secs_until_utc_midnight(now: DateTime<Utc>) -> u64 {
    let secs_of_day = now.timestamp().rem_euclid(86_400);
    (86_400 - secs_of_day).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keys_and_ttl() {
        let now = Utc
            .with_ymd_and_hms(2025, 11, 22, 23, 59, 30)
            .single()
            .expect("valid date");
        let c = QuotaCheck::new("", "5Abc", 50, 500_000, now);
        assert_eq!(c.hotkey_key, "5Abc:2025-11-22");
        assert_eq!(c.global_key, "GLOBAL:2025-11-22");
        assert_eq!(secs_until_utc_midnight(now), 30);
        assert_eq!(c.ttl_secs, 90);
        let c = QuotaCheck::new("q:", "5Abc", 50, 500_000, now);
        assert_eq!(c.global_key, "q:GLOBAL:2025-11-22");
    }
}
