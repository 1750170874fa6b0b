//! A connection's phase (waiting for headers, idle, serving) and since when.
//!
//! The phase follows the bytes read (through [`super::framing::FrameTracker`]) as well as
//! the requests hyper hands to the service: when a request's answer is done and the head
//! of the next one is already open in hyper's buffer, the phase is [`Phase::Head`] since
//! that head's first byte, not [`Phase::Idle`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::framing::Step;

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
    /// Milliseconds since `origin` plus one at which the open head of a request (not yet
    /// ended by its blank line) started; 0 when no head is open.
    open_head: AtomicU64,
    /// Request heads that ended, as the bytes read show.
    heads: AtomicU64,
    /// Requests handed to the service.
    requests: AtomicU64,
    /// The framing could not be followed: only [`Activity::bytes_read`] while idle counts.
    lost: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            origin: Instant::now(),
            state: AtomicU64::new(Phase::Fresh as u64),
            open_head: AtomicU64::new(0),
            heads: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX >> 3)
    }

    fn set_at(&self, phase: Phase, ms: u64) {
        self.state
            .store((ms << 2) | phase as u64, Ordering::Release);
    }

    pub(super) fn set(&self, phase: Phase) {
        self.set_at(phase, self.now_ms());
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

    /// Bytes arrived; `step` is what they did to the framing, `None` once it is lost.
    pub(super) fn bytes_read(&self, step: Option<Step>) {
        let idle = self.state.load(Ordering::Relaxed) & 3 == Phase::Idle as u64;
        let Some(step) = step else {
            self.lost.store(true, Ordering::Relaxed);
            if idle {
                self.set(Phase::Head);
            }
            return;
        };
        self.heads
            .fetch_add(u64::from(step.heads_ended), Ordering::Relaxed);
        if step.head_opened {
            self.open_head.store(self.now_ms() + 1, Ordering::Relaxed);
        } else if !step.head_open {
            self.open_head.store(0, Ordering::Relaxed);
        }
        if idle && step.request_bytes {
            self.set(Phase::Head);
        }
    }

    // HTTP/1 serves one request at a time on a connection, so a count of heads and of
    // requests tells whether a complete request waits in hyper's buffer.
    pub(super) fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.set(Phase::Busy);
    }

    /// The answer is done: idle, unless the bytes of a next request are already read.
    pub(super) fn request_finished(&self) {
        if !self.lost.load(Ordering::Relaxed) {
            let open = self.open_head.load(Ordering::Relaxed);
            if open != 0 {
                // The header timer counts from the head's first byte, even if that came
                // with the previous request.
                self.set_at(Phase::Head, open - 1);
                return;
            }
            if self.heads.load(Ordering::Relaxed) > self.requests.load(Ordering::Relaxed) {
                // A complete request is buffered; hyper hands it over at once.
                self.set(Phase::Head);
                return;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::super::framing::FrameTracker;
    use super::*;

    fn read(activity: &Activity, tracker: &mut FrameTracker, bytes: &[u8]) {
        let step = tracker.feed(bytes);
        activity.bytes_read((!tracker.is_lost()).then_some(step));
    }

    #[test]
    fn a_next_head_read_with_the_previous_request_is_timed_from_its_first_byte() {
        let activity = Activity::new();
        let mut tracker = FrameTracker::default();
        read(
            &activity,
            &mut tracker,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nX-Pad: aa",
        );
        activity.request_started();
        let opened = activity.get().1;
        std::thread::sleep(Duration::from_millis(30));
        activity.request_finished();
        let (phase, since) = activity.get();
        assert_eq!(phase, Phase::Head);
        assert!(
            since <= opened + Duration::from_millis(5),
            "{since:?} {opened:?}"
        );
    }

    #[test]
    fn a_complete_buffered_request_is_not_idle_and_nothing_buffered_is() {
        let activity = Activity::new();
        let mut tracker = FrameTracker::default();
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        read(&activity, &mut tracker, &[&get[..], &get[..]].concat());
        activity.request_started();
        activity.request_finished();
        assert_eq!(activity.get().0, Phase::Head);
        activity.request_started();
        activity.request_finished();
        assert_eq!(activity.get().0, Phase::Idle);
        // Blank lines between requests do not start the header timer.
        read(&activity, &mut tracker, b"\r\n");
        assert_eq!(activity.get().0, Phase::Idle);
        read(&activity, &mut tracker, b"G");
        assert_eq!(activity.get().0, Phase::Head);
    }

    #[test]
    fn once_the_framing_is_lost_any_byte_while_idle_starts_the_header_timer() {
        let activity = Activity::new();
        let mut tracker = FrameTracker::default();
        read(
            &activity,
            &mut tracker,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /",
        );
        activity.request_started();
        activity.request_finished();
        // As before the framing was followed: the buffered bytes are not seen.
        assert_eq!(activity.get().0, Phase::Idle);
        read(&activity, &mut tracker, b"\r\n");
        assert_eq!(activity.get().0, Phase::Head);
    }
}
