//! Prometheus metrics: request counts and latencies by route, auth failures by reason,
//! quota rejections by kind. Gauges (metagraph, S3, Redis, credentials) are read from the
//! state when `/metrics` is rendered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::access::AccessError;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Auth failure reasons, as labels.
pub const AUTH_REASONS: [&str; 7] = [
    "timestamp",
    "not_registered",
    "bad_signature",
    "not_validator",
    "coldkey_mismatch",
    "replayed",
    "throttled",
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters and histograms updated on the request path.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    auth_failures: [AtomicU64; AUTH_REASONS.len()],
    quota_hotkey: AtomicU64,
    quota_global: AtomicU64,
}

impl Metrics {
    /// Records one answered request. `route` must come from a bounded set.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            let h = m.entry(route.to_owned()).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// Records why an access request was refused (other errors are not counted here).
    pub fn observe_access_error(&self, err: &AccessError) {
        let reason = match err {
            AccessError::Timestamp(_) => 0,
            AccessError::NotRegistered => 1,
            AccessError::BadSignature(_) => 2,
            AccessError::NotValidator => 3,
            AccessError::ColdkeyMismatch => 4,
            AccessError::Replayed => 5,
            AccessError::Throttled { .. } => 6,
            AccessError::Quota(q) => {
                let counter = if q.global {
                    &self.quota_global
                } else {
                    &self.quota_hotkey
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => return,
        };
        self.auth_failures[reason].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the counters and histograms in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP s3_auth_requests_total Requests answered, by route and status.\n# TYPE s3_auth_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "s3_auth_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP s3_auth_request_duration_seconds Request latency, by route.\n# TYPE s3_auth_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "s3_auth_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "s3_auth_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "s3_auth_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "s3_auth_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP s3_auth_auth_failures_total Refused identity checks, by reason.\n# TYPE s3_auth_auth_failures_total counter\n");
        for (i, reason) in AUTH_REASONS.iter().enumerate() {
            let n = self.auth_failures[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "s3_auth_auth_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP s3_auth_quota_rejections_total Requests refused by a daily limit, by kind.\n# TYPE s3_auth_quota_rejections_total counter\n");
        let _ = writeln!(
            out,
            "s3_auth_quota_rejections_total{{kind=\"hotkey\"}} {}",
            self.quota_hotkey.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "s3_auth_quota_rejections_total{{kind=\"global\"}} {}",
            self.quota_global.load(Ordering::Relaxed)
        );
    }
}

/// Writes one gauge with its HELP and TYPE lines.
pub fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}
