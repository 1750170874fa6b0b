//! The OpenAPI document (`/openapi.json`) and its request and error schemas. Request
//! bodies are validated by hand (for FastAPI-shaped 422s); these types only document them.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{info, miner, validator};

/// Every route of the router, as (method, path).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/get-folder-access"),
    ("post", "/get-validator-access"),
    ("post", "/get-miner-specific-access"),
    ("post", "/get-file-presigned-urls"),
    ("post", "/get-folder-presigned-urls"),
    ("post", "/get-file-upload-url"),
    ("post", "/get-miner-list"),
    ("get", "/commitment-formats"),
    ("get", "/structure-info"),
    ("get", "/rate-limits"),
    ("get", "/healthcheck"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"detail": "Invalid signature"}))]
pub struct ErrorDetail {
    /// What went wrong.
    pub detail: String,
}

/// One body-validation problem (FastAPI's shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationIssue {
    /// pydantic's error type, e.g. `missing`, `string_type`, `json_invalid`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where: `["body", "<field>"]`.
    pub loc: Vec<serde_json::Value>,
    /// The message.
    pub msg: String,
}

/// A 422 answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"detail": [{"type": "missing", "loc": ["body", "signature"], "msg": "Field required"}]}))]
pub struct ValidationErrors {
    /// The problems.
    pub detail: Vec<ValidationIssue>,
}

/// Body of `/get-folder-access`. Sign `s3:data:access:{coldkey}:{hotkey}:{timestamp}`,
/// or send it Tao v2 header-signed: then it has no other fields than these, and `route`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"coldkey": "5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY", "hotkey": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "timestamp": 1763812800, "signature": "0x5e4f..."}))]
pub struct MinerAccessRequest {
    /// The coldkey that owns the hotkey (SS58).
    pub coldkey: String,
    /// The miner's hotkey (SS58, prefix 42).
    pub hotkey: String,
    /// Unix seconds (default: now); within 300 s past and 60 s future.
    pub timestamp: Option<i64>,
    /// Hex sr25519 signature of the commitment, with or without `0x`.
    pub signature: String,
    /// Unix seconds after which the request is refused (default timestamp + 86400).
    pub expiry: Option<i64>,
    /// Header-signed (Tao v2) bodies only, and required in them: exactly `"/get-folder-access"`,
    /// the route the body is signed for (422 when missing or another). Ignored in
    /// body-signed requests.
    pub route: Option<String>,
}

/// Body of `/get-validator-access`. Sign `s3:validator:access:{timestamp}`, or send it
/// Tao v2 header-signed: then it has no other fields than these, and `route`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidatorAccessRequest {
    /// The validator's hotkey.
    pub hotkey: String,
    /// Unix seconds (default: now).
    pub timestamp: Option<i64>,
    /// Hex sr25519 signature of the commitment.
    pub signature: String,
    /// Unix seconds after which the request is refused.
    pub expiry: Option<i64>,
    /// The page after this ListObjectsV2 continuation token (an addition).
    pub continuation_token: Option<String>,
    /// Header-signed (Tao v2) bodies only, and required in them: exactly `"/get-validator-access"`,
    /// the route the body is signed for (422 when missing or another). Ignored in
    /// body-signed requests.
    pub route: Option<String>,
}

/// Body of `/get-miner-specific-access`. Sign `s3:validator:miner:{miner_hotkey}:{timestamp}`,
/// or send it Tao v2 header-signed: then it has no other fields than these, and `route`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinerSpecificRequest {
    /// The validator's hotkey.
    pub hotkey: String,
    /// Unix seconds (default: now).
    pub timestamp: Option<i64>,
    /// Hex sr25519 signature of the commitment.
    pub signature: String,
    /// Unix seconds after which the request is refused.
    pub expiry: Option<i64>,
    /// The miner whose folder is listed (SS58; 400 when absent).
    pub miner_hotkey: Option<String>,
    /// The page after this ListObjectsV2 continuation token (an addition).
    pub continuation_token: Option<String>,
    /// Header-signed (Tao v2) bodies only, and required in them: exactly `"/get-miner-specific-access"`,
    /// the route the body is signed for (422 when missing or another). Ignored in
    /// body-signed requests.
    pub route: Option<String>,
}

