//! A load generator for the service: development keys, a metagraph for them, pre-signed
//! request bodies, and closed-loop HTTP/1.1 keep-alive connections that measure latency.
//!
//! Everything that costs CPU on the client side (key derivation, signing, building the
//! request bytes) happens before the clock starts, so the generator is not the bottleneck:
//! during a run each request is one `write` of prepared bytes and a minimal response parse.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::keys::{KeyError, SigningKey};
use crate::metagraph::{MetagraphDocument, Neuron};

/// The endpoints the generator can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    /// `POST /get-folder-access` by miners.
    FolderAccess,
    /// `POST /get-folder-access` by miners, Tao v2 header-signed (the server needs a
    /// `TAO_CLOCK_SKEW_MS` as long as the run, since bodies are signed up front).
    FolderAccessTao,
    /// `POST /get-validator-access` by validators.
    ValidatorAccess,
    /// `POST /get-miner-specific-access` by validators.
    MinerSpecificAccess,
    /// `POST /get-file-presigned-urls` by validators, 10 file keys each.
    FilePresignedUrls,
    /// `GET /healthz`: the HTTP floor.
    Healthz,
}

impl Endpoint {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::FolderAccess | Endpoint::FolderAccessTao => "/get-folder-access",
            Endpoint::ValidatorAccess => "/get-validator-access",
            Endpoint::MinerSpecificAccess => "/get-miner-specific-access",
            Endpoint::FilePresignedUrls => "/get-file-presigned-urls",
            Endpoint::Healthz => "/healthz",
        }
    }

    /// Whether each request needs its own signed body.
    pub fn is_signed(self) -> bool {
        self != Endpoint::Healthz
    }
}

/// The development keys of a run: `//bench//{i}` hotkeys owned by `//bench//{i}//cold`.
#[derive(Debug)]
pub struct BenchKeys {
    /// Validator hotkeys (the first `validators` indices).
    pub validators: Vec<SigningKey>,
    /// Miner hotkeys, with their coldkeys' addresses.
    pub miners: Vec<(SigningKey, String)>,
}

impl BenchKeys {
    /// Derives `total` keys, the first `validators` of them validators.
    pub fn derive(total: usize, validators: usize) -> Result<Self, KeyError> {
        let validators = validators.clamp(1, total.max(2) - 1);
        let mut keys = Self {
            validators: Vec::new(),
            miners: Vec::new(),
        };
        for i in 0..total.max(2) {
            let hot = SigningKey::from_uri(&format!("//bench//{i}"))?;
            if i < validators {
                keys.validators.push(hot);
            } else {
                let cold = SigningKey::from_uri(&format!("//bench//{i}//cold"))?;
                keys.miners.push((hot, cold.ss58().to_owned()));
            }
        }
        Ok(keys)
    }

    /// A metagraph of subnet `netuid` in which the validators hold a permit and enough
    /// stake, and every miner is owned by its coldkey.
    pub fn metagraph(&self, netuid: u16) -> MetagraphDocument {
        // Validators own themselves; each miner is owned by its `//cold` key.
        let validators = self.validators.iter().map(|k| (k, k.ss58(), true));
        let miners = self.miners.iter().map(|(k, c)| (k, c.as_str(), false));
        let neurons = validators
            .chain(miners)
            .enumerate()
            .map(|(uid, (key, coldkey, validator))| Neuron {
                uid: uid as u16,
                hotkey: key.ss58().to_owned(),
                coldkey: coldkey.to_owned(),
                validator_permit: validator,
                alpha_stake: if validator { 1_000_000.0 } else { 10.0 },
            })
            .collect();
        MetagraphDocument {
            netuid,
            block: 1,
            neurons,
            synced_at: None,
        }
    }
}

