//! The subnet's metagraph: who is registered, who may validate, whose coldkey owns a hotkey.
//!
//! A [`MetagraphHandle`] holds the current [`Metagraph`] behind an atomic pointer:
//! request handlers read it without locking, and a [`syncer`] replaces it whole when a
//! [`MetagraphSource`] yields a new one.

pub mod file;
pub mod syncer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

pub use file::FileSource;
pub use syncer::spawn_syncer;

/// One registered uid of the subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    /// The uid (slot) of this neuron in the subnet.
    pub uid: u16,
    /// The hotkey, SS58.
    pub hotkey: String,
    /// The coldkey that owns the hotkey, SS58.
    pub coldkey: String,
    /// Whether the chain gives this uid a validator permit.
    #[serde(default)]
    pub validator_permit: bool,
    /// Alpha stake in alpha units (not rao), as the Python SDK's `metagraph.alpha_stake`.
    #[serde(default)]
    pub alpha_stake: f64,
}

/// The on-disk and wire form of a metagraph (what `METAGRAPH_FILE` holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetagraphDocument {
    /// The subnet these neurons belong to.
    pub netuid: u16,
    /// The chain block the metagraph was read at.
    #[serde(default)]
    pub block: u64,
    /// Every registered uid.
    pub neurons: Vec<Neuron>,
}

/// A snapshot of the subnet, indexed by hotkey.
#[derive(Debug, Clone)]
pub struct Metagraph {
    netuid: u16,
    block: u64,
    neurons: Vec<Neuron>,
    by_hotkey: HashMap<String, usize>,
}

/// Why a metagraph could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum MetagraphError {
    /// The file could not be read.
    #[error("cannot read metagraph file {path}: {source}")]
    Io {
        /// The path that was read.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The document is not valid metagraph JSON.
    #[error("metagraph file {path} is not valid: {source}")]
    Parse {
        /// The path that was read.
        path: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The document is for another subnet than the configured one.
    #[error("metagraph is for netuid {found}, expected {expected}")]
    WrongSubnet {
        /// The configured subnet.
        expected: u16,
        /// The subnet the document names.
        found: u16,
    },
}

impl Metagraph {
    /// Builds a metagraph from its document form.
    pub fn from_document(doc: MetagraphDocument) -> Self {
        let by_hotkey = doc
            .neurons
            .iter()
            .enumerate()
            .map(|(i, n)| (n.hotkey.clone(), i))
            .collect();
        Self {
            netuid: doc.netuid,
            block: doc.block,
            neurons: doc.neurons,
            by_hotkey,
        }
    }

    /// The subnet id.
    pub fn netuid(&self) -> u16 {
        self.netuid
    }

    /// The block the metagraph was read at.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// Number of registered hotkeys.
    pub fn len(&self) -> usize {
        self.neurons.len()
    }

    /// Whether no hotkey is registered.
    pub fn is_empty(&self) -> bool {
        self.neurons.is_empty()
    }

    /// All neurons, in uid order as given by the source.
    pub fn neurons(&self) -> &[Neuron] {
        &self.neurons
    }

    /// The neuron registered under `hotkey`, if any.
    pub fn get(&self, hotkey: &str) -> Option<&Neuron> {
        self.by_hotkey.get(hotkey).map(|&i| &self.neurons[i])
    }

    /// Whether `hotkey` is registered on the subnet.
    pub fn is_registered(&self, hotkey: &str) -> bool {
        self.by_hotkey.contains_key(hotkey)
    }

    /// Whether `hotkey` may act as a validator: registered, holds a validator permit, and
    /// `int(alpha_stake) > min_alpha_stake` as the Python original computes it
    /// (so 20000.9 is not above 20000).
    pub fn is_validator(&self, hotkey: &str, min_alpha_stake: u64) -> bool {
        self.get(hotkey).is_some_and(|n| {
            n.validator_permit
                && n.alpha_stake.is_finite()
                && n.alpha_stake.trunc() > min_alpha_stake as f64
        })
    }
}

/// The current metagraph and when it was loaded.
#[derive(Debug, Clone)]
pub struct LoadedMetagraph {
    /// The metagraph itself.
    pub metagraph: Arc<Metagraph>,
    /// Wall-clock time of the load, for reporting.
    pub loaded_at: SystemTime,
    /// Monotonic time of the load, for ages.
    pub loaded_instant: Instant,
    /// Where it came from (e.g. `file:/path`).
    pub source: String,
}

impl LoadedMetagraph {
    /// How long ago this metagraph was loaded.
    pub fn age(&self) -> Duration {
        self.loaded_instant.elapsed()
    }
}

/// Shared, lock-free access to the current metagraph.
#[derive(Debug, Default)]
pub struct MetagraphHandle {
    current: ArcSwapOption<LoadedMetagraph>,
}

impl MetagraphHandle {
    /// An empty handle: nothing loaded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current metagraph, or `None` before the first load.
    pub fn current(&self) -> Option<Arc<LoadedMetagraph>> {
        self.current.load_full()
    }

    /// Replaces the current metagraph atomically.
    pub fn replace(&self, metagraph: Metagraph, source: impl Into<String>) {
        self.current.store(Some(Arc::new(LoadedMetagraph {
            metagraph: Arc::new(metagraph),
            loaded_at: SystemTime::now(),
            loaded_instant: Instant::now(),
            source: source.into(),
        })));
    }
}

/// Something that can produce the subnet's metagraph.
pub trait MetagraphSource: Send + Sync + 'static {
    /// A short description for logs and health output (e.g. `file:/path`).
    fn describe(&self) -> String;

    /// Fetches the metagraph. `Ok(None)` means nothing changed since the last fetch.
    fn fetch(
        &self,
    ) -> impl std::future::Future<Output = Result<Option<Metagraph>, MetagraphError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(stake: f64, permit: bool) -> Metagraph {
        Metagraph::from_document(MetagraphDocument {
            netuid: 46,
            block: 1,
            neurons: vec![Neuron {
                uid: 0,
                hotkey: "H".into(),
                coldkey: "C".into(),
                validator_permit: permit,
                alpha_stake: stake,
            }],
        })
    }

    #[test]
    fn validator_threshold_truncates_like_python_int() {
        assert!(!graph(20_000.0, true).is_validator("H", 20_000));
        assert!(!graph(20_000.9, true).is_validator("H", 20_000));
        assert!(graph(20_001.0, true).is_validator("H", 20_000));
        assert!(!graph(50_000.0, false).is_validator("H", 20_000));
        assert!(!graph(f64::NAN, true).is_validator("H", 20_000));
        assert!(!graph(50_000.0, true).is_validator("other", 20_000));
    }

    #[test]
    fn lookup_by_hotkey() {
        let g = graph(1.0, false);
        assert!(g.is_registered("H"));
        assert!(!g.is_registered("C"));
        assert_eq!(g.get("H").map(|n| n.coldkey.as_str()), Some("C"));
    }
}