/// Body of `/get-file-presigned-urls`. Sign
/// `s3:validator:files:{miner_hotkey}:{hotkey}:{timestamp}`, or send it Tao v2
/// header-signed: then it has no other fields than these (and no `route`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FileUrlsRequest {
    /// The validator's hotkey.
    pub hotkey: String,
    /// Unix seconds (default: now).
    pub timestamp: Option<i64>,
    /// Hex sr25519 signature of the commitment.
    pub signature: String,
    /// The miner whose files are read (SS58).
    pub miner_hotkey: Option<String>,
    /// Unix seconds after which the request is refused.
    pub expiry: Option<i64>,
    /// Object keys under `data/hotkey={miner_hotkey}/`, at most 1000.
    pub file_keys: Vec<String>,
    /// URL lifetime in hours, 1 to 24 (default 1).
    pub expiry_hours: Option<i64>,
}

/// Body of `/get-folder-presigned-urls`. Sign `s3:validator:folders:{hotkey}:{timestamp}`,
/// or send it Tao v2 header-signed: then it has no other fields than these, and `route`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderUrlsRequest {
    /// The validator's hotkey.
    pub hotkey: String,
    /// Unix seconds (default: now).
    pub timestamp: Option<i64>,
    /// Hex sr25519 signature of the commitment.
    pub signature: String,
    /// Unix seconds after which the request is refused.
    pub expiry: Option<i64>,
    /// Only these miners (SS58), at most 256.
    #[schema(max_items = 256)]
    pub miner_hotkeys: Option<Vec<String>>,
    /// The previous answer's `next_continuation_token`: resume right after its last folder.
    pub continuation_token: Option<String>,
    /// Header-signed (Tao v2) bodies only, and required in them: exactly `"/get-folder-presigned-urls"`,
    /// the route the body is signed for (422 when missing or another). Ignored in
    /// body-signed requests.
    pub route: Option<String>,
}

/// Declares the bearer scheme `/metrics` uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Tao v2: X-Tao-Version 2, X-Tao-Timestamp (ms), X-Tao-Nonce (UUID),
        // X-Tao-Signed-By (SS58) and this signature over `{sha256(body)}.{nonce}.{timestamp}`.
        components.add_security_scheme(
            "tao_v2",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "X-Tao-Signature",
                    "Tao v2: sr25519 signature (base64 or hex) by X-Tao-Signed-By over `{sha256(body) hex}.{X-Tao-Nonce}.{X-Tao-Timestamp}`, sent with X-Tao-Version: 2, X-Tao-Timestamp (Unix ms, within TAO_CLOCK_SKEW_MS) and X-Tao-Nonce (a UUID, accepted once).",
                ),
            )),
        );
    }
}

/// Adds what every route shares: `Retry-After` on each 503, 504 and 429 answer, and the
/// 408 a POST gets when its body does not arrive within `BODY_READ_TIMEOUT`.
struct EdgeResponses;

impl utoipa::Modify for EdgeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::Header;
        use utoipa::openapi::{Object, RefOr, Type};
        let retry_after = || {
            let mut h = Header::new(Object::with_type(Type::Integer));
            h.description = Some("Whole seconds (at least 1) to wait before retrying".into());
            h
        };
        for item in openapi.paths.paths.values_mut() {
            let post = item.post.is_some();
            for op in [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
            {
                if post && op.request_body.is_some() {
                    for (code, text) in [
                        (
                            "408",
                            "The request body did not arrive within `BODY_READ_TIMEOUT`; the connection is closed",
                        ),
                        ("504", "`Request timed out` (`REQUEST_TIMEOUT`)"),
                    ] {
                        op.responses
                            .responses
                            .entry(code.into())
                            .or_insert_with(|| RefOr::T(error_response(text)));
                    }
                }
                for (code, response) in op.responses.responses.iter_mut() {
                    if let ("503" | "504" | "429", RefOr::T(r)) = (code.as_str(), response) {
                        r.headers.insert("Retry-After".into(), retry_after());
                    }
                }
            }
        }
    }
}

/// A response with an [`ErrorDetail`] body.
fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorDetail"))))
                .build(),
        )
        .build()
}

/// The service's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "s3-auth-api",
        description = "Presigned S3 access for Bittensor subnet miners and validators, granted after an sr25519 signature by the caller's hotkey."
    ),
    paths(
        miner::get_folder_access,
        validator::get_validator_access,
        validator::get_miner_specific_access,
        validator::get_file_presigned_urls,
        validator::get_folder_presigned_urls,
        super::uploads::get_file_upload_url,
        super::uploads::get_miner_list,
        info::formats::commitment_formats,
        info::formats::structure_info,
        info::limits::rate_limits,
        info::healthcheck,
        info::healthz,
        info::readyz,
        info::metrics,
    ),
    modifiers(&BearerAuth, &EdgeResponses),
    tags(
        (name = "miners", description = "Upload access for miners"),
        (name = "validators", description = "Read access for validators"),
        (name = "info", description = "Formats, structure and limits"),
        (name = "ops", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;
