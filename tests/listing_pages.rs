//! The folder listing under names a hostile miner chooses, against the in-process S3:
//! whatever the job folders are called (empty, `-`, `~`, `%`, `+`, spaces, multi-byte
//! UTF-8, U+FFFF) and whatever plain objects lie between them, with any page size and any
//! read budget, the union of all pages is exactly the set of folders, none comes twice,
//! and only a `null` cursor ends the listing, only once S3 holds nothing after it.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use s3_auth_api::access::cursor::FolderCursor;
use s3_auth_api::access::folders::page_job_folders;
use s3_auth_api::storage::listing::ListBudget;
use support::{BUCKET, S3Server, TestKey};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Three miners, in S3's order of their folders.
fn miners() -> &'static Vec<String> {
    static MINERS: OnceLock<Vec<String>> = OnceLock::new();
    MINERS.get_or_init(|| {
        let mut m: Vec<String> = [11u8, 12, 13]
            .iter()
            .map(|s| TestKey::from_seed(*s).ss58)
            .collect();
        m.sort();
        m
    })
}

/// Job ids a miner may choose, the awkward ones first.
fn job_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("-".to_owned()),
        Just("~".to_owned()),
        Just("0".to_owned()),
        Just("%2F".to_owned()),
        Just("a+b c".to_owned()),
        Just("é".to_owned()),
        Just("\u{FFFF}".to_owned()),
        "[-~0-9a-z%é]{1,4}",
    ]
}

/// One object: (miner index, job id, whether it is a plain object next to the folders
/// rather than a file inside a folder).
fn object() -> impl Strategy<Value = (usize, String, bool)> {
    (0..3usize, job_id(), prop::bool::weighted(0.3))
}

/// The key of an object of `object()`.
fn key((miner, job, loose): &(usize, String, bool)) -> String {
    let m = &miners()[*miner];
    if *loose {
        format!("data/hotkey={m}/job_id={job}")
    } else {
        format!("data/hotkey={m}/job_id={job}/f")
    }
}

/// Pages the listing to its end; returns every page's folders.
async fn pages(
    s3: &S3Server,
    only: Option<&[String]>,
    limit: usize,
    calls: usize,
    entries: usize,
) -> Result<Vec<Vec<String>>, TestCaseError> {
    let mut all = Vec::new();
    let mut cursor: Option<FolderCursor> = None;
    for _ in 0..400 {
        let page = page_job_folders(
            &s3.client,
            BUCKET,
            only,
            cursor.as_ref(),
            limit,
            Arc::new(ListBudget::new(calls, entries)),
        )
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let folders: Vec<String> = page.miners.into_iter().flat_map(|(_, f)| f).collect();
        prop_assert!(folders.len() <= limit);
        all.push(folders);
        match page.next {
            None => return Ok(all),
            Some(next) => {
                // A token round-trips and always moves forward.
                let parsed = FolderCursor::parse(&next.token());
                prop_assert_eq!(parsed.as_ref(), Ok(&next));
                if let Some(prev) = &cursor {
                    prop_assert!(
                        next.position() > prev.position(),
                        "the cursor went back: {:?} then {:?} after {:?}",
                        prev,
                        next,
                        all
                    );
                }
                cursor = Some(next);
            }
        }
    }
    Err(TestCaseError::fail("the listing never ended"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_folder_is_listed_once_whatever_the_names_page_sizes_and_budgets(
        objects in prop::collection::vec(object(), 1..24),
        limit in 1..5usize,
        calls in 2..6usize,
        entries in 2..7usize,
        narrowed in any::<bool>(),
    ) {
        runtime().block_on(async {
            let s3 = S3Server::start().await;
            let keys: BTreeSet<String> = objects.iter().map(key).collect();
            s3.put_many(keys.iter().cloned().collect()).await;
            let expected: BTreeSet<String> = objects
                .iter()
                .filter(|(_, _, loose)| !loose)
                .map(|(m, job, _)| format!("data/hotkey={}/job_id={job}/", miners()[*m]))
                .collect();
            let only: Vec<String> = miners().clone();
            let pages = pages(&s3, narrowed.then_some(&only[..]), limit, calls, entries).await?;
            let flat: Vec<&String> = pages.iter().flatten().collect();
            let union: BTreeSet<String> = flat.iter().map(|f| (*f).clone()).collect();
            prop_assert_eq!(flat.len(), union.len(), "a folder came twice: {:?}", pages);
            prop_assert_eq!(&union, &expected, "pages: {:?}", pages);
            // In S3's order across pages.
            let mut sorted: Vec<&String> = flat.clone();
            sorted.sort();
            prop_assert_eq!(flat, sorted);
            Ok(())
        })?;
    }
}

/// The first page of every miner's folders, at most `limit`, with a request's budget.
async fn first_page(s3: &S3Server, limit: usize) -> s3_auth_api::access::folders::JobFolderPage {
    page_job_folders(
        &s3.client,
        BUCKET,
        None,
        None,
        limit,
        Arc::new(ListBudget::default()),
    )
    .await
    .expect("page")
}

#[tokio::test]
async fn a_listing_with_nothing_after_its_cursor_ends_with_null() {
    let s3 = S3Server::start().await;
    let m = &miners()[0];
    s3.put_many(vec![format!("data/hotkey={m}/job_id=a/f")])
        .await;
    let page = first_page(&s3, 10).await;
    assert_eq!(page.miners.len(), 1);
    assert_eq!(page.next, None, "S3 holds nothing more");
    // An empty bucket too.
    let empty = S3Server::start().await;
    let page = first_page(&empty, 10).await;
    assert!(page.miners.is_empty() && page.next.is_none());
}

#[tokio::test]
async fn a_subnets_worth_of_miners_lists_in_one_request() {
    let root = tempfile::tempdir().expect("tempdir");
    let miners: Vec<String> = (1..=200u8).map(|i| TestKey::from_seed(i).ss58).collect();
    let keys: Vec<String> = miners
        .iter()
        .flat_map(|m| (0..4).map(move |j| format!("data/hotkey={m}/job_id=j{j}/f")))
        .collect();
    s3_auth_api::dev::aws_like::index::seed(root.path(), BUCKET, keys, b"x").expect("seed");
    let s3 = S3Server::start_in(root.path()).await;
    let page = first_page(&s3, 1000).await;
    let folders: usize = page.miners.iter().map(|(_, f)| f.len()).sum();
    assert_eq!((page.miners.len(), folders), (200, 800));
    assert_eq!(
        page.next, None,
        "concurrent listings left none without a call"
    );
}
