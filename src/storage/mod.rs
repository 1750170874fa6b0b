//! S3 access: where the bucket is, which credentials sign, POST policies for uploads and
//! presigned GET URLs for reads. Signing is local (no S3 round trip).

pub mod credentials;
pub mod health;
pub mod listing;
pub mod post_policy;
pub mod presign;
pub mod secrets;
pub mod signing_key;

pub use credentials::{CredentialError, CredentialSource, fit_lifetime};
pub use health::S3Health;
pub use listing::{FolderPage, ListError, list_folders_page};
pub use post_policy::{PostPolicyForm, PostPolicySpec};
pub use presign::PresignError;

/// Where the bucket is and how clients address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLocation {
    /// Bucket name.
    pub bucket: String,
    /// Region used in signatures.
    pub region: String,
    /// Endpoint that clients are told, without a trailing slash. `None` means AWS S3
    /// with virtual-hosted URLs; `Some` means path-style URLs under this endpoint.
    pub public_endpoint: Option<String>,
}

impl BucketLocation {
    /// The URL a POST upload goes to: `https://{bucket}.s3.{region}.amazonaws.com` on
    /// The bucket `config` names (`S3_BUCKET`, `S3_REGION`, `S3_PUBLIC_ENDPOINT_URL`).
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            bucket: config.s3_bucket.clone(),
            region: config.s3_region.clone(),
            public_endpoint: config.s3_public_endpoint_url.clone(),
        }
    }

    /// AWS, `{endpoint}/{bucket}` for a custom endpoint.
    pub fn upload_url(&self) -> String {
        match &self.public_endpoint {
            None => format!("https://{}.s3.{}.amazonaws.com", self.bucket, self.region),
            Some(endpoint) => format!("{endpoint}/{}", self.bucket),
        }
    }

    /// The URL (scheme, host, path) of an object key, or of the bucket when `key` is empty.
    /// The key is percent-encoded as S3 expects (slashes kept).
    pub fn object_url(&self, key: &str) -> String {
        let encoded = presign::encode_key(key);
        match &self.public_endpoint {
            None => format!(
                "https://{}.s3.{}.amazonaws.com/{encoded}",
                self.bucket, self.region
            ),
            Some(endpoint) => format!("{endpoint}/{}/{encoded}", self.bucket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_aws_and_custom_endpoints() {
        let aws = BucketLocation {
            bucket: "b".into(),
            region: "us-east-2".into(),
            public_endpoint: None,
        };
        assert_eq!(aws.upload_url(), "https://b.s3.us-east-2.amazonaws.com");
        assert_eq!(
            aws.object_url("data/a b.parquet"),
            "https://b.s3.us-east-2.amazonaws.com/data/a%20b.parquet"
        );
        let custom = BucketLocation {
            public_endpoint: Some("http://127.0.0.1:9000".into()),
            ..aws
        };
        assert_eq!(custom.upload_url(), "http://127.0.0.1:9000/b");
        assert_eq!(custom.object_url(""), "http://127.0.0.1:9000/b/");
    }
}
