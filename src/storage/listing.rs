//! Server-side listing of "folders" (common prefixes) with ListObjectsV2, paginated.

use aws_sdk_s3::Client;

/// A listing failed.
#[derive(Debug, thiserror::Error)]
#[error("S3 listing of {prefix:?} failed: {message}")]
pub struct ListError {
    /// The prefix being listed.
    pub prefix: String,
    /// The SDK's error, with its context.
    pub message: String,
}

/// Every common prefix directly under `prefix` (delimiter `/`), following continuation
/// tokens until the listing ends.
pub async fn list_folders(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, ListError> {
    let mut folders = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| ListError {
                prefix: prefix.to_owned(),
                message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            })?;
        folders.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(folders)
}
