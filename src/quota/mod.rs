//! Daily request quotas: per hotkey per UTC day and for the whole service per UTC day.
//!
//! A [`QuotaStore`] checks both limits and counts a request in one atomic step, so
//! concurrent requests can never overshoot a limit. [`Quotas`] picks the Redis store when
//! one is configured and falls back to in-process counters (or rejects) when Redis fails.

pub mod expiry;
pub mod memory;
pub mod redis_store;
pub mod replay;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use memory::MemoryStore;
pub use redis_store::RedisStore;
pub use replay::ReplayRecords;

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

/// The result of a quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaDecision {
    /// Counted; `used` is the caller's count for the day including this request.
    Allowed {
        /// The caller's count after this request.
        used: u64,
    },
    /// The caller has used its daily limit; nothing was counted.
    HotkeyExhausted,
    /// The service has used its daily limit; nothing was counted.
    GlobalExhausted,
    /// The signature was accepted before; nothing was counted.
    Replayed,
}

/// A quota store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// Redis is not connected yet or the command failed or timed out.
    #[error("redis unavailable: {0}")]
    Redis(String),
}

/// Atomic check-and-count storage for quota counters.
pub trait QuotaStore: Send + Sync + 'static {
    /// Checks both limits and, only when both allow, increments both counters.
    fn acquire(
        &self,
        check: &QuotaCheck,
    ) -> impl std::future::Future<Output = Result<QuotaDecision, QuotaError>> + Send;

    /// The current value of a counter (0 when absent).
    fn get(&self, key: &str) -> impl std::future::Future<Output = Result<u64, QuotaError>> + Send;
}

/// What to do when Redis fails during a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Count in process memory instead (the default).
    Fallback,
    /// Answer 503.
    Reject,
}

/// Which store answered a quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Redis.
    Redis,
    /// In-process counters (configured, or as a fallback).
    Memory,
}

/// A quota decision and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaOutcome {
    /// The decision.
    pub decision: QuotaDecision,
    /// The store that made it.
    pub backend: Backend,
}

/// Quota checks could not be made at all (Redis failed and fallback is off).
#[derive(Debug, thiserror::Error)]
#[error("quota store unavailable")]
pub struct QuotaUnavailable;

/// After a Redis failure, requests skip Redis for this long instead of waiting on it again.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(2);
/// At most one fallback warning per this period.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The service's quota front: Redis when configured, with fallback, or memory only.
#[derive(Debug)]
pub struct Quotas {
    redis: Option<RedisStore>,
    memory: MemoryStore,
    on_error: OnRedisError,
    prefix: String,
    /// While set and in the future, Redis is skipped.
    redis_down_until: Mutex<Option<Instant>>,
    last_warning: Mutex<Option<Instant>>,
    redis_ok: AtomicBool,
    /// Whether any Redis operation or probe has had a result yet.
    redis_known: AtomicBool,
    /// Redis failures so far: a success that started before the latest failure must not
    /// mark Redis healthy again.
    redis_failures: AtomicU64,
    fallback_activations: AtomicU64,
    /// Replay checks made in process because Redis failed (caught per instance only).
    replay_checks_in_process: AtomicU64,
}

