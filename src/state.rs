//! Shared application state and its construction from [`Config`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use tokio::task::JoinHandle;

use crate::access::throttle::AuthThrottle;
use crate::access::{Access, AccessError, AccessPolicy};
use crate::auth::TimestampWindow;
use crate::config::Config;
use crate::metagraph::snapshot::{SnapshotLocation, SnapshotStore};
use crate::metagraph::{
    ChainSource, FileSource, MetagraphError, MetagraphHandle, SyncSettings, start_sync,
};
use crate::quota::{Quotas, RedisStore};
use crate::storage::secrets::SecretCredentials;
use crate::storage::{BucketLocation, CredentialSource, S3Health};

/// How long a HeadBucket may take before S3 counts as down.
pub const S3_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often S3 and Redis are probed in the background for `/healthcheck`.
pub const HEALTH_PROBE_EVERY: Duration = Duration::from_secs(10);

/// Request counters for `/healthcheck`'s `stats`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered.
    pub total_requests: AtomicU64,
    /// Requests answered with a 5xx status.
    pub total_errors: AtomicU64,
    /// Requests answered with 504.
    pub total_timeouts: AtomicU64,
}

impl Stats {
    /// Records one response status.
    pub fn record(&self, status: u16) {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.total_errors.fetch_add(1, Ordering::Relaxed);
        }
        if status == 504 {
            self.total_timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Everything handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The configuration the service started with.
    pub config: Config,
    /// The access decisions, with the metagraph, quotas, signer and throttle they use.
    pub access: Access,
    /// Cached bucket health.
    pub s3_health: S3Health,
    /// Request counters.
    pub stats: Stats,
    /// Prometheus counters and histograms.
    pub metrics: crate::metrics::Metrics,
    /// When the service started.
    pub started: Instant,
    /// Permits for requests in flight (`MAX_CONCURRENT_REQUESTS`); none left means 503.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Set once shutdown has started (readiness then answers 503).
    pub draining: crate::server::Draining,
    /// Bytes of request bodies held at once (`REQUEST_BUFFER_BUDGET_MB`); spent means 503.
    pub buffer_budget: Arc<crate::api::budget::BufferBudget>,
}

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// No metagraph source is configured.
    #[error("METAGRAPH_FILE is not set: expected the path of a metagraph JSON file (see README)")]
    NoMetagraphSource,
    /// The first metagraph load failed.
    #[error(transparent)]
    Metagraph(#[from] MetagraphError),
    /// The Secrets Manager secret could not be used.
    #[error(transparent)]
    Secret(#[from] crate::storage::secrets::SecretError),
    /// No signing credentials could be loaded.
    #[error(transparent)]
    Credentials(crate::storage::CredentialError),
    /// `REDIS_URL` could not be used.
    #[error(transparent)]
    Redis(#[from] crate::quota::redis_store::InvalidRedisUrl),
}

/// Background tasks of a running service; dropping this does not stop them.
#[derive(Debug, Clone, Default)]
pub struct BackgroundTasks {
    handles: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl BackgroundTasks {
    /// Adds a task (aborted with the others).
    pub fn push(&self, handle: JoinHandle<()>) {
        if let Ok(mut handles) = self.handles.lock() {
            handles.push(handle);
        }
    }

    /// Aborts every task.
    pub fn abort(&self) {
        if let Ok(handles) = self.handles.lock() {
            for h in handles.iter() {
                h.abort();
            }
        }
    }
}

/// What is left of start-up once the service answers: the first metagraph load and the
/// first read of the signing secret. It fails on what must stop the process (a subnet
/// that does not exist, an unreadable metagraph file, a missing or malformed secret).
pub type Startup =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StartupError>> + Send + 'static>>;

/// Loads the metagraph from the configured source (`METAGRAPH_FILE` when set, else the
/// chain at `SUBTENSOR_URL` / `BT_NETWORK`) and starts its syncer.
async fn start_metagraph(
    config: &Config,
    handle: Arc<MetagraphHandle>,
) -> Result<JoinHandle<()>, StartupError> {
    let mut settings = SyncSettings {
        netuid: config.net_uid,
        interval: config.metagraph_sync_interval,
        timeout: config.metagraph_sync_timeout,
        backoff_base: Duration::from_secs(1),
        snapshot: snapshot_store(config).await,
        snapshot_max_age: config.metagraph_refuse_after,
    };
    if let Some(path) = &config.metagraph_file {
        settings.interval = config.metagraph_file_poll;
        let source = Arc::new(FileSource::new(path.clone(), config.net_uid));
        return Ok(start_sync(source, handle, settings).await?);
    }
    let url = config
        .subtensor_url
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .ok_or(StartupError::NoMetagraphSource)?;
    let source = Arc::new(ChainSource::new(
        url,
        config.net_uid,
        config.metagraph_sync_timeout,
    ));
    Ok(start_sync(source, handle, settings).await?)
}

/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, when given.
fn environment_credentials(config: &Config) -> Option<Credentials> {
    config.aws_credentials.as_ref().map(|c| {
        Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "environment",
        )
    })
}

/// The configured snapshot location, with an S3 client for an `s3://` one. That client
/// is the service's own identity (the environment keys if given, else the default chain:
/// the ECS task role), not the signing credentials, which may come from a secret.
async fn snapshot_store(config: &Config) -> Option<SnapshotStore> {
    use aws_sdk_s3::config::{BehaviorVersion, Region};
    match config.metagraph_snapshot_path.as_ref()? {
        SnapshotLocation::File(path) => Some(SnapshotStore::File(path.clone())),
        SnapshotLocation::S3 { bucket, key } => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(config.s3_region.clone()));
            if let Some(creds) = environment_credentials(config) {
                loader = loader.credentials_provider(creds);
            }
            let sdk = loader.load().await;
            let mut builder = aws_sdk_s3::config::Builder::from(&sdk);
            if let Some(endpoint) = &config.s3_endpoint_url {
                builder = builder.endpoint_url(endpoint).force_path_style(true);
            }
            Some(SnapshotStore::S3 {
                client: aws_sdk_s3::Client::from_conf(builder.build()),
                bucket: bucket.clone(),
                key: key.clone(),
            })
        }
    }
}

async fn credential_source(
    config: &Config,
) -> Result<
    (
        CredentialSource,
        aws_sdk_s3::Config,
        Option<SecretCredentials>,
    ),
    StartupError,
> {
    use aws_sdk_s3::config::{BehaviorVersion, Region};
    let region = Region::new(config.s3_region.clone());
    let fixed = environment_credentials(config);
    let mut secret = None;
    let source = match (&config.credentials_secret_id, fixed) {
        (Some(id), fixed) => {
            // Secrets Manager is called with the environment keys if given, else the
            // default chain (the task role).
            let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region.clone());
            if let Some(creds) = fixed {
                loader = loader.credentials_provider(creds);
            }
            if let Some(endpoint) = &config.secrets_manager_endpoint_url {
                loader = loader.endpoint_url(endpoint);
            }
            let sdk = loader.load().await;
            let reader =
                SecretCredentials::new(aws_sdk_secretsmanager::Client::new(&sdk), id.clone());
            secret = Some(reader);
            // Filled by the first read of the secret, during start-up.
            CredentialSource::managed_pending("secrets-manager")
        }
        (None, Some(creds)) => CredentialSource::fixed(creds),
        (None, None) => {
            let sdk = aws_config::defaults(BehaviorVersion::latest())
                .region(region.clone())
                .load()
                .await;
            match sdk.credentials_provider() {
                Some(p) => CredentialSource::from_provider(p),
                None => CredentialSource::from_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(
                        aws_config::default_provider::credentials::default_provider().await,
                    ),
                ),
            }
        }
    };
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(source.provider());
    if let Some(endpoint) = &config.s3_endpoint_url {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    Ok((source, builder.build(), secret))
}

