//! Quota counters in Redis, checked and counted by one Lua script.
//!
//! On a cluster every key gets the hash tag `{quota}` right after `QUOTA_KEY_PREFIX`, so
//! the counters and the replay record a script touches share one slot (see
//! `docs/decisions.md`). A single node keeps the untagged names.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::{AsyncCommands, IntoConnectionInfo, Script};

use super::redis_conn::{Connector, REDIS_TIMEOUT, RedisConn};
use super::{QuotaCheck, QuotaDecision, QuotaError, QuotaStore};
use crate::config::RedisMode;

/// Refuses a used signature (KEYS[3], when given), then checks the global and the
/// per-hotkey limit; increments both (and sets their TTL) and records the signature only
/// when all allow. Returns `{status, hotkey_count}`: 0 allowed, 1 hotkey limit, 2 global
/// limit, 3 signature already used.
const ACQUIRE_LUA: &str = r#"
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then return {3, 0} end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local global = tonumber(redis.call('GET', KEYS[2]) or '0')
local limit = tonumber(ARGV[1])
local global_limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if global >= global_limit then return {2, used} end
if used >= limit then return {1, used} end
used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ttl)
if KEYS[3] then redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[4])) end
return {0, used}
"#;

/// The hash tag every key carries on a cluster.
pub const CLUSTER_TAG: &str = "{quota}";
/// How long the first connection may take before Redis counts as down (the connection
/// manager retries inside one attempt, so a refused port can take longer to fail).
pub const FIRST_CONNECT_GRACE: std::time::Duration = Duration::from_secs(2);
/// Pause between attempts to establish the first connection.
const CONNECT_RETRY: Duration = Duration::from_secs(2);
/// Least time between two new cluster connections made after failures.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

/// A Redis-backed [`QuotaStore`]. It connects in the background and reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    /// The connection; replaced whole when a cluster connection is made anew. Cloned out
    /// before use, never held across an `.await`.
    conn: Arc<RwLock<Option<RedisConn>>>,
    connector: Arc<Connector>,
    /// Set while a new cluster connection is being made.
    reconnecting: Arc<AtomicBool>,
    /// When the last new cluster connection was started.
    last_reconnect: Arc<Mutex<Option<Instant>>>,
    /// Set once the first connection attempt has failed.
    first_attempt_failed: Arc<AtomicBool>,
    /// When connecting started.
    created: Instant,
    script: Arc<Script>,
    /// `QUOTA_KEY_PREFIX`: every key the store is given starts with it.
    prefix: Arc<str>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.is_cluster())
            .finish()
    }
}

/// `REDIS_URL` is not a valid Redis URL.
#[derive(Debug, thiserror::Error)]
#[error("invalid redis url: {0}")]
pub struct InvalidRedisUrl(String);

impl RedisStore {
    /// Creates the store and starts connecting to `url` in `mode` in the background, with
    /// `password` (when given) replacing any password in the URL; keys start with `prefix`.
    /// Requests made before the first connection succeeds fail with [`QuotaError::Redis`].
    pub fn connect(
        url: &str,
        password: Option<&str>,
        mode: RedisMode,
        prefix: &str,
    ) -> Result<Self, InvalidRedisUrl> {
        let mut info = url
            .into_connection_info()
            .map_err(|e| InvalidRedisUrl(e.to_string()))?;
        if let Some(password) = password {
            info.redis.password = Some(password.to_owned());
        }
        let store = Self {
            conn: Arc::new(RwLock::new(None)),
            connector: Arc::new(Connector::new(info, mode)),
            reconnecting: Arc::new(AtomicBool::new(false)),
            last_reconnect: Arc::new(Mutex::new(None)),
            first_attempt_failed: Arc::new(AtomicBool::new(false)),
            created: Instant::now(),
            script: Arc::new(Script::new(ACQUIRE_LUA)),
            prefix: prefix.into(),
        };
        let background = store.clone();
        tokio::spawn(async move {
            loop {
                match background.connector.open().await {
                    Ok(conn) => {
                        let kind = if conn.is_cluster() {
                            "cluster"
                        } else {
                            "single node"
                        };
                        tracing::info!(mode = kind, "connected to redis");
                        background.replace(conn);
                        return;
                    }
                    Err(err) => {
                        background
                            .first_attempt_failed
                            .store(true, Ordering::Relaxed);
                        tracing::warn!(error = %err, "cannot connect to redis yet; retrying");
                        tokio::time::sleep(CONNECT_RETRY).await;
                    }
                }
            }
        });
        Ok(store)
    }

    fn replace(&self, conn: RedisConn) {
        if let Ok(mut slot) = self.conn.write() {
            *slot = Some(conn);
        }
    }

