//! CORS (§10), as one step of the pipeline ([`asked`] before the request
//! runs, [`answer`] after): preflights are told apart from descriptive
//! OPTIONS by `Origin` + `Access-Control-Request-Method`; a preflight's
//! `Access-Control-Allow-Methods` is exactly the matched route's `Allow`
//! (its methods plus OPTIONS), with the allowed request headers and
//! `Max-Age`; actual responses — errors included — carry
//! `Access-Control-Expose-Headers`. An origin that is not allowed gets no
//! CORS header at all. `*` is never sent together with credentials: then
//! the listed origin is echoed, with `Vary: Origin`. `origins = ["*"]`
//! with `credentials = true` is refused at start-up ([`check`]): it would
//! let every site read a signed-in user's rows. `Origin: null` (sandboxed
//! frames, `file:` pages — any site can send it) is never answered with
//! credentials.
//!
//! A module's `[module.cors]` overrides the global `[cors]` for its routes
//! (the route's module travels to [`answer`] in the response's
//! extensions); unmatched paths use the global settings.

use std::sync::Arc;

use axum::extract::Request;
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

/// What CORS needs to know of a request before it runs: its `Origin`,
/// and whether it is a preflight.
pub struct Asked {
    origin: HeaderValue,
    preflight: bool,
}

/// Reads the request's CORS question, if it asks one (no `Origin`: none).
pub fn asked(req: &Request) -> Option<Asked> {
    let origin = req.headers().get(header::ORIGIN)?.clone();
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    Some(Asked { origin, preflight })
}

/// Answers the question on `res`, with the settings of the module whose
/// route answered (in the response's extensions), else the global ones.
pub fn answer(state: &AppState, asked: Asked, res: &mut Response) {
    let Asked { origin, preflight } = asked;
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
        return;
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
}

/// Refuses, naming the keys, any module whose effective CORS settings
/// (its own, else the global `[cors]`) allow every origin with
/// credentials: a browser would then send the user's cookies or
/// remembered Basic credentials from any site and let it read the answer.
pub fn check(
    global: &crate::config::CorsSettings,
    modules: &[crate::model::Module],
) -> Result<(), String> {
    use crate::config::refuse_any_origin_with_credentials as refuse;
    refuse(
        &global.origins,
        global.credentials,
        "cors.origins",
        "cors.credentials",
    )?;
    for (i, m) in modules.iter().enumerate() {
        let own = |key: &str| format!("module[{i}] (prefix {}).cors.{key}", m.prefix);
        let (origins, origins_key) = match &m.cors.origins {
            Some(o) => (o.as_slice(), own("origins")),
            None => (global.origins.as_slice(), "cors.origins".to_string()),
        };
        let (credentials, credentials_key) = match m.cors.credentials {
            Some(c) => (c, own("credentials")),
            None => (global.credentials, "cors.credentials".to_string()),
        };
        refuse(origins, credentials, &origins_key, &credentials_key)?;
    }
    Ok(())
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
    // `null` is the origin of sandboxed and local documents, which any
    // site can create: never one to trust with credentials.
    if cors.credentials && origin.as_bytes().eq_ignore_ascii_case(b"null") {
        return None;
    }
    let any = cors.origins.iter().any(|o| o == "*");
    let listed = origin.to_str().is_ok_and(|o| {
        cors.origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(o))
    });
    // `*` with credentials is refused at start-up; should it get here
    // anyway, it allows no origin rather than every one.
    match (any, listed, cors.credentials) {
        (true, _, false) => Some(HeaderValue::from_static("*")),
        (_, true, _) => Some(origin.clone()),
        _ => None,
    }
}
