//! The last good metagraph on disk, so a restart during a chain outage can still serve.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Metagraph, MetagraphDocument, MetagraphError};

/// Writes `graph` to `path` atomically (a temporary file, then rename).
pub async fn write(
    path: &Path,
    graph: &Metagraph,
    synced_at: SystemTime,
) -> Result<(), MetagraphError> {
    let unix = synced_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let err = |source| MetagraphError::Snapshot {
        path: path.display().to_string(),
        source,
    };
    let bytes = serde_json::to_vec(&graph.to_document(Some(unix)))
        .map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, bytes).await.map_err(err)?;
    tokio::fs::rename(&tmp, path).await.map_err(err)
}

/// Reads a snapshot of subnet `netuid`; returns it with the time it was synced.
pub async fn read(path: &Path, netuid: u16) -> Result<(Metagraph, SystemTime), MetagraphError> {
    let shown = path.display().to_string();
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| MetagraphError::Io {
            path: shown.clone(),
            source,
        })?;
    let doc: MetagraphDocument =
        serde_json::from_slice(&bytes).map_err(|source| MetagraphError::Parse {
            path: shown,
            source,
        })?;
    if doc.netuid != netuid {
        return Err(MetagraphError::WrongSubnet {
            expected: netuid,
            found: doc.netuid,
        });
    }
    // A time from the future (a clock gone wrong, or a corrupt file) would make the
    // snapshot look fresh forever and cannot always be formatted: count it as now.
    let recorded = UNIX_EPOCH + Duration::from_secs(doc.synced_at.unwrap_or(0).max(0) as u64);
    let synced_at = recorded.min(SystemTime::now());
    Ok((Metagraph::from_document(doc), synced_at))
}
