//! The subnet's metagraph: who is registered, who may validate, whose coldkey owns a hotkey.
//!
//! A [`MetagraphHandle`] holds the current [`Metagraph`] behind an atomic pointer:
//! request handlers read it without locking, and a [`syncer`] replaces it whole when a
//! [`MetagraphSource`] yields a new one.

pub mod chain;
pub mod file;
pub mod snapshot;
pub mod syncer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

pub use chain::ChainSource;
pub use file::FileSource;
pub use syncer::{SyncSettings, start_sync};

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
    /// Unix time the data was read from its source (snapshots record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<i64>,
}

/// A snapshot of the subnet, indexed by hotkey.
#[derive(Debug, Clone)]
pub struct Metagraph {
    netuid: u16,
    block: u64,
    neurons: Vec<Neuron>,
    by_hotkey: HashMap<String, usize>,
    /// Each neuron's sr25519 public key, decoded once here rather than per request
    /// (`None` for a hotkey that is not a valid SS58 sr25519 key).
    keys: Vec<Option<schnorrkel::PublicKey>>,
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
    /// The chain node could not be reached or answered with an error.
    #[error("chain error: {0}")]
    Chain(String),
    /// A chain call took too long.
    #[error("chain call timed out: {0}")]
    Timeout(String),
    /// The subnet does not exist on the chain.
    #[error("subnet {0} does not exist on the chain")]
    NoSuchSubnet(u16),
    /// The chain's answer does not make a consistent metagraph.
    #[error("malformed metagraph: {0}")]
    Malformed(String),
    /// An entry of a metagraph file is not usable (e.g. a non-canonical SS58 address).
    #[error("metagraph file entry rejected: {0}")]
    InvalidEntry(String),
    /// A snapshot could not be written.
    #[error("cannot write snapshot {path}: {source}")]
    Snapshot {
        /// The snapshot path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
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

impl MetagraphError {
    /// Whether this error at start-up means the configuration is wrong (stop), rather
    /// than a dependency being down (keep trying).
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            MetagraphError::NoSuchSubnet(_)
                | MetagraphError::WrongSubnet { .. }
                | MetagraphError::Io { .. }
                | MetagraphError::Parse { .. }
                | MetagraphError::InvalidEntry(_)
        )
    }
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
        let keys = doc
            .neurons
            .iter()
            .map(|n| {
                crate::auth::decode_ss58(&n.hotkey)
                    .ok()
                    .and_then(|k| schnorrkel::PublicKey::from_bytes(&k).ok())
            })
            .collect();
        Self {
            netuid: doc.netuid,
            block: doc.block,
            neurons: doc.neurons,
            by_hotkey,
            keys,
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

    /// The decoded public key of a registered `hotkey` (`None` when unregistered or not a
    /// valid key).
    pub fn public_key(&self, hotkey: &str) -> Option<&schnorrkel::PublicKey> {
        self.by_hotkey
            .get(hotkey)
            .and_then(|&i| self.keys.get(i))
            .and_then(Option::as_ref)
    }

    /// The document form, e.g. for a snapshot.
    pub fn to_document(&self, synced_at: Option<i64>) -> MetagraphDocument {
        MetagraphDocument {
            netuid: self.netuid,
            block: self.block,
            neurons: self.neurons.clone(),
            synced_at,
        }
    }

    /// Number of hotkeys that pass [`Metagraph::is_validator`].
    pub fn validators_count(&self, min_alpha_stake: u64) -> usize {
        self.neurons
            .iter()
            .filter(|n| self.is_validator(&n.hotkey, min_alpha_stake))
            .count()
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

/// The current metagraph and where and when it came from.
#[derive(Debug, Clone)]
pub struct LoadedMetagraph {
    /// The metagraph itself.
    pub metagraph: Arc<Metagraph>,
    /// When the data was last confirmed by its source.
    pub synced_at: SystemTime,
    /// Where it came from (e.g. `chain:wss://...`, `file:/path`, `snapshot:/path`).
    pub source: String,
    /// True when served from a snapshot because the source could not be reached.
    pub from_snapshot: bool,
}

impl LoadedMetagraph {
    /// How long ago the data was confirmed by its source.
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.synced_at)
            .unwrap_or_default()
    }
}

/// The syncer's record of its recent attempts.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When the last attempt (of either outcome) finished.
    pub last_attempt: Option<SystemTime>,
}

/// Shared, lock-free access to the current metagraph.
#[derive(Debug, Default)]
pub struct MetagraphHandle {
    current: ArcSwapOption<LoadedMetagraph>,
    status: Mutex<SyncStatus>,
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
        self.install(metagraph, source, SystemTime::now(), false);
    }

    /// Installs a metagraph with an explicit sync time and snapshot flag.
    pub fn install(
        &self,
        metagraph: Metagraph,
        source: impl Into<String>,
        synced_at: SystemTime,
        from_snapshot: bool,
    ) {
        self.current.store(Some(Arc::new(LoadedMetagraph {
            metagraph: Arc::new(metagraph),
            synced_at,
            source: source.into(),
            from_snapshot,
        })));
    }

    /// Marks the current metagraph as confirmed now (the source reported no change).
    pub fn touch(&self) {
        if let Some(cur) = self.current.load_full() {
            let mut fresh = (*cur).clone();
            fresh.synced_at = SystemTime::now();
            fresh.from_snapshot = false;
            self.current.store(Some(Arc::new(fresh)));
        }
    }

    /// The syncer's status.
    pub fn status(&self) -> SyncStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Records a successful attempt.
    pub fn record_success(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.consecutive_failures = 0;
            s.last_attempt = Some(SystemTime::now());
        }
    }

    /// Records a failed attempt; returns the number of consecutive failures.
    pub fn record_failure(&self, error: &MetagraphError) -> u32 {
        match self.status.lock() {
            Ok(mut s) => {
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                s.last_error = Some(error.to_string());
                s.last_attempt = Some(SystemTime::now());
                s.consecutive_failures
            }
            Err(_) => 1,
        }
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
            synced_at: None,
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
