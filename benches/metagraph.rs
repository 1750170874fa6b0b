//! Metagraph hot paths: decoding a 256-uid `get_selective_metagraph` answer (the bytes the
//! fake Subtensor node serves, encoded against the real finney metadata), and a hotkey lookup.
//!
//! Run: `cargo bench --bench metagraph`.

#[path = "../tests/support/fake_node.rs"]
#[allow(dead_code)]
mod fake_node;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fake_node::{Chain, FakeNeuron, Mode, encode_selective, metadata_bytes};
use s3_auth_api::auth::encode_ss58;
use s3_auth_api::metagraph::chain::decode_selective;
use subxt::ext::codec::Decode;

fn key(i: u32, salt: u8) -> [u8; 32] {
    let mut k = [salt; 32];
    k[..4].copy_from_slice(&i.to_le_bytes());
    k
}

fn chain(n: u32) -> Chain {
    Chain {
        netuid: 46,
        block: 6_000_000,
        spec_version: 365,
        neurons: (0..n)
            .map(|i| FakeNeuron {
                hotkey: key(i, 1),
                coldkey: key(i, 2),
                validator_permit: i % 4 == 0,
                alpha_raw: u64::from(i) * 1_000_000_000_000,
            })
            .collect(),
        mode: Mode::Normal,
    }
}

fn benches(c: &mut Criterion) {
    let raw = metadata_bytes();
    let metadata = subxt::Metadata::decode(&mut &raw[..]).expect("metadata");
    let bytes = encode_selective(&metadata, &chain(256), 46);

    c.bench_function("decode_selective_metagraph_256_uids", |b| {
        b.iter(|| decode_selective(&metadata, black_box(&bytes), 46).expect("decodes"))
    });

    let graph = decode_selective(&metadata, &bytes, 46).expect("decodes");
    assert_eq!(graph.len(), 256);
    let present = encode_ss58(&key(200, 1));
    let absent = encode_ss58(&key(9_999, 1));
    c.bench_function("hotkey_lookup_hit", |b| {
        b.iter(|| graph.is_validator(black_box(&present), 20_000))
    });
    c.bench_function("hotkey_lookup_miss", |b| {
        b.iter(|| graph.is_registered(black_box(&absent)))
    });
}

criterion_group!(metagraph, benches);
criterion_main!(metagraph);
