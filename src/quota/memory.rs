//! In-process quota counters with the same semantics as the Redis store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{QuotaCheck, QuotaDecision, QuotaError, QuotaStore};

/// Counters in a map; an entry is dropped once its TTL has passed.
#[derive(Debug, Default)]
pub struct MemoryStore {
    counters: Mutex<HashMap<String, (u64, Instant)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<String, (u64, Instant)>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain counters;
        // the map is still usable.
        let mut guard = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

fn live(entry: Option<&(u64, Instant)>, now: Instant) -> u64 {
    match entry {
        Some(&(n, expires)) if expires > now => n,
        _ => 0,
    }
}

impl QuotaStore for MemoryStore {
    async fn acquire(&self, check: &QuotaCheck) -> Result<QuotaDecision, QuotaError> {
        let now = Instant::now();
        Ok(self.with_map(|map| {
            if map.len() > 10_000 {
                map.retain(|_, (_, expires)| *expires > now);
            }
            let global = live(map.get(&check.global_key), now);
            if global >= check.global_limit {
                return QuotaDecision::GlobalExhausted;
            }
            let used = live(map.get(&check.hotkey_key), now);
            if used >= check.limit {
                return QuotaDecision::HotkeyExhausted;
            }
            let expires = now + Duration::from_secs(check.ttl_secs);
            map.insert(check.hotkey_key.clone(), (used + 1, expires));
            map.insert(check.global_key.clone(), (global + 1, expires));
            QuotaDecision::Allowed { used: used + 1 }
        }))
    }

    async fn get(&self, key: &str) -> Result<u64, QuotaError> {
        let now = Instant::now();
        Ok(self.with_map(|map| live(map.get(key), now)))
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
}
