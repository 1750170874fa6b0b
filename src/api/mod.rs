//! HTTP routes. Handlers parse, call the access layer and shape the response.

pub mod body;
pub mod budget;
pub mod client_ip;
pub mod error;
pub mod info;
pub mod middleware;
pub mod miner;
pub mod openapi;
pub mod uploads;
pub mod validator;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

pub use error::ApiError;

use crate::access::{AccessError, QuotaRejection, QuotaUsage};
use crate::state::AppState;
use error::RateLimitInfo;

/// The service's router with all routes and middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/get-folder-access", post(miner::get_folder_access))
        .route(
            "/get-validator-access",
            post(validator::get_validator_access),
        )
        .route(
            "/get-miner-specific-access",
            post(validator::get_miner_specific_access),
        )
        .route(
            "/get-file-presigned-urls",
            post(validator::get_file_presigned_urls),
        )
        .route(
            "/get-folder-presigned-urls",
            post(validator::get_folder_presigned_urls),
        )
        .route("/get-file-upload-url", post(uploads::get_file_upload_url))
        .route("/get-miner-list", post(uploads::get_miner_list))
        .route(
            "/commitment-formats",
            get(info::formats::commitment_formats),
        )
        .route("/structure-info", get(info::formats::structure_info))
        .route("/rate-limits", get(info::limits::rate_limits))
        .route("/healthcheck", get(info::healthcheck))
        .route("/healthz", get(info::healthz))
        .route("/readyz", get(info::readyz))
        .route("/metrics", get(info::metrics))
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url(
            "/openapi.json",
            <openapi::ApiDoc as utoipa::OpenApi>::openapi(),
        ))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body::BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            middleware::access,
        ))
        .layer(cors(&state.config.cors_origins))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .with_state(state)
}

/// CORS from `CORS_ORIGINS`: `*` allows any origin (as the original), else a list.
fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        layer.allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
    }
}

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Timestamp(_) => ApiError::invalid_timestamp(),
            AccessError::BadHotkey(e) => {
                ApiError::BadRequest(format!("hotkey is not a valid SS58 address ({e})"))
            }
            AccessError::NoMetagraph => ApiError::Unavailable("Metagraph not yet synced".into()),
            AccessError::MetagraphTooOld => ApiError::Unavailable("Metagraph too old".into()),
            AccessError::NotRegistered | AccessError::BadSignature(_) => {
                ApiError::invalid_signature()
            }
            AccessError::ColdkeyMismatch => {
                ApiError::Unauthorized("Coldkey does not match hotkey owner".into())
            }
            AccessError::NotValidator => ApiError::Unauthorized("You are not validator".into()),
            AccessError::Replayed => ApiError::Unauthorized("Signature already used".into()),
            AccessError::TaoSkew => {
                ApiError::Unauthorized("X-Tao-Timestamp outside the allowed clock skew".into())
            }
            AccessError::NonceReused => ApiError::Unauthorized("Nonce already used".into()),
            AccessError::TaoRequired => ApiError::Unauthorized(
                "This route needs a Tao v2 signature (X-Tao-* headers)".into(),
            ),
            AccessError::FileExists => ApiError::Conflict("File already exists".into()),
            AccessError::Throttled { retry_after } => ApiError::Throttled {
                retry_after_secs: retry_after.as_secs().max(1),
            },
            AccessError::MissingMinerHotkey => {
                ApiError::BadRequest("miner_hotkey is required".into())
            }
            AccessError::BadMinerHotkey(e) => {
                ApiError::BadRequest(format!("miner_hotkey is not a valid SS58 address ({e})"))
            }
            AccessError::BadParameter(msg) => ApiError::BadRequest(msg),
            AccessError::S3Timeout => ApiError::Timeout("S3 operation timeout - try again".into()),
            AccessError::S3(e) => {
                tracing::warn!(error = %e, "S3 listing failed");
                ApiError::Unavailable("S3 listing failed - try again".into())
            }
            AccessError::ObjectCheck { key, message } => {
                tracing::warn!(key = %key, error = %message, "S3 HeadObject before an upload failed");
                ApiError::Unavailable("S3 check failed - try again".into())
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

/// A JSON 200 answer with the caller's `X-RateLimit-*` headers.
pub fn json_with_quota<T: serde::Serialize>(body: T, usage: QuotaUsage) -> Response {
    let mut response = axum::Json(body).into_response();
    RateLimitInfo {
        limit: usage.limit,
        remaining: usage.remaining,
        reset_in_secs: usage.reset_in_secs,
        reset_at: usage.reset_at,
    }
    .apply(response.headers_mut());
    response
}

fn quota_error(q: QuotaRejection) -> ApiError {
    let detail = if q.global {
        "Global request limit reached.".to_owned()
    } else if q.upload_checks {
        format!("Daily limit of {} upload checks exceeded.", q.limit)
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
