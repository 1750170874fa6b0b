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
//! - At most [`ServeSettings::max_connections`] connections are open; beyond that,
//!   accepting waits until one closes. Accept errors (such as running out of file
//!   descriptors) are logged at most once a second and never end the loop.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use connection::Connection;

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
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let settings = Arc::new(settings);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our own timers replace hyper's header timer (see the module documentation).
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let http = Arc::new(http);
    let mut accept_errors = RateLimitedLog::default();
    let mut stop = stop_rx.clone();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
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
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            http: Arc::clone(&http),
            router: router.clone(),
            settings: Arc::clone(&settings),
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            conn.serve(stream, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(%addr, "listener closed; draining connections");
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let rest = settings.grace.saturating_sub(delay);
    match tokio::time::timeout(rest, limit.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            grace = ?settings.grace,
            open = settings.max_connections - limit.available_permits(),
            "grace period over with requests still in flight; exiting"
        ),
    }
    Ok(())
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
