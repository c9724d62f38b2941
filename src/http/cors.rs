//! CORS (§10), as one layer: preflights are told apart from descriptive
//! OPTIONS by `Origin` + `Access-Control-Request-Method`; a preflight's
//! `Access-Control-Allow-Methods` is exactly the matched route's `Allow`
//! (its methods plus OPTIONS), with the allowed request headers and
//! `Max-Age`; actual responses — errors included — carry
//! `Access-Control-Expose-Headers`. An origin that is not allowed gets no
//! CORS header at all. `*` is never sent together with credentials: then
//! the request's origin is echoed, with `Vary: Origin`.
//!
//! A module's `[module.cors]` overrides the global `[cors]` for its routes
//! (the route's module travels to this layer in the response's
//! extensions); unmatched paths use the global settings.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{header, HeaderValue, Method};

use super::routes::ModuleInfo;
use super::AppState;

/// Request headers a browser may send (§10).
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static(
    "origin, x-requested-with, content-type, authorization, if-match, if-none-match, accept, prefer, x-request-id, x-api-key",
);

/// Response headers a page may read (§10).
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static(
    "x-pagination-total-count, x-pagination-page-count, x-pagination-current-page, \
     x-pagination-per-page, x-record-count, x-rate-limit-limit, x-rate-limit-remaining, \
     x-rate-limit-reset, ratelimit, ratelimit-policy, link, etag, location, preference-applied, \
     api-version, x-sync-timestamp, x-request-id, last-modified, retry-after",
);

pub async fn layer(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let preflight = req.method() == Method::OPTIONS
        && origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = next.run(req).await;
    let Some(origin) = origin else {
        return res;
    };
    let global = &state.settings.cors;
    let module = res.extensions().get::<Arc<ModuleInfo>>().cloned();
    let module = module.as_ref().map(|m| &m.cors);
    let cors = Effective {
        origins: module
            .and_then(|m| m.origins.as_deref())
            .unwrap_or(&global.origins),
        credentials: module
            .and_then(|m| m.credentials)
            .unwrap_or(global.credentials),
        max_age: module.and_then(|m| m.max_age).unwrap_or(global.max_age),
    };
    let Some(allowed) = allowed_origin(&cors, &origin) else {
        return res;
    };
    let echoed = allowed != "*";
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    if cors.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if echoed {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    if preflight {
        let methods = h
            .get(header::ALLOW)
            .cloned()
            .unwrap_or(HeaderValue::from_static("OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(cors.max_age.as_secs()),
        );
    } else {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    }
    res
}

/// The settings for one response: the module's where it has them, else
/// the global `[cors]`.
struct Effective<'a> {
    origins: &'a [String],
    credentials: bool,
    max_age: std::time::Duration,
}

/// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
fn allowed_origin(cors: &Effective, origin: &HeaderValue) -> Option<HeaderValue> {
    let any = cors.origins.iter().any(|o| o == "*");
    let listed = origin.to_str().is_ok_and(|o| {
        cors.origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(o))
    });
    match (any, listed, cors.credentials) {
        (true, _, false) => Some(HeaderValue::from_static("*")),
        (true, _, true) | (false, true, _) => Some(origin.clone()),
        (false, false, _) => None,
    }
}
