//! `POST /get-folder-access`: upload access for miners.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::body::{Fields, JsonObject};
use super::client_ip::ClientIp;
use super::error::ApiError;
use crate::access::MinerRequest;
use crate::state::AppState;
use crate::storage::post_policy::FormFields;

/// The folder layout shown to callers.
pub const FOLDER_STRUCTURE: &str = "data/hotkey={hotkey_id}/job_id={job_id}/";

/// How the folder layout is explained to callers.
#[derive(Debug, Serialize, ToSchema)]
pub struct StructureInfo {
    /// The folder template.
    pub folder_structure: &'static str,
    /// What to do with it.
    pub description: &'static str,
}

impl StructureInfo {
    /// The layout as explained to miners.
    pub fn for_miners() -> Self {
        Self {
            folder_structure: FOLDER_STRUCTURE,
            description: "Upload files to job_id folders within your hotkey directory under data/ prefix",
        }
    }

    /// The layout as explained to validators.
    pub fn for_validators() -> Self {
        Self {
            folder_structure: FOLDER_STRUCTURE,
            description: "Job-based folder structure with explicit hotkey and job_id labels under data/ prefix",
        }
    }
}

/// The 200 answer of `/get-folder-access`, field for field as the original.
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderAccessResponse {
    /// `data/hotkey={hotkey}/`.
    pub folder: String,
    /// Where to POST the upload.
    pub url: String,
    /// Form fields to send with the file (`acl`, `x-amz-storage-class`, `key`,
    /// `x-amz-algorithm`, `x-amz-credential`, `x-amz-date`, `policy`, `x-amz-signature`,
    /// and `x-amz-security-token` with temporary credentials).
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub fields: FormFields,
    /// The request's expiry as a naive ISO-8601 UTC time.
    pub expiry: String,
    /// Presigned ListObjectsV2 URL of the folder (3 h).
    pub list_url: String,
    /// The folder layout.
    pub structure_info: StructureInfo,
}

/// Formats unix seconds as Python's naive `datetime.isoformat()` on a UTC host.
pub fn naive_iso(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .map(|t| crate::timefmt::iso_seconds(&t, false))
        .unwrap_or_else(|| unix.to_string())
}

/// Grants a registered miner a POST policy for its own folder.
#[utoipa::path(
    post,
    path = "/get-folder-access",
    tag = "miners",
    request_body = super::openapi::MinerAccessRequest,
    responses(
        (status = 200, description = "POST policy for the miner's folder, and a list URL", body = FolderAccessResponse),
        (status = 400, description = "`Invalid timestamp`, or the hotkey is not an SS58 address", body = super::openapi::ErrorDetail),
        (status = 401, description = "`Invalid signature` (unregistered hotkey or bad signature), or `Coldkey does not match hotkey owner`, or `Signature already used` (replay)", body = super::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = super::openapi::ErrorDetail),
        (status = 422, description = "Body does not match the request model (header-signed: a field the model does not have; where the model has `route`, `route` missing or not this route)", body = super::openapi::ValidationErrors),
        (status = 429, description = "`Daily limit of N exceeded.`, `Global request limit reached.`, or too many failed authentications from this address (Retry-After)", body = super::openapi::ErrorDetail),
        (status = 503, description = "`Metagraph not yet synced`, no signing credentials, rate limiter unavailable, or busy", body = super::openapi::ErrorDetail),
    )
)]
pub async fn get_folder_access(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let coldkey = f.string("coldkey");
    let tao = body.1.as_ref();
    // Header-signed requests name the hotkey in X-Tao-Signed-By and need no body signature.
    let (hotkey, timestamp, signature) = f.signer(tao);
    let expiry = f.opt_int("expiry");
    f.route("/get-folder-access");
    f.finish()?;

    let request = MinerRequest {
        coldkey: &coldkey,
        hotkey: &hotkey,
        timestamp,
        signature: &signature,
        expiry,
        tao,
    };
    let grant = state
        .access
        .throttled(client, state.access.grant_miner(&request, Utc::now()))
        .await
        .map_err(|e| state.observe(e))?;
    let body = FolderAccessResponse {
        folder: grant.folder,
        url: grant.form.url,
        fields: grant.form.fields,
        expiry: naive_iso(grant.expiry),
        list_url: grant.list_url,
        structure_info: StructureInfo::for_miners(),
    };
    Ok(super::json_with_quota(body, grant.usage))
}
