//! The serving loop: accepts TCP connections and serves HTTP/1.1 on each with hyper,
//! bounding what a slow or idle client can hold.
//!
//! - A connection has [`ServeSettings::header_read_timeout`] to send complete request
//!   headers: counted from accept for its first request and from the first byte of each
//!   later one. An idle keep-alive connection (between requests) is not under this
//!   timer, only under [`ServeSettings::idle_timeout`].
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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

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
        .max_buf_size(crate::api::budget::HEAD_LIMIT)
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

/// What a connection is doing, for its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
struct Activity {
    origin: Instant,
    /// Phase in the low 2 bits, milliseconds since `origin` above them.
    state: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            state: AtomicU64::new(Phase::Fresh as u64),
        }
    }

    fn set(&self, phase: Phase) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX >> 2);
        self.state
            .store((ms << 2) | phase as u64, Ordering::Release);
    }

    fn get(&self) -> (Phase, Instant) {
        let raw = self.state.load(Ordering::Acquire);
        let phase = match raw & 3 {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Head,
            _ => Phase::Busy,
        };
        (phase, self.origin + Duration::from_millis(raw >> 2))
    }

    fn bytes_read(&self) {
        if self.state.load(Ordering::Relaxed) & 3 == Phase::Idle as u64 {
            self.set(Phase::Head);
        }
    }

    // HTTP/1 serves one request at a time on a connection, so no count is needed.
    fn request_started(&self) {
        self.set(Phase::Busy);
    }

    fn request_finished(&self) {
        self.set(Phase::Idle);
    }
}

/// Marks a request finished when dropped (also when hyper drops the future).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The TCP stream, telling [`Activity`] when request bytes arrive.
struct TrackedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// One accepted connection and what it needs to serve.
struct Connection {
    http: Arc<hyper::server::conn::http1::Builder>,
    router: axum::Router,
    settings: Arc<ServeSettings>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream, peer: SocketAddr) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(TrackedStream {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let router = self.router.clone();
        let draining = self.settings.draining.clone();
        let service_activity = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            service_activity.request_started();
            let guard = InFlight(Arc::clone(&service_activity));
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            let draining = draining.clone();
            async move {
                let result = router.oneshot(req).await;
                let mut response = match result {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                if draining.is_set() {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = self.http.serve_connection(io, service);
        tokio::pin!(conn);
        let mut draining = *self.stop.borrow();
        if draining {
            conn.as_mut().graceful_shutdown();
        }
        // The task is not woken on every phase change (that would cost a wake-up and a
        // timer per request): it wakes at the earliest deadline that can apply, at most
        // HEADER_READ_TIMEOUT (or IDLE_TIMEOUT, if shorter) from now, and looks at the
        // phase then. A request head that
        // starts while it sleeps is therefore still cut off exactly on time.
        let header = self.settings.header_read_timeout;
        let idle = self.settings.idle_timeout;
        let timer = tokio::time::sleep(header);
        tokio::pin!(timer);
        loop {
            let (phase, since) = activity.get();
            if draining && matches!(phase, Phase::Fresh | Phase::Head) {
                // No answer is pending: close now rather than wait for the headers. An
                // idle connection may still be writing its last answer; hyper closes it
                // once that is sent (graceful shutdown).
                return;
            }
            let now = Instant::now();
            // The next wake-up is never further than the shorter timer: the phase may
            // change meanwhile (a request ends and the idle clock starts).
            let cap = now + header.min(idle);
            let (deadline, expired) = match phase {
                Phase::Fresh | Phase::Head => (since + header, now >= since + header),
                Phase::Idle => (since + idle, now >= since + idle),
                Phase::Busy => (cap, false),
            };
            let deadline = deadline.min(cap);
            if expired {
                tracing::debug!(?phase, %peer, "connection timed out; closing");
                return;
            }
            timer.as_mut().reset(deadline.into());
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, %peer, "connection ended with an error");
                    }
                    return;
                }
                () = timer.as_mut() => {}
                () = stopped(&mut self.stop), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Resolves once shutdown has started.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A closed channel means the sender is gone: treat as stopping.
    let _ = stop.wait_for(|s| *s).await;
}
