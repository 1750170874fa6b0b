//! The request-buffer budget (`REQUEST_BUFFER_BUDGET_MB`): every byte of a request body
//! the service holds in memory is charged to one process-wide budget as it arrives, and
//! released when the buffered body is dropped. When the budget is spent, a body read is
//! refused with 503 and `Retry-After` instead of growing the process.
//!
//! Request heads are not charged: hyper reads them into a per-connection buffer bounded
//! by [`HEAD_LIMIT`], so they take at most `MAX_CONNECTIONS` × [`HEAD_LIMIT`] (see
//! [`PER_CONNECTION_BYTES`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use http_body_util::BodyExt as _;

use super::body::BODY_LIMIT;
use super::error::ApiError;

/// Largest request head (request line and headers) a connection may send: beyond it,
/// hyper answers 431 and closes the connection. It is also the size of each connection's
/// read buffer. 16 KiB, as Node.js; nginx allows 1 KiB plus up to four 8 KiB lines.
pub const HEAD_LIMIT: usize = 16 * 1024;

/// Memory one open connection may hold outside the budget, as measured on the release
/// binary (`tests/memory.rs`, docs/benchmarks.md): its read buffer of up to
/// [`HEAD_LIMIT`] (hyper may reserve up to twice that), its task and hyper's connection
/// state, and allocator slack. Deployment checks size tasks with it.
pub const PER_CONNECTION_BYTES: usize = 64 * 1024;

/// Default of `REQUEST_BUFFER_BUDGET_MB`, in MiB: with the template's 2,000 connections at
/// [`PER_CONNECTION_BYTES`] (125 MiB) and [`PROCESS_BASELINE_MIB`], 317 MiB of the 512 MiB
/// task, which keeps 38 % free. Legitimate bodies are a few KiB: 64 MiB holds hundreds of
/// the largest (256 KiB) at once.
pub const DEFAULT_BUDGET_MIB: usize = 64;

/// Memory the rest of the process may use, in MiB, for sizing tasks: about 20 MiB idle,
/// the replay records (up to about 45 MB when full), and the requests in flight.
pub const PROCESS_BASELINE_MIB: usize = 128;

/// Bytes of request bodies held at once, across all connections.
#[derive(Debug)]
pub struct BufferBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BufferBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, if that many are left.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|n| *n <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes one buffer holds against a [`BufferBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<BufferBudget>,
    bytes: usize,
}

impl Charge {
    /// A charge of nothing yet against `budget`.
    pub fn new(budget: &Arc<BufferBudget>) -> Self {
        Self {
            budget: Arc::clone(budget),
            bytes: 0,
        }
    }

    /// Adds `bytes` to this charge; false (and nothing charged) when the budget is spent.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let ok = self.budget.take(bytes);
        if ok {
            self.bytes += bytes;
        }
        ok
    }

    /// Bytes held by this charge.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A body's bytes and their charge, freed together.
struct Charged {
    buf: Vec<u8>,
    _charge: Charge,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// Reads `body` in full, at most [`BODY_LIMIT`] bytes, charging its buffer's capacity to
/// `budget` as the bytes arrive. `declared` is the `Content-Length`, when sent (at most
/// [`BODY_LIMIT`]): the buffer never grows past it. The bytes keep the charge until the
/// last reference to them is dropped.
pub async fn read_charged(
    mut body: Body,
    declared: Option<usize>,
    budget: &Arc<BufferBudget>,
) -> Result<Bytes, ApiError> {
    let most = declared.unwrap_or(BODY_LIMIT).min(BODY_LIMIT);
    let mut buf: Vec<u8> = Vec::new();
    let mut charge = Charge::new(budget);
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::BadRequest("Could not read the request body".into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let needed = buf.len() + data.len();
        if needed > BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT });
        }
        if needed > buf.capacity() {
            // Doubling, but never past what the body can still need.
            let target = needed.max(buf.capacity().saturating_mul(2).min(most));
            if !charge.grow(target - buf.capacity()) {
                return Err(ApiError::BufferBudgetSpent);
            }
            buf.reserve_exact(target - buf.len());
            // The allocator may round up; what it gave is what is held.
            let extra = buf.capacity().saturating_sub(charge.bytes());
            if extra > 0 && !charge.grow(extra) {
                return Err(ApiError::BufferBudgetSpent);
            }
        }
        buf.extend_from_slice(&data);
    }
    if buf.is_empty() {
        return Ok(Bytes::new());
    }
    Ok(Bytes::from_owner(Charged {
        buf,
        _charge: charge,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields `parts` as separate data frames.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    fn chunked(parts: &[&[u8]]) -> Body {
        Body::new(Chunks(
            parts.iter().map(|p| Bytes::copy_from_slice(p)).collect(),
        ))
    }

    #[tokio::test]
    async fn the_charge_follows_the_bytes() {
        let budget = BufferBudget::new(1 << 20);
        let bytes = read_charged(chunked(&[b"abc", &[7u8; 5000]]), Some(5003), &budget)
            .await
            .expect("read");
        assert_eq!(bytes.len(), 5003);
        assert!(budget.used() >= 5003 && budget.used() <= 5003 + 64);
        let part = bytes.slice(1..4);
        drop(bytes);
        assert!(
            budget.used() >= 5003,
            "a slice keeps the buffer and its charge"
        );
        assert_eq!(&part[..], b"bc\x07");
        drop(part);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_and_keeps_nothing() {
        let budget = BufferBudget::new(10_000);
        let held = read_charged(chunked(&[&[1u8; 8000]]), None, &budget)
            .await
            .expect("first fits");
        let refused = read_charged(chunked(&[&[1u8; 1000], &[2u8; 3000]]), None, &budget).await;
        assert!(matches!(refused, Err(ApiError::BufferBudgetSpent)));
        assert_eq!(budget.used(), held.len());
        drop(held);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_too_large() {
        let budget = BufferBudget::new(1 << 30);
        let big = vec![0u8; BODY_LIMIT];
        let result = read_charged(chunked(&[&big, b"x"]), None, &budget).await;
        assert!(matches!(result, Err(ApiError::PayloadTooLarge { .. })));
        assert_eq!(budget.used(), 0);
    }
}
