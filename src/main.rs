//! The `s3-auth-api` command: the service (`serve`), a one-command development setup
//! (`dev`), and a client for miners and validators (`client`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use s3_auth_api::client::Client;
use s3_auth_api::config::LogFormat;
use s3_auth_api::dev::{self, DevOptions};
use s3_auth_api::keys::SigningKey;
use s3_auth_api::keys::wallet::{default_wallets_dir, load_coldkeypub, load_hotkey};
use s3_auth_api::server::{self, ServeSettings};
use s3_auth_api::{Config, launch};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Presigned S3 access for Bittensor subnet miners and validators"
)]
struct Cli {
    /// Read variables from this file before the environment (default: ./.env if present).
    #[arg(long, global = true)]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service, configured from the environment (the default).
    Serve,
    /// Run everything locally: the API, an embedded S3 server and a dev metagraph.
    Dev(DevArgs),
    /// Call a running service as a miner or a validator.
    Client(ClientArgs),
    /// Check the signing path against the configured bucket: presign a miner's upload
    /// policy for `_selftest/`, upload 1 KiB, read it back, list it, delete it. Prints one
    /// line per step; exits 0 only if every step passed.
    Selftest,
}

#[derive(Debug, Args)]
struct DevArgs {
    /// API port.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Embedded S3 port.
    #[arg(long, default_value_t = 9000)]
    s3_port: u16,
    /// Where uploads and the dev metagraph are kept.
    #[arg(long, default_value = ".dev-data")]
    data_dir: PathBuf,
    /// Requests per miner per day.
    #[arg(long, default_value_t = 1000)]
    miner_limit: u64,
    /// Requests per validator per day.
    #[arg(long, default_value_t = 20_000)]
    validator_limit: u64,
    /// Requests per day in total.
    #[arg(long, default_value_t = 500_000)]
    total_limit: u64,
    /// Listen on all interfaces instead of loopback only.
    #[arg(long)]
    public: bool,
    /// Hand out presigned PUTs instead of POST policies from `/get-file-upload-url` (as
    /// `S3_UPLOAD_METHOD=put` does).
    #[arg(long)]
    put_uploads: bool,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000", env = "S3_AUTH_API_URL")]
    api: String,
    /// bittensor wallet name (reads <wallets-dir>/<wallet>/hotkeys/<hotkey>).
    #[arg(long, conflicts_with_all = ["uri", "mnemonic"])]
    wallet: Option<String>,
    /// Hotkey name within the wallet.
    #[arg(long, default_value = "default")]
    hotkey: String,
    /// Wallets directory.
    #[arg(long)]
    wallets_dir: Option<PathBuf>,
    /// Secret URI of the hotkey, e.g. //Alice (development keys).
    #[arg(long, conflicts_with = "mnemonic")]
    uri: Option<String>,
    /// BIP-39 mnemonic of the hotkey.
    #[arg(long)]
    mnemonic: Option<String>,
    /// The miner's coldkey: an SS58 address or a secret URI such as //Charlie//stash
    /// (default with --wallet: the wallet's coldkeypub.txt).
    #[arg(long)]
    coldkey: Option<String>,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Miner commands.
    #[command(subcommand)]
    Miner(MinerCommand),
    /// Validator commands.
    #[command(subcommand)]
    Validator(ValidatorCommand),
}

