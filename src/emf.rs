//! CloudWatch embedded-metric-format (EMF) lines: once an interval, one JSON object on its
//! own stdout line that CloudWatch Logs (the ECS `awslogs` driver) turns into metrics, so
//! the deployment can alarm on the service's own signals without scraping `/metrics`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Where and how often the lines go (`EMF_*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmfSettings {
    /// `EMF_INTERVAL_SECONDS`: one line per interval.
    pub interval: Duration,
    /// `EMF_NAMESPACE`: the CloudWatch namespace.
    pub namespace: String,
    /// `EMF_SERVICE_NAME`: the value of the one dimension, `Service`.
    pub service: String,
}

/// The signals of one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// Seconds since the metagraph was confirmed by its source (`None`: none loaded).
    pub metagraph_age_secs: Option<f64>,
    /// Consecutive failed syncs.
    pub sync_failures: u32,
    /// Requests counted in process because Redis failed, during the interval.
    pub quota_fallback_activations: u64,
    /// 5xx answers during the interval.
    pub http_5xx: u64,
    /// Seconds until the signing credentials expire (`None`: they do not).
    pub credential_secs_to_expiry: Option<f64>,
}

/// One EMF document for `signals` at `at`.
pub fn document(settings: &EmfSettings, signals: &Signals, at: SystemTime) -> Value {
    let mut metrics = Vec::new();
    let mut root = Map::new();
    let mut put = |name: &str, unit: &str, value: f64| {
        metrics.push(json!({"Name": name, "Unit": unit}));
        root.insert(name.to_owned(), json!(value));
    };
    if let Some(age) = signals.metagraph_age_secs {
        put("MetagraphAgeSeconds", "Seconds", age.floor());
    }
    put(
        "SyncFailuresConsecutive",
        "Count",
        f64::from(signals.sync_failures),
    );
    put(
        "QuotaFallbackActivations",
        "Count",
        signals.quota_fallback_activations as f64,
    );
    put("Http5xx", "Count", signals.http_5xx as f64);
    if let Some(left) = signals.credential_secs_to_expiry {
        put("CredentialSecondsToExpiry", "Seconds", left.floor());
    }
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    root.insert("Service".into(), json!(settings.service));
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": settings.namespace,
                "Dimensions": [["Service"]],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(root)
}

/// What the counters said at the previous line, to report per-interval counts.
#[derive(Debug, Default)]
struct Totals {
    fallbacks: u64,
    server_errors: u64,
}

fn read(state: &AppState, last: &mut Totals) -> Signals {
    let fallbacks = state.access.quotas.fallback_activations();
    let server_errors = state.metrics.server_errors();
    let signals = Signals {
        metagraph_age_secs: state
            .access
            .metagraph
            .current()
            .map(|l| l.age().as_secs_f64()),
        sync_failures: state.access.metagraph.status().consecutive_failures,
        quota_fallback_activations: fallbacks.saturating_sub(last.fallbacks),
        http_5xx: server_errors.saturating_sub(last.server_errors),
        credential_secs_to_expiry: state
            .access
            .credentials
            .cached()
            .and_then(|c| c.expiry())
            .map(|exp| {
                exp.duration_since(SystemTime::now())
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            }),
    };
    *last = Totals {
        fallbacks,
        server_errors,
    };
    signals
}

/// Writes one line per interval to stdout until aborted.
pub fn spawn(state: Arc<AppState>, settings: EmfSettings) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = Totals::default();
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let doc = document(&settings, &read(&state, &mut last), SystemTime::now());
            let mut line = doc.to_string();
            line.push('\n');
            // One write of the whole line, so it never interleaves with a log line.
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_names_every_metric_it_carries() {
        let settings = EmfSettings {
            interval: Duration::from_secs(60),
            namespace: "S3AuthApi".into(),
            service: "prod".into(),
        };
        let signals = Signals {
            metagraph_age_secs: Some(12.7),
            sync_failures: 2,
            quota_fallback_activations: 3,
            http_5xx: 4,
            credential_secs_to_expiry: None,
        };
        let doc = document(&settings, &signals, UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(doc["_aws"]["Timestamp"], 1000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "S3AuthApi");
        assert_eq!(directive["Dimensions"], json!([["Service"]]));
        assert_eq!(doc["Service"], "prod");
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "MetagraphAgeSeconds",
                "SyncFailuresConsecutive",
                "QuotaFallbackActivations",
                "Http5xx"
            ]
        );
        for name in names {
            assert!(doc[name].is_number(), "{name} has a value");
        }
        assert_eq!(doc["MetagraphAgeSeconds"], 12.0);
        assert!(doc.get("CredentialSecondsToExpiry").is_none());
    }
}
