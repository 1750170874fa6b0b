//! Server-side listing of "folders" (common prefixes) with ListObjectsV2, under a budget.
//!
//! A listing is read on a client's behalf, and the bucket's names are chosen by miners who
//! gain when validators see less of each other. So a listing never trusts the names to be
//! few or tame:
//! - every call of one request draws on one [`ListBudget`]: at most
//!   [`MAX_LIST_CALLS`] ListObjectsV2 calls and [`MAX_LIST_ENTRIES`] keys and folders read,
//!   however many plain objects (which are no folders) lie in the way;
//! - a listing that stops early says where it stopped, as a `StartAfter` position that
//!   resumes strictly after the last key or folder it read, whatever that name is;
//! - names come back URL-encoded (`encoding-type=url`) and are decoded here, so no key a
//!   miner can write (control characters, U+FFFF) can break S3's XML answer.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::types::EncodingType;

/// Most keys one ListObjectsV2 page returns on AWS.
const S3_PAGE: usize = 1000;
/// Most ListObjectsV2 calls one request makes (a page per miner, so a subnet's 256
/// miners and the miner list fit in one request).
pub const MAX_LIST_CALLS: usize = 300;
/// Keys and folders one request reads from S3, all calls together (5 full pages), before
/// it starts no more calls; calls already running may each add a page, so a request reads
/// at most this plus [`MAX_LIST_CONCURRENCY`] pages (13,000).
pub const MAX_LIST_ENTRIES: usize = 5000;
/// Listings one request runs at once.
pub const MAX_LIST_CONCURRENCY: usize = 8;

/// A listing failed.
#[derive(Debug, thiserror::Error)]
#[error("S3 listing of {prefix:?} failed: {message}")]
pub struct ListError {
    /// The prefix being listed.
    pub prefix: String,
    /// The SDK's error, with its context.
    pub message: String,
}

/// What one request may still read from S3, shared by its concurrent listings.
#[derive(Debug)]
pub struct ListBudget {
    calls: AtomicUsize,
    entries: AtomicUsize,
    /// Drawn on once this one is spent (for a share reserved out of a larger budget).
    then: Option<Arc<ListBudget>>,
}

impl Default for ListBudget {
    fn default() -> Self {
        Self::new(MAX_LIST_CALLS, MAX_LIST_ENTRIES)
    }
}

impl ListBudget {
    /// A budget of `calls` ListObjectsV2 calls reading at most `entries` keys and folders.
    pub fn new(calls: usize, entries: usize) -> Self {
        Self {
            calls: AtomicUsize::new(calls),
            entries: AtomicUsize::new(entries),
            then: None,
        }
    }

    /// Takes one call, reading at most `wanted` entries (and one S3 page), from this
    /// budget or else the one it falls back on; `None` when both are spent. Entries are
    /// charged as read ([`ListBudget::spend`] on the budget returned), not held while a
    /// call runs, so concurrent listings never starve each other of a grant: calls in
    /// flight when the entries run out may each add one page.
    fn take(&self, wanted: usize) -> Option<(usize, &ListBudget)> {
        if self.entries.load(Ordering::SeqCst) > 0
            && self
                .calls
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
        {
            return Some((wanted.min(S3_PAGE), self));
        }
        self.then.as_deref()?.take(wanted)
    }

    /// Charges `entries` read by a call this budget granted.
    fn spend(&self, entries: usize) {
        let _ = self
            .entries
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                Some(left.saturating_sub(entries))
            });
    }

    /// Moves half of what is left (rounded down) into a budget of its own, so a listing
    /// that runs first leaves at least as much to those after it.
    pub fn half(&self) -> Self {
        Self::new(
            take_half(&self.calls, false),
            take_half(&self.entries, false),
        )
    }

    /// Reserves half of what is left (rounded up, so at least one call while one is left)
    /// for the listing that must move the cursor; once spent it draws on the rest.
    pub fn reserve(self: &Arc<Self>) -> Self {
        Self {
            then: Some(self.clone()),
            ..Self::new(take_half(&self.calls, true), take_half(&self.entries, true))
        }
    }

    /// Takes back what `other` (made by [`ListBudget::half`]) did not spend.
    pub fn give_back(&self, other: &Self) {
        self.calls
            .fetch_add(other.calls.swap(0, Ordering::SeqCst), Ordering::SeqCst);
        self.entries
            .fetch_add(other.entries.swap(0, Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The calls left.
    pub fn calls_left(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Takes half of `counter` (rounded up or down) and returns it.
fn take_half(counter: &AtomicUsize, round_up: bool) -> usize {
    let mut taken = 0;
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
        taken = if round_up { left.div_ceil(2) } else { left / 2 };
        Some(left - taken)
    });
    taken
}

/// At most `limit` folders of a listing, in S3's (byte) order, and where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPage {
    /// The folders, each ending in `/`.
    pub folders: Vec<String>,
    /// `None` when the listing reached the end of the prefix; otherwise the `StartAfter`
    /// that resumes right after the last key or folder read (more may follow).
    pub resume: Option<String>,
}

/// The `StartAfter` that skips `folder` (ending in `/`) and everything inside it: the
/// trailing `/` (0x2F) becomes `0` (0x30), which sorts after every key in the folder and
/// before every later folder, so S3 does not walk the folder's objects again.
pub fn after_folder(folder: &str) -> String {
    match folder.strip_suffix('/') {
        Some(stem) => format!("{stem}0"),
        None => folder.to_owned(),
    }
}

/// A name of a listing answered with `encoding-type=url`, decoded (`+` is a space, as
/// S3 encodes it; a literal `+` comes as `%2B`). A name that does not decode to UTF-8
/// is kept as sent.
pub fn decode(name: &str) -> String {
    let spaced: Cow<'_, str> = if name.contains('+') {
        Cow::Owned(name.replace('+', " "))
    } else {
        Cow::Borrowed(name)
    };
    match percent_encoding::percent_decode_str(&spaced).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => name.to_owned(),
    }
}

