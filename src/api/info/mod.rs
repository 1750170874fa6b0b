//! Read-only endpoints: the info routes (`formats`, `limits`) and the ops routes
//! (`/healthcheck`, `/healthz`, `/readyz`, `/metrics`).

pub mod formats;
pub mod limits;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::miner::FOLDER_STRUCTURE;
use crate::quota::Backend;
use crate::state::AppState;

/// Prometheus metrics, when `METRICS_TOKEN` is set, for `Authorization: Bearer <token>`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "Missing or wrong bearer token", body = crate::api::openapi::ErrorDetail),
        (status = 404, description = "Metrics are off (no METRICS_TOKEN)", body = crate::api::openapi::ErrorDetail),
    )
)]
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(token) = &state.config.metrics_token else {
        return crate::api::ApiError::NotFound.into_response();
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare in constant time so the token cannot be guessed byte by byte.
    let ok = presented.is_some_and(|p| {
        p.len() == token.0.len()
            && p.bytes()
                .zip(token.0.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if !ok {
        return crate::api::ApiError::Unauthorized("Unauthorized".into()).into_response();
    }
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);
    use crate::metrics::gauge;
    let fallbacks = state.access.quotas.fallback_activations() as f64;
    gauge(
        &mut out,
        "s3_auth_redis_fallback_activations",
        "Requests counted in process because Redis failed.",
        fallbacks,
    );
    gauge(
        &mut out,
        "s3_auth_replay_checks_in_process",
        "Replay checks made in process because Redis failed (caught per instance only).",
        state.access.quotas.replay_checks_in_process() as f64,
    );
    gauge(
        &mut out,
        "s3_auth_replay_records_dropped",
        "Used signatures and nonces forgotten before their expiry because the in-process record was full.",
        state.access.quotas.replay_records_dropped() as f64,
    );
    gauge(
        &mut out,
        "s3_auth_redis_up",
        "1 when the last Redis operation succeeded.",
        f64::from(u8::from(state.access.quotas.redis_ok())),
    );
    if let Some(l) = state.access.metagraph.current() {
        gauge(
            &mut out,
            "s3_auth_metagraph_block",
            "Block of the current metagraph.",
            l.metagraph.block() as f64,
        );
        gauge(
            &mut out,
            "s3_auth_metagraph_hotkeys",
            "Hotkeys in the current metagraph.",
            l.metagraph.len() as f64,
        );
        gauge(
            &mut out,
            "s3_auth_metagraph_age_seconds",
            "Seconds since the metagraph was confirmed by its source.",
            l.age().as_secs_f64(),
        );
    }
    gauge(
        &mut out,
        "s3_auth_metagraph_sync_failures",
        "Consecutive failed metagraph syncs.",
        f64::from(state.access.metagraph.status().consecutive_failures),
    );
    if let Some(s3) = state.s3_health.last() {
        gauge(
            &mut out,
            "s3_auth_s3_up",
            "1 when the last HeadBucket succeeded.",
            f64::from(u8::from(s3.ok)),
        );
        gauge(
            &mut out,
            "s3_auth_s3_latency_seconds",
            "Latency of the last HeadBucket.",
            s3.latency_ms / 1000.0,
        );
    }
    if let Some(exp) = state.access.credentials.cached().and_then(|c| c.expiry()) {
        let left = exp
            .duration_since(SystemTime::now())
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        gauge(
            &mut out,
            "s3_auth_credentials_expiry_seconds",
            "Seconds until the signing credentials expire.",
            left,
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}

/// Liveness: the process is up and answering.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses(
        (status = 200, description = "The process is up", body = Object),
    )
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 only when a fresh metagraph is loaded, signing credentials are present
/// and unexpired, and quotas can be counted (Redis reachable or fallback allowed).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready: metagraph fresh, credentials valid, quotas countable", body = Object),
        (status = 503, description = "Not ready; `checks` names what fails (`missing`, `too_old`, `stale`, `expired`, `pending`, `unavailable`, or `shutdown: draining` from SIGTERM on)", body = Object),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let metagraph = match state.access.metagraph.current() {
        None => "missing",
        Some(l) if state.access.metagraph_too_old(&l) => "too_old",
        Some(l) if l.age() > state.config.metagraph_max_age => "stale",
        Some(_) => "ok",
    };
    let credentials = match state.access.credentials.cached() {
        None => "missing",
        Some(c) if c.expiry().is_some_and(|exp| exp <= SystemTime::now()) => "expired",
        Some(_) => "ok",
    };
    let quota = if !state.access.quotas.uses_redis() || state.access.quotas.redis_ok() {
        "ok"
    } else if state.access.quotas.on_error() == crate::quota::OnRedisError::Fallback {
        "fallback"
    } else if state.access.quotas.redis_status().is_none() {
        "pending"
    } else {
        "unavailable"
    };
    let shutdown = if state.draining.is_set() {
        "draining"
    } else {
        "no"
    };
    let ready = metagraph == "ok"
        && credentials == "ok"
        && !matches!(quota, "unavailable" | "pending")
        && shutdown == "no";
    let body = json!({
        "status": if ready { "ok" } else { "degraded" },
        "checks": {
            "metagraph": metagraph,
            "credentials": credentials,
            "quota": quota,
            "shutdown": shutdown,
        },
    });
    if ready {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        unavailable(body)
    }
}

/// A 503 answer with `body` and `Retry-After`.
fn unavailable(body: Value) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(
            axum::http::header::RETRY_AFTER,
            crate::api::error::RETRY_AFTER_SECS.to_string(),
        )],
        Json(body),
    )
        .into_response()
}

