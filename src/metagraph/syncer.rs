//! Keeps a [`MetagraphHandle`] current from a [`MetagraphSource`]: an initial sync at
//! start, then a sync every interval, with capped exponential backoff and jitter after
//! failures while the last good metagraph keeps serving.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use super::{MetagraphError, MetagraphHandle, MetagraphSource, snapshot};

/// How the syncer paces itself.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// The configured subnet (a snapshot must be of it).
    pub netuid: u16,
    /// Time between successful syncs.
    pub interval: Duration,
    /// Bound on one whole sync (connect, read, decode).
    pub timeout: Duration,
    /// First retry delay after a failure; doubles per failure up to `interval`.
    pub backoff_base: Duration,
    /// Where to keep the last good metagraph, if anywhere.
    pub snapshot: Option<snapshot::SnapshotStore>,
    /// A snapshot older than this is not served at start (`None`: any age).
    pub snapshot_max_age: Option<Duration>,
}

/// The delay before retry number `failures` (1-based): `base * 2^(failures-1)`, capped
/// at `cap`, then scaled by a jitter factor in [0.5, 1.0).
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(cap.max(base));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Cheap jitter from the clock's low bits: syncers of several tasks spread out.
    let jitter = 0.5 + f64::from(nanos % 1000) / 2000.0;
    capped.mul_f64(jitter)
}

async fn sync_once<S: MetagraphSource>(
    source: &S,
    handle: &MetagraphHandle,
    settings: &SyncSettings,
) -> Result<(), MetagraphError> {
    let fetched = tokio::time::timeout(settings.timeout, source.fetch())
        .await
        .map_err(|_| {
            MetagraphError::Timeout(format!("sync took longer than {:?}", settings.timeout))
        })??;
    match fetched {
        Some(graph) => {
            tracing::info!(
                source = %source.describe(),
                block = graph.block(),
                hotkeys = graph.len(),
                "metagraph synced"
            );
            let now = SystemTime::now();
            if let Some(store) = &settings.snapshot
                && let Err(err) = store.write(&graph, now).await
            {
                tracing::warn!(error = %err, "cannot write metagraph snapshot");
            }
            handle.install(graph, source.describe(), now, false);
        }
        None => handle.touch(),
    }
    handle.record_success();
    Ok(())
}

/// Runs the initial sync, then spawns the periodic syncer.
///
/// A configuration error at start (no such subnet, unreadable file) is returned. When
/// the source is merely unreachable, the snapshot (if any) is served, flagged as such,
/// and the syncer keeps trying in the background.
pub async fn start_sync<S: MetagraphSource>(
    source: Arc<S>,
    handle: Arc<MetagraphHandle>,
    settings: SyncSettings,
) -> Result<JoinHandle<()>, MetagraphError> {
    if let Err(err) = sync_once(source.as_ref(), &handle, &settings).await {
        if err.is_config_error() {
            return Err(err);
        }
        handle.record_failure(&err);
        tracing::error!(error = %err, source = %source.describe(), "initial metagraph sync failed");
        match &settings.snapshot {
            Some(store) => match store.read(settings.netuid).await {
                Ok((_, synced_at))
                    if settings.snapshot_max_age.is_some_and(|max| {
                        SystemTime::now()
                            .duration_since(synced_at)
                            .is_ok_and(|age| age > max)
                    }) =>
                {
                    tracing::error!(
                        snapshot = %store.describe(),
                        "metagraph snapshot is older than METAGRAPH_REFUSE_AFTER; not serving it"
                    );
                }
                Ok((graph, synced_at)) => {
                    tracing::warn!(
                        snapshot = %store.describe(),
                        block = graph.block(),
                        "serving the metagraph snapshot until the source answers"
                    );
                    handle.install(
                        graph,
                        format!("snapshot:{}", store.describe()),
                        synced_at,
                        true,
                    );
                }
                Err(e) => tracing::error!(error = %e, "no usable metagraph snapshot"),
            },
            None => tracing::error!(
                "no metagraph snapshot configured; auth requests get 503 until a sync succeeds"
            ),
        }
    }
    let task = tokio::spawn(async move {
        loop {
            let failures = handle.status().consecutive_failures;
            let delay = if failures == 0 {
                settings.interval
            } else {
                backoff(failures, settings.backoff_base, settings.interval)
            };
            tokio::time::sleep(delay).await;
            if let Err(err) = sync_once(source.as_ref(), &handle, &settings).await {
                let n = handle.record_failure(&err);
                tracing::warn!(error = %err, consecutive_failures = n, "metagraph sync failed; keeping the last good one");
            }
        }
    });
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        let d1 = backoff(1, base, cap);
        assert!(d1 >= Duration::from_millis(500) && d1 < base);
        let d3 = backoff(3, base, cap);
        assert!(d3 >= Duration::from_secs(2) && d3 < Duration::from_secs(4));
        let d20 = backoff(20, base, cap);
        assert!(d20 >= Duration::from_secs(30) && d20 < cap);
    }
}
