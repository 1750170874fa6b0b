//! Used signatures and nonces, recorded in process for as long as they could be replayed.
//!
//! Records are 64-bit fingerprints of their key (SipHash with keys drawn at start, so no
//! caller can aim at a collision; with a million records a fresh signature is mistaken for
//! a used one with probability about 5 × 10⁻¹⁴). They sit in [`SHARDS`] independently
//! locked [`ExpiryMap`]s; each operation locks one shard for one record's work and expires
//! that shard's due records first.
//!
//! At most [`MAX_RECORDS`] are kept, [`MAX_RECORDS`] / [`SHARDS`] per shard (keys spread a
//! little unevenly, so the first shard fills at about 99.7 % of the total). A record costs
//! 16 bytes in its shard's hash table (8-byte fingerprint, 4-byte expiry, padding) plus a
//! control byte, at a table load between 44 % and 88 %, and 8 bytes in the expiry queue
//! plus its spare capacity: [`BYTES_PER_RECORD`] bytes of resident memory measured, so a
//! full set holds about 45 MB. When a shard is full, its records closest to expiry (those
//! whose signature is nearest to being refused as too old anyway) are dropped early and
//! counted in [`ReplayRecords::dropped`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::expiry::ExpiryMap;

/// Records kept at most, over all shards.
pub const MAX_RECORDS: usize = 1_000_000;
/// Shards, each with its own lock.
pub const SHARDS: usize = 64;
/// Resident bytes one record costs, measured filling a set with 100,000 to 1,000,000
/// records (44 to 49 bytes; about 45 MB at [`MAX_RECORDS`]).
pub const BYTES_PER_RECORD: usize = 45;

/// Fingerprints are already uniformly spread: the table uses them as their own hash.
#[derive(Debug, Default, Clone, Copy)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in rather than drop it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = ExpiryMap<u64, (), BuildHasherDefault<Fingerprint>>;

/// In-process records of used signatures and nonces; see the module documentation.
#[derive(Debug)]
pub struct ReplayRecords {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    keys: RandomState,
    dropped: AtomicU64,
}

/// The answer of [`ReplayRecords::reserve`].
#[derive(Debug)]
pub enum Reserve<'a> {
    /// The key was free and is now held for this request.
    Reserved(Reservation<'a>),
    /// The key is recorded (or held by a request in flight).
    Used,
}

/// A key held for one request: [`Reservation::keep`] records it for its TTL; dropped
/// without that (refused, or the request was cancelled), it frees the key again.
#[derive(Debug)]
pub struct Reservation<'a> {
    records: &'a ReplayRecords,
    fingerprint: u64,
    kept: bool,
}

impl Default for ReplayRecords {
    fn default() -> Self {
        Self::with_capacity(MAX_RECORDS)
    }
}

impl ReplayRecords {
    /// An empty set holding at most [`MAX_RECORDS`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set holding at most about `max_records` (rounded up to a multiple of
    /// [`SHARDS`]).
    pub fn with_capacity(max_records: usize) -> Self {
        let origin = Instant::now();
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::with_hasher(origin, Default::default())))
                .collect(),
            per_shard: max_records.div_ceil(SHARDS).max(1),
            keys: RandomState::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn fingerprint(&self, key: &str) -> u64 {
        let mut hasher = self.keys.build_hasher();
        hasher.write(key.as_bytes());
        hasher.finish()
    }

    fn shard(&self, fingerprint: u64) -> MutexGuard<'_, Shard> {
        // Bits the table does not use for its bucket index (low) or tag (top 7).
        let index = (fingerprint >> 32) as usize % SHARDS;
        // A poisoned lock only means a panic mid-update of plain data; it stays usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds `key` for one request unless it is recorded or already held.
    pub fn reserve(&self, key: &str) -> Reserve<'_> {
        self.reserve_at(key, Instant::now())
    }

    fn reserve_at(&self, key: &str, now: Instant) -> Reserve<'_> {
        let fingerprint = self.fingerprint(key);
        let mut shard = self.shard(fingerprint);
        shard.expire(now);
        if !shard.hold(fingerprint, (), now) {
            return Reserve::Used;
        }
        let mut dropped = 0;
        while shard.len() > self.per_shard {
            match shard.evict_first(now) {
                Some(true) => dropped += 1,
                Some(false) => {}
                // Every entry is held by a request in flight: nothing may go.
                None => break,
            }
        }
        drop(shard);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        Reserve::Reserved(Reservation {
            records: self,
            fingerprint,
            kept: false,
        })
    }

    /// Whether `key` is recorded or held.
    pub fn contains(&self, key: &str) -> bool {
        self.contains_at(key, Instant::now())
    }

    fn contains_at(&self, key: &str, now: Instant) -> bool {
        let fingerprint = self.fingerprint(key);
        self.shard(fingerprint).get(&fingerprint, now).is_some()
    }

    /// Records held or kept (expired ones may be counted until their shard is next used).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    /// Whether no record is held or kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped before their expiry because the set was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Reservation<'_> {
    /// Records the key for `ttl_secs` from now (and less than one second more).
    pub fn keep(self, ttl_secs: u64) {
        self.keep_at(ttl_secs, Instant::now());
    }

    fn keep_at(mut self, ttl_secs: u64, now: Instant) {
        self.kept = true;
        self.records
            .shard(self.fingerprint)
            .schedule(&self.fingerprint, ttl_secs, now);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.records
                .shard(self.fingerprint)
                .remove(&self.fingerprint);
        }
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
