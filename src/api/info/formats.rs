//! `/commitment-formats` and `/structure-info`: the original service's fields, with the
//! same names, types and meaning, and this service's additions beside them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::miner::FOLDER_STRUCTURE;
use crate::auth::commitment::formats;
use crate::state::AppState;

/// Two example object keys in the folder layout.
const EXAMPLE_PATHS: [&str; 2] = [
    "data/hotkey=5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX/job_id=job_001/data_20251122.parquet",
    "data/hotkey=5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX/job_id=job_002/data_20251122.parquet",
];

/// The 200 answer of `/commitment-formats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommitmentFormats {
    /// What a miner signs for `/get-folder-access`.
    pub miner_format: &'static str,
    /// What a validator signs for `/get-validator-access`.
    pub validator_format: &'static str,
    /// What a validator signs for `/get-miner-specific-access`.
    pub miner_specific_format: &'static str,
    /// What a validator signs for `/get-file-presigned-urls` (an addition).
    pub file_urls_format: &'static str,
    /// What a validator signs for `/get-folder-presigned-urls` (an addition).
    pub folder_urls_format: &'static str,
    /// A filled-in `miner_format`.
    pub example_miner: &'static str,
    /// A filled-in `validator_format`.
    pub example_validator: &'static str,
    /// A filled-in `miner_specific_format`.
    pub example_miner_specific: &'static str,
    /// The folder layout with example keys.
    pub folder_structure: FolderLayout,
    /// The steps, numbered, one per line.
    pub instructions: &'static str,
    /// The same steps by topic (an addition; this object was once sent as `instructions`).
    pub instructions_by_topic: InstructionsByTopic,
    /// Tao v2 header signatures (an addition).
    pub tao_v2: TaoV2Format,
    /// How long each check may take.
    pub timeout_protection: TimeoutProtection,
}

/// The folder layout of `/commitment-formats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderLayout {
    /// The folder template.
    pub new_structure: &'static str,
    /// What goes where.
    pub description: &'static str,
    /// Example object keys.
    pub example_paths: Vec<&'static str>,
}

/// The instructions of `/commitment-formats` by topic.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstructionsByTopic {
    /// How to sign.
    pub signature: &'static str,
    /// Which timestamps are accepted.
    pub timestamp: &'static str,
    /// The miners' flow.
    pub miners: &'static str,
    /// The validators' flow.
    pub validators: &'static str,
}

/// How Tao v2 header signatures are made.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaoV2Format {
    /// What is signed, and where the headers are accepted.
    pub description: &'static str,
    /// Each header and its value.
    pub headers: TaoV2Headers,
    /// The signed message.
    pub message: &'static str,
    /// A signed message, filled in.
    pub example_message: &'static str,
}

/// The Tao v2 headers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaoV2Headers {
    /// Always `2`.
    #[serde(rename = "X-Tao-Version")]
    pub version: &'static str,
    /// Unix time in milliseconds.
    #[serde(rename = "X-Tao-Timestamp")]
    pub timestamp: &'static str,
    /// A UUID.
    #[serde(rename = "X-Tao-Nonce")]
    pub nonce: &'static str,
    /// The SS58 hotkey.
    #[serde(rename = "X-Tao-Signed-By")]
    pub signed_by: &'static str,
    /// The signature.
    #[serde(rename = "X-Tao-Signature")]
    pub signature: &'static str,
}

/// How long each check of a request may take: every check but the S3 calls is local.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeoutProtection {
    /// The validator check (`N seconds`, then how).
    pub validator_verification: &'static str,
    /// The signature check.
    pub signature_verification: &'static str,
    /// The registration check (an addition).
    pub registration_check: &'static str,
    /// The S3 calls (`N seconds`, then which routes make them).
    pub s3_operations: String,
    /// What protects the service from hanging.
    pub description: &'static str,
}