#[derive(Debug, Subcommand)]
enum MinerCommand {
    /// Upload a file or a directory into job_id=<JOB_ID>/ of your folder (resumable).
    Upload {
        /// File or directory.
        path: PathBuf,
        /// The job id.
        #[arg(long)]
        job_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ValidatorCommand {
    /// List every object, or one miner's.
    List {
        /// Only this miner's folder.
        #[arg(long)]
        miner: Option<String>,
    },
    /// Download objects of one miner.
    Download {
        /// Object keys (data/hotkey=<MINER>/...).
        #[arg(required = true)]
        keys: Vec<String>,
        /// The miner whose objects these are.
        #[arg(long)]
        miner: String,
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    // Before the runtime's threads exist: the arena count applies to threads started later.
    s3_auth_api::malloc::tune();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = match load_config(cli.env_file.as_ref()) {
                Ok(c) => c,
                Err(msg) => {
                    eprintln!("{msg}");
                    return ExitCode::from(2);
                }
            };
            init_tracing(&config.log_level, config.log_format);
            runtime.block_on(serve(config))
        }
        Command::Dev(args) => {
            init_tracing("warn,s3_auth_api=info", LogFormat::Text);
            runtime.block_on(run_dev(args))
        }
        Command::Client(args) => runtime.block_on(run_client(args)),
        Command::Selftest => {
            let config = match load_config(cli.env_file.as_ref()) {
                Ok(c) => c,
                Err(msg) => {
                    eprintln!("{msg}");
                    return ExitCode::from(2);
                }
            };
            init_tracing("warn", config.log_format);
            return match runtime.block_on(selftest(config)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    println!("selftest: FAILED: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(env_file: Option<&PathBuf>) -> Result<Config, String> {
    match env_file {
        Some(path) => {
            dotenvy::from_path(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        None => match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(format!("cannot read .env: {e}")),
        },
    }
    Config::from_env().map_err(|e| e.to_string())
}

/// Library targets whose debug lines print the endpoint URL they were given, userinfo and
/// query included: capped at `info` whatever `LOG_LEVEL` says.
const URL_ECHOING_TARGETS: &str = "jsonrpsee-client=info,jsonrpsee_client=info,jsonrpsee_core=info,jsonrpsee_client_transport=info";

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = format!("{filter},{URL_ECHOING_TARGETS}");
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let addr: SocketAddr = format!("{}:{}", config.host, config.port)
        .parse()
        .context("HOST and PORT do not form a socket address")?;
    // Listen first: probes answer while the metagraph and the secret load.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let (app, startup) = launch(config).await.context("cannot start")?;
    s3_auth_api::malloc::spawn_trimmer();
    let settings = ServeSettings::from_config(&app.state.config, app.state.draining.clone());
    tracing::info!(%addr, "s3-auth-api listening");
    let server = server::run(listener, app.router, settings, shutdown_signal());
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.context("server error"),
        result = startup => result.context("cannot start")?,
    }
    tracing::info!("metagraph and signing credentials loaded");
    server.await.context("server error")
}

async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let opts = DevOptions {
        host: if args.public {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        },
        port: args.port,
        s3_port: args.s3_port,
        data_dir: args.data_dir,
        miner_limit: args.miner_limit,
        validator_limit: args.validator_limit,
        total_limit: args.total_limit,
        upload_method: if args.put_uploads {
            s3_auth_api::config::UploadMethod::Put
        } else {
            s3_auth_api::config::UploadMethod::Post
        },
    };
    let server = dev::start(&opts).await.context("cannot start dev mode")?;
    println!("{}", dev::banner(&server));
    let mut settings =
        ServeSettings::from_config(&server.app.state.config, server.app.state.draining.clone());
    settings.grace = std::time::Duration::from_secs(5);
    // Nothing routes to dev mode through a load balancer: close at once on Ctrl-C.
    settings.drain_delay = std::time::Duration::ZERO;
    server::run(
        server.listener,
        server.app.router,
        settings,
        shutdown_signal(),
    )
    .await
    .context("server error")
}

fn signing_key(args: &ClientArgs) -> anyhow::Result<SigningKey> {
    if let Some(uri) = &args.uri {
        return SigningKey::from_uri(uri).context("--uri");
    }
    if let Some(m) = &args.mnemonic {
        return SigningKey::from_mnemonic(m).context("--mnemonic");
    }
    let wallet = args
        .wallet
        .as_deref()
        .context("give a key: --wallet NAME [--hotkey NAME], --uri //Name or --mnemonic \"...\"")?;
    let dir = args.wallets_dir.clone().unwrap_or_else(default_wallets_dir);
    Ok(load_hotkey(&dir, wallet, &args.hotkey)?)
}

fn coldkey(args: &ClientArgs) -> anyhow::Result<String> {
    match (&args.coldkey, &args.wallet) {
        (Some(c), _) if c.starts_with("//") || c.contains(' ') => Ok(SigningKey::from_uri(c)
            .context("--coldkey")?
            .ss58()
            .to_owned()),
        (Some(c), _) => {
            s3_auth_api::auth::decode_ss58(c).context("--coldkey is not an SS58 address")?;
            Ok(c.clone())
        }
        (None, Some(wallet)) => {
            let dir = args.wallets_dir.clone().unwrap_or_else(default_wallets_dir);
            Ok(load_coldkeypub(&dir, wallet)?)
        }
        (None, None) => anyhow::bail!("miners need --coldkey (SS58 or URI) or --wallet"),
    }
}

/// Runs the canary with the service's configuration; `Ok(false)` when a step failed.
async fn selftest(config: Config) -> anyhow::Result<bool> {
    let location = s3_auth_api::storage::BucketLocation::of(&config);
    println!(
        "selftest: bucket {} in {} under {}",
        location.bucket,
        location.region,
        s3_auth_api::selftest::SELFTEST_PREFIX
    );
    let credentials = s3_auth_api::state::load_signing_credentials(&config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the signing credentials: {e}"))?;
    let http = reqwest::Client::builder()
        .timeout(
            config
                .s3_operation_timeout
                .max(std::time::Duration::from_secs(10)),
        )
        .build()?;
    let mut failed = None;
    let mut quota_ok = true;
    if let Some(url) = &config.redis_url {
        let store = s3_auth_api::quota::RedisStore::connect(
            url.as_str(),
            config.redis_password.as_ref().map(|p| p.0.as_str()),
            config.redis_mode,
            &config.quota_key_prefix,
        )?;
        let outcome = s3_auth_api::selftest::quota(&store).await;
        println!("selftest: {} {outcome}", s3_auth_api::selftest::Step::Quota);
        if matches!(outcome, s3_auth_api::selftest::Outcome::Fail(_)) {
            quota_ok = false;
            failed = Some(s3_auth_api::selftest::Step::Quota);
        }
    }
    let ok = s3_auth_api::selftest::run(
        &credentials,
        &location,
        &config.tao,
        &http,
        std::time::SystemTime::now(),
        |step, outcome| {
            println!("selftest: {step} {outcome}");
            if failed.is_none() && matches!(outcome, s3_auth_api::selftest::Outcome::Fail(_)) {
                failed = Some(step);
            }
        },
    )
    .await
        && quota_ok;
    match failed {
        None if ok => println!("selftest: PASSED"),
        Some(step) => println!("selftest: FAILED at {step}"),
        None => println!("selftest: FAILED"),
    }
    Ok(ok)
}

async fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.api, signing_key(&args)?)?;
    match &args.role {
        Role::Miner(MinerCommand::Upload { path, job_id }) => {
            let coldkey = coldkey(&args)?;
            let report = client.upload(&coldkey, path, job_id).await?;
            for key in &report.uploaded {
                println!("uploaded {key}");
            }
            for key in &report.skipped {
                println!("already present {key}");
            }
            println!(
                "{} uploaded, {} already present",
                report.uploaded.len(),
                report.skipped.len()
            );
        }
        Role::Validator(ValidatorCommand::List { miner }) => {
            for object in client.list_all(miner.as_deref()).await? {
                println!("{}\t{}", object.size, object.key);
            }
        }
        Role::Validator(ValidatorCommand::Download { keys, miner, out }) => {
            for path in client.download(miner, keys, out).await? {
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
