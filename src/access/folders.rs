//! Paging through miners' `job_id=` folders for `/get-folder-presigned-urls`: one page holds
//! at most [`MAX_JOB_FOLDERS_PER_PAGE`] folders, in S3's order (miner, then job), and an
//! opaque continuation token names the last folder of a page so the next request resumes
//! right after it, with no folder twice and none skipped, across miners.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use aws_sdk_s3::Client;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use super::validator::{
    DATA_PREFIX, FolderGrant, JobFolder, MAX_KEY_BYTES, MINER_LIST_LIFETIME, MinerFolders,
    ValidatorRequest,
};
use super::{Access, AccessError, miner_folder};
use crate::auth::{Commitment, decode_ss58};
use crate::storage::fit_lifetime;
use crate::storage::listing::{FolderPage, ListError, list_folders_page};
use crate::storage::presign::{ListQuery, presign_list};

/// Most job folders in one `/get-folder-presigned-urls` answer.
pub const MAX_JOB_FOLDERS_PER_PAGE: usize = 1000;
/// Miner folders read from S3 at a time when no `miner_hotkeys` are given.
const MINER_BATCH: usize = 1000;
/// How many miners' job folders are listed at once.
const LIST_CONCURRENCY: usize = 8;
/// Marks the token format, so a later format can be told apart.
const TOKEN_VERSION: &str = "f1.";

/// Where a folder page resumes: right after this job folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCursor {
    /// The miner of the last folder returned.
    pub miner: String,
    /// The last folder returned, `data/hotkey={miner}/job_id={job}/`.
    pub folder: String,
}

/// A continuation token that is not one this service issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid continuation_token")]
pub struct BadToken;

impl FolderCursor {
    /// The cursor after `folder`, if it is a job folder of a miner.
    pub fn after(folder: &str) -> Option<Self> {
        let rest = folder.strip_prefix(DATA_PREFIX)?;
        let (miner, job) = rest.split_once('/')?;
        let job_id = job.strip_prefix("job_id=")?.strip_suffix('/')?;
        if folder.len() > MAX_KEY_BYTES
            || job_id.is_empty()
            || job_id.contains('/')
            || decode_ss58(miner).is_err()
        {
            return None;
        }
        Some(Self {
            miner: miner.to_owned(),
            folder: folder.to_owned(),
        })
    }

    /// The opaque token a client sends back as `continuation_token`.
    pub fn token(&self) -> String {
        format!("{TOKEN_VERSION}{}", URL_SAFE_NO_PAD.encode(&self.folder))
    }

    /// Reads a token made by [`FolderCursor::token`].
    pub fn parse(token: &str) -> Result<Self, BadToken> {
        let encoded = token.strip_prefix(TOKEN_VERSION).ok_or(BadToken)?;
        if encoded.len() > 4 * MAX_KEY_BYTES {
            return Err(BadToken);
        }
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| BadToken)?;
        let folder = String::from_utf8(bytes).map_err(|_| BadToken)?;
        Self::after(&folder).ok_or(BadToken)
    }
}

/// One page of job folders, grouped by miner in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFolderPage {
    /// Miner hotkey and its job folders on this page (none empty).
    pub miners: Vec<(String, Vec<String>)>,
    /// Where the next page starts, when more folders may follow.
    pub next: Option<FolderCursor>,
}

/// Aborts listings still running when the page is complete or an error ends it.
struct Ahead(VecDeque<(String, JoinHandle<Result<FolderPage, ListError>>)>);

impl Drop for Ahead {
    fn drop(&mut self) {
        for (_, task) in &self.0 {
            task.abort();
        }
    }
}

/// Fills a page from `miners` (in order), listing up to [`LIST_CONCURRENCY`] of them at
/// once. Returns whether the page is full.
async fn fill(
    client: &Client,
    bucket: &str,
    miners: impl IntoIterator<Item = String>,
    cursor: Option<&FolderCursor>,
    limit: usize,
    page: &mut JobFolderPage,
    count: &mut usize,
) -> Result<bool, ListError> {
    let mut pending = miners.into_iter().peekable();
    let mut ahead = Ahead(VecDeque::new());
    loop {
        while ahead.0.len() < LIST_CONCURRENCY {
            let Some(miner) = pending.next() else { break };
            let after = cursor
                .filter(|c| c.miner == miner)
                .map(|c| c.folder.clone());
            let (client, bucket, prefix) = (
                client.clone(),
                bucket.to_owned(),
                format!("{}job_id=", miner_folder(&miner)),
            );
            // No miner can need more than what is left of the page when it starts.
            let want = limit - *count;
            let task = tokio::spawn(async move {
                list_folders_page(&client, &bucket, &prefix, after.as_deref(), want).await
            });
            ahead.0.push_back((miner, task));
        }
        let Some((miner, task)) = ahead.0.pop_front() else {
            return Ok(false);
        };
        let listed = task.await.map_err(|e| ListError {
            prefix: miner_folder(&miner),
            message: format!("listing task failed: {e}"),
        })??;
        let room = limit - *count;
        let mut folders = listed.folders;
        let cut = folders.len() > room;
        folders.truncate(room);
        *count += folders.len();
        let full = *count == limit;
        let last = folders.last().cloned();
        if !folders.is_empty() {
            page.miners.push((miner, folders));
        }
        if full {
            let more = cut || listed.more || !ahead.0.is_empty() || pending.peek().is_some();
            page.next = more
                .then(|| last.and_then(|f| FolderCursor::after(&f)))
                .flatten();
            return Ok(true);
        }
    }
}

