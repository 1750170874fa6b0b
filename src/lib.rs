//! s3-auth-api: presigned S3 access for Bittensor subnet miners and validators, granted
//! after an sr25519 signature proves who they are.
//!
//! [`launch`] turns a [`Config`] into an [`App`] that can answer at once, plus the rest
//! of start-up to drive while it serves; [`build_app`] waits for both. [`server::run`]
//! serves the router on a listener.

pub mod access;
pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod dev;
pub mod emf;
pub mod keys;
pub mod loadgen;
pub mod malloc;
pub mod metagraph;
pub mod metrics;
pub mod quota;
pub mod redact;
pub mod selftest;
pub mod server;
pub mod state;
pub mod storage;
pub mod timefmt;

use std::sync::Arc;

pub use config::Config;
pub use state::{AppState, BackgroundTasks, Startup, StartupError};

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

/// Builds the service from `config` and waits until its first metagraph and signing
/// credentials are loaded; fails when start-up fails.
pub async fn build_app(config: Config) -> Result<App, StartupError> {
    let (app, startup) = launch(config).await?;
    if let Err(err) = startup.await {
        app.tasks.abort();
        return Err(err);
    }
    Ok(app)
}

/// Builds the service from `config` without waiting on the chain or Secrets Manager: the
/// router answers at once (grants with 503 until loaded). Drive the returned [`Startup`]
/// to load the metagraph and credentials; its error must stop the process.
pub async fn launch(config: Config) -> Result<(App, Startup), StartupError> {
    let (state, tasks, startup) = AppState::start(config).await?;
    let app = App {
        router: api::router(Arc::clone(&state)),
        state,
        tasks,
    };
    Ok((app, startup))
}
