//! `s3-auth-api dev`: the whole service in one process with no AWS, Redis or chain: an
//! embedded S3-compatible server, in-process quotas, and a metagraph of the well-known
//! development keys.

pub mod aws_like;
pub mod s3;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde_json::json;

pub use s3::{EmbeddedS3Error, start_embedded_s3};

use crate::keys::{KeyError, SigningKey};
use crate::{Config, StartupError, build_app};

/// The bucket dev mode serves.
pub const DEV_BUCKET: &str = "dev-bucket";
/// The access key of the embedded S3 server (development only).
pub const DEV_ACCESS_KEY: &str = "dev-access-key";
/// The secret key of the embedded S3 server (development only).
pub const DEV_SECRET_KEY: &str = "dev-secret-key-not-for-production";

/// What a development account does in the dev metagraph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Validator permit and 50 000 alpha.
    Validator,
    /// No permit, a little stake.
    Miner,
}

/// A development account: hotkey `//Name`, coldkey `//Name//stash`.
#[derive(Debug, Clone)]
pub struct DevAccount {
    /// `Alice`, `Bob`, ...
    pub name: &'static str,
    /// The hotkey's secret URI.
    pub uri: String,
    /// The hotkey.
    pub hotkey: SigningKey,
    /// The coldkey's secret URI.
    pub coldkey_uri: String,
    /// The coldkey's address.
    pub coldkey: String,
    /// Validator or miner.
    pub role: Role,
}

/// `//Alice` and `//Bob` validators; `//Charlie`, `//Dave`, `//Eve` miners.
pub fn dev_accounts() -> Result<Vec<DevAccount>, KeyError> {
    [
        ("Alice", Role::Validator),
        ("Bob", Role::Validator),
        ("Charlie", Role::Miner),
        ("Dave", Role::Miner),
        ("Eve", Role::Miner),
    ]
    .into_iter()
    .map(|(name, role)| {
        let uri = format!("//{name}");
        let coldkey_uri = format!("//{name}//stash");
        Ok(DevAccount {
            name,
            hotkey: SigningKey::from_uri(&uri)?,
            coldkey: SigningKey::from_uri(&coldkey_uri)?.ss58().to_owned(),
            uri,
            coldkey_uri,
            role,
        })
    })
    .collect()
}

/// Options of `s3-auth-api dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Address to bind both servers (loopback unless asked otherwise).
    pub host: IpAddr,
    /// API port.
    pub port: u16,
    /// Embedded S3 port.
    pub s3_port: u16,
    /// Where uploads and the dev metagraph are kept.
    pub data_dir: PathBuf,
    /// Requests per miner per day.
    pub miner_limit: u64,
    /// Requests per validator per day.
    pub validator_limit: u64,
    /// Requests per day in total.
    pub total_limit: u64,
    /// `/get-file-upload-url` hands out POST policies, or presigned PUTs with `put`.
    pub upload_method: crate::config::UploadMethod,
}

/// Dev mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A key could not be derived.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The embedded S3 server could not start.
    #[error(transparent)]
    S3(#[from] EmbeddedS3Error),
    /// The data directory could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The service could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
}

/// A running dev environment.
#[derive(Debug)]
pub struct DevServer {
    /// The API's router, ready to serve.
    pub app: crate::App,
    /// The bound API listener.
    pub listener: tokio::net::TcpListener,
    /// The API address.
    pub api_addr: SocketAddr,
    /// The embedded S3 address.
    pub s3_addr: SocketAddr,
    /// The dev accounts.
    pub accounts: Vec<DevAccount>,
}

