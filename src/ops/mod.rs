//! Operational endpoints (§12): `/health` and `/metrics`. Never
//! rate-limited.

pub mod metrics;
pub mod refusals;

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::store::Store;

/// `{"status":"ok","database":"ok"}`, or 503 when the database does not
/// answer. With the Redis rate-limit backend, `"redis": "ok"` or
/// `"unavailable"` too; Redis down is a 503 only under `on_backend_error =
/// "deny"`, when every limited request is refused (under `allow` the
/// limiter lets requests through).
pub async fn health(store: &Store, limiter: &crate::limit::RateLimiter) -> Response {
    let (mut status, mut body) = match store.ping().await {
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
        // Under on_backend_error = "deny" every limited request is now a
        // 503: a load balancer should send them elsewhere.
        if !ok && limiter.denies_on_error() {
            body["status"] = json!("error");
            status = StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `GET /metrics`: `metrics` as OpenMetrics text when `accept` asks for it
/// (Prometheus does), else in Prometheus's classic text format; the
/// gauges are read now from the pools and the limiter.
pub fn metrics_page(
    metrics: &metrics::Metrics,
    store: &Store,
    limiter: &crate::limit::RateLimiter,
    accept: &str,
) -> Response {
    let text = metrics.render(&store.pool_state(), store.write_groups(), &limiter.counts());
    let (text, content_type) = if metrics::wants_openmetrics(accept) {
        (
            text,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            metrics::classic_text(&text),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut res = Response::new(Body::from(text));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
