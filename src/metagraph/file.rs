//! A metagraph read from a JSON file (`METAGRAPH_FILE`), reloaded when the file changes.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{Metagraph, MetagraphDocument, MetagraphError, MetagraphSource};

/// Reads `{"netuid":46,"block":123,"neurons":[...]}` from a file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    netuid: u16,
    /// (modification time, length) of the last successful read.
    last_seen: Mutex<Option<(SystemTime, u64)>>,
}

impl FileSource {
    /// A source for `path` that must describe subnet `netuid`.
    pub fn new(path: impl Into<PathBuf>, netuid: u16) -> Self {
        Self {
            path: path.into(),
            netuid,
            last_seen: Mutex::new(None),
        }
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    fn io_err(&self, source: std::io::Error) -> MetagraphError {
        MetagraphError::Io {
            path: self.display(),
            source,
        }
    }
}

impl MetagraphSource for FileSource {
    fn describe(&self) -> String {
        format!("file:{}", self.display())
    }

    async fn fetch(&self) -> Result<Option<Metagraph>, MetagraphError> {
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| self.io_err(e))?;
        let stamp = (meta.modified().map_err(|e| self.io_err(e))?, meta.len());
        let unchanged = self
            .last_seen
            .lock()
            .map(|seen| *seen == Some(stamp))
            .unwrap_or(false);
        if unchanged {
            return Ok(None);
        }
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| self.io_err(e))?;
        let doc: MetagraphDocument =
            serde_json::from_slice(&bytes).map_err(|source| MetagraphError::Parse {
                path: self.display(),
                source,
            })?;
        if doc.netuid != self.netuid {
            return Err(MetagraphError::WrongSubnet {
                expected: self.netuid,
                found: doc.netuid,
            });
        }
        for n in &doc.neurons {
            for (field, address) in [("hotkey", &n.hotkey), ("coldkey", &n.coldkey)] {
                if let Err(e) = crate::auth::decode_ss58(address) {
                    return Err(MetagraphError::InvalidEntry(format!(
                        "{}: uid {} has {field} {address:?}: {e}",
                        self.display(),
                        n.uid
                    )));
                }
            }
        }
        if let Ok(mut seen) = self.last_seen.lock() {
            *seen = Some(stamp);
        }
        Ok(Some(Metagraph::from_document(doc)))
    }
}
