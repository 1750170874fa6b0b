//! The serving loop: accepts TCP connections and serves HTTP/1.1 on each with hyper,
//! bounding what a slow or idle client can hold.
//!
//! - A connection has [`ServeSettings::header_read_timeout`] to send complete request
//!   headers: counted from accept for its first request and from the first byte of each
//!   later one. An idle keep-alive connection (between requests, nothing buffered) is
//!   not under this timer, only under [`ServeSettings::idle_timeout`]. The connection
//!   follows HTTP/1 framing over the bytes it reads (`framing`): a head that arrived
//!   while the previous request was served (even in the same packet) is timed from its
//!   first byte once that request's answer is done. Past a `Transfer-Encoding` header
//!   the framing is not followed, and only bytes that arrive between requests start the
//!   header timer.
//! - [`ServeSettings::max_connections`] regular connection slots (`slots`). When they
//!   are all held and another connection arrives, the keep-alive connection idle the
//!   longest (between requests, nothing of a next one read) is told to close, as nginx
//!   reuses keep-alive connections, and the newcomer takes its slot: idle connections
//!   cannot hoard the slots. A connection is never closed for this in the middle of a
//!   request: one told while a head is arriving closes after that request's answer. A
//!   client that sends a request on its idle connection just as it is closed sees the
//!   connection close without an answer, as with any keep-alive close.
//! - When no connection is idle, a new connection gets one of [`PROBE_RESERVE`] reserve
//!   slots: it is answered for `/healthz`, `/readyz` and `/healthcheck` only (anything
//!   else gets 503 `Too many open connections; retry shortly` with `Retry-After`, from
//!   the router's middleware, which sees [`ReserveSlot`]), with `Connection: close`.
//!   When the reserve is taken too, accepting waits until a slot frees up. Open
//!   connections are at most `max_connections` + [`PROBE_RESERVE`] + 16 (connections
//!   closing to make room); one closing to make room that does not take its last answer
//!   is dropped 2 s after it. A warning at most every 10 s says when slots ran out.
//!   Accept errors (such as running out of file descriptors) are logged at most once a
//!   second and never end the loop.
//! - When `shutdown` resolves, [`Draining`] is set (readiness answers 503) and every
//!   response from then on carries `Connection: close`. For
//!   [`ServeSettings::drain_delay`] the listener still accepts, so that clients racing
//!   the signal are answered rather than reset. Then the listener closes, idle
//!   connections close, and requests in flight get the rest of [`ServeSettings::grace`].
//!
//! hyper's own header timer is not used: in hyper 1.x it also runs while a keep-alive
//! connection waits for its next request, which would close idle connections early.

mod activity;
mod connection;
mod framing;
mod slots;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use connection::Connection;
use slots::{Class, Slot, Slots};

pub use slots::PROBE_RESERVE;

/// Limits of the serving loop (from `HEADER_READ_TIMEOUT`, `IDLE_TIMEOUT`,
/// `MAX_CONNECTIONS` and `SHUTDOWN_GRACE_SECONDS`).
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Time a connection has to send complete request headers.
    pub header_read_timeout: Duration,
    /// Time an idle keep-alive connection is kept open.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Time requests in flight get to finish after shutdown starts.
    pub grace: Duration,
    /// Time the listener keeps accepting after shutdown starts (within `grace`).
    pub drain_delay: Duration,
    /// Set when shutdown starts, for readiness answers.
    pub draining: Draining,
}

impl ServeSettings {
    /// The settings of `config`, reporting shutdown through `draining`.
    pub fn from_config(config: &crate::Config, draining: Draining) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
            grace: config.shutdown_grace,
            drain_delay: config.shutdown_delay,
            draining,
        }
    }
}

/// Whether the server is shutting down; shared with the handlers.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// True once shutdown has started.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Request extension: the request came on a reserve connection slot, where only the
/// health probes are served (others get 503 `Too many open connections; retry shortly`).
#[derive(Debug, Clone, Copy)]
pub struct ReserveSlot;

