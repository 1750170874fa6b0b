//! One accepted connection: hyper serving it, and the timers of its phases.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

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
use super::{ServeSettings, stopped};

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

/// One accepted connection and what it needs to serve.
pub(super) struct Connection {
    pub(super) http: Arc<hyper::server::conn::http1::Builder>,
    pub(super) router: axum::Router,
    pub(super) settings: Arc<ServeSettings>,
    pub(super) stop: watch::Receiver<bool>,
}

impl Connection {
    pub(super) async fn serve(mut self, stream: TcpStream, peer: SocketAddr) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(TrackedStream {
            inner: stream,
            activity: Arc::clone(&activity),
            framing: FrameTracker::default(),
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
