//! HTTP routes. Handlers parse, call the access layer and shape the response.

pub mod body;
pub mod error;
pub mod info;
pub mod miner;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::access::{AccessError, QuotaRejection};
use crate::state::AppState;
use error::RateLimitInfo;

/// The service's router with all routes and middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/get-folder-access", post(miner::get_folder_access))
        .route("/commitment-formats", get(info::commitment_formats))
        .route("/healthcheck", get(info::healthcheck))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body::BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .with_state(state)
}

async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    state.stats.record(response.status().as_u16());
    response
}

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Timestamp(_) => ApiError::invalid_timestamp(),
            AccessError::BadHotkey(e) => {
                ApiError::BadRequest(format!("hotkey is not a valid SS58 address ({e})"))
            }
            AccessError::NoMetagraph => {
                ApiError::Unavailable("Metagraph not loaded yet; try again shortly".into())
            }
            AccessError::NotRegistered | AccessError::BadSignature(_) => {
                ApiError::invalid_signature()
            }
            AccessError::ColdkeyMismatch => {
                ApiError::Unauthorized("coldkey does not own this hotkey on the subnet".into())
            }
            AccessError::Quota(q) => quota_error(q),
            AccessError::QuotaUnavailable => {
                ApiError::Unavailable("Rate limiter unavailable; try again shortly".into())
            }
            AccessError::Credentials(e) => {
                tracing::error!(error = %e, "cannot sign: no credentials");
                ApiError::Unavailable("Signing credentials unavailable; try again shortly".into())
            }
            AccessError::Presign(e) => ApiError::Internal(e.to_string()),
        }
    }
}

fn quota_error(q: QuotaRejection) -> ApiError {
    let detail = if q.global {
        "Global request limit reached.".to_owned()
    } else {
        format!("Daily limit of {} exceeded.", q.limit)
    };
    ApiError::QuotaExceeded {
        detail,
        info: RateLimitInfo {
            limit: q.limit,
            remaining: 0,
            reset_in_secs: q.reset_in_secs,
            reset_at: q.reset_at,
        },
    }
}
