//! A map whose entries expire, forgotten in expiry order without scanning the map.
//!
//! Every entry with an expiry has one element in a queue of per-second buckets ordered by
//! expiry; [`ExpiryMap::expire`] takes the due buckets off the front, so each entry costs
//! one removal in all, whatever the map's size. Expiry is kept in whole seconds, rounded
//! up: an entry lives at least its TTL and less than one second more. An entry may also be
//! held without an expiry (see [`ExpiryMap::hold`]) until it is given one or removed.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

/// The tick of an entry held without an expiry (no queue element points at it).
const UNSCHEDULED: u32 = 0;

#[derive(Debug)]
struct Slot<V> {
    value: V,
    /// Whole seconds after the map's origin at which the entry expires, or [`UNSCHEDULED`].
    tick: u32,
}

/// Entries of `K` to `V`, each forgotten once its TTL has passed.
///
/// Not synchronised: callers hold it behind their own lock.
#[derive(Debug)]
pub struct ExpiryMap<K, V, S = std::collections::hash_map::RandomState> {
    origin: Instant,
    entries: HashMap<K, Slot<V>, S>,
    /// Expiry tick to the keys that were given it. An element whose entry has since been
    /// removed or given a later tick is skipped when its bucket comes due.
    queue: BTreeMap<u32, Vec<K>>,
}

impl<K: Hash + Eq + Clone, V> ExpiryMap<K, V> {
    /// An empty map whose clock starts at `origin`.
    pub fn new(origin: Instant) -> Self {
        Self::with_hasher(origin, Default::default())
    }
}

impl<K: Hash + Eq + Clone, V, S: BuildHasher> ExpiryMap<K, V, S> {
    /// An empty map whose clock starts at `origin`, hashing keys with `hasher`.
    pub fn with_hasher(origin: Instant, hasher: S) -> Self {
        Self {
            origin,
            entries: HashMap::with_hasher(hasher),
            queue: BTreeMap::new(),
        }
    }