impl AppState {
    /// Counts a refused request in the metrics and hands the error back.
    pub fn observe(&self, err: AccessError) -> AccessError {
        self.metrics.observe_access_error(&err);
        err
    }
}

/// The signing credentials the service would use, read once (the secret's first read, or
/// the environment keys, or the default chain), for `selftest`.
pub async fn load_signing_credentials(config: &Config) -> Result<Arc<Credentials>, StartupError> {
    let (source, _, secret) = credential_source(config).await?;
    match secret {
        Some(reader) => Ok(Arc::new(reader.fetch(SECRET_FIRST_READ_TIMEOUT).await?)),
        None => source.get().await.map_err(StartupError::Credentials),
    }
}

/// Bound on the first read of the signing secret.
const SECRET_FIRST_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl AppState {
    /// Builds the state from `config` without waiting on any dependency, and returns
    /// with it the rest of start-up ([`Startup`]): the first metagraph load and the
    /// first read of the signing secret, after which the background tasks run. Until
    /// then the service answers, and grants get 503.
    pub async fn start(
        config: Config,
    ) -> Result<(Arc<Self>, BackgroundTasks, Startup), StartupError> {
        // rediss:// connections need a process-wide TLS provider; another caller may
        // have installed one already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metagraph = Arc::new(MetagraphHandle::new());
        if config.metagraph_file.is_none() && config.subtensor_url.is_none() {
            return Err(StartupError::NoMetagraphSource);
        }
        let redis = match &config.redis_url {
            Some(url) => Some(RedisStore::connect(
                url.as_str(),
                config.redis_password.as_ref().map(|p| p.0.as_str()),
                config.redis_mode,
                &config.quota_key_prefix,
            )?),
            None => None,
        };
        let quotas = Quotas::new(
            redis,
            config.quota_on_redis_error,
            config.quota_key_prefix.clone(),
        );

        let (credentials, s3_config, secret) = credential_source(&config).await?;
        let s3 = aws_sdk_s3::Client::from_conf(s3_config);
        let s3_health = S3Health::new(
            s3.clone(),
            config.s3_bucket.clone(),
            S3_HEALTH_TIMEOUT,
            HEALTH_PROBE_EVERY / 2,
        );
        let location = BucketLocation::of(&config);
        let (max_in_flight, budget) =
            (config.max_concurrent_requests, config.request_buffer_budget);
        let (auth_failure_burst, auth_failures_per_minute) =
            (config.auth_failure_burst, config.auth_failures_per_minute);
        let access = Access {
            policy: AccessPolicy::from(&config),
            metagraph,
            quotas,
            credentials,
            location,
            s3,
            window: TimestampWindow::default(),
            throttle: AuthThrottle::new(auth_failure_burst, auth_failures_per_minute),
        };
        let state = Arc::new(Self {
            config,
            access,
            s3_health,
            stats: Stats::default(),
            metrics: crate::metrics::Metrics::default(),
            started: Instant::now(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            draining: crate::server::Draining::default(),
            buffer_budget: crate::api::budget::BufferBudget::new(budget),
        });

        let tasks = BackgroundTasks::default();
        tasks.push(spawn_probes(Arc::clone(&state)));
        if let Some(emf) = state.config.emf.clone() {
            tasks.push(crate::emf::spawn(Arc::clone(&state), emf));
        }
        let startup_state = Arc::clone(&state);
        let startup_tasks = tasks.clone();
        let startup: Startup = Box::pin(async move {
            let state = startup_state;
            let first_read = async {
                match &secret {
                    Some(reader) => {
                        let initial = reader.fetch(SECRET_FIRST_READ_TIMEOUT).await?;
                        state.access.credentials.replace(initial);
                        Ok(())
                    }
                    None => match state.access.credentials.get().await {
                        Ok(_) => Ok(()),
                        Err(err) => {
                            tracing::error!(error = %err, "no signing credentials at start; grants get 503 until they load");
                            Ok(())
                        }
                    },
                }
            };
            // The first fatal error ends start-up at once (a missing secret need not wait
            // for a slow first sync).
            let metagraph = async {
                let syncer =
                    start_metagraph(&state.config, Arc::clone(&state.access.metagraph)).await?;
                startup_tasks.push(syncer);
                Ok::<(), StartupError>(())
            };
            tokio::try_join!(metagraph, first_read)?;
            if let Some(reader) = secret {
                startup_tasks.push(reader.spawn_refresh(
                    state.access.credentials.clone(),
                    state.config.credentials_refresh_interval,
                ));
            }
            Ok(())
        });
        Ok((state, tasks, startup))
    }
}

/// Probes S3 and Redis at once and then every [`HEALTH_PROBE_EVERY`]; while Redis has
/// no connection yet, it is looked at every 100 ms so that its first result shows as soon
/// as the connection is up.
fn spawn_probes(state: Arc<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let s3 = async {
            let mut ticker = tokio::time::interval(HEALTH_PROBE_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                state.s3_health.status().await;
            }
        };
        let redis = async {
            loop {
                let probed = state.access.quotas.probe_redis().await;
                let wait = if probed.is_none() && state.access.quotas.uses_redis() {
                    Duration::from_millis(100)
                } else {
                    HEALTH_PROBE_EVERY
                };
                tokio::time::sleep(wait).await;
            }
        };
        tokio::join!(s3, redis);
    })
}
