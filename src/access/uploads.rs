//! The routes current Subnet 13 clients call, header-signed (Tao v2) only: a per-file
//! upload (a POST policy for exactly one key, or a presigned PUT) and one page of a
//! miner's listing.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::miner::upload_spec;
use super::validator::{MAX_KEY_BYTES, ValidatorRequest, parse_miner_hotkey, s3_token};
use super::{Access, AccessError, Counter, Proof, QuotaRejection, QuotaUsage, miner_folder};
use crate::auth::tao::TaoProof;
use crate::config::UploadMethod;
use crate::storage::fit_lifetime;
use crate::storage::post_policy::{FormFields, presign_post_exact};
use crate::storage::presign::{ListQuery, presign_list, presign_put};

/// The `Content-Type` a presigned PUT is signed for (what the clients send).
pub const PUT_CONTENT_TYPE: &str = "application/octet-stream";
/// Keys in one `/get-miner-list` page.
pub const MINER_PAGE_KEYS: u32 = 1000;
/// Lifetime of a `/get-miner-list` URL.
const MINER_PAGE_LIFETIME: Duration = Duration::from_secs(3600);

/// Whether `segment` may be a `job_id` or a file name: one path segment of letters,
/// digits and `._-=`, not `.` or `..`.
pub fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'='))
}

/// The key of `filename` in job `job_id` of `hotkey`, if it stays within S3's 1024 bytes.
pub fn upload_key(hotkey: &str, job_id: &str, filename: &str) -> Option<String> {
    let key = format!("{}job_id={job_id}/{filename}", miner_folder(hotkey));
    (key.len() <= MAX_KEY_BYTES).then_some(key)
}

/// The answer to `/get-file-upload-url`.
#[derive(Debug, Clone)]
pub struct FileUploadGrant {
    /// The object key.
    pub s3_key: String,
    /// Where to send the upload.
    pub url: String,
    /// The form fields (POST), or none (PUT).
    pub fields: FormFields,
    /// How long the policy or URL is valid.
    pub expires_in: Duration,
    /// `POST` or `PUT`.
    pub method: &'static str,
    /// Quota after this request.
    pub usage: QuotaUsage,
}

/// The answer to `/get-miner-list`.
#[derive(Debug, Clone)]
pub struct MinerPageGrant {
    /// ListObjectsV2 of one page of the miner's folder.
    pub list_url: String,
    /// Quota after this request.
    pub usage: QuotaUsage,
}

impl Access {
    /// `/get-file-upload-url`: an upload of exactly `data/hotkey={hotkey}/job_id={job}/{file}`
    /// for a registered miner, unless that object exists (409). The nonce is spent and one
    /// of the miner's `DAILY_UPLOAD_CHECKS_PER_MINER` counted before the HeadObject; only a
    /// grant counts against `DAILY_LIMIT_PER_MINER`.
    pub async fn grant_file_upload(
        &self,
        tao: Option<&TaoProof>,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<FileUploadGrant, AccessError> {
        let tao = tao.ok_or(AccessError::TaoRequired)?;
        self.request_time(now, Some(tao), None, None)?;
        let loaded = self.metagraph()?;
        // An unregistered hotkey has no key, so its signature cannot verify.
        self.verify_proof(&loaded.metagraph, &tao.hotkey, Some(tao), String::new, "")?;
        let credentials = self.signing_credentials().await?;
        // The nonce is spent and one existence check counted before S3 is asked, so a 409
        // is not free and a copy of the request cannot ask again.
        let proof = Proof::Tao(tao);
        let nonce = self.replay_guard(&tao.hotkey, proof, now)?;
        self.count(
            Counter::UploadChecks(&tao.hotkey),
            self.policy.daily_upload_checks_per_miner,
            nonce,
            proof,
            now,
        )
        .await
        .map_err(|e| match e {
            AccessError::Quota(q) if !q.global => AccessError::Quota(QuotaRejection {
                upload_checks: true,
                ..q
            }),
            other => other,
        })?;
        let exists = tokio::time::timeout(
            self.policy.s3_operation_timeout,
            self.s3
                .head_object()
                .bucket(&self.location.bucket)
                .key(key)
                .send(),
        )
        .await
        .map_err(|_| AccessError::S3Timeout)?;
        match exists {
            Ok(_) => return Err(AccessError::FileExists),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            Err(e) => {
                return Err(AccessError::ObjectCheck {
                    key: key.to_owned(),
                    message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                });
            }
        }
        // The nonce is spent already: the grant itself is counted without it.
        let usage = self
            .count(
                Counter::Requests(&tao.hotkey),
                self.policy.daily_limit_per_miner,
                None,
                proof,
                now,
            )
            .await?;
        let signed_at: SystemTime = now.into();
        let expires_in = fit_lifetime(&credentials, self.policy.tao.upload_url_lifetime, signed_at);
        let folder = miner_folder(&tao.hotkey);
        let (url, fields, method) = match self.policy.tao.upload_method {
            UploadMethod::Post => {
                let mut spec = upload_spec(&folder, &credentials, signed_at, &self.policy.tao);
                spec.expires_in = expires_in;
                let form = presign_post_exact(&credentials, &self.location, &spec, key, signed_at);
                (form.url, form.fields, "POST")
            }
            UploadMethod::Put => (
                presign_put(
                    &credentials,
                    &self.location,
                    key,
                    PUT_CONTENT_TYPE,
                    signed_at,
                    expires_in,
                )?,
                FormFields::default(),
                "PUT",
            ),
        };
        Ok(FileUploadGrant {
            s3_key: key.to_owned(),
            url,
            fields,
            expires_in,
            method,
            usage,
        })
    }

    /// `/get-miner-list`: a ListObjectsV2 URL of one page (at most 1000 keys) of a
    /// miner's folder, after `continuation_token`.
    pub async fn grant_miner_page(
        &self,
        req: &ValidatorRequest<'_>,
        miner_hotkey: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<MinerPageGrant, AccessError> {
        if req.tao.is_none() {
            return Err(AccessError::TaoRequired);
        }
        let miner = parse_miner_hotkey(miner_hotkey)?;
        let token = s3_token(req)?;
        let (_, credentials, usage) = self
            .authorize_validator(req, |_| String::new(), now)
            .await?;
        let prefix = miner_folder(miner);
        let list_url = presign_list(
            &credentials,
            &self.location,
            ListQuery {
                prefix: &prefix,
                delimiter: None,
                max_keys: Some(MINER_PAGE_KEYS),
                continuation_token: token,
            },
            now.into(),
            fit_lifetime(&credentials, MINER_PAGE_LIFETIME, now.into()),
        )?;
        Ok(MinerPageGrant { list_url, usage })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_one_safe_path_segment() {
        for ok in ["job_1", "data.parquet", "a=b", "x-y.z"] {
            assert!(valid_segment(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", "a\\b", "%2e"] {
            assert!(!valid_segment(bad), "{bad:?}");
        }
        let hotkey = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        assert!(upload_key(hotkey, "j", &"f".repeat(900)).is_some());
        assert!(upload_key(hotkey, "j", &"f".repeat(1000)).is_none());
    }
}
