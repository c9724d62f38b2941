//! Operational endpoints (§12): `/health`. Public and never rate-limited.

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::store::Store;

/// `{"status":"ok","database":"ok"}`, or 503 when the database does not
/// answer.
pub async fn health(store: &Store) -> Response {
    let (status, body) = match store.ping().await {
        Ok(()) => (StatusCode::OK, json!({"status": "ok", "database": "ok"})),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "error", "database": "unavailable"}),
            )
        }
    };
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
