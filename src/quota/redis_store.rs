//! Quota counters in Redis, checked and counted by one Lua script.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo, Script};

use super::{QuotaCheck, QuotaDecision, QuotaError, QuotaStore};

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

/// Timeout for connecting and for each command, so a hung Redis cannot hold a request.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long the first connection may take before Redis counts as down (the connection
/// manager retries inside one attempt, so a refused port can take longer to fail).
pub const FIRST_CONNECT_GRACE: std::time::Duration = Duration::from_secs(2);
/// Pause between attempts to establish the first connection.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// A Redis-backed [`QuotaStore`]. It connects in the background and reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    conn: Arc<OnceLock<ConnectionManager>>,
    /// Set once the first connection attempt has failed.
    first_attempt_failed: Arc<std::sync::atomic::AtomicBool>,
    /// When connecting started.
    created: std::time::Instant,
    script: Arc<Script>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("connected", &self.conn.get().is_some())
            .finish()
    }
}

/// `REDIS_URL` is not a valid Redis URL.
#[derive(Debug, thiserror::Error)]
#[error("invalid redis url: {0}")]
pub struct InvalidRedisUrl(String);

impl RedisStore {
    /// Creates the store and starts connecting to `url` in the background, with `password`
    /// (when given) replacing any password in the URL. Requests made before the first
    /// connection succeeds fail with [`QuotaError::Redis`].
    pub fn connect(url: &str, password: Option<&str>) -> Result<Self, InvalidRedisUrl> {
        let mut info = url
            .into_connection_info()
            .map_err(|e| InvalidRedisUrl(e.to_string()))?;
        if let Some(password) = password {
            info.redis.password = Some(password.to_owned());
        }
        let client = redis::Client::open(info).map_err(|e| InvalidRedisUrl(e.to_string()))?;
        let conn = Arc::new(OnceLock::new());
        let slot = Arc::clone(&conn);
        let first_attempt_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failed = Arc::clone(&first_attempt_failed);
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(REDIS_TIMEOUT)
                .set_response_timeout(REDIS_TIMEOUT)
                .set_number_of_retries(2)
                .set_max_delay(2_000);
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        tracing::info!("connected to redis");
                        let _ = slot.set(manager);
                        return;
                    }
                    Err(err) => {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(error = %err, "cannot connect to redis yet; retrying");
                        tokio::time::sleep(CONNECT_RETRY).await;
                    }
                }
            }
        });
        Ok(Self {
            conn,
            first_attempt_failed,
            created: std::time::Instant::now(),
            script: Arc::new(Script::new(ACQUIRE_LUA)),
        })
    }

    /// Whether the first connection is still being made (no result to report yet): until
    /// it succeeds, fails, or [`FIRST_CONNECT_GRACE`] has passed.
    pub fn connecting(&self) -> bool {
        self.conn.get().is_none()
            && self.created.elapsed() < FIRST_CONNECT_GRACE
            && !self
                .first_attempt_failed
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn manager(&self) -> Result<ConnectionManager, QuotaError> {
        self.conn
            .get()
            .cloned()
            .ok_or_else(|| QuotaError::Redis("not connected".into()))
    }

    /// Sends PING.
    pub async fn ping(&self) -> Result<(), QuotaError> {
        let mut conn = self.manager()?;
        let cmd = redis::cmd("PING");
        let fut = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(QuotaError::Redis(e.to_string())),
            Err(_) => Err(QuotaError::Redis("ping timed out".into())),
        }
    }
}

impl QuotaStore for RedisStore {
    async fn acquire(&self, check: &QuotaCheck) -> Result<QuotaDecision, QuotaError> {
        let mut conn = self.manager()?;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&check.hotkey_key)
            .key(&check.global_key)
            .arg(check.limit)
            .arg(check.global_limit)
            .arg(check.ttl_secs);
        if let Some(replay) = &check.replay {
            invocation.key(&replay.key).arg(replay.ttl_secs);
        }
        let fut = invocation.invoke_async::<(i64, u64)>(&mut conn);
        let (status, used) = match tokio::time::timeout(REDIS_TIMEOUT * 2, fut).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(QuotaError::Redis(e.to_string())),
            Err(_) => return Err(QuotaError::Redis("quota script timed out".into())),
        };
        Ok(match status {
            0 => QuotaDecision::Allowed { used },
            1 => QuotaDecision::HotkeyExhausted,
            3 => QuotaDecision::Replayed,
            _ => QuotaDecision::GlobalExhausted,
        })
    }

    async fn get(&self, key: &str) -> Result<u64, QuotaError> {
        let mut conn = self.manager()?;
        let fut = conn.get::<_, Option<u64>>(key);
        match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v.unwrap_or(0)),
            Ok(Err(e)) => Err(QuotaError::Redis(e.to_string())),
            Err(_) => Err(QuotaError::Redis("get timed out".into())),
        }
    }
}
