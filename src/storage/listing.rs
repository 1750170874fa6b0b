//! Server-side listing of "folders" (common prefixes) with ListObjectsV2, in bounded pages.

use aws_sdk_s3::Client;

/// Most keys one ListObjectsV2 page returns on AWS.
const S3_PAGE: usize = 1000;

/// A listing failed.
#[derive(Debug, thiserror::Error)]
#[error("S3 listing of {prefix:?} failed: {message}")]
pub struct ListError {
    /// The prefix being listed.
    pub prefix: String,
    /// The SDK's error, with its context.
    pub message: String,
}

/// At most `limit` folders of a listing, in S3's (byte) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPage {
    /// The folders, each ending in `/`.
    pub folders: Vec<String>,
    /// Whether more folders follow the last one.
    pub more: bool,
}

/// The `StartAfter` that skips `folder` (ending in `/`) and everything inside it: the
/// trailing `/` (0x2F) becomes `0` (0x30), which sorts after every key in the folder and
/// before every later folder, so S3 does not walk the folder's objects again.
fn after_folder(folder: &str) -> String {
    match folder.strip_suffix('/') {
        Some(stem) => format!("{stem}0"),
        None => folder.to_owned(),
    }
}

/// The common prefixes directly under `prefix` (delimiter `/`) that sort after `after`
/// (a folder of a previous page, or any key), at most `limit` of them. Reads S3 only until
/// `limit + 1` folders are known, so memory is bounded by `limit`, not by the bucket.
pub async fn list_folders_page(
    client: &Client,
    bucket: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<FolderPage, ListError> {
    let mut folders: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    let start_after = after.map(after_folder);
    loop {
        let wanted = (limit + 1 - folders.len()).min(S3_PAGE);
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .max_keys(i32::try_from(wanted).unwrap_or(1000))
            .set_start_after(start_after.clone())
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
                .filter_map(|p| p.prefix())
                .filter(|p| after.is_none_or(|a| *p > a))
                .map(str::to_owned),
        );
        if folders.len() > limit {
            folders.truncate(limit);
            return Ok(FolderPage {
                folders,
                more: true,
            });
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => {
                return Ok(FolderPage {
                    folders,
                    more: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_skips_the_folder_and_its_contents_but_no_later_folder() {
        let a = after_folder("data/hotkey=M/job_id=j1/");
        assert_eq!(a, "data/hotkey=M/job_id=j10");
        assert!("data/hotkey=M/job_id=j1/zzz.parquet" < a.as_str());
        assert!("data/hotkey=M/job_id=j1/\u{10FFFF}" < a.as_str());
        assert!("data/hotkey=M/job_id=j10/" > a.as_str());
        assert!("data/hotkey=M/job_id=j1a/" > a.as_str());
        assert!("data/hotkey=M/job_id=j2/" > a.as_str());
    }
}
