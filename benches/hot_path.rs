//! The per-request work, piece by piece: SS58 decoding, sr25519 verification (bare and
//! the `<Bytes>` retry), the POST policy, list and GET presigning, the in-process quota
//! check (bare, and with a replay record among 100,000 live ones), a metagraph lookup,
//! body parsing and response serialisation.
//!
//! Run: `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use criterion::{Criterion, criterion_group, criterion_main};
use s3_auth_api::api::miner::{FolderAccessResponse, StructureInfo};
use s3_auth_api::auth::{decode_ss58, verify_signature, verify_with_key};
use s3_auth_api::keys::SigningKey;
use s3_auth_api::loadgen::BenchKeys;
use s3_auth_api::metagraph::Metagraph;
use s3_auth_api::quota::{MemoryStore, OnRedisError, QuotaCheck, QuotaStore, Quotas, ReplayGuard};
use s3_auth_api::storage::post_policy::presign_post;
use s3_auth_api::storage::presign::{ListQuery, presign_list, presign_object};
use s3_auth_api::storage::{BucketLocation, PostPolicySpec};

fn benches(c: &mut Criterion) {
    let key = SigningKey::from_uri("//Charlie").expect("key");
    let cold = SigningKey::from_uri("//Charlie//stash").expect("key");
    let ts = 1_763_812_800i64;
    let message = format!("s3:data:access:{}:{}:{ts}", cold.ss58(), key.ss58());
    let bare = key.sign_hex(&message);
    let wrapped = key.sign_hex(&format!("<Bytes>{message}</Bytes>"));
    let public = decode_ss58(key.ss58()).expect("ss58");

    c.bench_function("ss58_decode", |b| {
        b.iter(|| decode_ss58(black_box(key.ss58())))
    });
    c.bench_function("sr25519_verify_bare", |b| {
        b.iter(|| verify_signature(&public, black_box(&message), black_box(&bare)))
    });
    let decoded = schnorrkel::PublicKey::from_bytes(&public).expect("key");
    c.bench_function("sr25519_verify_decoded_key", |b| {
        b.iter(|| verify_with_key(&decoded, black_box(&message), black_box(&bare)))
    });
    c.bench_function("sr25519_verify_bytes_wrapped", |b| {
        b.iter(|| verify_signature(&public, black_box(&message), black_box(&wrapped)))
    });

    let credentials = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None, None, "b");
    let location = BucketLocation {
        bucket: "4000-resilabs-prod-bittensor-sn46-datacollection".into(),
        region: "us-east-2".into(),
        public_endpoint: None,
    };
    let folder = format!("data/hotkey={}/", key.ss58());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(ts as u64);
    let spec = PostPolicySpec {
        key_prefix: folder.clone(),
        min_size: 1024,
        max_size: 5 * 1024 * 1024 * 1024,
        expires_in: Duration::from_secs(86_400),
    };
    c.bench_function("post_policy_build_and_sign", |b| {
        b.iter(|| presign_post(&credentials, &location, black_box(&spec), now))
    });
    c.bench_function("presign_list_url", |b| {
        b.iter(|| {
            presign_list(
                &credentials,
                &location,
                ListQuery::prefix(black_box(&folder)),
                now,
                Duration::from_secs(10_800),
            )
        })
    });
    let object = format!("{folder}job_id=job_001/data.parquet");
    c.bench_function("presign_get_url", |b| {
        b.iter(|| {
            presign_object(
                &credentials,
                &location,
                black_box(&object),
                now,
                Duration::from_secs(3_600),
            )
        })
    });

    let store = MemoryStore::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut n = 0u64;
    c.bench_function("quota_check_in_process", |b| {
        b.iter(|| {
            n += 1;
            let check = QuotaCheck {
                hotkey_key: format!("{}:{}", key.ss58(), n % 256),
                global_key: "GLOBAL:2025-11-22".into(),
                limit: u64::MAX,
                global_limit: u64::MAX,
                ttl_secs: 3_600,
                replay: None,
            };
            runtime.block_on(store.acquire(black_box(&check)))
        })
    });

    // What a request does without Redis (or while it is down): check the signature against
    // the replay records, count, record it. 100,000 records are live before the clock
    // starts; each iteration adds one with a fresh signature.
    let quotas = Quotas::new(None, OnRedisError::Fallback, "q:");
    let mut signed = 0u64;
    let acquire_fresh = |signed: &mut u64| {
        *signed += 1;
        let mut signature = [0u8; 64];
        signature[..8].copy_from_slice(&signed.to_le_bytes());
        let guard = ReplayGuard::new("q:", key.ss58(), &signature, 360);
        runtime.block_on(quotas.acquire(
            key.ss58(),
            u64::MAX,
            u64::MAX,
            Some(guard),
            chrono::Utc::now(),
        ))
    };
    for _ in 0..100_000 {
        let _ = acquire_fresh(&mut signed);
    }
    c.bench_function("quota_acquire_with_replay_100k_live", |b| {
        b.iter(|| black_box(acquire_fresh(&mut signed)))
    });

    let keys = BenchKeys::derive(256, 8).expect("keys");
    let graph = Metagraph::from_document(keys.metagraph(46));
    let probe = keys.miners[100].0.ss58().to_owned();
    c.bench_function("metagraph_lookup_256", |b| {
        b.iter(|| graph.get(black_box(&probe)).is_some())
    });

    let body = format!(
        r#"{{"coldkey":"{}","hotkey":"{}","timestamp":{ts},"signature":"{bare}"}}"#,
        cold.ss58(),
        key.ss58()
    );
    c.bench_function("request_body_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body.as_bytes())))
    });
    let form = presign_post(&credentials, &location, &spec, now);
    let list_url = presign_list(
        &credentials,
        &location,
        ListQuery::prefix(&folder),
        now,
        Duration::from_secs(10_800),
    )
    .expect("presign");
    c.bench_function("response_serialise", |b| {
        b.iter(|| {
            let response = FolderAccessResponse {
                folder: folder.clone(),
                url: form.url.clone(),
                fields: form.fields.clone(),
                expiry: "2025-11-23T12:00:00".into(),
                list_url: list_url.clone(),
                structure_info: StructureInfo::for_miners(),
            };
            serde_json::to_vec(black_box(&response))
        })
    });
}

criterion_group! {
    name = hot_path;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = benches
}
criterion_main!(hot_path);
