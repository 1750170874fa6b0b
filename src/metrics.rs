//! Prometheus metrics: request counts and latencies by route, auth failures by reason,
//! quota rejections by kind. Gauges (metagraph, S3, Redis, credentials) are read from the
//! state when `/metrics` is rendered.

use std::fmt::Write as _;
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

/// Statuses counted per route: 100 to 599.
const STATUS_SLOTS: usize = 500;

/// Lock-free counters of one route: answers by status, and a latency histogram.
#[derive(Debug)]
struct RouteMetrics {
    statuses: Box<[AtomicU64]>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self {
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// Counters and histograms updated on the request path, without locks or allocation.
#[derive(Debug)]
pub struct Metrics {
    labels: Vec<&'static str>,
    routes: Vec<RouteMetrics>,
    auth_failures: [AtomicU64; AUTH_REASONS.len()],
    quota_hotkey: AtomicU64,
    quota_global: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut labels: Vec<&'static str> = crate::api::openapi::ROUTES
            .iter()
            .map(|(_, p)| *p)
            .collect();
        labels.push(UNMATCHED);
        Self {
            routes: labels.iter().map(|_| RouteMetrics::default()).collect(),
            labels,
            auth_failures: Default::default(),
            quota_hotkey: AtomicU64::new(0),
            quota_global: AtomicU64::new(0),
        }
    }
}

/// A route as the metrics know it (from [`Metrics::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    index: usize,
    /// The route's path, or `unmatched`.
    pub label: &'static str,
}

/// The label of requests to paths that are not routes.
pub const UNMATCHED: &str = "unmatched";

impl Metrics {
    /// The route of `path`: one of the routes, or `unmatched`, so arbitrary paths cannot
    /// grow the metrics.
    pub fn route(&self, path: &str) -> Route {
        let index = self
            .labels
            .iter()
            .position(|l| *l == path)
            .unwrap_or(self.labels.len() - 1);
        Route {
            index,
            label: self.labels[index],
        }
    }

    /// Records one answered request on `route`.
    pub fn observe_request(&self, route: Route, status: u16, seconds: f64) {
        let index = route.index.min(self.routes.len() - 1);
        let m = &self.routes[index];
        let slot = usize::from(status.clamp(100, 599) - 100);
        m.statuses[slot].fetch_add(1, Ordering::Relaxed);
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                m.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        m.count.fetch_add(1, Ordering::Relaxed);
        m.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Answers with a 5xx status so far, over every route.
    pub fn server_errors(&self) -> u64 {
        self.routes
            .iter()
            .flat_map(|m| m.statuses[400..500].iter())
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// Records why an access request was refused (other errors are not counted here).
    pub fn observe_access_error(&self, err: &AccessError) {
        let reason = match err {
            AccessError::Timestamp(_) => 0,
            AccessError::NotRegistered => 1,
            AccessError::BadSignature(_) => 2,
            AccessError::NotValidator => 3,
            AccessError::ColdkeyMismatch => 4,
            AccessError::Replayed | AccessError::NonceReused => 5,
            AccessError::TaoSkew => 0,
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
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        order.sort_by_key(|i| self.labels[*i]);
        for &i in &order {
            for (slot, n) in self.routes[i].statuses.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "s3_auth_requests_total{{route=\"{}\",status=\"{}\"}} {n}",
                        self.labels[i],
                        slot + 100
                    );
                }
            }
        }
        out.push_str("# HELP s3_auth_request_duration_seconds Request latency, by route.\n# TYPE s3_auth_request_duration_seconds histogram\n");
        for &i in &order {
            let (route, h) = (self.labels[i], &self.routes[i]);
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            for (b, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "s3_auth_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    h.buckets[b].load(Ordering::Relaxed)
                );
            }
            let _ = writeln!(
                out,
                "s3_auth_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "s3_auth_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "s3_auth_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
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
