//! Whether the bucket answers: HeadBucket with a timeout, cached so probes cannot hammer S3.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One HeadBucket result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct S3Status {
    /// Whether HeadBucket succeeded in time.
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
}

/// Cached HeadBucket checks against the configured bucket.
#[derive(Debug)]
pub struct S3Health {
    client: aws_sdk_s3::Client,
    bucket: String,
    timeout: Duration,
    cache_for: Duration,
    last: Mutex<Option<(Instant, S3Status)>>,
    refresh: tokio::sync::Mutex<()>,
}

impl S3Health {
    /// Checks `bucket` with `client`; results are reused for `cache_for`.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: String,
        timeout: Duration,
        cache_for: Duration,
    ) -> Self {
        Self {
            client,
            bucket,
            timeout,
            cache_for,
            last: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<S3Status> {
        let last = self.last.lock().ok()?;
        last.filter(|(at, _)| at.elapsed() < self.cache_for)
            .map(|(_, s)| s)
    }

    /// The last status, if one was ever taken (no network call).
    pub fn last(&self) -> Option<S3Status> {
        self.last.lock().ok().and_then(|l| l.map(|(_, s)| s))
    }

    /// The bucket's status, from cache when recent; only one check runs at a time.
    pub async fn status(&self) -> S3Status {
        if let Some(s) = self.fresh() {
            return s;
        }
        let _guard = self.refresh.lock().await;
        if let Some(s) = self.fresh() {
            return s;
        }
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.timeout,
            self.client.head_bucket().bucket(&self.bucket).send(),
        )
        .await;
        let ok = match result {
            Ok(Ok(_)) => true,
            Ok(Err(err)) => {
                tracing::debug!(error = %aws_sdk_s3::error::DisplayErrorContext(&err), "HeadBucket failed");
                false
            }
            Err(_) => false,
        };
        let status = S3Status {
            ok,
            latency_ms: (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        };
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), status));
        }
        status
    }
}
