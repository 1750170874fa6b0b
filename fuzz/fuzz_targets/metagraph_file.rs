//! Arbitrary bytes as a metagraph file (`METAGRAPH_FILE`) and as a metagraph snapshot
//! (`METAGRAPH_SNAPSHOT_PATH`), read the way the service reads them:
//! `serde_json::from_slice::<MetagraphDocument>` + `Metagraph::from_document`, and the real
//! `FileSource::fetch` and `snapshot::read` on a file holding the bytes. Never a panic;
//! both readers accept exactly the documents of the configured subnet (the file source
//! only those whose addresses are canonical SS58); the built
//! metagraph answers for every neuron it lists; the document survives a snapshot round
//! trip; and a loaded snapshot's sync time can be shown as `/healthcheck` shows it.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use s3_auth_api::auth::decode_ss58;
use s3_auth_api::metagraph::{
    FileSource, Metagraph, MetagraphDocument, MetagraphHandle, MetagraphSource, snapshot,
};

const NETUID: u16 = 46;

struct Harness {
    rt: tokio::runtime::Runtime,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // A RAM-backed directory when there is one: every input is written to a file.
        let dir = tempfile::Builder::new()
            .prefix("s3-auth-api-fuzz-metagraph")
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
                std::path::PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            })
            .expect("temp dir");
        Harness {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            path: dir.path().join("metagraph.json"),
            _dir: dir,
        }
    })
}

fn check_graph(doc: &MetagraphDocument, graph: &Metagraph) {
    assert_eq!(graph.netuid(), doc.netuid);
    assert_eq!(graph.block(), doc.block);
    assert_eq!(graph.len(), doc.neurons.len());
    assert_eq!(graph.neurons(), doc.neurons.as_slice());
    for neuron in &doc.neurons {
        // Duplicated hotkeys: the last one listed wins, but each is found.
        let found = graph.get(&neuron.hotkey).expect("a listed hotkey is found");
        assert_eq!(found.hotkey, neuron.hotkey);
        assert!(graph.is_registered(&neuron.hotkey));
        if graph.public_key(&neuron.hotkey).is_some() {
            assert!(decode_ss58(&neuron.hotkey).is_ok());
        }
        if graph.is_validator(&neuron.hotkey, 20_000) {
            assert!(found.validator_permit && found.alpha_stake.is_finite());
            assert!(found.alpha_stake >= 20_001.0);
        }
    }
    assert!(graph.validators_count(20_000) <= graph.len());
    assert!(graph.validators_count(0) >= graph.validators_count(20_000));
    // What a snapshot writes reads back as the same document (stakes to within what
    // serde_json's float reading loses: it is not bit-exact without `float_roundtrip`).
    let written = serde_json::to_vec(&graph.to_document(doc.synced_at)).expect("serialises");
    let back: MetagraphDocument = serde_json::from_slice(&written).expect("reads back");
    assert_eq!(
        (back.netuid, back.block, back.synced_at, back.neurons.len()),
        (doc.netuid, doc.block, doc.synced_at, doc.neurons.len())
    );
    for (b, d) in back.neurons.iter().zip(&doc.neurons) {
        assert_eq!(
            (b.uid, &b.hotkey, &b.coldkey, b.validator_permit),
            (d.uid, &d.hotkey, &d.coldkey, d.validator_permit)
        );
        let (x, y) = (b.alpha_stake, d.alpha_stake);
        assert!(
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            "stake {y} read back as {x}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = serde_json::from_slice::<MetagraphDocument>(data);
    if let Ok(doc) = &parsed {
        let graph = Metagraph::from_document(doc.clone());
        check_graph(doc, &graph);
    }
    let accepted = matches!(&parsed, Ok(doc) if doc.netuid == NETUID);
    // The file source also refuses an entry whose hotkey or coldkey is not a canonical
    // prefix-42 SS58 address (snapshots are written by the service itself).
    let file_accepted = accepted
        && parsed.as_ref().is_ok_and(|doc| {
            doc.neurons
                .iter()
                .all(|n| decode_ss58(&n.hotkey).is_ok() && decode_ss58(&n.coldkey).is_ok())
        });

    let h = harness();
    std::fs::write(&h.path, data).expect("write input");
    h.rt.block_on(async {
        // A fresh source: it skips files it has already read.
        let source = FileSource::new(&h.path, NETUID);
        match source.fetch().await {
            Ok(Some(graph)) => {
                assert!(
                    file_accepted,
                    "the file source accepted a document parsing refused"
                );
                check_graph(parsed.as_ref().expect("parsed"), &graph);
            }
            Ok(None) => panic!("a fresh file source reported no change"),
            Err(err) => {
                assert!(
                    !file_accepted,
                    "the file source refused a valid document: {err}"
                );
                assert!(err.is_config_error());
            }
        }

        match snapshot::read(&h.path, NETUID).await {
            Ok((graph, synced_at)) => {
                assert!(accepted, "a snapshot was accepted that parsing refused");
                check_graph(parsed.as_ref().expect("parsed"), &graph);
                let handle = MetagraphHandle::new();
                handle.install(graph, "snapshot:fuzz", synced_at, true);
                let loaded = handle.current().expect("installed");
                let _ = loaded.age();
                // As `/healthcheck` shows `last_sync` (src/api/info.rs).
                let last_sync = chrono::DateTime::<chrono::Utc>::from(loaded.synced_at);
                let _ = last_sync.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            }
            Err(err) => assert!(!accepted, "a valid snapshot was refused: {err}"),
        }
    });
});
