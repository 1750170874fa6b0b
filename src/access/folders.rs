//! Paging through miners' `job_id=` folders for `/get-folder-presigned-urls`: one page holds
//! at most [`MAX_JOB_FOLDERS_PER_PAGE`] folders, in S3's order (miner, then job), read
//! within one request's [`ListBudget`]. A continuation token names the position where the
//! page stopped, so the next request resumes strictly after the last key or folder read,
//! with no folder twice and none skipped, across miners, whatever the names.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use super::cursor::FolderCursor;
use super::validator::{
    DATA_PREFIX, FolderGrant, JobFolder, MINER_LIST_LIFETIME, MinerFolders, ValidatorRequest,
};
use super::{Access, AccessError, miner_folder};
use crate::auth::{Commitment, decode_ss58};
use crate::storage::fit_lifetime;
use crate::storage::listing::{
    FolderPage, ListBudget, ListError, MAX_LIST_CONCURRENCY, after_folder, list_folders_page,
};
use crate::storage::presign::{ListQuery, presign_list};

/// Most job folders in one `/get-folder-presigned-urls` answer.
pub const MAX_JOB_FOLDERS_PER_PAGE: usize = 1000;
/// Miner folders read from S3 at a time when no `miner_hotkeys` are given.
const MINER_BATCH: usize = 1000;
/// How many miners' job folders are listed at once.
const LIST_CONCURRENCY: usize = MAX_LIST_CONCURRENCY;

/// One page of job folders, grouped by miner in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFolderPage {
    /// Miner hotkey and its job folders on this page (none empty).
    pub miners: Vec<(String, Vec<String>)>,
    /// Where the next page starts; `None` only when S3 holds nothing after this page.
    pub next: Option<FolderCursor>,
}

/// How filling a page from a run of miners ended.
#[derive(Debug)]
enum Fill {
    /// Every miner was listed to its end and the page has room left.
    Open,
    /// The page ends here; the next one resumes after this position.
    Cut(String),
    /// The page filled exactly at the end of the run's last miner (this position is
    /// right after it): whether more follows depends on miners not in the run.
    FullAfter(String),
}

/// A miner's listing under way, and the budget it draws on.
type Listing = (
    String,
    JoinHandle<Result<FolderPage, ListError>>,
    Arc<ListBudget>,
);

/// Aborts listings still running when the page is complete or an error ends it.
struct Ahead(VecDeque<Listing>);

impl Drop for Ahead {
    fn drop(&mut self) {
        for (_, task, _) in &self.0 {
            task.abort();
        }
    }
}

/// The listing of one request: where it stands and what it may still read.
struct Walk<'a> {
    client: &'a Client,
    bucket: &'a str,
    cursor: Option<&'a FolderCursor>,
    limit: usize,
    budget: Arc<ListBudget>,
    page: JobFolderPage,
    count: usize,
    /// Whether a miner's listing has started in this request.
    started: bool,
}

impl Walk<'_> {
    /// Fills the page from `miners` (in order), listing up to [`LIST_CONCURRENCY`] of
    /// them at once.
    async fn fill(&mut self, miners: Vec<String>) -> Result<Fill, ListError> {
        let mut pending = miners.into_iter().peekable();
        let mut ahead = Ahead(VecDeque::new());
        loop {
            while ahead.0.len() < LIST_CONCURRENCY {
                let Some(miner) = pending.next() else { break };
                // The request's first listing has a share of its own, so listings running
                // beside it cannot spend everything before it moves the cursor.
                let budget = if self.started {
                    self.budget.clone()
                } else {
                    self.started = true;
                    Arc::new(self.budget.reserve())
                };
                let task_budget = budget.clone();
                let (client, bucket) = (self.client.clone(), self.bucket.to_owned());
                let prefix = format!("{}job_id=", miner_folder(&miner));
                let after = self.cursor.map(|c| c.position().to_owned());
                // No miner can need more than what is left of the page when it starts.
                let want = self.limit - self.count;
                let task = tokio::spawn(async move {
                    let budget = task_budget;
                    list_folders_page(&client, &bucket, &prefix, after.as_deref(), want, &budget)
                        .await
                });
                ahead.0.push_back((miner, task, budget));
            }
            let Some((miner, task, budget)) = ahead.0.pop_front() else {
                return Ok(Fill::Open);
            };
            let listed = task.await.map_err(|e| ListError {
                prefix: miner_folder(&miner),
                message: format!("listing task failed: {e}"),
            })??;
            if !Arc::ptr_eq(&budget, &self.budget) {
                self.budget.give_back(&budget);
            }
            let room = self.limit - self.count;
            let mut folders = listed.folders;
            let cut = folders.len() > room;
            folders.truncate(room);
            self.count += folders.len();
            let last = folders.last().map(|f| after_folder(f));
            if !folders.is_empty() {
                self.page.miners.push((miner.clone(), folders));
            }
            if cut {
                // Folders of this miner are left over: resume right after the last taken.
                return Ok(Fill::Cut(last.unwrap_or_default()));
            }
            if let Some(resume) = listed.resume {
                // The miner's listing stopped early (page or budget): resume where it did.
                return Ok(Fill::Cut(resume));
            }
            if self.count == self.limit {
                let after_miner = after_folder(&miner_folder(&miner));
                let more = !ahead.0.is_empty() || pending.peek().is_some();
                return Ok(if more {
                    Fill::Cut(after_miner)
                } else {
                    Fill::FullAfter(after_miner)
                });
            }
        }
    }

    /// Whether the miner `miner` still has folders after the cursor.
    fn still_ahead(&self, miner: &str) -> bool {
        self.cursor
            .is_none_or(|c| c.before_end_of(&miner_folder(miner)))
    }
}

