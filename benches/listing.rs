//! One `/get-folder-presigned-urls` page read from the embedded S3 server, with and without
//! 20,000 plain objects beside one miner's job folders: the time of a page and, printed
//! once per case, the ListObjectsV2 calls it made (each request reads within
//! `MAX_LIST_CALLS` calls and `MAX_LIST_ENTRIES` keys and folders).
//!
//! Run: `cargo bench --bench listing`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use s3_auth_api::access::folders::{MAX_JOB_FOLDERS_PER_PAGE, page_job_folders};
use s3_auth_api::auth::encode_ss58;
use s3_auth_api::storage::listing::{ListBudget, MAX_LIST_CALLS};

const BUCKET: &str = "bench-bucket";
const KEY: &str = "bench-access-key";
const SECRET: &str = "bench-secret-key";
/// Miners with job folders, as on a full subnet.
const MINERS: u8 = 64;
/// Job folders per miner.
const JOBS: usize = 8;

/// A bucket of `MINERS` miners with `JOBS` folders each, and `loose` plain objects next
/// to the first miner's folders; an SDK client of a server over it.
async fn bucket(root: &std::path::Path, loose: usize) -> aws_sdk_s3::Client {
    let miners: Vec<String> = (1..=MINERS).map(|i| encode_ss58(&[i; 32])).collect();
    let first = miners.iter().min().cloned().unwrap_or_default();
    let mut keys: Vec<String> = miners
        .iter()
        .flat_map(|m| (0..JOBS).map(move |j| format!("data/hotkey={m}/job_id=j{j}/f")))
        .collect();
    keys.extend((0..loose).map(|i| format!("data/hotkey={first}/job_id=~loose{i:05}")));
    s3_auth_api::dev::aws_like::index::seed(root, BUCKET, keys, &[1; 1024]).expect("seed");
    let (addr, _task) = s3_auth_api::dev::start_embedded_s3(
        "127.0.0.1:0".parse().expect("addr"),
        root,
        &[BUCKET],
        KEY,
        SECRET,
    )
    .await
    .expect("embedded S3");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            KEY, SECRET, None, None, "bench",
        ))
        .endpoint_url(format!("http://{addr}"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("folder_page");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for loose in [0usize, 20_000] {
        let root = tempfile::tempdir().expect("tempdir");
        let client = rt.block_on(bucket(root.path(), loose));
        let page = || async {
            let budget = Arc::new(ListBudget::default());
            let page = page_job_folders(
                &client,
                BUCKET,
                None,
                None,
                MAX_JOB_FOLDERS_PER_PAGE,
                budget.clone(),
            )
            .await
            .expect("page");
            (page, MAX_LIST_CALLS - budget.calls_left())
        };
        let (first, calls) = rt.block_on(page());
        let folders: usize = first.miners.iter().map(|(_, f)| f.len()).sum();
        println!(
            "folder_page/{loose}_loose: first page {folders} folders, {calls} ListObjectsV2 calls, more: {}",
            first.next.is_some()
        );
        group.bench_function(format!("{loose}_loose"), |b| b.iter(|| rt.block_on(page())));
    }
    group.finish();
}

criterion_group!(listing, benches);
criterion_main!(listing);
