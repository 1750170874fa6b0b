//! The one error type of the HTTP layer and how it becomes a response.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One body-validation problem, in FastAPI's 422 shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationIssue {
    /// pydantic's error type, e.g. `missing`, `string_type`.
    pub kind: &'static str,
    /// Where: `["body", "<field>"]`.
    pub loc: Vec<Value>,
    /// pydantic's message.
    pub msg: String,
}

impl ValidationIssue {
    /// An issue with field `field` of the body.
    pub fn field(field: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            kind,
            loc: vec![json!("body"), json!(field)],
            msg: msg.into(),
        }
    }
}

/// Rate-limit headers of a counted or refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// The limit that applies.
    pub limit: u64,
    /// Requests left today.
    pub remaining: u64,
    /// Seconds until the next UTC midnight.
    pub reset_in_secs: u64,
    /// Unix time of the next UTC midnight.
    pub reset_at: i64,
}

impl RateLimitInfo {
    /// Writes `X-RateLimit-*` headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_at));
    }
}

/// `Retry-After` of 503 and 504 answers: a dependency or the metagraph is missing for now,
/// and background work (probes, syncs, refreshes) runs every few seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the body does not match the request model.
    #[error("request body failed validation")]
    Validation(Vec<ValidationIssue>),
    /// 400 with a detail.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401 with a detail.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 413: the body is larger than allowed.
    #[error("request body too large")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 429: a daily limit is used up.
    #[error("quota exceeded: {detail}")]
    QuotaExceeded {
        /// `Daily limit of N exceeded.` or `Global request limit reached.`
        detail: String,
        /// Rate-limit headers.
        info: RateLimitInfo,
    },
    /// 429: this client address failed authentication too often.
    #[error("too many failed authentications")]
    Throttled {
        /// Seconds until the address may try again.
        retry_after_secs: u64,
    },
    /// 408: the request body did not arrive in time; the connection is closed.
    #[error("request body not received in time")]
    BodyTimeout,
    /// 503: this instance cannot serve the request right now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 503 `Server busy; retry shortly`: `MAX_CONCURRENT_REQUESTS` are in flight.
    #[error("server busy")]
    Busy,
    /// 503: the request-buffer budget (`REQUEST_BUFFER_BUDGET_MB`) is spent by bodies
    /// being received; the connection is closed.
    #[error("request-buffer budget spent")]
    BufferBudgetSpent,
    /// 504: a dependency did not answer in time.
    #[error("timeout: {0}")]
    Timeout(String),
    /// 409 with a detail (e.g. `File already exists`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 404.
    #[error("not found")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 500: a bug; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QuotaExceeded { .. } | ApiError::Throttled { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::Busy | ApiError::BufferBudgetSpent => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Retry-After` seconds of this answer: every 503 and 504 has one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::Unavailable(_) | ApiError::Timeout(_) => Some(RETRY_AFTER_SECS),
            // Slots and buffers free up within a request's time.
            ApiError::Busy | ApiError::BufferBudgetSpent => Some(1),
            ApiError::Throttled { retry_after_secs } => Some((*retry_after_secs).max(1)),
            ApiError::QuotaExceeded { info, .. } => Some(info.reset_in_secs),
            _ => None,
        }
    }

    /// 401 `Invalid signature`, the original's answer for every failed identity check.
    pub fn invalid_signature() -> Self {
        ApiError::Unauthorized("Invalid signature".into())
    }

    /// 400 `Invalid timestamp`.
    pub fn invalid_timestamp() -> Self {
        ApiError::BadRequest("Invalid timestamp".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Validation(issues) => Value::Array(
                issues
                    .iter()
                    .map(|i| json!({"type": i.kind, "loc": i.loc, "msg": i.msg}))
                    .collect(),
            ),
            ApiError::BadRequest(d)
            | ApiError::Unauthorized(d)
            | ApiError::Conflict(d)
            | ApiError::Unavailable(d)
            | ApiError::Timeout(d) => {
                json!(d)
            }
            ApiError::PayloadTooLarge { limit } => {
                json!(format!("Request body too large (limit {limit} bytes)"))
            }
            ApiError::QuotaExceeded { detail, .. } => json!(detail),
            ApiError::Throttled { .. } => {
                json!("Too many failed authentication attempts from this address; try again later")
            }
            ApiError::BodyTimeout => json!("Request body not received in time"),
            ApiError::Busy => json!("Server busy; retry shortly"),
            ApiError::BufferBudgetSpent => {
                json!("Server is receiving too many request bodies; retry shortly")
            }
            ApiError::NotFound => json!("Not Found"),
            ApiError::MethodNotAllowed => json!("Method Not Allowed"),
            ApiError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                json!("Internal server error")
            }
        };
        let mut response = (status, Json(json!({ "detail": detail }))).into_response();
        let headers = response.headers_mut();
        if let ApiError::QuotaExceeded { info, .. } = &self {
            info.apply(headers);
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(
            self,
            ApiError::BodyTimeout | ApiError::PayloadTooLarge { .. } | ApiError::BufferBudgetSpent
        ) {
            // The rest of the body is not read: the connection cannot carry another request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