/// Builds `count` complete HTTP/1.1 requests for `endpoint`, each freshly signed with
/// timestamp `now`, spread over the keys; signing uses every core.
pub fn prepare_requests(
    keys: &BenchKeys,
    endpoint: Endpoint,
    host: &str,
    count: usize,
    now: i64,
) -> Vec<Vec<u8>> {
    if !endpoint.is_signed() {
        let request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\n\r\n", endpoint.path());
        return vec![request.into_bytes()];
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let mut out = Vec::with_capacity(count);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let start = t * chunk;
                    let end = ((t + 1) * chunk).min(count);
                    (start..end)
                        .map(|i| request_bytes(keys, endpoint, host, i, now))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(part) = h.join() {
                out.extend(part);
            }
        }
    });
    out
}

fn request_bytes(keys: &BenchKeys, endpoint: Endpoint, host: &str, i: usize, ts: i64) -> Vec<u8> {
    let (miner, miner_cold) = &keys.miners[i % keys.miners.len()];
    let validator = &keys.validators[i % keys.validators.len()];
    let m = miner.ss58();
    let v = validator.ss58();
    let body = match endpoint {
        Endpoint::FolderAccess => {
            let message = format!("s3:data:access:{miner_cold}:{m}:{ts}");
            json!({"coldkey": miner_cold, "hotkey": m, "timestamp": ts,
                   "signature": miner.sign_hex(&message)})
        }
        Endpoint::ValidatorAccess => {
            let message = format!("s3:validator:access:{ts}");
            json!({"hotkey": v, "timestamp": ts, "signature": validator.sign_hex(&message)})
        }
        Endpoint::MinerSpecificAccess => {
            let message = format!("s3:validator:miner:{m}:{ts}");
            json!({"hotkey": v, "timestamp": ts, "miner_hotkey": m,
                   "signature": validator.sign_hex(&message)})
        }
        Endpoint::FilePresignedUrls => {
            let message = format!("s3:validator:files:{m}:{v}:{ts}");
            let file_keys: Vec<String> = (0..10)
                .map(|n| format!("data/hotkey={m}/job_id=job_{n:03}/data_{i}.parquet"))
                .collect();
            json!({"hotkey": v, "timestamp": ts, "miner_hotkey": m, "file_keys": file_keys,
                   "signature": validator.sign_hex(&message)})
        }
        Endpoint::FolderAccessTao => return tao_request_bytes(miner, miner_cold, host, i, ts),
        Endpoint::Healthz => json!({}),
    };
    let body = body.to_string();
    format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        endpoint.path(),
        body.len()
    )
    .into_bytes()
}

/// A Tao v2-signed `/get-folder-access`: compact JSON body, signed headers.
fn tao_request_bytes(
    miner: &SigningKey,
    miner_cold: &str,
    host: &str,
    i: usize,
    ts: i64,
) -> Vec<u8> {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let body = json!({"coldkey": miner_cold, "route": "/get-folder-access"}).to_string();
    let ts_ms = ts * 1000;
    let nonce = format!("{:08x}-0000-4000-8000-{i:012x}", ts as u32);
    let message = format!(
        "{}.{nonce}.{ts_ms}",
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    let signature = hex::decode(miner.sign_hex(&message)).unwrap_or_default();
    let signature = base64::engine::general_purpose::STANDARD.encode(signature);
    format!(
        "POST /get-folder-access HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Tao-Version: 2\r\nX-Tao-Timestamp: {ts_ms}\r\nX-Tao-Nonce: {nonce}\r\nX-Tao-Signed-By: {}\r\nX-Tao-Signature: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
        miner.ss58(),
        body.len()
    )
    .into_bytes()
}

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// `host:port` of the server.
    pub addr: String,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// How long to send for.
    pub duration: Duration,
    /// Total requests per second to pace at (open-loop: latency counts from when a
    /// request was due, so a stalled server shows up); `None` sends as fast as answered.
    pub rate: Option<f64>,
    /// Report throughput, p99 and errors per interval of this length.
    pub interval: Option<Duration>,
}

