//! A connection's phase (waiting for headers, idle, serving) and since when.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a connection is doing, for its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the headers of its first request (header timer).
    Fresh = 0,
    /// Between requests (idle timer).
    Idle = 1,
    /// Reading the headers of a later request (header timer).
    Head = 2,
    /// A request is being served (bounded by the body and request timeouts).
    Busy = 3,
}

/// A connection's phase and since when, shared by its stream, its service and its task.
#[derive(Debug)]
pub(super) struct Activity {
    origin: Instant,
    /// Phase in the low 2 bits, milliseconds since `origin` above them.
    state: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            origin: Instant::now(),
            state: AtomicU64::new(Phase::Fresh as u64),
        }
    }

    pub(super) fn set(&self, phase: Phase) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX >> 2);
        self.state
            .store((ms << 2) | phase as u64, Ordering::Release);
    }

    pub(super) fn get(&self) -> (Phase, Instant) {
        let raw = self.state.load(Ordering::Acquire);
        let phase = match raw & 3 {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Head,
            _ => Phase::Busy,
        };
        (phase, self.origin + Duration::from_millis(raw >> 2))
    }

    pub(super) fn bytes_read(&self) {
        if self.state.load(Ordering::Relaxed) & 3 == Phase::Idle as u64 {
            self.set(Phase::Head);
        }
    }

    // HTTP/1 serves one request at a time on a connection, so no count is needed.
    pub(super) fn request_started(&self) {
        self.set(Phase::Busy);
    }

    pub(super) fn request_finished(&self) {
        self.set(Phase::Idle);
    }
}

/// Marks a request finished when dropped (also when hyper drops the future).
pub(super) struct InFlight(pub(super) Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}