/// The common prefixes directly under `prefix` (delimiter `/`) that sort after `after`
/// (a `StartAfter` position: a previous page's `resume`), at most `limit` of them, read
/// within `budget`. Memory is bounded by `limit` and the budget, not by the bucket.
pub async fn list_folders_page(
    client: &Client,
    bucket: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    budget: &ListBudget,
) -> Result<FolderPage, ListError> {
    let mut folders: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    // Everything up to here has been read: the position a cut page resumes from.
    // (A position before the prefix is the same as none.)
    let after = after.filter(|a| *a >= prefix);
    let mut read_to: Option<String> = after.map(str::to_owned);
    let stopped_at =
        |read_to: &Option<String>| Some(read_to.clone().unwrap_or_else(|| prefix.to_owned()));
    loop {
        if folders.len() >= limit {
            return Ok(FolderPage {
                resume: stopped_at(&read_to),
                folders,
            });
        }
        let room = (limit - folders.len()).min(S3_PAGE);
        let Some((granted, charged)) = budget.take(room) else {
            return Ok(FolderPage {
                resume: stopped_at(&read_to),
                folders,
            });
        };
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .encoding_type(EncodingType::Url)
            .max_keys(i32::try_from(granted).unwrap_or(1000))
            .set_start_after(after.filter(|_| token.is_none()).map(str::to_owned))
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| ListError {
                prefix: prefix.to_owned(),
                message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            })?;
        let keys: Vec<String> = page
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .map(decode)
            .collect();
        let prefixes: Vec<String> = page
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .map(decode)
            .collect();
        charged.spend(keys.len() + prefixes.len());
        let ends = keys
            .last()
            .cloned()
            .into_iter()
            .chain(prefixes.last().map(|p| after_folder(p)));
        for end in ends {
            if read_to.as_ref().is_none_or(|r| end > *r) {
                read_to = Some(end);
            }
        }
        folders.extend(
            prefixes
                .into_iter()
                .filter(|p| after.is_none_or(|a| p.as_str() > a)),
        );
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => {
                return Ok(FolderPage {
                    folders,
                    resume: None,
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
        let empty = after_folder("data/hotkey=M/job_id=/");
        assert!("data/hotkey=M/job_id=/f" < empty.as_str());
        assert!("data/hotkey=M/job_id=-/" < "data/hotkey=M/job_id=/");
        assert!("data/hotkey=M/job_id=0/" > empty.as_str());
        assert!("data/hotkey=M/job_id=0zz/" > empty.as_str());
    }

    #[test]
    fn names_decode_as_s3_encodes_them() {
        assert_eq!(decode("a%2Bb+c%2F%EF%BF%BF"), "a+b c/\u{FFFF}");
        assert_eq!(decode("job_id=%01/"), "job_id=\u{1}/");
        assert_eq!(decode("%FF"), "%FF");
    }

    #[test]
    fn a_budget_grants_no_more_calls_than_it_holds_and_stops_once_its_entries_are_read() {
        let budget = ListBudget::new(3, 2500);
        for _ in 0..3 {
            let (granted, charged) = budget.take(5000).expect("a call");
            assert_eq!(granted, 1000, "one S3 page at most");
            charged.spend(10);
        }
        assert!(budget.take(1000).is_none(), "three calls spent");
        let budget = ListBudget::new(10, 1500);
        budget.take(1000).expect("a call").1.spend(1000);
        // Entries are charged as read: a second call may start, a third may not.
        budget.take(1000).expect("a call").1.spend(1000);
        assert!(budget.take(1000).is_none(), "entries spent");
        assert_eq!(budget.calls_left(), 8);
        let budget = ListBudget::new(3, 5);
        let first = budget.half();
        first.take(10).expect("its one call").1.spend(2);
        assert!(first.take(10).is_none(), "one call");
        budget.give_back(&first);
        budget.take(10).expect("a call").1.spend(3);
        assert!(budget.take(10).is_none(), "entries spent");
        let last = Arc::new(ListBudget::new(1, 1));
        assert!(last.half().take(1).is_none());
        let reserved = last.reserve();
        assert!(reserved.take(1).is_some());
        assert!(reserved.take(1).is_none());
        let shared = Arc::new(ListBudget::new(4, 4000));
        let reserved = shared.reserve();
        for _ in 0..4 {
            let (_, charged) = reserved.take(1000).expect("its half, then the rest");
            charged.spend(1000);
        }
        assert!(reserved.take(1000).is_none());
    }
}