/// One interval of a run's time series.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalStat {
    /// Seconds from the start to the end of the interval.
    pub t_s: f64,
    /// Responses per second in the interval.
    pub rps: f64,
    /// 99th percentile latency in the interval, in milliseconds.
    pub p99_ms: f64,
    /// Non-2xx responses in the interval.
    pub errors: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The endpoint driven.
    pub endpoint: Endpoint,
    /// Connections used.
    pub connections: usize,
    /// Seconds the run lasted.
    pub seconds: f64,
    /// Responses received.
    pub requests: u64,
    /// Responses per second.
    pub rps: f64,
    /// Latency percentiles in milliseconds: p50, p90, p99, p99.9, max.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest response.
    pub max_ms: f64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Non-2xx responses plus connection errors.
    pub errors: u64,
    /// Connection or protocol errors (no status).
    pub io_errors: u64,
    /// True when the pre-signed bodies ran out before the duration.
    pub ran_out_of_bodies: bool,
    /// Per-interval figures, when asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<IntervalStat>,
}

/// One answered request: completion time (ms from start), latency (µs), status.
type Sample = (u32, u32, u16);

struct ConnResult {
    samples: Vec<Sample>,
    io_errors: u64,
}

/// Drives the server with `requests` (each signed one used once; a single unsigned one
/// reused) over `spec.connections` connections for `spec.duration`.
pub async fn run(endpoint: Endpoint, requests: Vec<Vec<u8>>, spec: &RunSpec) -> Report {
    let reuse = !endpoint.is_signed();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ran_out = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + spec.duration;
    let connections = spec.connections.max(1);
    let period = spec
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(connections as f64 / r));
    let mut tasks = Vec::new();
    for n in 0..connections {
        let (requests, next, stop, ran_out) = (
            Arc::clone(&requests),
            Arc::clone(&next),
            Arc::clone(&stop),
            Arc::clone(&ran_out),
        );
        let addr = spec.addr.clone();
        // Paced connections start spread over one period, not all at once.
        let pacing = period.map(|p| (p, started + p.mul_f64(n as f64 / connections as f64)));
        let shared = Shared {
            requests,
            next,
            stop,
            ran_out,
            reuse,
            deadline,
            started,
        };
        tasks.push(tokio::spawn(async move {
            connection(addr, shared, pacing).await
        }));
    }
    let mut samples: Vec<Sample> = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut io_errors = 0;
    for t in tasks {
        if let Ok(r) = t.await {
            samples.extend(r.samples);
            io_errors += r.io_errors;
        } else {
            io_errors += 1;
        }
    }
    for (_, _, status) in &samples {
        *statuses.entry(*status).or_insert(0) += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let series = spec
        .interval
        .map(|i| time_series(&samples, i, seconds))
        .unwrap_or_default();
    let mut latencies: Vec<u32> = samples.iter().map(|s| s.1).collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[i]) / 1000.0
    };
    let requests_done = latencies.len() as u64;
    let non_2xx: u64 = statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    Report {
        endpoint,
        connections: spec.connections,
        seconds,
        requests: requests_done,
        rps: requests_done as f64 / seconds.max(1e-9),
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: latencies.last().map_or(0.0, |l| f64::from(*l) / 1000.0),
        statuses,
        errors: non_2xx + io_errors,
        io_errors,
        ran_out_of_bodies: ran_out.load(Ordering::Relaxed),
        series,
    }
}

fn time_series(samples: &[Sample], interval: Duration, seconds: f64) -> Vec<IntervalStat> {
    let width_ms = interval.as_millis().max(1) as u32;
    let buckets = ((seconds * 1000.0) as u32 / width_ms + 1) as usize;
    let mut by_bucket: Vec<Vec<(u32, u16)>> = vec![Vec::new(); buckets];
    for &(at, latency, status) in samples {
        let b = ((at / width_ms) as usize).min(buckets - 1);
        by_bucket[b].push((latency, status));
    }
    by_bucket
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, v)| {
            let mut lat: Vec<u32> = v.iter().map(|x| x.0).collect();
            lat.sort_unstable();
            let idx = ((lat.len() as f64 * 0.99).ceil() as usize).clamp(1, lat.len()) - 1;
            IntervalStat {
                t_s: f64::from((i as u32 + 1) * width_ms) / 1000.0,
                rps: v.len() as f64 / interval.as_secs_f64(),
                p99_ms: f64::from(lat[idx]) / 1000.0,
                errors: v.iter().filter(|x| !(200..300).contains(&x.1)).count() as u64,
            }
        })
        .collect()
}