    /// After a failed command on a cluster connection, makes a new one in the background
    /// (at most one at a time, at most every [`RECONNECT_EVERY`]): the library keeps
    /// routing a dead primary's slots to it, so only a fresh slot map finds the replica
    /// that replaced it.
    fn reconnect_cluster(&self) {
        if self.is_cluster() != Some(true) {
            return;
        }
        let due = self
            .last_reconnect
            .lock()
            .map(|mut last| {
                let due = last.is_none_or(|t| t.elapsed() >= RECONNECT_EVERY);
                if due {
                    *last = Some(Instant::now());
                }
                due
            })
            .unwrap_or(false);
        if !due || self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            match store.connector.open_cluster().await {
                Ok(conn) => store.replace(conn),
                Err(err) => tracing::debug!(error = %err, "new redis cluster connection failed"),
            }
            store.reconnecting.store(false, Ordering::Release);
        });
    }

    /// Whether the first connection is still being made (no result to report yet): until
    /// it succeeds, fails, or [`FIRST_CONNECT_GRACE`] has passed.
    pub fn connecting(&self) -> bool {
        self.current().is_none()
            && self.created.elapsed() < FIRST_CONNECT_GRACE
            && !self.first_attempt_failed.load(Ordering::Relaxed)
    }

    /// Whether the connection made is to a cluster (`None` before it is made).
    pub fn is_cluster(&self) -> Option<bool> {
        self.current().as_ref().map(RedisConn::is_cluster)
    }

    fn current(&self) -> Option<RedisConn> {
        self.conn.read().ok().and_then(|slot| slot.clone())
    }

    fn connection(&self) -> Result<RedisConn, QuotaError> {
        self.current()
            .ok_or_else(|| QuotaError::Redis("not connected".into()))
    }

    /// The name `key` has in Redis on `conn`.
    fn slot_key<'k>(&self, conn: &RedisConn, key: &'k str) -> Cow<'k, str> {
        slot_key_for(&self.prefix, conn.is_cluster(), key)
    }

    /// Runs the quota script on `check` (keys as the store was given them).
    async fn run(&self, check: &QuotaCheck) -> Result<(i64, u64), QuotaError> {
        let mut conn = self.connection()?;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&*self.slot_key(&conn, &check.hotkey_key))
            .key(&*self.slot_key(&conn, &check.global_key))
            .arg(check.limit)
            .arg(check.global_limit)
            .arg(check.ttl_secs);
        if let Some(replay) = &check.replay {
            invocation
                .key(&*self.slot_key(&conn, &replay.key))
                .arg(replay.ttl_secs);
        }
        let fut = invocation.invoke_async::<(i64, u64)>(&mut conn);
        let result = match tokio::time::timeout(REDIS_TIMEOUT * 2, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(QuotaError::Redis(e.to_string())),
            Err(_) => Err(QuotaError::Redis("quota script timed out".into())),
        };
        if result.is_err() {
            self.reconnect_cluster();
        }
        result
    }

    /// Runs the quota script itself on keys of its own, with limits of 0 so it reads and
    /// writes nothing else: it fails wherever a request's check would (no connection,
    /// scripts refused, keys in different slots, no permission), which PING would not see.
    pub async fn probe(&self) -> Result<(), QuotaError> {
        let key = |name: &str| format!("{}probe:{name}", self.prefix);
        let check = QuotaCheck {
            hotkey_key: key("hotkey"),
            global_key: key("global"),
            limit: 0,
            global_limit: 0,
            ttl_secs: 1,
            replay: Some(super::ReplayGuard {
                key: key("replay"),
                ttl_secs: 1,
            }),
        };
        match self.run(&check).await? {
            (2, _) => Ok(()),
            (status, _) => Err(QuotaError::Redis(format!(
                "quota script answered {status} to a check with no allowance"
            ))),
        }
    }
}

/// The name `key` (which starts with `prefix`) has in Redis: on a cluster, [`CLUSTER_TAG`]
/// follows the prefix, so every key lands in one slot (Redis hashes the first `{…}`, so
/// nothing later in a key can move it); on a single node it is unchanged.
fn slot_key_for<'k>(prefix: &str, cluster: bool, key: &'k str) -> Cow<'k, str> {
    match key.strip_prefix(prefix) {
        Some(rest) if cluster => Cow::Owned(format!("{prefix}{CLUSTER_TAG}{rest}")),
        _ => Cow::Borrowed(key),
    }
}

impl QuotaStore for RedisStore {
    async fn acquire(&self, check: &QuotaCheck) -> Result<QuotaDecision, QuotaError> {
        let (status, used) = self.run(check).await?;
        Ok(match status {
            0 => QuotaDecision::Allowed { used },
            1 => QuotaDecision::HotkeyExhausted,
            3 => QuotaDecision::Replayed,
            _ => QuotaDecision::GlobalExhausted,
        })
    }

    async fn get(&self, key: &str) -> Result<u64, QuotaError> {
        let mut conn = self.connection()?;
        let key = self.slot_key(&conn, key).into_owned();
        let fut = conn.get::<_, Option<u64>>(key);
        let result = match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v.unwrap_or(0)),
            Ok(Err(e)) => Err(QuotaError::Redis(e.to_string())),
            Err(_) => Err(QuotaError::Redis("get timed out".into())),
        };
        if result.is_err() {
            self.reconnect_cluster();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_keys_carry_the_tag_after_the_prefix_and_single_node_keys_are_unchanged() {
        let key = "s3:5Abc:2026-12-02";
        assert_eq!(slot_key_for("s3:", true, key), "s3:{quota}5Abc:2026-12-02");
        assert_eq!(slot_key_for("s3:", false, key), key);
        assert_eq!(
            slot_key_for("", true, "GLOBAL:2026-12-02"),
            "{quota}GLOBAL:2026-12-02"
        );
        // Redis hashes the first `{…}` of a key: braces later in a key leave the tag alone.
        assert_eq!(
            slot_key_for("s3:", true, "s3:tao-nonce:5Abc:{x}"),
            "s3:{quota}tao-nonce:5Abc:{x}"
        );
    }
}
