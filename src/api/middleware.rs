//! Cross-cutting HTTP behaviour: request ids, one access log line per request, the body
//! read in full under a timeout and the request-buffer budget, a per-request timeout, load
//! shedding, and request counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::body::BODY_LIMIT;
use super::budget::{BufferBudget, read_charged};
use super::error::ApiError;
use crate::metrics::Route;
use crate::server::ReserveSlot;
use crate::state::AppState;

/// The request id of a request, as sent in `x-request-id` or generated.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn generate_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:016x}-{n:08x}")
}

fn valid_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// Where the body reader leaves the caller's hotkey for the access log line, so the
/// body is parsed once.
#[derive(Debug, Clone, Default)]
pub struct CallerHotkey(Arc<OnceLock<String>>);

impl CallerHotkey {
    /// Records the hotkey a body claims (only plausible ones: at most 64 characters).
    pub fn set(&self, hotkey: &str) {
        if hotkey.len() <= 64 {
            let _ = self.0.set(hotkey.to_owned());
        }
    }

    fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// The health probes: they answer even when the instance sheds load, and they are all a
/// reserve connection slot serves ([`crate::server::ReserveSlot`]).
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/healthcheck")
}

/// Request id, load shedding, timeout, counters and the access log line.
pub async fn access(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(valid_id)
        .unwrap_or_else(generate_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    // Routes have no path parameters, so the path names the route.
    let path = req.uri().path();
    let route = state.metrics.route(path);
    let unmatched_path = (route.label == crate::metrics::UNMATCHED)
        .then(|| path.chars().take(100).collect::<String>());
    let path = unmatched_path.as_deref().unwrap_or(route.label);
    // The caller's hotkey, for the log line, as the body reader finds it.
    let hotkey = CallerHotkey::default();
    req.extensions_mut().insert(hotkey.clone());

    if req.extensions().get::<ReserveSlot>().is_some() && !is_probe(req.uri().path()) {
        // The body is not read; the serving loop closes the connection after this answer.
        let response = ApiError::Unavailable("Too many open connections; retry shortly".into())
            .into_response();
        return finish(&state, response, &id, &method, (route, path), None, started);
    }
    // The whole body first, under BODY_READ_TIMEOUT and without a permit: a slow sender
    // holds only its own connection, never a slot that other callers need. Its bytes are
    // charged to the request-buffer budget as they arrive.
    let req = match read_body(req, state.config.body_read_timeout, &state.buffer_budget).await {
        Ok(req) => req,
        Err(err) => {
            let response = err.into_response();
            return finish(&state, response, &id, &method, (route, path), None, started);
        }
    };
    let permit = if is_probe(req.uri().path()) {
        None
    } else {
        match Arc::clone(&state.in_flight).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let response = ApiError::Busy.into_response();
                return finish(&state, response, &id, &method, (route, path), None, started);
            }
        }
    };
    let response = match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout("Request timed out".into()).into_response(),
    };
    drop(permit);
    finish(
        &state,
        response,
        &id,
        &method,
        (route, path),
        hotkey.get(),
        started,
    )
}

/// Reads `req`'s body in full within `timeout` and at most [`BODY_LIMIT`] bytes, charged
/// to `budget` as it arrives, and gives the request back with the body in memory.
async fn read_body(
    req: Request,
    timeout: std::time::Duration,
    budget: &Arc<BufferBudget>,
) -> Result<Request, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT });
    }
    let declared = declared.and_then(|n| usize::try_from(n).ok());
    let (parts, body) = req.into_parts();
    let bytes = tokio::time::timeout(timeout, read_charged(body, declared, budget))
        .await
        .map_err(|_| ApiError::BodyTimeout)??;
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

fn finish(
    state: &AppState,
    mut response: Response,
    id: &str,
    method: &Method,
    (route, path): (Route, &str),
    hotkey: Option<&str>,
    started: Instant,
) -> Response {
    let status = response.status().as_u16();
    state.stats.record(status);
    state
        .metrics
        .observe_request(route, status, started.elapsed().as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "access",
        method = %method,
        route = path,
        status,
        latency_ms = (latency_ms * 100.0).round() / 100.0,
        request_id = id,
        hotkey = hotkey.unwrap_or("-"),
        "request"
    );
    response
}