impl TimeoutProtection {
    /// The protections with `S3_OPERATION_TIMEOUT` of `s3_secs`.
    fn new(s3_secs: u64) -> Self {
        Self {
            validator_verification: "0 seconds (validator status is read from the in-memory metagraph, no chain round trip)",
            signature_verification: "local, no chain round trip",
            registration_check: "in-memory metagraph, refreshed in the background",
            s3_operations: format!(
                "{s3_secs} seconds (S3_OPERATION_TIMEOUT); presigning is local, no S3 round trip"
            ),
            description: "No check waits on the chain; the S3 calls of /get-folder-presigned-urls and /get-file-upload-url are bounded by S3_OPERATION_TIMEOUT and every request by REQUEST_TIMEOUT",
        }
    }
}

/// The commitment strings callers must sign, with examples.
#[utoipa::path(
    get,
    path = "/commitment-formats",
    tag = "info",
    responses(
        (status = 200, description = "Commitment templates, examples and instructions", body = CommitmentFormats),
    )
)]
pub async fn commitment_formats(State(state): State<Arc<AppState>>) -> Json<CommitmentFormats> {
    Json(CommitmentFormats {
        miner_format: formats::MINER,
        validator_format: formats::VALIDATOR,
        miner_specific_format: formats::VALIDATOR_MINER,
        file_urls_format: formats::VALIDATOR_FILES,
        folder_urls_format: formats::VALIDATOR_FOLDERS,
        example_miner: "s3:data:access:5CoLdKeY...:5HoTkEy...:1763812800",
        example_validator: "s3:validator:access:1763812800",
        example_miner_specific: "s3:validator:miner:5MiNeRhOtKeY...:1763812800",
        folder_structure: FolderLayout {
            new_structure: FOLDER_STRUCTURE,
            description: "Miners upload into job_id folders inside their own hotkey folder under the data/ prefix",
            example_paths: EXAMPLE_PATHS.to_vec(),
        },
        instructions: "1. Generate a timestamp (Unix seconds)\n2. Sign the route's commitment string with your hotkey\n3. Make the API request with the hex signature\n4. Upload into job_id folders of your hotkey folder under the data/ prefix",
        instructions_by_topic: InstructionsByTopic {
            signature: "Sign the commitment string with your hotkey (sr25519) and send the hex signature",
            timestamp: "Unix seconds; must be within 300 s in the past and 60 s in the future of server time",
            miners: "POST /get-folder-access with {coldkey, hotkey, timestamp, signature}, then POST the file to `url` with `fields` and key = folder + 'job_id={job_id}/{filename}'",
            validators: "POST /get-validator-access with {hotkey, timestamp, signature}; /get-miner-specific-access, /get-file-presigned-urls and /get-folder-presigned-urls add miner_hotkey, file_keys or miner_hotkeys",
        },
        tao_v2: TaoV2Format {
            description: "Header signatures (Subnet 13 clients): the request body is signed, not a commitment string. Accepted on every access route; required on /get-file-upload-url and /get-miner-list. With them the body needs no hotkey, timestamp or signature.",
            headers: TaoV2Headers {
                version: "2",
                timestamp: "Unix time in milliseconds, within TAO_CLOCK_SKEW_MS (default 8000) of server time, either way",
                nonce: "a UUID, accepted once per hotkey",
                signed_by: "the SS58 hotkey",
                signature: "sr25519 signature (base64, or hex with or without 0x) of the message",
            },
            message: "{sha256(body bytes as sent) lowercase hex}.{X-Tao-Nonce}.{X-Tao-Timestamp}",
            example_message: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a.0f8fad5b-d9cb-469f-a165-70867728950e.1764590400123",
        },
        timeout_protection: TimeoutProtection::new(state.config.s3_operation_timeout.as_secs()),
    })
}

