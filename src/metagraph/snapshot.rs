//! The last good metagraph, kept on disk or in S3, so a restart during a chain outage can
//! still serve.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Metagraph, MetagraphDocument, MetagraphError};

/// Where `METAGRAPH_SNAPSHOT_PATH` says the snapshot lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotLocation {
    /// A local file.
    File(PathBuf),
    /// An S3 object, `s3://{bucket}/{key}`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
}

impl SnapshotLocation {
    /// Reads `s3://bucket/key` as an S3 object and anything else as a file path; `None`
    /// for an `s3://` value without both a bucket and a key.
    pub fn parse(value: &str) -> Option<Self> {
        let Some(rest) = value.strip_prefix("s3://") else {
            return Some(Self::File(PathBuf::from(value)));
        };
        let (bucket, key) = rest.split_once('/')?;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        (bucket_ok && !key.is_empty() && key.len() <= 1024 && !key.ends_with('/')).then(|| {
            Self::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }
        })
    }
}

/// A snapshot location with what it takes to reach it.
#[derive(Debug, Clone)]
pub enum SnapshotStore {
    /// A local file.
    File(PathBuf),
    /// An S3 object, read and written with `client` (the service's own identity, e.g. the
    /// ECS task role).
    S3 {
        /// The client.
        client: aws_sdk_s3::Client,
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
}

fn s3_error<E>(e: aws_sdk_s3::error::SdkError<E>) -> std::io::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let kind = match &e {
        aws_sdk_s3::error::SdkError::ServiceError(s) if s.raw().status().as_u16() == 404 => {
            std::io::ErrorKind::NotFound
        }
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

impl SnapshotStore {
    /// How logs and `/healthcheck` name it.
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::S3 { bucket, key, .. } => format!("s3://{bucket}/{key}"),
        }
    }

    /// Writes `graph` (synced at `synced_at`): a file atomically, an S3 object in one PUT.
    pub async fn write(
        &self,
        graph: &Metagraph,
        synced_at: SystemTime,
    ) -> Result<(), MetagraphError> {
        match self {
            Self::File(path) => write(path, graph, synced_at).await,
            Self::S3 {
                client,
                bucket,
                key,
            } => {
                let bytes = serde_json::to_vec(&graph.to_document(Some(unix_secs(synced_at))))
                    .map_err(|e| MetagraphError::Snapshot {
                        path: self.describe(),
                        source: std::io::Error::other(e),
                    })?;
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_type("application/json")
                    .body(bytes.into())
                    .send()
                    .await
                    .map_err(|e| MetagraphError::Snapshot {
                        path: self.describe(),
                        source: s3_error(e),
                    })?;
                Ok(())
            }
        }
    }

    /// Reads the snapshot of subnet `netuid` with the time it was synced.
    pub async fn read(&self, netuid: u16) -> Result<(Metagraph, SystemTime), MetagraphError> {
        match self {
            Self::File(path) => read(path, netuid).await,
            Self::S3 {
                client,
                bucket,
                key,
            } => {
                let io = |source| MetagraphError::Io {
                    path: self.describe(),
                    source,
                };
                let object = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| io(s3_error(e)))?;
                let bytes = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| io(std::io::Error::other(e)))?
                    .into_bytes();
                decode(&bytes, &self.describe(), netuid)
            }
        }
    }
}

fn unix_secs(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Writes `graph` to `path` atomically (a temporary file, then rename).
pub async fn write(
    path: &Path,
    graph: &Metagraph,
    synced_at: SystemTime,
) -> Result<(), MetagraphError> {
    let unix = unix_secs(synced_at);
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
    decode(&bytes, &shown, netuid)
}

/// Decodes a snapshot document of subnet `netuid` read from `shown`.
fn decode(
    bytes: &[u8],
    shown: &str,
    netuid: u16,
) -> Result<(Metagraph, SystemTime), MetagraphError> {
    let doc: MetagraphDocument =
        serde_json::from_slice(bytes).map_err(|source| MetagraphError::Parse {
            path: shown.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_location_needs_a_bucket_and_a_key() {
        assert_eq!(
            SnapshotLocation::parse("s3://my-bucket/_service/snap.json"),
            Some(SnapshotLocation::S3 {
                bucket: "my-bucket".into(),
                key: "_service/snap.json".into()
            })
        );
        assert_eq!(
            SnapshotLocation::parse("/tmp/snap.json"),
            Some(SnapshotLocation::File("/tmp/snap.json".into()))
        );
        for bad in [
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
            "s3://Bad_Bucket/k",
            "s3://b/k/",
        ] {
            assert_eq!(SnapshotLocation::parse(bad), None, "{bad}");
        }
    }
}