/// Turns a stop position into the page's cursor. Every position comes from S3's own
/// names or the cursor, so one that is not a valid cursor cannot occur; it would end the
/// listing, so it is logged.
fn cursor_at(position: String) -> Option<FolderCursor> {
    match FolderCursor::at(position) {
        Ok(cursor) => Some(cursor),
        Err(_) => {
            tracing::error!("folder listing stopped at a position outside the data prefix");
            None
        }
    }
}

/// One page of at most `limit` job folders after `cursor`, over `only` (sorted and
/// deduplicated here) or else every miner folder under [`DATA_PREFIX`], reading S3
/// within `budget`.
pub async fn page_job_folders(
    client: &Client,
    bucket: &str,
    only: Option<&[String]>,
    cursor: Option<&FolderCursor>,
    limit: usize,
    budget: Arc<ListBudget>,
) -> Result<JobFolderPage, ListError> {
    let mut walk = Walk {
        client,
        bucket,
        cursor,
        limit,
        budget,
        page: JobFolderPage::default(),
        count: 0,
        started: false,
    };
    if let Some(list) = only {
        let mut miners: Vec<String> = list
            .iter()
            .filter(|m| walk.still_ahead(m))
            .cloned()
            .collect();
        miners.sort();
        miners.dedup();
        walk.page.next = match walk.fill(miners).await? {
            Fill::Cut(at) => cursor_at(at),
            Fill::Open | Fill::FullAfter(_) => None,
        };
        return Ok(walk.page);
    }
    // Resuming inside a miner's folder lists that miner's folder again.
    let mut after: Option<String> = cursor.map(|c| c.miners_position().to_owned());
    loop {
        // The miner list may use at most half of what is left, so the miners' own
        // listings always get to read: every request moves the cursor forward.
        let share = walk.budget.half();
        let batch = list_folders_page(
            client,
            bucket,
            DATA_PREFIX,
            after.as_deref(),
            MINER_BATCH,
            &share,
        )
        .await?;
        walk.budget.give_back(&share);
        let miners: Vec<String> = batch
            .folders
            .iter()
            .filter_map(|p| p.strip_prefix(DATA_PREFIX)?.strip_suffix('/'))
            // Only miners' folders: anything else under the prefix is not a miner's.
            .filter(|m| decode_ss58(m).is_ok() && walk.still_ahead(m))
            .map(str::to_owned)
            .collect();
        let found = !batch.folders.is_empty();
        match walk.fill(miners).await? {
            Fill::Cut(at) => {
                walk.page.next = cursor_at(at);
                return Ok(walk.page);
            }
            Fill::FullAfter(at) => {
                walk.page.next = batch.resume.and_then(|_| cursor_at(at));
                return Ok(walk.page);
            }
            Fill::Open => match batch.resume {
                None => return Ok(walk.page),
                // Nothing found in what the budget allowed: the page ends where it stopped.
                Some(resume) if !found => {
                    walk.page.next = cursor_at(resume);
                    return Ok(walk.page);
                }
                Some(resume) => after = Some(resume),
            },
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
                Arc::new(ListBudget::default()),
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