/// One page of at most `limit` job folders, after `cursor`, over `only` (sorted and
/// deduplicated here) or else every miner folder under [`DATA_PREFIX`].
pub async fn page_job_folders(
    client: &Client,
    bucket: &str,
    only: Option<&[String]>,
    cursor: Option<&FolderCursor>,
    limit: usize,
) -> Result<JobFolderPage, ListError> {
    let mut page = JobFolderPage::default();
    let mut count = 0;
    let from = cursor.map(|c| c.miner.as_str());
    if let Some(list) = only {
        let mut miners: Vec<String> = list
            .iter()
            .filter(|m| from.is_none_or(|f| m.as_str() >= f))
            .cloned()
            .collect();
        miners.sort();
        miners.dedup();
        fill(client, bucket, miners, cursor, limit, &mut page, &mut count).await?;
        return Ok(page);
    }
    // Miner folders sort as `data/hotkey={miner}/`; starting after `data/hotkey={miner}`
    // (no slash) keeps the cursor's miner, whose folders continue after the cursor.
    let mut after: Option<String> = from.map(|m| format!("{DATA_PREFIX}{m}"));
    loop {
        let batch =
            list_folders_page(client, bucket, DATA_PREFIX, after.as_deref(), MINER_BATCH).await?;
        after = batch.folders.last().cloned();
        let miners: Vec<String> = batch
            .folders
            .iter()
            .filter_map(|p| p.strip_prefix(DATA_PREFIX)?.strip_suffix('/'))
            // Only miners' folders: anything else under the prefix is not a miner's.
            .filter(|m| decode_ss58(m).is_ok())
            .map(str::to_owned)
            .collect();
        let full = fill(client, bucket, miners, cursor, limit, &mut page, &mut count).await?;
        if full {
            if page.next.is_none() && batch.more {
                page.next = page
                    .miners
                    .last()
                    .and_then(|(_, f)| f.last())
                    .and_then(|f| FolderCursor::after(f));
            }
            return Ok(page);
        }
        if !batch.more {
            return Ok(page);
        }
    }
}

impl Access {
    /// `/get-folder-presigned-urls`: one page of miners' `job_id=` folders, read from S3,
    /// with a list URL per folder. `miner_hotkeys` narrows it to those miners; the request's
    /// `continuation_token` resumes after the previous page.
    pub async fn grant_folders(
        &self,
        req: &ValidatorRequest<'_>,
        miner_hotkeys: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> Result<FolderGrant, AccessError> {
        if let Some(miners) = miner_hotkeys {
            for m in miners {
                decode_ss58(m).map_err(AccessError::BadMinerHotkey)?;
            }
        }
        let cursor = req
            .continuation_token
            .filter(|t| !t.is_empty())
            .map(FolderCursor::parse)
            .transpose()
            .map_err(|e| AccessError::BadParameter(e.to_string()))?;
        let (_, credentials, usage) = self
            .authorize_validator(
                req,
                |timestamp| {
                    Commitment::ValidatorFolders {
                        hotkey: req.hotkey,
                        timestamp,
                    }
                    .message()
                },
                now,
            )
            .await?;
        let listing = tokio::time::timeout(
            self.policy.s3_operation_timeout,
            page_job_folders(
                &self.s3,
                &self.location.bucket,
                miner_hotkeys,
                cursor.as_ref(),
                MAX_JOB_FOLDERS_PER_PAGE,
            ),
        )
        .await
        .map_err(|_| AccessError::S3Timeout)??;
        let at: SystemTime = now.into();
        let expires_in = fit_lifetime(&credentials, MINER_LIST_LIFETIME, at);
        let mut miners = BTreeMap::new();
        for (miner, paths) in listing.miners {
            let miner_path = miner_folder(&miner);
            let mut job_folders = Vec::with_capacity(paths.len());
            for path in paths {
                let Some(job_id) = path
                    .strip_prefix(&miner_path)
                    .and_then(|rest| rest.strip_prefix("job_id="))
                    .and_then(|rest| rest.strip_suffix('/'))
                    .map(str::to_owned)
                else {
                    continue;
                };
                let presigned_url = presign_list(
                    &credentials,
                    &self.location,
                    ListQuery::prefix(&path),
                    at,
                    expires_in,
                )?;
                job_folders.push(JobFolder {
                    job_id,
                    path,
                    presigned_url,
                });
            }
            miners.insert(
                miner,
                MinerFolders {
                    miner_path,
                    job_folders,
                },
            );
        }
        Ok(FolderGrant {
            miners,
            next_continuation_token: listing.next.map(|c| c.token()),
            expires_in,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINER: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    #[test]
    fn a_token_round_trips_and_nothing_else_is_accepted() {
        let folder = format!("{DATA_PREFIX}{MINER}/job_id=j 1/");
        let cursor = FolderCursor::after(&folder).expect("a job folder");
        let token = cursor.token();
        assert_eq!(FolderCursor::parse(&token), Ok(cursor));
        for bad in [
            "",
            "f1.",
            "f1.!!!",
            "abc",
            &URL_SAFE_NO_PAD.encode(&folder),
            &format!("f1.{}", URL_SAFE_NO_PAD.encode("data/hotkey=5X/job_id=a/")),
            &format!(
                "f1.{}",
                URL_SAFE_NO_PAD.encode(format!("{DATA_PREFIX}{MINER}/other/"))
            ),
            &format!(
                "f1.{}",
                URL_SAFE_NO_PAD.encode(format!("{DATA_PREFIX}{MINER}/job_id=/"))
            ),
            &format!("f1.{}", "A".repeat(5000)),
        ] {
            assert_eq!(FolderCursor::parse(bad), Err(BadToken), "{bad:?}");
        }
    }
}
