//! Connection slots: `MAX_CONNECTIONS` regular ones, freed at the cap by closing the
//! longest-idle keep-alive connection, and [`PROBE_RESERVE`] more that serve only the
//! health probes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use super::activity::{Activity, Phase};

/// Connection slots above `MAX_CONNECTIONS` that answer only `/healthz`, `/readyz` and
/// `/healthcheck` (one request each, then `Connection: close`), so that health probes
/// are answered while every regular slot is taken by a request in progress.
pub const PROBE_RESERVE: usize = 16;

/// Connections closed to make room that may still be finishing at once; beyond, a new
/// connection takes a reserve slot or waits. Open connections stay below
/// `MAX_CONNECTIONS` + [`PROBE_RESERVE`] + this.
const MAX_EVICTING: usize = 16;

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Everything.
    Regular,
    /// Health probes only, one request.
    Reserve,
}

#[derive(Debug)]
struct Entry {
    activity: Arc<Activity>,
    evict: Arc<Notify>,
    class: Class,
    evicted: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, Entry>,
    regular: usize,
    reserve: usize,
    evicting: usize,
}

/// The open connections and the slots they hold.
#[derive(Debug)]
pub(super) struct Slots {
    max: usize,
    reserve: usize,
    inner: Mutex<Inner>,
    /// Woken when a connection closes.
    closed: Notify,
    evictions: AtomicU64,
}

/// One connection's slot, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// What the connection may do.
    pub(super) class: Class,
    /// The connection's phases, seen by [`Slots::admit`] when it looks for one to close.
    pub(super) activity: Arc<Activity>,
    /// Notified when the connection is to close to make room for another.
    pub(super) evict: Arc<Notify>,
}

impl Slots {
    /// `max` regular slots and `reserve` probe-only ones.
    pub(super) fn new(max: usize, reserve: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            reserve,
            inner: Mutex::new(Inner::default()),
            closed: Notify::new(),
            evictions: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked: each change is one step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: a free regular one; else the regular slot of the
    /// longest-idle connection (between requests, nothing read of a next one), which is
    /// told to close; else a reserve slot. `None` when every slot is held by a
    /// connection that is not idle.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut inner = self.lock();
        let class = if inner.regular < self.max {
            inner.regular += 1;
            Class::Regular
        } else if inner.evicting < MAX_EVICTING
            && let Some(victim) = longest_idle(&mut inner)
        {
            victim.evicted = true;
            victim.evict.notify_one();
            inner.evicting += 1;
            self.evictions.fetch_add(1, Ordering::Relaxed);
            Class::Regular
        } else if inner.reserve < self.reserve {
            inner.reserve += 1;
            Class::Reserve
        } else {
            return None;
        };
        let id = inner.next_id;
        inner.next_id += 1;
        let activity = Arc::new(Activity::new());
        let evict = Arc::new(Notify::new());
        inner.open.insert(
            id,
            Entry {
                activity: Arc::clone(&activity),
                evict: Arc::clone(&evict),
                class,
                evicted: false,
            },
        );
        Some(Slot {
            slots: Arc::clone(self),
            id,
            class,
            activity,
            evict,
        })
    }

    /// Regular slots (`MAX_CONNECTIONS`).
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Idle connections closed so far to make room for new ones.
    pub(super) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Resolves when a connection closes (or at once if one closed since the last wait).
    pub(super) fn closed(&self) -> tokio::sync::futures::Notified<'_> {
        self.closed.notified()
    }

    fn release(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.open.remove(&id) {
            // An evicted connection gave its regular slot to another already.
            if entry.evicted {
                inner.evicting -= 1;
            } else if entry.class == Class::Regular {
                inner.regular -= 1;
            } else {
                inner.reserve -= 1;
            }
        }
        drop(inner);
        self.closed.notify_one();
    }
}

/// The regular connection idle the longest (of those idle since the same millisecond,
/// the oldest), not already told to close.
fn longest_idle(inner: &mut Inner) -> Option<&mut Entry> {
    let mut oldest: Option<(Instant, u64)> = None;
    for (id, entry) in &inner.open {
        if entry.evicted || entry.class != Class::Regular {
            continue;
        }
        let (phase, since) = entry.activity.get();
        if phase == Phase::Idle && oldest.is_none_or(|o| (since, *id) < o) {
            oldest = Some((since, *id));
        }
    }
    oldest.and_then(|(_, id)| inner.open.get_mut(&id))
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let slots = Slots::new(3, 1);
        let held: Vec<Slot> = (0..3).map(|_| slots.admit().expect("free slot")).collect();
        // 0 idle first, then 2; 1 is serving a request.
        held[0].activity.request_started();
        held[0].activity.request_finished();
        std::thread::sleep(std::time::Duration::from_millis(5));
        held[2].activity.request_started();
        held[2].activity.request_finished();
        held[1].activity.request_started();
        let next = slots.admit().expect("room made");
        assert_eq!(next.class, Class::Regular);
        assert_eq!(slots.evictions(), 1);
        // Only the longest-idle one was told to close.
        let told = |s: &Slot| {
            let n = s.evict.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(told(&held[0]));
        assert!(!told(&held[1]) && !told(&held[2]));
        let again = slots.admit().expect("room made");
        assert_eq!(again.class, Class::Regular);
        assert!(told(&held[2]));
        // Nothing idle left: the reserve, then nothing.
        let probe = slots.admit().expect("reserve");
        assert_eq!(probe.class, Class::Reserve);
        assert!(slots.admit().is_none());
        // The evicted ones closing frees no regular slot (they gave theirs away).
        let mut held = held;
        held.remove(2);
        held.remove(0);
        assert!(slots.admit().is_none());
        assert_eq!(slots.open(), 4);
        drop(held);
        assert_eq!(slots.admit().expect("free").class, Class::Regular);
    }

    #[test]
    fn new_and_busy_connections_are_never_evicted() {
        let slots = Slots::new(2, 0);
        let fresh = slots.admit().expect("slot");
        let busy = slots.admit().expect("slot");
        busy.activity.request_started();
        assert!(slots.admit().is_none());
        busy.activity.request_finished();
        assert!(slots.admit().is_some());
        drop(fresh);
    }
}
