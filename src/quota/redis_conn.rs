//! One connection to Redis, to a single node or to a cluster, chosen by `REDIS_MODE`.
//!
//! A cluster connection (Redis Cluster, ElastiCache Serverless, MemoryDB) reads the slot
//! map from the node it was given and follows `MOVED` and `ASK`. The client library does
//! not re-read the map when a primary dies (its requests then fail with "no connection
//! found" for good), so the store opens a new connection after a failure
//! ([`Connector::open_cluster`]) through every node the cluster named: a promoted replica
//! takes over within a second of the promotion.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisError, RedisFuture, Value};

use crate::config::RedisMode;

/// Timeout for connecting and for each command, so a hung Redis cannot hold a request.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(1_000);

/// A connection the quota store sends its commands on; cheap to clone.
#[derive(Clone)]
pub enum RedisConn {
    /// One node; reconnects by itself.
    Single(ConnectionManager),
    /// A cluster; routes each command by its key's slot.
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Whether this is a cluster connection (and keys must share a hash tag).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// What `CLUSTER INFO` said about the server at `REDIS_URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// It answered: cluster mode is on.
    Cluster,
    /// It refused the command: a single node (or a proxy that hides the cluster).
    Standalone,
}

/// Opens connections to the configured Redis, and remembers a cluster's nodes so that a
/// new connection can be made through any of them, even when the node `REDIS_URL` names
/// is the one that died.
pub struct Connector {
    info: ConnectionInfo,
    mode: RedisMode,
    /// The nodes the cluster named when last asked (`CLUSTER SLOTS`).
    nodes: Mutex<Vec<ConnectionInfo>>,
}

impl Connector {
    /// A connector for `info` in `mode`.
    pub fn new(info: ConnectionInfo, mode: RedisMode) -> Self {
        Self {
            info,
            mode,
            nodes: Mutex::new(Vec::new()),
        }
    }

    /// Opens a connection in the configured mode; `Auto` asks the server first.
    pub async fn open(&self) -> Result<RedisConn, RedisError> {
        let cluster = match self.mode {
            RedisMode::Standalone => false,
            RedisMode::Cluster => true,
            RedisMode::Auto => detect(&self.info).await? == Detected::Cluster,
        };
        if cluster {
            self.open_cluster().await
        } else {
            open_single(&self.info).await
        }
    }

    /// Opens a new cluster connection through the configured node and every node the
    /// cluster named before; it reads the slot map afresh.
    pub async fn open_cluster(&self) -> Result<RedisConn, RedisError> {
        if self.info.redis.db != 0 {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "REDIS_URL names a database other than 0, but a cluster has only database 0",
            )));
        }
        let mut initial = vec![self.info.clone()];
        if let Ok(known) = self.nodes.lock() {
            initial.extend(known.iter().cloned());
        }
        // TLS, user and password come from the URL; every node is reached with them.
        // Retries stay short: a request waits at most the store's timeout anyway.
        let client = ClusterClientBuilder::new(initial)
            .connection_timeout(REDIS_TIMEOUT)
            .response_timeout(REDIS_TIMEOUT)
            .retries(2)
            .min_retry_wait(50)
            .max_retry_wait(300)
            .build()?;
        let mut conn = client.get_async_connection().await?;
        let slots = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Value>(&mut conn)
            .await;
        if let Ok(slots) = slots {
            let named = node_addresses(&slots)
                .into_iter()
                .filter_map(|(host, port)| self.node(host, port))
                .collect::<Vec<_>>();
            if let (false, Ok(mut known)) = (named.is_empty(), self.nodes.lock()) {
                *known = named;
            }
        }
        Ok(RedisConn::Cluster(conn))
    }

    /// The configured connection settings with another node's address.
    fn node(&self, host: String, port: u16) -> Option<ConnectionInfo> {
        let addr = match &self.info.addr {
            ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host, port),
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => return None,
        };
        Some(ConnectionInfo {
            addr,
            redis: self.info.redis.clone(),
        })
    }
}

/// The `(host, port)` of every node in a `CLUSTER SLOTS` answer, primaries and replicas,
/// without repeats; nodes whose address is unknown (`?` or empty) are left out.
pub fn node_addresses(slots: &Value) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let Value::Array(ranges) = slots else {
        return out;
    };
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        for node in parts.iter().skip(2) {
            let Value::Array(fields) = node else { continue };
            let host = match fields.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            let port = match fields.get(1) {
                Some(Value::Int(p)) => u16::try_from(*p).ok(),
                _ => None,
            };
            if let (Some(port), false) = (port, host.is_empty() || host == "?")
                && !out.iter().any(|(h, p)| *h == host && *p == port)
            {
                out.push((host, port));
            }
        }
    }
    out
}

/// Asks the server whether cluster mode is on, on a short-lived connection.
pub async fn detect(info: &ConnectionInfo) -> Result<Detected, RedisError> {
    let client = redis::Client::open(info.clone())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(REDIS_TIMEOUT)
        .set_response_timeout(REDIS_TIMEOUT);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let answer = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async::<String>(&mut conn)
        .await;
    Ok(match answer {
        Ok(_) => Detected::Cluster,
        Err(err) if err.kind() == redis::ErrorKind::IoError => return Err(err),
        // "ERR This instance has cluster support disabled", or a server that does not
        // know the command: either way not a cluster this client can route for.
        Err(_) => Detected::Standalone,
    })
}

async fn open_single(info: &ConnectionInfo) -> Result<RedisConn, RedisError> {
    let client = redis::Client::open(info.clone())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(REDIS_TIMEOUT)
        .set_response_timeout(REDIS_TIMEOUT)
        .set_number_of_retries(2)
        .set_max_delay(2_000);
    Ok(RedisConn::Single(
        ConnectionManager::new_with_config(client, config).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn every_named_node_is_kept_once_and_unknown_ones_are_left_out() {
        let slots = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 6379),
                node("10.0.0.2", 6379),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("10.0.0.3", 6380),
                node("?", 6379),
                node("", 6379),
                node("10.0.0.1", 6379),
            ]),
        ]);
        assert_eq!(
            node_addresses(&slots),
            [
                ("10.0.0.1".to_owned(), 6379),
                ("10.0.0.2".to_owned(), 6379),
                ("10.0.0.3".to_owned(), 6380)
            ]
        );
        assert!(node_addresses(&Value::Nil).is_empty());
    }

    #[test]
    fn a_node_is_reached_with_the_configured_tls_user_and_password() {
        use redis::IntoConnectionInfo;
        let info = "rediss://svc:token@cache.example:6379"
            .into_connection_info()
            .expect("url");
        let connector = Connector::new(info, RedisMode::Auto);
        let other = connector.node("10.0.0.9".into(), 6380).expect("tcp node");
        assert!(matches!(
            other.addr,
            ConnectionAddr::TcpTls { ref host, port: 6380, insecure: false, .. } if host == "10.0.0.9"
        ));
        assert_eq!(other.redis.username.as_deref(), Some("svc"));
        assert_eq!(other.redis.password.as_deref(), Some("token"));
    }
}
