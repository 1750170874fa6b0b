//! Header-signed (Tao v2) routes of current Subnet 13 clients: `/get-file-upload-url`
//! (miners) and `/get-miner-list` (validators).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::body::{Fields, JsonObject};
use super::client_ip::ClientIp;
use super::error::ValidationIssue;
use super::{ApiError, json_with_quota};
use crate::access::ValidatorRequest;
use crate::access::uploads::{upload_key, valid_segment};
use crate::state::AppState;

/// Body of `/get-file-upload-url` (Tao v2 headers sign it); no other fields.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileUploadRequest {
    /// One path segment: letters, digits and `._-=`, not empty, `.` or `..`.
    #[schema(min_length = 1)]
    pub job_id: String,
    /// One path segment: letters, digits and `._-=`, not empty, `.` or `..`.
    #[schema(min_length = 1)]
    pub filename: String,
}

/// The 200 answer of `/get-file-upload-url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileUploadResponse {
    /// `data/hotkey={hotkey}/job_id={job_id}/{filename}`.
    pub s3_key: String,
    /// Where to send the upload.
    pub url: String,
    /// POST form fields (the file goes last); `{}` for PUT.
    pub fields: BTreeMap<String, String>,
    /// How long the policy or URL is valid.
    pub expires_in_seconds: u64,
    /// `POST` (a form for exactly this key) or `PUT` (send `Content-Type:
    /// application/octet-stream`).
    pub method: String,
}

/// Body of `/get-miner-list` (Tao v2 headers sign it); no other fields.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MinerListRequest {
    /// The miner whose folder is listed.
    pub miner_hotkey: String,
    /// The previous page's `NextContinuationToken`.
    pub continuation_token: Option<String>,
}

/// The 200 answer of `/get-miner-list`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinerListResponse {
    /// ListObjectsV2 of one page (at most 1000 keys) of `data/hotkey={miner_hotkey}/`.
    pub list_url: String,
}

/// Reads `name` as one path segment: missing or not a string is reported by `f`; an
/// empty string is pydantic's `string_too_short` (a `min_length=1` field), any other value
/// that is not one safe segment `string_pattern_mismatch`.
fn segment(f: &mut Fields<'_>, body: &JsonObject, name: &str) -> String {
    let value = f.string(name);
    if !matches!(body.0.get(name), Some(serde_json::Value::String(_))) {
        return value;
    }
    if value.is_empty() {
        f.issue(ValidationIssue::field(
            name,
            "string_too_short",
            "String should have at least 1 character",
        ));
    } else if !valid_segment(&value) {
        f.issue(ValidationIssue::field(
            name,
            "string_pattern_mismatch",
            "One path segment of letters, digits and ._-= (not . or ..)",
        ));
    }
    value
}

/// Grants a registered miner an upload of one file (Tao v2 headers required).
#[utoipa::path(
    post,
    path = "/get-file-upload-url",
    tag = "miners",
    request_body = FileUploadRequest,
    security(("tao_v2" = [])),
    responses(
        (status = 200, description = "A POST policy for exactly this key, or a presigned PUT (`S3_UPLOAD_METHOD`)", body = FileUploadResponse),
        (status = 400, description = "A malformed X-Tao-* header", body = super::openapi::ErrorDetail),
        (status = 401, description = "`Invalid signature`, timestamp outside the skew, `Nonce already used`, or no Tao v2 headers", body = super::openapi::ErrorDetail),
        (status = 409, description = "`File already exists` (the nonce is spent and one of `DAILY_UPLOAD_CHECKS_PER_MINER` used)", body = super::openapi::ErrorDetail),
        (status = 422, description = "Body does not match the request model (no other fields), or a segment is empty or not allowed", body = super::openapi::ValidationErrors),
        (status = 429, description = "`Daily limit of N exceeded.`, `Daily limit of N upload checks exceeded.` (`DAILY_UPLOAD_CHECKS_PER_MINER`), `Global request limit reached.`, or too many failed authentications (Retry-After)", body = super::openapi::ErrorDetail),
        (status = 503, description = "No metagraph, credentials or rate limiter, `S3 check failed - try again` (the existence check could not answer), or busy", body = super::openapi::ErrorDetail),
        (status = 504, description = "`S3 operation timeout - try again`", body = super::openapi::ErrorDetail),
    )
)]
pub async fn get_file_upload_url(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let job_id = segment(&mut f, &body, "job_id");
    let filename = segment(&mut f, &body, "filename");
    f.finish()?;
    let tao = body.1.as_ref();
    let hotkey = tao.map(|t| t.hotkey.as_str()).unwrap_or_default();
    let Some(key) = upload_key(hotkey, &job_id, &filename) else {
        return Err(ApiError::Validation(vec![ValidationIssue::field(
            "filename",
            "string_too_long",
            "job_id and filename make a key longer than 1024 bytes",
        )]));
    };
    let grant = state
        .access
        .throttled(
            client,
            state.access.grant_file_upload(tao, &key, Utc::now()),
        )
        .await
        .map_err(|e| state.observe(e))?;
    let body = FileUploadResponse {
        s3_key: grant.s3_key,
        url: grant.url,
        fields: grant.fields.0.into_iter().collect(),
        expires_in_seconds: grant.expires_in.as_secs(),
        method: grant.method.to_owned(),
    };
    Ok(json_with_quota(body, grant.usage))
}

/// Grants a validator a list URL of one page of a miner's folder (Tao v2 headers required).
#[utoipa::path(
    post,
    path = "/get-miner-list",
    tag = "validators",
    request_body = MinerListRequest,
    security(("tao_v2" = [])),
    responses(
        (status = 200, description = "A ListObjectsV2 URL of one page (1 h)", body = MinerListResponse),
        (status = 400, description = "A malformed X-Tao-* header, or `miner_hotkey` missing or not SS58", body = super::openapi::ErrorDetail),
        (status = 401, description = "`You are not validator`, `Invalid signature`, timestamp outside the skew, `Nonce already used`, or no Tao v2 headers", body = super::openapi::ErrorDetail),
        (status = 422, description = "Body does not match the request model (no other fields)", body = super::openapi::ValidationErrors),
        (status = 429, description = "Daily limit, or too many failed authentications (Retry-After)", body = super::openapi::ErrorDetail),
        (status = 503, description = "No metagraph, credentials or rate limiter, or busy", body = super::openapi::ErrorDetail),
    )
)]
pub async fn get_miner_list(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let miner_hotkey = f.opt_string("miner_hotkey");
    let continuation_token = f.opt_string("continuation_token");
    f.finish()?;
    let tao = body.1.as_ref();
    let request = ValidatorRequest {
        hotkey: tao.map(|t| t.hotkey.as_str()).unwrap_or_default(),
        timestamp: None,
        signature: "",
        expiry: None,
        continuation_token: continuation_token.as_deref(),
        tao,
    };
    let grant = state
        .access
        .throttled(
            client,
            state
                .access
                .grant_miner_page(&request, miner_hotkey.as_deref(), Utc::now()),
        )
        .await
        .map_err(|e| state.observe(e))?;
    Ok(json_with_quota(
        MinerListResponse {
            list_url: grant.list_url,
        },
        grant.usage,
    ))
}
