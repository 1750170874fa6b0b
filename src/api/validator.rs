//! Validator endpoints: list URLs over all data, per miner and per job folder, and GET
//! URLs for chosen files.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::body::{Fields, JsonObject};
use super::client_ip::ClientIp;
use super::error::{ApiError, ValidationIssue};
use super::json_with_quota;
use super::miner::{StructureInfo, naive_iso};
use crate::access::ValidatorRequest;
use crate::auth::tao::TaoProof;
use crate::state::AppState;

/// The signed fields every validator body has.
struct Signed {
    hotkey: String,
    timestamp: Option<i64>,
    signature: String,
    expiry: Option<i64>,
    continuation_token: Option<String>,
    tao: Option<TaoProof>,
}

impl Signed {
    /// The signed part of `body`: from its Tao v2 headers when it has them (then the body
    /// needs no `hotkey`, `timestamp` or `signature`), else from the body. `paged` routes
    /// also read `continuation_token`.
    fn read(f: &mut Fields<'_>, body: &JsonObject, paged: bool) -> Self {
        let tao = body.1.clone();
        let (hotkey, timestamp, signature) = f.signer(tao.as_ref());
        Self {
            hotkey,
            timestamp,
            signature,
            expiry: f.opt_int("expiry"),
            continuation_token: if paged {
                f.opt_string("continuation_token")
            } else {
                None
            },
            tao,
        }
    }

    fn request(&self) -> ValidatorRequest<'_> {
        ValidatorRequest {
            hotkey: &self.hotkey,
            timestamp: self.timestamp,
            signature: &self.signature,
            expiry: self.expiry,
            continuation_token: self.continuation_token.as_deref(),
            tao: self.tao.as_ref(),
        }
    }
}

/// `urls.global` of `/get-validator-access`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GlobalUrls {
    /// ListObjectsV2 of `data/hotkey=`.
    pub list_all_data: String,
}

/// `urls.miners` of `/get-validator-access`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinersUrls {
    /// ListObjectsV2 of `data/hotkey=` with delimiter `/`.
    pub list_all_miners: String,
}

/// `urls` of `/get-validator-access`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidatorUrls {
    /// Over all data.
    pub global: GlobalUrls,
    /// Over miner folders.
    pub miners: MinersUrls,
}

/// The 200 answer of `/get-validator-access`, as the original.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidatorAccessResponse {
    /// The bucket.
    pub bucket: String,
    /// Its region.
    pub region: String,
    /// The caller.
    pub validator_hotkey: String,
    /// Now + 24 h, naive ISO-8601 UTC.
    pub expiry: String,
    /// 86400.
    pub expiry_seconds: u64,
    /// The list URLs.
    pub urls: ValidatorUrls,
    /// The folder layout.
    pub structure_info: StructureInfo,
}

/// Grants a validator list URLs over every miner's data.
#[utoipa::path(
    post,
    path = "/get-validator-access",
    tag = "validators",
    request_body = super::openapi::ValidatorAccessRequest,
    responses(
        (status = 200, description = "List URLs over all miners (24 h)", body = ValidatorAccessResponse),
        (status = 400, description = "`Invalid timestamp`, or a parameter is out of range", body = super::openapi::ErrorDetail),
        (status = 401, description = "`You are not validator`, `Invalid signature`, or `Signature already used` (replay)", body = super::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = super::openapi::ErrorDetail),
        (status = 422, description = "Body does not match the request model (header-signed: a field the model does not have; where the model has `route`, `route` missing or not this route)", body = super::openapi::ValidationErrors),
        (status = 429, description = "`Daily limit of N exceeded.`, `Global request limit reached.`, or too many failed authentications from this address (Retry-After)", body = super::openapi::ErrorDetail),
        (status = 503, description = "`Metagraph not yet synced`, no signing credentials, rate limiter unavailable, or busy", body = super::openapi::ErrorDetail),
    )
)]
pub async fn get_validator_access(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let signed = Signed::read(&mut f, &body, true);
    f.route("/get-validator-access");
    f.finish()?;
    let now = Utc::now();
    let grant = state
        .access
        .throttled(client, state.access.grant_validator(&signed.request(), now))
        .await
        .map_err(|e| state.observe(e))?;
    let lifetime = grant.expires_in.as_secs();
    let body = ValidatorAccessResponse {
        bucket: state.config.s3_bucket.clone(),
        region: state.config.s3_region.clone(),
        validator_hotkey: signed.hotkey,
        expiry: naive_iso(now.timestamp() + lifetime as i64),
        expiry_seconds: lifetime,
        urls: ValidatorUrls {
            global: GlobalUrls {
                list_all_data: grant.list_all_data,
            },
            miners: MinersUrls {
                list_all_miners: grant.list_all_miners,
            },
        },
        structure_info: StructureInfo::for_validators(),
    };
    Ok(json_with_quota(body, grant.usage))
}

