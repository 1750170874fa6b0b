//! A real Redis Cluster for the tests: six `redis-server` processes in cluster mode (three
//! primaries, three replicas) joined by `redis-cli --cluster create`, on free ports.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{RedisServer, free_port};

/// How long a node may be unreachable before the cluster fails it over (ms): short, so a
/// failover test takes seconds.
pub const NODE_TIMEOUT_MS: u64 = 1_000;

/// Six cluster nodes, killed on drop.
pub struct RedisCluster {
    /// The nodes, in the order given to `redis-cli --cluster create` (the first three
    /// become primaries).
    pub nodes: Vec<RedisServer>,
    /// The AUTH password every node requires, if any.
    pub password: Option<String>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts six nodes and creates the cluster; waits until every node reports
    /// `cluster_state:ok`. Fails with instructions when `redis-cli` is missing.
    pub fn start() -> Self {
        Self::start_with_password(None)
    }

    /// Like [`RedisCluster::start`], every node requiring `password` (AUTH) when given.
    pub fn start_with_password(password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let timeout = NODE_TIMEOUT_MS.to_string();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let port = cluster_node_port();
                let conf = dir.path().join(format!("nodes-{port}.conf"));
                let (conf, root) = (conf.display().to_string(), dir.path().display().to_string());
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    &timeout,
                    "--dir",
                    &root,
                ];
                if let Some(password) = password {
                    args.extend(["--requirepass", password, "--masterauth", password]);
                }
                RedisServer::start_with(port, &args)
            })
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(password) = password {
            create.args(["--no-auth-warning", "-a", password]);
        }
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-cli ({e}). The cluster tests need redis-cli from the \
                     redis-tools package: run scripts/test.sh, or `apt-get install -y redis-server`."
                )
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self {
            nodes,
            password: password.map(str::to_owned),
            _dir: dir,
        };
        // Ready when every node sees all slots served and every replica has its primary's
        // data (a replica that never synced refuses to take over).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(|n| {
            let info = cluster.query_port(n.port, &["CLUSTER", "INFO"]);
            let replication = cluster.query_port(n.port, &["INFO", "replication"]);
            info.contains("cluster_state:ok")
                && info.contains("cluster_slots_ok:16384")
                && (replication.contains("role:master")
                    || replication.contains("master_link_status:up"))
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// `redis://127.0.0.1:{port}` of node `i`.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// The port of the primary serving `key`'s slot, as node `via` sees it.
    pub fn primary_of(&self, via: usize, key: &str) -> u16 {
        let slot: u16 = self
            .query(via, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("slot number");
        let nodes = self.query(via, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let mut ends = range.split('-').map(|n| n.parse::<u16>().ok());
                match (ends.next().flatten(), ends.next()) {
                    (Some(a), Some(Some(b))) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            if owns {
                let port = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok());
                return port.expect("node address");
            }
        }
        panic!("no primary serves slot {slot}: {nodes}");
    }

    /// The index of the node listening on `port`.
    pub fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// Runs a command on node `i` and returns its reply as text.
    pub fn query(&self, i: usize, args: &[&str]) -> String {
        self.query_port(self.nodes[i].port, args)
    }

    /// Runs a command on the node at `port` (authenticated when the cluster has a password)
    /// and returns its reply: a status, an error, an integer or a bulk string, as text; an
    /// array's elements one per line.
    fn query_port(&self, port: u16, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut request = String::new();
        let mut push = |args: &[&str]| {
            request.push_str(&format!("*{}\r\n", args.len()));
            for arg in args {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
        };
        if let Some(password) = &self.password {
            push(&["AUTH", password]);
        }
        push(args);
        stream.write_all(request.as_bytes()).expect("write");
        let mut reader = BufReader::new(stream);
        if self.password.is_some() {
            read_reply(&mut reader);
        }
        read_reply(&mut reader)
    }
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("reply");
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1);
    match kind {
        "$" => {
            let Ok(len) = rest.parse::<usize>() else {
                return String::new();
            };
            let mut body = vec![0u8; len + 2];
            reader.read_exact(&mut body).expect("bulk reply");
            String::from_utf8_lossy(&body[..len]).into_owned()
        }
        "*" => {
            let n = rest.parse::<i64>().unwrap_or(0).max(0);
            (0..n)
                .map(|_| read_reply(reader))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => rest.to_owned(),
    }
}

/// A free port for a cluster node: at most 55535, because a node also listens on its port
/// plus 10000 (the cluster bus) and redis-server refuses to start above that. Linux hands
/// out ephemeral ports up to 60999.
fn cluster_node_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 {
            return port;
        }
    }
}
