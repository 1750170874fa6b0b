//! In-process quota counters with the same semantics as the Redis store.

use std::sync::Mutex;
use std::time::Instant;

use super::expiry::ExpiryMap;
use super::replay::{ReplayRecords, Reserve};
use super::{QuotaCheck, QuotaDecision, QuotaError, QuotaStore};

/// Counters that expire in order (no scan of the map), and the used signatures.
#[derive(Debug)]
pub struct MemoryStore {
    counters: Mutex<ExpiryMap<String, u64>>,
    replays: ReplayRecords,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            counters: Mutex::new(ExpiryMap::new(Instant::now())),
            replays: ReplayRecords::new(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The signatures and nonces recorded as used in this process.
    pub fn replays(&self) -> &ReplayRecords {
        &self.replays
    }

    fn with_counters<T>(&self, f: impl FnOnce(&mut ExpiryMap<String, u64>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain counters;
        // the map is still usable.
        let mut guard = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Checks both limits of `check` and, only when both allow, counts the request; its
    /// replay guard is not looked at.
    pub fn count(&self, check: &QuotaCheck) -> QuotaDecision {
        let now = Instant::now();
        self.with_counters(|map| {
            map.expire(now);
            let global = map.get(&check.global_key, now).copied().unwrap_or(0);
            if global >= check.global_limit {
                return QuotaDecision::GlobalExhausted;
            }
            let used = map.get(&check.hotkey_key, now).copied().unwrap_or(0);
            if used >= check.limit {
                return QuotaDecision::HotkeyExhausted;
            }
            map.set(check.hotkey_key.clone(), used + 1, check.ttl_secs, now);
            map.set(check.global_key.clone(), global + 1, check.ttl_secs, now);
            QuotaDecision::Allowed { used: used + 1 }
        })
    }
}

impl QuotaStore for MemoryStore {
    async fn acquire(&self, check: &QuotaCheck) -> Result<QuotaDecision, QuotaError> {
        let reservation = match &check.replay {
            Some(guard) => match self.replays.reserve(&guard.key) {
                Reserve::Used => return Ok(QuotaDecision::Replayed),
                Reserve::Reserved(held) => Some((held, guard.ttl_secs)),
            },
            None => None,
        };
        let decision = self.count(check);
        // A refused request leaves its signature unused (dropping the reservation).
        if let (QuotaDecision::Allowed { .. }, Some((held, ttl_secs))) = (decision, reservation) {
            held.keep(ttl_secs);
        }
        Ok(decision)
    }

    async fn get(&self, key: &str) -> Result<u64, QuotaError> {
        let now = Instant::now();
        Ok(self.with_counters(|map| map.get(key, now).copied().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(hotkey: &str, limit: u64, global: u64) -> QuotaCheck {
        QuotaCheck {
            hotkey_key: format!("{hotkey}:d"),
            global_key: "GLOBAL:d".into(),
            limit,
            global_limit: global,
            ttl_secs: 60,
            replay: None,
        }
    }

    #[tokio::test]
    async fn counts_only_when_both_allow() {
        let store = MemoryStore::new();
        assert_eq!(
            store.acquire(&check("a", 2, 3)).await.ok(),
            Some(QuotaDecision::Allowed { used: 1 })
        );
        assert_eq!(
            store.acquire(&check("a", 2, 3)).await.ok(),
            Some(QuotaDecision::Allowed { used: 2 })
        );
        assert_eq!(
            store.acquire(&check("a", 2, 3)).await.ok(),
            Some(QuotaDecision::HotkeyExhausted)
        );
        // The refused request did not count against the global limit.
        assert_eq!(
            store.acquire(&check("b", 2, 3)).await.ok(),
            Some(QuotaDecision::Allowed { used: 1 })
        );
        assert_eq!(
            store.acquire(&check("c", 2, 3)).await.ok(),
            Some(QuotaDecision::GlobalExhausted)
        );
        assert_eq!(store.get("c:d").await.ok(), Some(0));
        assert_eq!(store.get("GLOBAL:d").await.ok(), Some(3));
    }

    #[tokio::test]
    async fn a_signature_is_accepted_once() {
        let store = MemoryStore::new();
        let with_sig = |sig: &str| QuotaCheck {
            replay: Some(super::super::ReplayGuard {
                key: format!("replay:a:{sig}"),
                ttl_secs: 60,
            }),
            ..check("a", 10, 10)
        };
        let first = store.acquire(&with_sig("s1")).await.ok();
        assert_eq!(first, Some(QuotaDecision::Allowed { used: 1 }));
        let again = store.acquire(&with_sig("s1")).await.ok();
        assert_eq!(again, Some(QuotaDecision::Replayed));
        let other = store.acquire(&with_sig("s2")).await.ok();
        assert_eq!(other, Some(QuotaDecision::Allowed { used: 2 }));
        // The refused replay was not counted.
        assert_eq!(store.get("a:d").await.ok(), Some(2));
    }
}