/// The 200 answer of `/get-miner-specific-access`, as the original.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinerSpecificResponse {
    /// The bucket.
    pub bucket: String,
    /// Its region.
    pub region: String,
    /// The miner whose folder is listed.
    pub miner_hotkey: String,
    /// ListObjectsV2 of the miner's folder, max-keys 10000, 3 h.
    pub miner_url: String,
    /// `data/hotkey={miner_hotkey}/`.
    pub prefix: String,
    /// The request's expiry, naive ISO-8601 UTC.
    pub expiry: String,
}

/// Grants a validator a list URL for one miner's folder.
#[utoipa::path(
    post,
    path = "/get-miner-specific-access",
    tag = "validators",
    request_body = super::openapi::MinerSpecificRequest,
    responses(
        (status = 200, description = "A list URL of one miner folder (3 h)", body = MinerSpecificResponse),
        (status = 400, description = "`Invalid timestamp`, or a parameter is out of range", body = super::openapi::ErrorDetail),
        (status = 401, description = "`You are not validator`, `Invalid signature`, or `Signature already used` (replay)", body = super::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = super::openapi::ErrorDetail),
        (status = 422, description = "Body does not match the request model (header-signed: a field the model does not have; where the model has `route`, `route` missing or not this route)", body = super::openapi::ValidationErrors),
        (status = 429, description = "`Daily limit of N exceeded.`, `Global request limit reached.`, or too many failed authentications from this address (Retry-After)", body = super::openapi::ErrorDetail),
        (status = 503, description = "`Metagraph not yet synced`, no signing credentials, rate limiter unavailable, or busy", body = super::openapi::ErrorDetail),
    )
)]
pub async fn get_miner_specific_access(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let signed = Signed::read(&mut f, &body, true);
    let miner_hotkey = f.opt_string("miner_hotkey");
    f.route("/get-miner-specific-access");
    f.finish()?;
    let grant = state
        .access
        .throttled(
            client,
            state.access.grant_miner_listing(
                &signed.request(),
                miner_hotkey.as_deref(),
                Utc::now(),
            ),
        )
        .await
        .map_err(|e| state.observe(e))?;
    let body = MinerSpecificResponse {
        bucket: state.config.s3_bucket.clone(),
        region: state.config.s3_region.clone(),
        miner_hotkey: miner_hotkey.unwrap_or_default(),
        miner_url: grant.miner_url,
        prefix: grant.prefix,
        expiry: naive_iso(grant.expiry),
    };
    Ok(json_with_quota(body, grant.usage))
}

/// One entry of `file_urls`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileUrl {
    /// A presigned GET URL of the object.
    pub presigned_url: String,
}

/// The 200 answer of `/get-file-presigned-urls`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileUrlsResponse {
    /// The caller.
    pub validator_hotkey: String,
    /// The miner whose files are read.
    pub miner_hotkey: String,
    /// The bucket.
    pub bucket: String,
    /// Its region.
    pub region: String,
    /// How long the URLs are valid.
    pub expiry_seconds: u64,
    /// Per accepted key, its URL.
    pub file_urls: BTreeMap<String, FileUrl>,
    /// Keys refused: outside the miner's folder, or malformed.
    pub invalid_keys: Vec<String>,
    /// Number of keys asked for.
    pub total_requested: usize,
    /// Number of URLs returned.
    pub total_valid: usize,
}

/// Grants a validator GET URLs for chosen files of one miner.
#[utoipa::path(
    post,
    path = "/get-file-presigned-urls",
    tag = "validators",
    request_body = super::openapi::FileUrlsRequest,
    responses(
        (status = 200, description = "GET URLs for the valid keys", body = FileUrlsResponse),
        (status = 400, description = "`Invalid timestamp`, or a parameter is out of range", body = super::openapi::ErrorDetail),
        (status = 401, description = "`You are not validator`, `Invalid signature`, or `Signature already used` (replay)", body = super::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = super::openapi::ErrorDetail),
        (status = 422, description = "Body does not match the request model (header-signed: a field the model does not have; where the model has `route`, `route` missing or not this route)", body = super::openapi::ValidationErrors),
        (status = 429, description = "`Daily limit of N exceeded.`, `Global request limit reached.`, or too many failed authentications from this address (Retry-After)", body = super::openapi::ErrorDetail),
        (status = 503, description = "`Metagraph not yet synced`, no signing credentials, rate limiter unavailable, or busy", body = super::openapi::ErrorDetail),
    )
)]
pub async fn get_file_presigned_urls(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let signed = Signed::read(&mut f, &body, false);
    let miner_hotkey = f.opt_string("miner_hotkey");
    let file_keys = f.string_list("file_keys");
    let expiry_hours = f.opt_int("expiry_hours");
    f.finish()?;
    let grant = state
        .access
        .throttled(
            client,
            state.access.grant_files(
                &signed.request(),
                miner_hotkey.as_deref(),
                &file_keys,
                expiry_hours,
                Utc::now(),
            ),
        )
        .await
        .map_err(|e| state.observe(e))?;
    let total_valid = grant.urls.len();
    let body = FileUrlsResponse {
        validator_hotkey: signed.hotkey,
        miner_hotkey: miner_hotkey.unwrap_or_default(),
        bucket: state.config.s3_bucket.clone(),
        region: state.config.s3_region.clone(),
        expiry_seconds: grant.expires_in.as_secs(),
        file_urls: grant
            .urls
            .into_iter()
            .map(|(k, presigned_url)| (k, FileUrl { presigned_url }))
            .collect(),
        invalid_keys: grant.invalid_keys,
        total_requested: file_keys.len(),
        total_valid,
    };
    Ok(json_with_quota(body, grant.usage))
}

