//! One accepted connection: hyper serving it, and the timers of its phases.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt as _;

use super::activity::{Activity, InFlight, Phase};
use super::framing::FrameTracker;
use super::slots::{Class, Slot};
use super::{ReserveSlot, ServeSettings, stopped};

/// The TCP stream, telling [`Activity`] when request bytes arrive and what they are.
struct TrackedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
    framing: FrameTracker,
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
            let this = &mut *self;
            let step = this.framing.feed(&buf.filled()[before..]);
            let step = (!this.framing.is_lost()).then_some(step);
            this.activity.bytes_read(step);
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

/// Time a connection told to close to make room has to take its last answer, counted
/// from that answer's end; then it is dropped.
const EVICT_GRACE: Duration = Duration::from_secs(2);

/// How often a connection told to close looks again while a request head is arriving:
/// it closes once that request is read (and answered).
const EVICT_RECHECK: Duration = Duration::from_millis(50);

/// One accepted connection and what it needs to serve.
pub(super) struct Connection {
    pub(super) http: Arc<hyper::server::conn::http1::Builder>,
    pub(super) router: axum::Router,
    pub(super) settings: Arc<ServeSettings>,
    pub(super) stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves `stream` from `peer` in `slot` until it closes, times out, is told to make
    /// room, or shutdown ends it.
    pub(super) async fn serve(mut self, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let activity = Arc::clone(&slot.activity);
        let io = TokioIo::new(TrackedStream {
            inner: stream,
            activity: Arc::clone(&activity),
            framing: FrameTracker::default(),
        });
        let router = self.router.clone();
        let draining = self.settings.draining.clone();
        let reserve = slot.class == Class::Reserve;
        let service_activity = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            service_activity.request_started();
            let guard = InFlight(Arc::clone(&service_activity));
            req.extensions_mut().insert(ConnectInfo(peer));
            if reserve {
                req.extensions_mut().insert(ReserveSlot);
            }
            let router = router.clone();
            let draining = draining.clone();
            async move {
                let mut response = match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                if reserve || draining.is_set() {
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
        // Told to make room (`evicted`), and since when hyper was asked to close
        // (`closing`): at once when idle or serving, not while a head is arriving.
        let (mut evicted, mut closing) = (false, None::<Instant>);
        // The task is not woken on every phase change (that would cost a wake-up and a
        // timer per request): it wakes at the earliest deadline that can apply, at most
        // HEADER_READ_TIMEOUT (or IDLE_TIMEOUT, if shorter) from now, and looks at the
        // phase then. A request head that starts while it sleeps is therefore still cut
        // off exactly on time.
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
            if evicted && closing.is_none() && matches!(phase, Phase::Idle | Phase::Busy) {
                // hyper closes an idle connection at once, and a busy one after its answer
                // (with `Connection: close`).
                conn.as_mut().graceful_shutdown();
                closing = Some(now);
            }
            // The next wake-up is never further than the shorter timer: the phase may
            // change meanwhile (a request ends and the idle clock starts).
            let cap = now + header.min(idle);
            let (mut deadline, mut expired) = match phase {
                Phase::Fresh | Phase::Head => (since + header, now >= since + header),
                Phase::Idle => (since + idle, now >= since + idle),
                Phase::Busy => (cap, false),
            };
            if let Some(at) = closing
                && phase == Phase::Idle
            {
                // A client that does not take its last answer keeps no slot for long.
                let cut = at.max(since) + EVICT_GRACE;
                deadline = deadline.min(cut);
                expired |= now >= cut;
            }
            if evicted && closing.is_none() {
                deadline = deadline.min(now + EVICT_RECHECK);
            }
            let deadline = deadline.min(cap);
            if expired {
                tracing::debug!(?phase, %peer, evicted, "connection timed out; closing");
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
                () = slot.evict.notified(), if !evicted => {
                    tracing::debug!(%peer, "closing an idle connection to make room for a new one");
                    evicted = true;
                }
            }
        }
    }
}