    /// Whole seconds from the origin to `now` (0 before it).
    fn secs(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.origin).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX - 1)
    }

    /// The tick of an entry written at `now` to live `ttl_secs`.
    fn tick_after(&self, now: Instant, ttl_secs: u64) -> u32 {
        let ttl = u32::try_from(ttl_secs).unwrap_or(u32::MAX);
        // Rounded up to the next whole second, and never UNSCHEDULED.
        self.secs(now).saturating_add(ttl).saturating_add(1)
    }

    /// Entries held, including those held without an expiry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every entry whose expiry has passed at `now`.
    pub fn expire(&mut self, now: Instant) {
        let now = self.secs(now);
        while let Some(entry) = self.queue.first_entry() {
            if *entry.key() > now {
                break;
            }
            let (tick, keys) = entry.remove_entry();
            for key in keys {
                self.remove_if_due(&key, tick);
            }
        }
    }

    /// Removes `key` when its expiry is exactly `tick`; whether it did.
    fn remove_if_due(&mut self, key: &K, tick: u32) -> bool {
        let due = self.entries.get(key).is_some_and(|slot| slot.tick == tick);
        if due {
            self.entries.remove(key);
        }
        due
    }

    /// The value of `key` unless it has expired at `now`.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.secs(now);
        self.entries
            .get(key)
            .filter(|slot| slot.tick == UNSCHEDULED || slot.tick > now)
            .map(|slot| &slot.value)
    }

    /// Sets `key` to `value`, to live at least `ttl_secs` from `now`; an expiry already
    /// later than that is kept.
    pub fn set(&mut self, key: K, value: V, ttl_secs: u64, now: Instant) {
        let tick = self.tick_after(now, ttl_secs);
        match self.entries.get_mut(&key) {
            Some(slot) if slot.tick != UNSCHEDULED && slot.tick >= tick => slot.value = value,
            Some(slot) => {
                slot.value = value;
                slot.tick = tick;
                self.queue.entry(tick).or_default().push(key);
            }
            None => {
                self.entries.insert(key.clone(), Slot { value, tick });
                self.queue.entry(tick).or_default().push(key);
            }
        }
    }

    /// Inserts `key` with `value` and no expiry when it is absent (or expired at `now`);
    /// whether it did. The entry stays until [`ExpiryMap::schedule`] or
    /// [`ExpiryMap::remove`].
    pub fn hold(&mut self, key: K, value: V, now: Instant) -> bool {
        if self.get(&key, now).is_some() {
            return false;
        }
        self.entries.insert(
            key,
            Slot {
                value,
                tick: UNSCHEDULED,
            },
        );
        true
    }

    /// Gives `key` (when present) an expiry of `ttl_secs` from `now`, or keeps a later one.
    pub fn schedule(&mut self, key: &K, ttl_secs: u64, now: Instant) {
        let tick = self.tick_after(now, ttl_secs);
        if let Some(slot) = self.entries.get_mut(key)
            && (slot.tick == UNSCHEDULED || slot.tick < tick)
        {
            slot.tick = tick;
            self.queue.entry(tick).or_default().push(key.clone());
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Removes the scheduled entry that expires first; `Some(true)` when it had not expired
    /// at `now`, `None` when no entry has an expiry.
    pub fn evict_first(&mut self, now: Instant) -> Option<bool> {
        let now = self.secs(now);
        loop {
            let mut bucket = self.queue.first_entry()?;
            let tick = *bucket.key();
            let Some(key) = bucket.get_mut().pop() else {
                bucket.remove();
                continue;
            };
            if bucket.get().is_empty() {
                bucket.remove();
            }
            if self.remove_if_due(&key, tick) {
                return Some(tick > now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(origin: Instant, secs: u64) -> Instant {
        origin + Duration::from_secs(secs)
    }

    #[test]
    fn an_entry_lives_its_ttl_and_less_than_a_second_more() {
        let t0 = Instant::now();
        let mut map = ExpiryMap::new(t0);
        map.set("a", 1, 10, t0 + Duration::from_millis(300));
        assert_eq!(map.get(&"a", at(t0, 10)), Some(&1));
        assert_eq!(map.get(&"a", t0 + Duration::from_millis(10_999)), Some(&1));
        assert_eq!(map.get(&"a", at(t0, 11)), None);
        map.expire(at(t0, 10));
        assert_eq!(map.len(), 1);
        map.expire(at(t0, 11));
        assert!(map.is_empty());
    }

    #[test]
    fn expiry_follows_the_latest_ttl_not_insertion_order() {
        let t0 = Instant::now();
        let mut map = ExpiryMap::new(t0);
        map.set("long", 1, 100, t0);
        map.set("short", 1, 5, t0);
        map.set("renewed", 1, 5, t0);
        map.set("renewed", 2, 50, at(t0, 3));
        map.expire(at(t0, 6));
        assert_eq!(map.get(&"short", at(t0, 6)), None);
        assert_eq!(map.len(), 2, "only the short entry went");
        assert_eq!(map.get(&"renewed", at(t0, 40)), Some(&2));
        map.expire(at(t0, 54));
        assert_eq!(map.get(&"renewed", at(t0, 54)), None);
        assert_eq!(map.len(), 1);
        assert_eq!(map.get(&"long", at(t0, 54)), Some(&1));
    }

    #[test]
    fn a_held_entry_stays_until_scheduled_or_removed() {
        let t0 = Instant::now();
        let mut map = ExpiryMap::new(t0);
        assert!(map.hold("k", (), t0));
        assert!(!map.hold("k", (), t0), "held once");
        map.expire(at(t0, 10_000));
        assert!(map.get(&"k", at(t0, 10_000)).is_some());
        assert_eq!(map.evict_first(at(t0, 10_000)), None, "nothing scheduled");
        map.remove(&"k");
        assert!(map.hold("k", (), at(t0, 10_000)), "free again once removed");
        map.schedule(&"k", 5, at(t0, 10_000));
        map.expire(at(t0, 10_006));
        assert!(map.is_empty());
    }

    #[test]
    fn eviction_takes_the_earliest_expiry_and_says_whether_it_was_live() {
        let t0 = Instant::now();
        let mut map = ExpiryMap::new(t0);
        map.set("late", (), 60, t0);
        map.set("early", (), 30, t0);
        map.remove(&"early");
        map.set("mid", (), 40, t0);
        // "early" was removed: its stale queue element is skipped.
        assert_eq!(map.evict_first(at(t0, 1)), Some(true));
        assert!(map.get(&"mid", at(t0, 1)).is_none());
        assert_eq!(map.evict_first(at(t0, 100)), Some(false), "expired already");
        assert!(map.is_empty());
        assert_eq!(map.evict_first(at(t0, 100)), None);
    }
}
