//! Operational endpoints (§12): `/health` and `/metrics`. Never
//! rate-limited.

pub mod metrics;

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::store::Store;

/// `{"status":"ok","database":"ok"}`, or 503 when the database does not
/// answer. With the Redis rate-limit backend, `"redis": "ok"` or
/// `"unavailable"` too; Redis alone down is not a 503 (the limiter follows
/// `on_backend_error`).
pub async fn health(store: &Store, limiter: &crate::limit::RateLimiter) -> Response {
    let (status, mut body) = match store.ping().await {
        Ok(()) => (StatusCode::OK, json!({"status": "ok", "database": "ok"})),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "error", "database": "unavailable"}),
            )
        }
    };
    if let Some(ok) = limiter.redis_ok().await {
        body["redis"] = json!(if ok { "ok" } else { "unavailable" });
    }
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `GET /metrics`: the Prometheus (OpenMetrics) text of `metrics`, with
/// the gauges read now from the pools and the limiter.
pub fn metrics_page(
    metrics: &metrics::Metrics,
    store: &Store,
    limiter: &crate::limit::RateLimiter,
) -> Response {
    let text = metrics.render(
        &store.pool_state(),
        &limiter.counts(),
        limiter
            .backend_errors
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let mut res = Response::new(Body::from(text));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}
