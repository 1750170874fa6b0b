//! An S3-compatible server in process (s3s + s3s-fs over a local directory, behind
//! [`super::aws_like::AwsLike`]). It checks SigV4 signatures and POST-policy conditions;
//! dev mode and the tests use it.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::task::JoinHandle;

/// The embedded S3 server could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedS3Error {
    /// The data directory could not be used.
    #[error("cannot use S3 data directory {path}: {reason}")]
    Root {
        /// The directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Serves the directory `root` (one sub-directory per bucket, `buckets` are created) on
/// `addr`, accepting requests signed with `access_key` / `secret_key`. Returns the bound
/// address and the server task.
pub async fn start_embedded_s3(
    addr: SocketAddr,
    root: &Path,
    buckets: &[&str],
    access_key: &str,
    secret_key: &str,
) -> Result<(SocketAddr, JoinHandle<()>), EmbeddedS3Error> {
    let root_err = |reason: String| EmbeddedS3Error::Root {
        path: root.display().to_string(),
        reason,
    };
    for bucket in buckets {
        std::fs::create_dir_all(root.join(bucket)).map_err(|e| root_err(e.to_string()))?;
    }
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| root_err(format!("{e:?}")))?;
    let storage = super::aws_like::AwsLike::open(fs, root).map_err(|e| root_err(e.to_string()))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(storage);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        access_key,
        secret_key.to_owned(),
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| EmbeddedS3Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| EmbeddedS3Error::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    Ok((bound, task))
}
