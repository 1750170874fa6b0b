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
            if let Some(replay) = &check.replay
                && live(map.get(&replay.key), now) > 0
            {
                return QuotaDecision::Replayed;
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
            if let Some(replay) = &check.replay {
                let expires = now + Duration::from_secs(replay.ttl_secs);
                map.insert(replay.key.clone(), (1, expires));
            }
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