/// Starts the embedded S3 server and builds the API; the caller serves `listener`.
pub async fn start(opts: &DevOptions) -> Result<DevServer, DevError> {
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| DevError::Io { path, source }
    };
    let accounts = dev_accounts()?;
    let s3_root = opts.data_dir.join("s3");
    std::fs::create_dir_all(&s3_root).map_err(io(&s3_root))?;
    let neurons: Vec<_> = accounts
        .iter()
        .enumerate()
        .map(|(uid, a)| {
            json!({
                "uid": uid,
                "hotkey": a.hotkey.ss58(),
                "coldkey": a.coldkey,
                "validator_permit": a.role == Role::Validator,
                "alpha_stake": if a.role == Role::Validator { 50_000.0 } else { 10.0 },
            })
        })
        .collect();
    let metagraph_path = opts.data_dir.join("metagraph.json");
    let doc = json!({"netuid": 46, "block": 1, "neurons": neurons});
    std::fs::write(&metagraph_path, doc.to_string()).map_err(io(&metagraph_path))?;

    let (s3_addr, _s3_task) = start_embedded_s3(
        SocketAddr::new(opts.host, opts.s3_port),
        &s3_root,
        &[DEV_BUCKET],
        DEV_ACCESS_KEY,
        DEV_SECRET_KEY,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(opts.host, opts.port))
        .await
        .map_err(io(std::path::Path::new("api listener")))?;
    let api_addr = listener
        .local_addr()
        .map_err(io(std::path::Path::new("api listener")))?;
    // Clients reach the embedded S3 on loopback unless dev mode listens publicly.
    let s3_url = if opts.host.is_unspecified() {
        format!("http://127.0.0.1:{}", s3_addr.port())
    } else {
        format!("http://{s3_addr}")
    };
    let vars: std::collections::HashMap<String, String> = [
        ("HOST", opts.host.to_string()),
        ("PORT", api_addr.port().to_string()),
        ("S3_BUCKET", DEV_BUCKET.to_owned()),
        ("S3_REGION", "us-east-1".to_owned()),
        ("S3_ENDPOINT_URL", s3_url),
        ("AWS_ACCESS_KEY_ID", DEV_ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", DEV_SECRET_KEY.to_owned()),
        ("BT_NETWORK", "local".to_owned()),
        ("METAGRAPH_FILE", metagraph_path.display().to_string()),
        ("DAILY_LIMIT_PER_MINER", opts.miner_limit.to_string()),
        (
            "DAILY_LIMIT_PER_VALIDATOR",
            opts.validator_limit.to_string(),
        ),
        ("TOTAL_DAILY_LIMIT", opts.total_limit.to_string()),
        (
            "S3_UPLOAD_METHOD",
            match opts.upload_method {
                crate::config::UploadMethod::Post => "post",
                crate::config::UploadMethod::Put => "put",
            }
            .to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::from_map(&vars)?;
    let app = build_app(config).await?;
    Ok(DevServer {
        app,
        listener,
        api_addr,
        s3_addr,
        accounts,
    })
}

/// The text `dev` prints at start: URLs, credentials, accounts and a first command.
pub fn banner(server: &DevServer) -> String {
    let api = format!("http://{}", server.api_addr);
    let mut out = String::new();
    out.push_str("s3-auth-api dev: everything in one process, nothing leaves this machine\n\n");
    out.push_str(&format!(
        "  API          {api}\n  API docs     {api}/docs\n  Health       {api}/healthcheck\n"
    ));
    out.push_str(&format!(
        "  S3 endpoint  http://{}  bucket {DEV_BUCKET}\n  S3 keys      {DEV_ACCESS_KEY} / {DEV_SECRET_KEY} (development only)\n\n",
        server.s3_addr
    ));
    out.push_str("  Accounts (hotkey URI, hotkey, coldkey URI, coldkey):\n");
    for a in &server.accounts {
        let role = match a.role {
            Role::Validator => "validator",
            Role::Miner => "miner",
        };
        out.push_str(&format!(
            "    {:<9} {:<10} {} {} {}\n",
            role,
            a.uri,
            a.hotkey.ss58(),
            a.coldkey_uri,
            a.coldkey
        ));
    }
    out.push_str(&format!(
        "\n  Try it (in another terminal):\n    head -c 4096 /dev/urandom > /tmp/sample.parquet\n    \
         cargo run --release -- client --api {api} --uri //Charlie --coldkey //Charlie//stash miner upload /tmp/sample.parquet --job-id job_001\n    \
         cargo run --release -- client --api {api} --uri //Alice validator list\n"
    ));
    out
}