/// The 200 answer of `/structure-info`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StructureInfoResponse {
    /// The folder template.
    pub folder_structure: &'static str,
    /// What goes where (an addition).
    pub description: &'static str,
    /// How the layout differs from the one before the `data/` prefix.
    pub changes: LayoutChanges,
    /// Example object keys.
    pub example_paths: Vec<&'static str>,
    /// A miner's steps, numbered.
    pub upload_flow: Vec<&'static str>,
    /// The validators' routes (an addition).
    pub validator_flow: Vec<&'static str>,
    /// Upload sizes and the policy lifetime (an addition).
    pub limits: UploadLimits,
    /// Timeouts in seconds (an addition).
    pub timeouts: StructureTimeouts,
    /// How long each check may take.
    pub timeout_protection: TimeoutProtection,
}

/// The layout change `/structure-info` describes.
#[derive(Debug, Serialize, ToSchema)]
pub struct LayoutChanges {
    /// The layout without the `data/` prefix.
    pub old_structure: &'static str,
    /// The layout now.
    pub new_structure: &'static str,
    /// What the layout gives.
    pub benefits: Vec<&'static str>,
}

/// Upload sizes and the policy lifetime.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadLimits {
    /// Smallest object a policy accepts.
    pub min_file_bytes: u64,
    /// Largest object a policy accepts.
    pub max_file_bytes: u64,
    /// Lifetime of a miner's POST policy.
    pub policy_lifetime_seconds: u64,
}

/// Timeouts of `/structure-info`, in seconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct StructureTimeouts {
    /// `S3_OPERATION_TIMEOUT`.
    pub s3_operations_seconds: u64,
    /// Which routes call S3.
    pub note: &'static str,
}

/// The folder layout, example paths and the upload and read flows.
#[utoipa::path(
    get,
    path = "/structure-info",
    tag = "info",
    responses(
        (status = 200, description = "Folder structure, example paths and flows", body = StructureInfoResponse),
    )
)]
pub async fn structure_info(State(state): State<Arc<AppState>>) -> Json<StructureInfoResponse> {
    let s3_secs = state.config.s3_operation_timeout.as_secs();
    Json(StructureInfoResponse {
        folder_structure: FOLDER_STRUCTURE,
        description: "Each miner uploads into job_id folders inside its own hotkey folder under the data/ prefix",
        changes: LayoutChanges {
            old_structure: "hotkey={hotkey_id}/job_id={job_id}/",
            new_structure: FOLDER_STRUCTURE,
            benefits: vec![
                "Explicit hotkey= and job_id= labels in every key",
                "All miner data under one data/ prefix",
                "One folder per job, so validators can list and read a job at a time",
                "Validator status and signatures are checked locally, without chain round trips",
            ],
        },
        example_paths: EXAMPLE_PATHS.to_vec(),
        upload_flow: vec![
            "1. Sign s3:data:access:{coldkey}:{hotkey}:{timestamp} with your hotkey",
            "2. POST /get-folder-access with {coldkey, hotkey, timestamp, signature}",
            "3. POST the file to `url` with every field of `fields`, key = folder + 'job_id={job_id}/{filename}', file last",
            "4. S3 answers 204; check with `list_url`",
        ],
        validator_flow: vec![
            "POST /get-validator-access: list URLs over all miners (24 h)",
            "POST /get-miner-specific-access: a list URL for one miner (3 h)",
            "POST /get-folder-presigned-urls: a list URL per job folder (3 h)",
            "POST /get-file-presigned-urls: GET URLs for up to 1000 files of one miner (1-24 h)",
        ],
        limits: UploadLimits {
            min_file_bytes: state.config.tao.min_upload_bytes,
            max_file_bytes: state.config.tao.max_upload_bytes,
            policy_lifetime_seconds: crate::access::miner::MINER_POLICY_LIFETIME.as_secs(),
        },
        timeouts: StructureTimeouts {
            s3_operations_seconds: s3_secs,
            note: "presigning is local; only /get-folder-presigned-urls, /get-file-upload-url (HeadObject) and /healthcheck call S3",
        },
        timeout_protection: TimeoutProtection::new(s3_secs),
    })
}