impl Quotas {
    /// Quotas with an optional Redis store.
    pub fn new(
        redis: Option<RedisStore>,
        on_error: OnRedisError,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            redis,
            memory: MemoryStore::new(),
            on_error,
            prefix: prefix.into(),
            redis_down_until: Mutex::new(None),
            last_warning: Mutex::new(None),
            // Unknown until the first command or probe answers.
            redis_ok: AtomicBool::new(false),
            redis_known: AtomicBool::new(false),
            redis_failures: AtomicU64::new(0),
            fallback_activations: AtomicU64::new(0),
            replay_checks_in_process: AtomicU64::new(0),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether a Redis store is configured.
    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// The fallback policy.
    pub fn on_error(&self) -> OnRedisError {
        self.on_error
    }

    /// Whether the last Redis operation succeeded (false when Redis is not configured).
    pub fn redis_ok(&self) -> bool {
        self.redis.is_some() && self.redis_ok.load(Ordering::Relaxed)
    }

    /// Redis's health as last seen: `None` when Redis is not configured or nothing has
    /// been learnt yet (the first connection is still being made).
    pub fn redis_status(&self) -> Option<bool> {
        (self.redis.is_some() && self.redis_known.load(Ordering::SeqCst)).then(|| self.redis_ok())
    }

    /// How many times a request fell back from Redis to in-process counters.
    pub fn fallback_activations(&self) -> u64 {
        self.fallback_activations.load(Ordering::Relaxed)
    }

    /// How many replay checks were made in process because Redis failed: a replay of
    /// those signatures sent to another instance is not caught.
    pub fn replay_checks_in_process(&self) -> u64 {
        self.replay_checks_in_process.load(Ordering::Relaxed)
    }

    /// Pings Redis (bounded by the store's timeouts) and records the result; `None` when
    /// Redis is not configured or its first connection is still being made.
    pub async fn probe_redis(&self) -> Option<bool> {
        let redis = self.redis.as_ref()?;
        if redis.connecting() {
            return None;
        }
        let failures_before = self.redis_failures.load(Ordering::SeqCst);
        let ok = redis.ping().await.is_ok();
        self.redis_known.store(true, Ordering::SeqCst);
        if !ok {
            self.redis_failures.fetch_add(1, Ordering::SeqCst);
            self.redis_ok.store(false, Ordering::SeqCst);
            return Some(false);
        }
        if self.redis_failures.load(Ordering::SeqCst) == failures_before {
            self.redis_ok.store(true, Ordering::SeqCst);
            if let Ok(mut until) = self.redis_down_until.lock() {
                *until = None;
            }
        }
        Some(self.redis_ok())
    }

    fn redis_skipped(&self) -> bool {
        self.redis_down_until
            .lock()
            .map(|until| until.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }

    fn note_redis_failure(&self, err: &QuotaError) {
        self.redis_known.store(true, Ordering::SeqCst);
        self.redis_failures.fetch_add(1, Ordering::SeqCst);
        self.redis_ok.store(false, Ordering::SeqCst);
        if let Ok(mut until) = self.redis_down_until.lock() {
            *until = Some(Instant::now() + REDIS_RETRY_AFTER);
        }
        let should_warn = self
            .last_warning
            .lock()
            .map(|mut last| {
                let due = last.is_none_or(|t| t.elapsed() >= WARN_EVERY);
                if due {
                    *last = Some(Instant::now());
                }
                due
            })
            .unwrap_or(false);
        if should_warn {
            let action = match self.on_error {
                OnRedisError::Fallback => "counting in process memory",
                OnRedisError::Reject => "rejecting requests with 503",
            };
            tracing::warn!(error = %err, "redis quota store failed; {action}");
        }
    }

    /// Checks and counts one request of `hotkey` against `limit` and the global limit,
    /// and, given a signature, refuses it if it was accepted before (one round trip).
    pub async fn acquire(
        &self,
        hotkey: &str,
        limit: u64,
        global_limit: u64,
        replay: Option<ReplayGuard>,
        now: DateTime<Utc>,
    ) -> Result<QuotaOutcome, QuotaUnavailable> {
        let mut check = QuotaCheck::new(&self.prefix, hotkey, limit, global_limit, now);
        check.replay = replay;
        if let Some(redis) = &self.redis {
            if !self.redis_skipped() {
                let failures_before = self.redis_failures.load(Ordering::SeqCst);
                match redis.acquire(&check).await {
                    Ok(decision) => {
                        // Only when no other call saw Redis fail meanwhile.
                        if self.redis_failures.load(Ordering::SeqCst) == failures_before {
                            self.redis_ok.store(true, Ordering::SeqCst);
                            self.redis_known.store(true, Ordering::SeqCst);
                        }
                        return Ok(QuotaOutcome {
                            decision,
                            backend: Backend::Redis,
                        });
                    }
                    Err(err) => self.note_redis_failure(&err),
                }
            }
            if self.on_error == OnRedisError::Reject {
                return Err(QuotaUnavailable);
            }
            self.fallback_activations.fetch_add(1, Ordering::Relaxed);
            if check.replay.is_some() {
                self.replay_checks_in_process
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        let decision = self
            .memory
            .acquire(&check)
            .await
            .map_err(|_| QuotaUnavailable)?;
        Ok(QuotaOutcome {
            decision,
            backend: Backend::Memory,
        })
    }

    /// Requests counted against the global limit today (from Redis when it answers).
    pub async fn global_usage(&self, now: DateTime<Utc>) -> u64 {
        let key = global_key(&self.prefix, now);
        if let Some(redis) = &self.redis
            && !self.redis_skipped()
            && let Ok(n) = redis.get(&key).await
        {
            return n;
        }
        self.memory.get(&key).await.unwrap_or(0)
    }
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