/// One job folder in `/get-folder-presigned-urls`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobFolderEntry {
    /// The job id.
    pub job_id: String,
    /// `data/hotkey={miner}/job_id={job}/`.
    pub path: String,
    /// ListObjectsV2 of the folder, 3 h.
    pub presigned_url: String,
}

/// One miner in `/get-folder-presigned-urls`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinerFolderEntry {
    /// `data/hotkey={miner}/`.
    pub miner_path: String,
    /// Its job folders.
    pub job_folders: Vec<JobFolderEntry>,
    /// How many.
    pub total_jobs: usize,
}

/// The 200 answer of `/get-folder-presigned-urls`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderUrlsResponse {
    /// The caller.
    pub validator_hotkey: String,
    /// The bucket.
    pub bucket: String,
    /// Its region.
    pub region: String,
    /// Per miner hotkey, its job folders.
    pub folder_urls: BTreeMap<String, MinerFolderEntry>,
    /// Number of miners listed.
    pub total_miners: usize,
    /// How long the URLs are valid.
    pub expiry_seconds: u64,
    /// Send this back as `continuation_token` for the next page (at most 1000 job folders
    /// each); `null` when this page is the last.
    pub next_continuation_token: Option<String>,
}

/// Lists miners' job folders and grants a list URL per folder.
#[utoipa::path(
    post,
    path = "/get-folder-presigned-urls",
    tag = "validators",
    request_body = super::openapi::FolderUrlsRequest,
    responses(
        (status = 200, description = "A page of at most 1000 job folders with a list URL each (3 h)", body = FolderUrlsResponse),
        (status = 400, description = "`Invalid timestamp`, `Invalid continuation_token`, or a parameter is out of range", body = super::openapi::ErrorDetail),
        (status = 401, description = "`You are not validator`, `Invalid signature`, or `Signature already used` (replay)", body = super::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = super::openapi::ErrorDetail),
        (status = 422, description = "Body does not match the request model (header-signed: a field the model does not have; where the model has `route`, `route` missing or not this route)", body = super::openapi::ValidationErrors),
        (status = 429, description = "`Daily limit of N exceeded.`, `Global request limit reached.`, or too many failed authentications from this address (Retry-After)", body = super::openapi::ErrorDetail),
        (status = 503, description = "`Metagraph not yet synced`, no signing credentials, rate limiter unavailable, or busy", body = super::openapi::ErrorDetail),
        (status = 504, description = "`S3 operation timeout - try again`", body = super::openapi::ErrorDetail),
    )
)]
pub async fn get_folder_presigned_urls(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let signed = Signed::read(&mut f, &body, true);
    let miner_hotkeys = f.opt_string_list("miner_hotkeys");
    f.route("/get-folder-presigned-urls");
    f.finish()?;
    let max = crate::access::validator::MAX_MINER_HOTKEYS;
    if let Some(list) = &miner_hotkeys
        && list.len() > max
    {
        // pydantic's answer for a list with `max_length`, as the original would give.
        return Err(ApiError::Validation(vec![ValidationIssue::field(
            "miner_hotkeys",
            "too_long",
            format!(
                "List should have at most {max} items after validation, not {}",
                list.len()
            ),
        )]));
    }
    let grant = state
        .access
        .throttled(
            client,
            state
                .access
                .grant_folders(&signed.request(), miner_hotkeys.as_deref(), Utc::now()),
        )
        .await
        .map_err(|e| state.observe(e))?;
    let folder_urls: BTreeMap<String, MinerFolderEntry> = grant
        .miners
        .into_iter()
        .map(|(miner, folders)| {
            let job_folders: Vec<JobFolderEntry> = folders
                .job_folders
                .into_iter()
                .map(|j| JobFolderEntry {
                    job_id: j.job_id,
                    path: j.path,
                    presigned_url: j.presigned_url,
                })
                .collect();
            let entry = MinerFolderEntry {
                miner_path: folders.miner_path,
                total_jobs: job_folders.len(),
                job_folders,
            };
            (miner, entry)
        })
        .collect();
    let body = FolderUrlsResponse {
        validator_hotkey: signed.hotkey,
        bucket: state.config.s3_bucket.clone(),
        region: state.config.s3_region.clone(),
        total_miners: folder_urls.len(),
        folder_urls,
        expiry_seconds: grant.expires_in.as_secs(),
        next_continuation_token: grant.next_continuation_token,
    };
    Ok(json_with_quota(body, grant.usage))
}