/// The serving loop could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener's address could not be read.
    #[error("listener has no local address: {0}")]
    Listener(std::io::Error),
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains within
/// `settings.grace`.
pub async fn run(
    listener: TcpListener,
    router: axum::Router,
    settings: ServeSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Listener)?;
    // Becomes true when the drain delay after the signal is over.
    let (stop_tx, stop_rx) = watch::channel(false);
    let draining = settings.draining.clone();
    let delay = settings.drain_delay.min(settings.grace);
    tokio::spawn(async move {
        shutdown.await;
        draining.set();
        tracing::info!(
            ?delay,
            "shutting down: answering with Connection: close, then closing the listener"
        );
        tokio::time::sleep(delay).await;
        let _ = stop_tx.send(true);
    });
    let slots = Slots::new(settings.max_connections, PROBE_RESERVE);
    let settings = Arc::new(settings);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our own timers replace hyper's header timer (see the module documentation).
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(crate::api::budget::HEAD_LIMIT)
        .keep_alive(true);
    let http = Arc::new(http);
    let mut accept_errors = RateLimitedLog::default();
    let mut slot_log = SlotLog::default();
    let mut stop = stop_rx.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(err) => {
                    accept_errors.warn(&err);
                    // Descriptors may free up as connections close; do not spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let Some(slot) = wait_for_slot(&slots, &mut stop).await else {
            break;
        };
        slot_log.note(&slots, slot.class);
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            http: Arc::clone(&http),
            router: router.clone(),
            settings: Arc::clone(&settings),
            stop: stop_rx.clone(),
        };
        tokio::spawn(conn.serve(stream, peer, slot));
    }
    drop(listener);
    tracing::info!(%addr, "listener closed; draining connections");
    let rest = settings.grace.saturating_sub(delay);
    let all_closed = async {
        loop {
            let closed = slots.closed();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if slots.open() == 0 {
                return;
            }
            closed.await;
        }
    };
    match tokio::time::timeout(rest, all_closed).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            grace = ?settings.grace,
            open = slots.open(),
            "grace period over with requests still in flight; exiting"
        ),
    }
    Ok(())
}

/// A slot for a connection just accepted (see [`Slots::admit`]), waiting while every
/// slot is held by a connection that is not idle; `None` once shutdown stops accepting.
async fn wait_for_slot(slots: &Arc<Slots>, stop: &mut watch::Receiver<bool>) -> Option<Slot> {
    loop {
        let closed = slots.closed();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if let Some(slot) = slots.admit() {
            return Some(slot);
        }
        tokio::select! {
            () = closed => {}
            // A connection can become idle, and so make room, without closing.
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = stopped(stop) => return None,
        }
    }
}

/// Warns at most every 10 s that the regular slots are full: how many idle connections
/// were closed to make room, and how many connections got a reserve slot.
#[derive(Debug, Default)]
struct SlotLog {
    last: Option<Instant>,
    evictions: u64,
    reserve: u64,
}

impl SlotLog {
    fn note(&mut self, slots: &Slots, class: Class) {
        if class == Class::Reserve {
            self.reserve += 1;
        }
        let evictions = slots.evictions();
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due && (evictions > self.evictions || self.reserve > 0) {
            tracing::warn!(
                max_connections = slots.max(),
                closed_idle = evictions - self.evictions,
                reserve_slots_given = self.reserve,
                "connection slots full: closed the longest-idle keep-alive connections to make \
                 room; connections finding every slot busy were served health probes only"
            );
            self.last = Some(Instant::now());
            self.evictions = evictions;
            self.reserve = 0;
        }
    }
}

/// Logs an error at most once a second, counting the ones it left out.
#[derive(Debug, Default)]
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn warn(&mut self, err: &std::io::Error) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        self.last = Some(Instant::now());
        tracing::warn!(error = %err, suppressed = self.suppressed, "accept failed; retrying");
        self.suppressed = 0;
    }
}

/// Resolves once shutdown has started.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A closed channel means the sender is gone: treat as stopping.
    let _ = stop.wait_for(|s| *s).await;
}