/// Health for the load balancer and for clients: 200 while this instance can serve
/// auth requests (even with a shared dependency degraded), 503 when it cannot.
#[utoipa::path(
    get,
    path = "/healthcheck",
    tag = "ops",
    responses(
        (status = 200, description = "This instance can serve (status `ok` or `degraded`). `s3_ok`, `s3_latency_ms` and `redis_ok` are null until their first probe has answered (never `false` before it); `missing` lists what it lacks to serve", body = Object),
        (status = 503, description = "This instance cannot serve: `missing` names what it lacks (`metagraph` or `credentials` not loaded yet, `fresh_metagraph` past `METAGRAPH_REFUSE_AFTER`)", body = Object),
    )
)]
pub async fn healthcheck(State(state): State<Arc<AppState>>) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    // Last probe results; `None` (shown as null) until the first probe has answered.
    let s3 = state.s3_health.last();
    let redis_ok = state.access.quotas.redis_ok();
    let redis_status = if state.access.quotas.uses_redis() {
        state.access.quotas.redis_status()
    } else {
        Some(false)
    };
    let loaded = state.access.metagraph.current();
    let credentials_ok = state
        .access
        .credentials
        .cached()
        .is_some_and(|c| c.expiry().is_none_or(|exp| exp > SystemTime::now()));
    let too_old = loaded
        .as_ref()
        .is_some_and(|l| state.access.metagraph_too_old(l));
    let can_serve = loaded.is_some() && credentials_ok && !too_old;
    let mut missing = Vec::new();
    if loaded.is_none() {
        missing.push("metagraph");
    }
    if too_old {
        // Grants are refused: a metagraph this old may still list deregistered keys.
        missing.push("fresh_metagraph");
    }
    if !credentials_ok {
        missing.push("credentials");
    }
    let redis_degraded = state.access.quotas.uses_redis() && redis_status == Some(false);
    let metagraph_stale = loaded
        .as_ref()
        .is_none_or(|l| l.age() > state.config.metagraph_max_age);
    let s3_down = s3.is_some_and(|s| !s.ok);
    let status = if can_serve && !s3_down && !redis_degraded && !metagraph_stale {
        "ok"
    } else {
        "degraded"
    };

    let sync = state.access.metagraph.status();
    let sync_interval = if state.config.metagraph_file.is_some() {
        state.config.metagraph_file_poll
    } else {
        state.config.metagraph_sync_interval
    };
    let metagraph_syncer = match &loaded {
        Some(l) => json!({
            "enabled": true,
            "source": l.source,
            "from_snapshot": l.from_snapshot,
            "netuid": l.metagraph.netuid(),
            "sync_interval": sync_interval.as_secs(),
            "hotkeys_count": l.metagraph.len(),
            "validators_count": l.metagraph.validators_count(state.config.validator_min_alpha_stake),
            "block": l.metagraph.block(),
            "last_sync": l
                .synced_at
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| chrono::DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, 0))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "age_seconds": l.age().as_secs(),
            "stale": metagraph_stale,
            "consecutive_failures": sync.consecutive_failures,
            "last_error": sync.last_error,
        }),
        None => json!({
            "enabled": false,
            "reason": "Metagraph not yet synced",
            "netuid": state.config.net_uid,
            "consecutive_failures": sync.consecutive_failures,
            "last_error": sync.last_error,
        }),
    };
    let uptime = state.started.elapsed().as_secs_f64();
    let total = state.stats.total_requests.load(Ordering::Relaxed);
    let errors = state.stats.total_errors.load(Ordering::Relaxed);
    let timeouts = state.stats.total_timeouts.load(Ordering::Relaxed);
    let rate = |n: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let uptime_hours = uptime / 3600.0;
    let quota_backend = if state.access.quotas.uses_redis() && redis_ok {
        Backend::Redis
    } else {
        Backend::Memory
    };
    let body = json!({
        "status": status,
        "timestamp": now,
        "bucket": state.config.s3_bucket,
        "region": state.config.s3_region,
        "folder_structure": FOLDER_STRUCTURE,
        "s3_ok": s3.map(|s| s.ok),
        "s3_latency_ms": s3.map(|s| s.latency_ms),
        "redis_ok": redis_status,
        "credentials_ok": credentials_ok,
        "missing": missing,
        "credentials": {
            "source": state.access.credentials.source_name(),
            "expires_at": state.access.credentials.cached().and_then(|c| c.expiry()).map(|e| {
                chrono::DateTime::<chrono::Utc>::from(e).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }),
        },
        "metagraph_syncer": metagraph_syncer,
        "quota": {
            "backend": match quota_backend { Backend::Redis => "redis", Backend::Memory => "memory" },
            "redis_configured": state.access.quotas.uses_redis(),
            "redis_mode": state.access.quotas.redis_mode(),
            "fallback_activations": state.access.quotas.fallback_activations(),
            "replay_checks_in_process": state.access.quotas.replay_checks_in_process(),
            "replay_records_dropped": state.access.quotas.replay_records_dropped(),
        },
        "stats": {
            "uptime_hours": (uptime_hours * 1000.0).round() / 1000.0,
            "total_requests": total,
            "total_errors": errors,
            "total_timeouts": timeouts,
            "error_rate": rate(errors),
            "timeout_rate": rate(timeouts),
            "requests_per_hour": if uptime_hours > 0.0 { total as f64 / uptime_hours } else { 0.0 },
        },
        "timeouts": {
            "validator_verification": "0s (in-memory metagraph)",
            "signature_verification": "0s (local)",
            "s3_operations": "5s (health check)",
        },
    });
    if can_serve {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        unavailable(body)
    }
}
