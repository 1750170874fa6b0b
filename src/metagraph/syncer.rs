//! Keeps a [`MetagraphHandle`] current by polling a [`MetagraphSource`].

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{MetagraphError, MetagraphHandle, MetagraphSource};

/// Loads the metagraph once, failing if the source cannot produce one.
pub async fn initial_load<S: MetagraphSource>(
    source: &S,
    handle: &MetagraphHandle,
) -> Result<(), MetagraphError> {
    if let Some(graph) = source.fetch().await? {
        tracing::info!(
            source = %source.describe(),
            block = graph.block(),
            hotkeys = graph.len(),
            "metagraph loaded"
        );
        handle.replace(graph, source.describe());
    }
    Ok(())
}

/// Polls `source` every `interval` and swaps in each new metagraph. On failure the last
/// good metagraph keeps serving and the error is logged.
pub fn spawn_syncer<S: MetagraphSource>(
    source: Arc<S>,
    handle: Arc<MetagraphHandle>,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match source.fetch().await {
                Ok(Some(graph)) => {
                    tracing::info!(
                        source = %source.describe(),
                        block = graph.block(),
                        hotkeys = graph.len(),
                        "metagraph reloaded"
                    );
                    handle.replace(graph, source.describe());
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "metagraph reload failed; keeping the last good one");
                }
            }
        }
    })
}
