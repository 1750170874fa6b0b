//! Daily request quotas: per hotkey per UTC day and for the whole service per UTC day.
//!
//! A [`QuotaStore`] checks both limits and counts a request in one atomic step, so
//! concurrent requests can never overshoot a limit. [`Quotas`] picks the Redis store when
//! one is configured and falls back to in-process counters (or rejects) when Redis fails.
//! Used signatures and nonces are also recorded in process ([`replay::ReplayRecords`])
//! whichever store answered, and checked there first.

pub mod check;
pub mod expiry;
pub mod memory;
pub mod redis_conn;
pub mod redis_store;
pub mod replay;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use replay::Reserve;

pub use check::{QuotaCheck, ReplayGuard, day_key, global_key, secs_until_utc_midnight};
pub use memory::MemoryStore;
pub use redis_store::RedisStore;
pub use replay::ReplayRecords;

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

    /// How the Redis connection was made: `"cluster"` or `"standalone"`; `None` when Redis
    /// is not configured or not connected yet.
    pub fn redis_mode(&self) -> Option<&'static str> {
        let cluster = self.redis.as_ref()?.is_cluster()?;
        Some(if cluster { "cluster" } else { "standalone" })
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

    /// How many used signatures and nonces were forgotten before their expiry because the
    /// in-process record was full ([`replay::MAX_RECORDS`]): a replay of those is caught
    /// only by Redis.
    pub fn replay_records_dropped(&self) -> u64 {
        self.memory.replays().dropped()
    }

    /// Runs the quota script on probe keys (bounded by the store's timeouts) and records
    /// whether it worked, as a request's failure would be; `None` when Redis is not
    /// configured or its first connection is still being made.
    pub async fn probe_redis(&self) -> Option<bool> {
        let redis = self.redis.as_ref()?;
        if redis.connecting() {
            return None;
        }
        let failures_before = self.redis_failures.load(Ordering::SeqCst);
        if let Err(err) = redis.probe().await {
            self.note_redis_failure(&err);
            return Some(false);
        }
        self.redis_known.store(true, Ordering::SeqCst);
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
    ///
    /// The signature is first held in process, so of concurrent copies only one reaches a
    /// store, and one recorded in process (accepted here while Redis answered or not) is
    /// refused without asking Redis. Redis still refuses one accepted by another instance.
    /// An accepted signature, or one Redis says is used, stays recorded in process for its
    /// TTL; a request refused for its quota, or not answered, leaves it unused.
    pub async fn acquire(
        &self,
        hotkey: &str,
        limit: u64,
        global_limit: u64,
        replay: Option<ReplayGuard>,
        now: DateTime<Utc>,
    ) -> Result<QuotaOutcome, QuotaUnavailable> {
        let check = QuotaCheck::new(&self.prefix, hotkey, limit, global_limit, now);
        self.acquire_check(check, replay).await
    }

    /// Like [`Quotas::acquire`], on a counter of another kind (`{prefix}{kind}:{hotkey}:{day}`)
    /// that does not count against the global limit: its own daily total
    /// (`{prefix}{kind}:GLOBAL:{day}`) has no limit.
    pub async fn acquire_apart(
        &self,
        kind: &str,
        hotkey: &str,
        limit: u64,
        replay: Option<ReplayGuard>,
        now: DateTime<Utc>,
    ) -> Result<QuotaOutcome, QuotaUnavailable> {
        let counter = format!("{kind}:{hotkey}");
        let mut check = QuotaCheck::new(&self.prefix, &counter, limit, u64::MAX, now);
        check.global_key = format!("{}{kind}:GLOBAL:{}", self.prefix, day_key(now));
        self.acquire_check(check, replay).await
    }

    /// Checks and counts `check`, refusing `replay` if it was accepted before.
    async fn acquire_check(
        &self,
        mut check: QuotaCheck,
        replay: Option<ReplayGuard>,
    ) -> Result<QuotaOutcome, QuotaUnavailable> {
        let held = match &replay {
            Some(guard) => match self.memory.replays().reserve(&guard.key) {
                Reserve::Used => {
                    return Ok(QuotaOutcome {
                        decision: QuotaDecision::Replayed,
                        backend: Backend::Memory,
                    });
                }
                Reserve::Reserved(held) => Some((held, guard.ttl_secs)),
            },
            None => None,
        };
        check.replay = replay;
        // Dropping `held` on an early return (or if this future is dropped) frees the key.
        let outcome = self.count(&check).await?;
        if let (QuotaDecision::Allowed { .. } | QuotaDecision::Replayed, Some((held, ttl_secs))) =
            (outcome.decision, held)
        {
            held.keep(ttl_secs);
        }
        Ok(outcome)
    }

    /// Asks Redis (which also checks the replay guard) or, when it fails and fallback is
    /// on, counts in process (the guard is already held there).
    async fn count(&self, check: &QuotaCheck) -> Result<QuotaOutcome, QuotaUnavailable> {
        if let Some(redis) = &self.redis {
            if !self.redis_skipped() {
                let failures_before = self.redis_failures.load(Ordering::SeqCst);
                match redis.acquire(check).await {
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
        Ok(QuotaOutcome {
            decision: self.memory.count(check),
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
    use std::sync::Arc;

    fn guard(signature: u8) -> Option<ReplayGuard> {
        Some(ReplayGuard::new("q:", "5Abc", &[signature; 64], 60))
    }

    async fn decide(quotas: &Quotas, limit: u64, signature: u8) -> QuotaDecision {
        let outcome = quotas.acquire("5Abc", limit, 1_000, guard(signature), Utc::now());
        outcome.await.map(|o| o.decision).expect("in process")
    }

    #[tokio::test]
    async fn a_signature_refused_for_its_quota_is_not_recorded() {
        let quotas = Quotas::new(None, OnRedisError::Fallback, "q:");
        assert_eq!(
            decide(&quotas, 1, 1).await,
            QuotaDecision::Allowed { used: 1 }
        );
        assert_eq!(decide(&quotas, 1, 1).await, QuotaDecision::Replayed);
        assert_eq!(decide(&quotas, 1, 2).await, QuotaDecision::HotkeyExhausted);
        // With a higher limit the same signature is accepted once, then refused.
        assert_eq!(
            decide(&quotas, 2, 2).await,
            QuotaDecision::Allowed { used: 2 }
        );
        assert_eq!(decide(&quotas, 2, 2).await, QuotaDecision::Replayed);
        assert_eq!(quotas.replay_records_dropped(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_concurrent_copies_of_a_signature_exactly_one_is_counted() {
        let quotas = Arc::new(Quotas::new(None, OnRedisError::Fallback, "q:"));
        let mut running = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let quotas = Arc::clone(&quotas);
            running.spawn(async move { decide(&quotas, 100, 7).await });
        }
        let decisions = running.join_all().await;
        let allowed = decisions
            .iter()
            .filter(|d| matches!(d, QuotaDecision::Allowed { .. }))
            .count();
        assert_eq!(allowed, 1, "{decisions:?}");
        assert_eq!(
            decide(&quotas, 100, 8).await,
            QuotaDecision::Allowed { used: 2 }
        );
    }
}