struct Shared {
    requests: Arc<Vec<Vec<u8>>>,
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    ran_out: Arc<AtomicBool>,
    reuse: bool,
    deadline: Instant,
    started: Instant,
}

async fn connection(
    addr: String,
    shared: Shared,
    pacing: Option<(Duration, Instant)>,
) -> ConnResult {
    let mut result = ConnResult {
        samples: Vec::with_capacity(64 * 1024),
        io_errors: 0,
    };
    let mut ticker = pacing.map(|(period, first)| {
        let mut t = tokio::time::interval_at(first.into(), period);
        // Requests that fell behind are sent at once and measured from when they were due.
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    while !shared.stop.load(Ordering::Relaxed) && Instant::now() < shared.deadline {
        let due = match ticker.as_mut() {
            Some(t) => {
                let due = t.tick().await.into_std();
                if due >= shared.deadline {
                    break;
                }
                Some(due)
            }
            None => None,
        };
        let request = if shared.reuse {
            &shared.requests[0]
        } else {
            let i = shared.next.fetch_add(1, Ordering::Relaxed);
            match shared.requests.get(i) {
                Some(r) => r,
                None => {
                    shared.ran_out.store(true, Ordering::Relaxed);
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        };
        if stream.is_none() {
            match TcpStream::connect(&addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    result.io_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let sent = due.unwrap_or_else(Instant::now);
        match exchange(s, request, &mut buf).await {
            Ok((status, keep_alive)) => {
                let done = Instant::now();
                let us = done
                    .saturating_duration_since(sent)
                    .as_micros()
                    .min(u128::from(u32::MAX));
                let at = done.saturating_duration_since(shared.started).as_millis();
                result.samples.push((at as u32, us as u32, status));
                if !keep_alive {
                    stream = None;
                }
            }
            Err(_) => {
                result.io_errors += 1;
                stream = None;
            }
        }
    }
    result
}

/// Sends one request and reads one response; returns its status and whether the
/// connection may be reused.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, bool)> {
    stream.write_all(request).await?;
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    };
    let head = std::str::from_utf8(&buf[..header_end])
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = true;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    if chunked {
        while find(&buf[header_end..], b"0\r\n\r\n").is_none() {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    } else {
        let want = header_end + length.ok_or(std::io::ErrorKind::InvalidData)?;
        while buf.len() < want {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    Ok((status, keep_alive))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Resident and peak resident memory of process `pid` in KiB (`VmRSS`, `VmHWM`).
pub fn process_memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Writes the metagraph of `keys` as a `METAGRAPH_FILE`.
pub fn write_metagraph(keys: &BenchKeys, netuid: u16, path: &Path) -> std::io::Result<()> {
    let doc = keys.metagraph(netuid);
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metagraph_has_validators_and_owned_miners() {
        let keys = BenchKeys::derive(5, 2).expect("keys");
        let doc = keys.metagraph(46);
        assert_eq!(doc.neurons.len(), 5);
        assert_eq!(doc.neurons.iter().filter(|n| n.validator_permit).count(), 2);
        let (miner, cold) = &keys.miners[0];
        let n = doc
            .neurons
            .iter()
            .find(|n| n.hotkey == miner.ss58())
            .expect("miner listed");
        assert_eq!(&n.coldkey, cold);
        let reqs = prepare_requests(&keys, Endpoint::FolderAccess, "h", 3, 1_700_000_000);
        assert_eq!(reqs.len(), 3);
        assert_ne!(reqs[0], reqs[1]);
        assert!(reqs[0].starts_with(b"POST /get-folder-access HTTP/1.1\r\n"));
    }
}
