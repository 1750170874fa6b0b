//! The key index of the embedded S3 server: every object's literal key, kept apart from
//! the file that holds its bytes, so keys of up to 1024 bytes with any segments are stored
//! and listed as themselves, in S3's byte order.
//!
//! On disk, an object with key `k` lives in `s3s-fs` as `objects/{sha256(k)}` and its key
//! in `{root}/.aws-like/{bucket}/{sha256(k)}` (first line the ETag, the rest the key), so
//! the index survives restarts.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use s3s::dto::Timestamp;
use sha2::{Digest, Sha256};

/// Directory, under the server's root, of the key records.
const RECORDS: &str = ".aws-like";
/// Prefix of the internal keys `s3s-fs` stores objects under.
const INTERNAL_PREFIX: &str = "objects/";

/// The `s3s-fs` key that holds the bytes of `key`: short, flat and free of path segments.
pub fn internal_key(key: &str) -> String {
    format!(
        "{INTERNAL_PREFIX}{}",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

/// Stores `keys` in `bucket` under the server root `root` directly on disk, each with
/// the bytes `body` (and no ETag), as if each had been uploaded, for a server started on `root`
/// afterwards. It fills large test and benchmark buckets in seconds where uploads one by
/// one would take minutes.
pub fn seed(
    root: &Path,
    bucket: &str,
    keys: impl IntoIterator<Item = String>,
    body: &[u8],
) -> std::io::Result<()> {
    let objects = root.join(bucket).join(INTERNAL_PREFIX);
    let records = root.join(RECORDS).join(bucket);
    std::fs::create_dir_all(&objects)?;
    std::fs::create_dir_all(&records)?;
    for key in keys {
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        std::fs::write(objects.join(&hash), body)?;
        // No ETag: listings show none for these objects.
        std::fs::write(records.join(&hash), format!("\n{key}"))?;
    }
    Ok(())
}

/// What a listing shows of one object.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its ETag, quoted as S3 sends it.
    pub etag: Option<String>,
    /// Its size in bytes.
    pub size: i64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Listed {
    /// Objects directly matched, in key order.
    pub objects: Vec<(String, Entry)>,
    /// Common prefixes (with a delimiter), in order.
    pub prefixes: Vec<String>,
    /// Whether more keys or prefixes follow.
    pub truncated: bool,
    /// The last key or prefix of the page: where the next one starts.
    pub last: Option<String>,
}

/// Every bucket's keys, in memory and in record files.
#[derive(Debug)]
pub struct KeyIndex {
    root: PathBuf,
    buckets: Mutex<HashMap<String, BTreeMap<String, Entry>>>,
}

fn stat(path: &Path) -> Option<(i64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    let size = i64::try_from(meta.len()).ok()?;
    Some((size, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

impl KeyIndex {
    /// Loads the records under `root`, dropping those whose object file is gone.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let mut buckets: HashMap<String, BTreeMap<String, Entry>> = HashMap::new();
        let records = root.join(RECORDS);
        std::fs::create_dir_all(&records)?;
        for bucket_dir in std::fs::read_dir(&records)? {
            let bucket_dir = bucket_dir?;
            let Some(bucket) = bucket_dir.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let keys = buckets.entry(bucket.clone()).or_default();
            for record in std::fs::read_dir(bucket_dir.path())? {
                let record = record?;
                let name = record.file_name();
                let Some(hash) = name.to_str() else { continue };
                let text = std::fs::read_to_string(record.path()).unwrap_or_default();
                let Some((etag, key)) = text.split_once('\n') else {
                    continue;
                };
                let object = root.join(&bucket).join(INTERNAL_PREFIX).join(hash);
                match stat(&object) {
                    Some((size, modified)) if internal_key(key).ends_with(hash) => {
                        let etag = (!etag.is_empty()).then(|| etag.to_owned());
                        keys.insert(
                            key.to_owned(),
                            Entry {
                                etag,
                                size,
                                modified,
                            },
                        );
                    }
                    _ => {
                        let _ = std::fs::remove_file(record.path());
                    }
                }
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            buckets: Mutex::new(buckets),
        })
    }

    fn record_path(&self, bucket: &str, key: &str) -> PathBuf {
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        self.root.join(RECORDS).join(bucket).join(hash)
    }

    /// Records that `key` was written (after `s3s-fs` stored it) with `etag`.
    pub async fn insert(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<String>,
    ) -> std::io::Result<()> {
        let record = self.record_path(bucket, key);
        if let Some(dir) = record.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let body = format!("{}\n{key}", etag.as_deref().unwrap_or(""));
        tokio::fs::write(&record, body).await?;
        let object = self.root.join(bucket).join(internal_key(key));
        let (size, modified) = stat(&object).unwrap_or((0, SystemTime::now()));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.entry(bucket.to_owned()).or_default().insert(
            key.to_owned(),
            Entry {
                etag,
                size,
                modified,
            },
        );
        Ok(())
    }

    /// Forgets `key` (after `s3s-fs` deleted it).
    pub async fn remove(&self, bucket: &str, key: &str) {
        let _ = tokio::fs::remove_file(self.record_path(bucket, key)).await;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = buckets.get_mut(bucket) {
            keys.remove(key);
        }
    }

    /// Up to `max` keys and common prefixes of `bucket` under `prefix` that sort after
    /// `after`, rolled up at `delimiter` as S3 does (a prefix counts once).
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Listed {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Listed::default();
        let Some(keys) = buckets.get(bucket) else {
            return out;
        };
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut count = 0;
        for (key, entry) in keys.range::<str, _>((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                let rest = &key[prefix.len()..];
                rest.find(d)
                    .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
            });
            if let Some(common) = &rolled
                && (out.prefixes.last() == Some(common)
                    || after.is_some_and(|a| common.as_str() <= a))
            {
                continue;
            }
            if count == max {
                out.truncated = max > 0;
                break;
            }
            count += 1;
            match rolled {
                Some(common) => {
                    out.last = Some(common.clone());
                    out.prefixes.push(common);
                }
                None => {
                    out.last = Some(key.clone());
                    out.objects.push((key.clone(), entry.clone()));
                }
            }
        }
        out
    }

    /// Whether `bucket` is a bucket of the server (a directory under its root).
    pub fn has_bucket(&self, bucket: &str) -> bool {
        self.root.join(bucket).is_dir()
    }

    /// `modified` as an S3 timestamp.
    pub fn timestamp(modified: SystemTime) -> Timestamp {
        Timestamp::from(modified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(keys: &[&str]) -> KeyIndex {
        let index = KeyIndex {
            root: PathBuf::new(),
            buckets: Mutex::new(HashMap::new()),
        };
        let mut buckets = index.buckets.lock().expect("lock");
        let b = buckets.entry("b".into()).or_default();
        for k in keys {
            b.insert(
                (*k).to_owned(),
                Entry {
                    etag: None,
                    size: 1,
                    modified: SystemTime::UNIX_EPOCH,
                },
            );
        }
        drop(buckets);
        index
    }

    #[test]
    fn pages_roll_up_prefixes_once_and_resume_after_the_last_item() {
        let index = index_with(&["a/1", "a/2", "a/x/1", "a/x/2", "a/y/1", "a/z", "b/1"]);
        let first = index.list("b", "a/", Some("/"), None, 3);
        assert_eq!(
            first
                .objects
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["a/1", "a/2"]
        );
        assert_eq!(first.prefixes, ["a/x/"]);
        assert!(first.truncated);
        let second = index.list("b", "a/", Some("/"), first.last.as_deref(), 3);
        assert_eq!(second.prefixes, ["a/y/"]);
        assert_eq!(second.objects.len(), 1);
        assert!(!second.truncated);
        let all = index.list("b", "", None, None, 1000);
        assert_eq!(all.objects.len(), 7);
        assert!(!all.truncated);
        let dots = index_with(&["a/../b", "a/./c"]);
        assert_eq!(dots.list("b", "a/", None, None, 10).objects.len(), 2);
    }
}
