//! A client for miners and validators: signs requests like a bittensor client, uploads
//! with the POST policy, lists with ListObjectsV2 URLs, downloads with per-file URLs.

pub mod listing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

pub use listing::{ListPage, ListedObject, parse_list};

use crate::keys::SigningKey;

/// What went wrong, phrased for the person running the command.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service could not be reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The service refused the identity (401).
    #[error(
        "refused (401: {detail}). Check that the hotkey is registered on the subnet (and is a validator for validator commands), that the coldkey owns it, and that this machine's clock is right"
    )]
    Unauthorized {
        /// The service's detail.
        detail: String,
    },
    /// A daily limit is used up (429).
    #[error(
        "daily limit reached (429: {detail}). Try again in {retry_after} s, after midnight UTC"
    )]
    RateLimited {
        /// The service's detail.
        detail: String,
        /// Seconds to wait.
        retry_after: String,
    },
    /// The service is not ready (503).
    #[error("the service is not ready (503: {detail}). Try again in a minute")]
    Unavailable {
        /// The service's detail.
        detail: String,
    },
    /// Any other error answer.
    #[error("{what} failed with HTTP {status}: {body}")]
    Http {
        /// The operation.
        what: String,
        /// The status.
        status: u16,
        /// The answer's body.
        body: String,
    },
    /// A local file problem.
    #[error("{path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the service: {0}")]
    Protocol(String),
}

fn unreachable(url: &str, e: reqwest::Error) -> ClientError {
    ClientError::Unreachable {
        url: url.to_owned(),
        reason: e.to_string(),
    }
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Calls the API with one key.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    key: SigningKey,
}

