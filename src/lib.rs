//! s3-auth-api: presigned S3 access for Bittensor subnet miners and validators, granted
//! after an sr25519 signature proves who they are.
//!
//! [`build_app`] turns a [`Config`] into a ready [`App`]: the router and its shared state.

pub mod access;
pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod dev;
pub mod keys;
pub mod loadgen;
pub mod metagraph;
pub mod metrics;
pub mod quota;
pub mod state;
pub mod storage;
pub mod timefmt;

use std::sync::Arc;

pub use config::Config;
pub use state::{AppState, BackgroundTasks, StartupError};

/// A built service: its router, its state and its background tasks.
#[derive(Debug)]
pub struct App {
    /// The HTTP router.
    pub router: axum::Router,
    /// The shared state behind the router.
    pub state: Arc<AppState>,
    /// Metagraph reloads and health probes.
    pub tasks: BackgroundTasks,
}

/// Builds the service from `config`; fails when no metagraph can be loaded.
pub async fn build_app(config: Config) -> Result<App, StartupError> {
    let (state, tasks) = AppState::start(config).await?;
    Ok(App {
        router: api::router(Arc::clone(&state)),
        state,
        tasks,
    })
}