impl Client {
    /// A client of the API at `base` signing with `key`.
    pub fn new(base: &str, key: SigningKey) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| unreachable(base, e))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            key,
        })
    }

    /// The signing key's address.
    pub fn hotkey(&self) -> &str {
        self.key.ss58()
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let text = res.text().await.map_err(|e| unreachable(&url, e))?;
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("detail").map(|d| {
                    d.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| d.to_string())
                })
            })
            .unwrap_or_else(|| text.clone());
        match status {
            200 => serde_json::from_str(&text).map_err(|e| ClientError::Protocol(e.to_string())),
            401 => Err(ClientError::Unauthorized { detail }),
            429 => Err(ClientError::RateLimited {
                detail,
                retry_after,
            }),
            503 => Err(ClientError::Unavailable { detail }),
            _ => Err(ClientError::Http {
                what: format!("POST {path}"),
                status,
                body: detail,
            }),
        }
    }

    /// `POST /get-folder-access` for this (miner) key, owned by `coldkey`.
    pub async fn folder_access(&self, coldkey: &str) -> Result<Value, ClientError> {
        let ts = now();
        let message = format!("s3:data:access:{coldkey}:{}:{ts}", self.hotkey());
        self.post(
            "/get-folder-access",
            json!({"coldkey": coldkey, "hotkey": self.hotkey(), "timestamp": ts,
                   "signature": self.key.sign_hex(&message)}),
        )
        .await
    }

    /// `POST /get-validator-access`, optionally for the page after `token`.
    pub async fn validator_access(&self, token: Option<&str>) -> Result<Value, ClientError> {
        let ts = now();
        let message = format!("s3:validator:access:{ts}");
        self.post(
            "/get-validator-access",
            json!({"hotkey": self.hotkey(), "timestamp": ts,
                   "signature": self.key.sign_hex(&message), "continuation_token": token}),
        )
        .await
    }

    /// `POST /get-miner-specific-access`, optionally for the page after `token`.
    pub async fn miner_access(
        &self,
        miner: &str,
        token: Option<&str>,
    ) -> Result<Value, ClientError> {
        let ts = now();
        let message = format!("s3:validator:miner:{miner}:{ts}");
        self.post(
            "/get-miner-specific-access",
            json!({"hotkey": self.hotkey(), "timestamp": ts, "miner_hotkey": miner,
                   "signature": self.key.sign_hex(&message), "continuation_token": token}),
        )
        .await
    }

    /// `POST /get-file-presigned-urls` for `keys` of `miner`.
    pub async fn file_urls(&self, miner: &str, keys: &[String]) -> Result<Value, ClientError> {
        let ts = now();
        let message = format!("s3:validator:files:{miner}:{}:{ts}", self.hotkey());
        self.post(
            "/get-file-presigned-urls",
            json!({"hotkey": self.hotkey(), "timestamp": ts, "miner_hotkey": miner,
                   "file_keys": keys, "signature": self.key.sign_hex(&message)}),
        )
        .await
    }

    async fn get_list(&self, url: &str) -> Result<ListPage, ClientError> {
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unreachable(url, e))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| unreachable(url, e))?;
        if status != 200 {
            return Err(ClientError::Http {
                what: "ListObjectsV2".into(),
                status,
                body: text,
            });
        }
        Ok(parse_list(&text))
    }

    /// Every object a validator can list: all data, or one miner's folder. Follows
    /// continuation tokens (one API call per page).
    pub async fn list_all(&self, miner: Option<&str>) -> Result<Vec<ListedObject>, ClientError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let grant = match miner {
                Some(m) => self.miner_access(m, token.as_deref()).await?,
                None => self.validator_access(token.as_deref()).await?,
            };
            let url = match miner {
                Some(_) => grant["miner_url"].as_str(),
                None => grant["urls"]["global"]["list_all_data"].as_str(),
            }
            .ok_or_else(|| ClientError::Protocol("no list URL in the answer".into()))?;
            let page = self.get_list(url).await?;
            out.extend(page.objects);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Uploads a file, or every file under a directory, into `job_id={job_id}/` of this
    /// miner's folder. Files already present with the same size are skipped (so an
    /// interrupted upload resumes); every upload is checked with the list URL after.
    pub async fn upload(
        &self,
        coldkey: &str,
        path: &Path,
        job_id: &str,
    ) -> Result<UploadReport, ClientError> {
        let files = collect_files(path)?;
        // Refuse before uploading anything, rather than stopping halfway.
        if let Some((file, _, _)) = files
            .iter()
            .find(|(_, _, size)| *size < crate::access::miner::MIN_UPLOAD_BYTES)
        {
            return Err(file_err(
                file,
                "smaller than 1024 bytes, which the upload policy refuses",
            ));
        }
        let grant = self.folder_access(coldkey).await?;
        let folder = grant["folder"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no folder".into()))?
            .to_owned();
        let list_url = grant["list_url"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no list_url".into()))?
            .to_owned();
        let present = self.sizes(&list_url).await?;
        let total: u64 = files.iter().map(|(_, _, size)| size).sum();
        let bar = progress(total, "upload");
        let mut report = UploadReport::default();
        for (file, relative, size) in &files {
            let key = format!("{folder}job_id={job_id}/{relative}");
            if present.get(&key) == Some(size) {
                report.skipped.push(key);
                bar.inc(*size);
                continue;
            }
            self.post_file(&grant, &key, file).await?;
            bar.inc(*size);
            report.uploaded.push(key);
        }
        bar.finish_and_clear();
        let after = self.sizes(&list_url).await?;
        for key in &report.uploaded {
            if !after.contains_key(key) {
                return Err(ClientError::Protocol(format!(
                    "{key} is not listed after its upload"
                )));
            }
        }
        Ok(report)
    }

    /// Key -> size of what a list URL lists (first page).
    async fn sizes(&self, list_url: &str) -> Result<HashMap<String, u64>, ClientError> {
        Ok(self
            .get_list(list_url)
            .await?
            .objects
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect())
    }

    async fn post_file(&self, grant: &Value, key: &str, file: &Path) -> Result<(), ClientError> {
        let url = grant["url"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no url".into()))?;
        let fields = grant["fields"]
            .as_object()
            .ok_or_else(|| ClientError::Protocol("no fields".into()))?;
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            let value = if name == "key" {
                key.to_owned()
            } else {
                value.as_str().unwrap_or_default().to_owned()
            };
            form = form.text(name.clone(), value);
        }
        let bytes = tokio::fs::read(file).await.map_err(|e| file_err(file, e))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
        let res = self
            .http
            .post(url)
            .multipart(form)
            .send()
            .await
            .map_err(|e| unreachable(url, e))?;
        let status = res.status().as_u16();
        if status == 204 || status == 200 || status == 201 {
            return Ok(());
        }
        Err(ClientError::Http {
            what: format!("upload of {key}"),
            status,
            body: res.text().await.unwrap_or_default(),
        })
    }

    /// Downloads `keys` of `miner` into `out`, keeping their path below the miner folder.
    pub async fn download(
        &self,
        miner: &str,
        keys: &[String],
        out: &Path,
    ) -> Result<Vec<PathBuf>, ClientError> {
        let grant = self.file_urls(miner, keys).await?;
        if let Some(bad) = grant["invalid_keys"].as_array().filter(|a| !a.is_empty()) {
            return Err(ClientError::Protocol(format!(
                "keys refused (not under data/hotkey={miner}/): {}",
                bad.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let prefix = format!("data/hotkey={miner}/");
        let bar = progress(0, "download");
        let mut written = Vec::new();
        for key in keys {
            let url = grant["file_urls"][key]["presigned_url"]
                .as_str()
                .ok_or_else(|| ClientError::Protocol(format!("no URL for {key}")))?;
            let mut res = self
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| unreachable(url, e))?;
            if res.status().as_u16() != 200 {
                return Err(ClientError::Http {
                    what: format!("download of {key}"),
                    status: res.status().as_u16(),
                    body: res.text().await.unwrap_or_default(),
                });
            }
            if let Some(len) = res.content_length() {
                bar.inc_length(len);
            }
            let relative = key.strip_prefix(&prefix).unwrap_or(key);
            let target = out.join(relative);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| file_err(parent, e))?;
            }
            let mut data = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(|e| unreachable(url, e))? {
                bar.inc(chunk.len() as u64);
                data.extend_from_slice(&chunk);
            }
            tokio::fs::write(&target, &data)
                .await
                .map_err(|e| file_err(&target, e))?;
            written.push(target);
        }
        bar.finish_and_clear();
        Ok(written)
    }
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Keys uploaded now.
    pub uploaded: Vec<String>,
    /// Keys already present with the same size.
    pub skipped: Vec<String>,
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
    )) {
        bar.set_style(style);
    }
    bar
}

/// (path, key-relative path with `/`, size) of a file or of every file under a directory.
fn collect_files(path: &Path) -> Result<Vec<(PathBuf, String, u64)>, ClientError> {
    let meta = std::fs::metadata(path).map_err(|e| file_err(path, e))?;
    if meta.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| file_err(path, "no file name"))?;
        return Ok(vec![(path.to_owned(), name, meta.len())]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| file_err(&dir, e))? {
            let entry = entry.map_err(|e| file_err(&dir, e))?;
            let p = entry.path();
            let m = entry.metadata().map_err(|e| file_err(&p, e))?;
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let rel = p
                    .strip_prefix(path)
                    .map_err(|e| file_err(&p, e))?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((p, rel, m.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}
