//! The edge of the pipeline: the one place errors become bodies (§7, §12).
//!
//! [`Edge`] starts and finishes every request: it accepts or generates `X-Request-Id`,
//! bounds the request's run time, renders any [`ApiError`] a handler or
//! inner layer left in the response extensions as `application/problem+json`
//! (with the request id), sets `X-Content-Type-Options: nosniff` on every
//! response, and logs one line per served request (rate-limit refusals
//! are summarised, [`crate::ops::refusals`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderName, HeaderValue, Method, StatusCode};

use super::marks::{Head, LoggedCaller, OAuthFailure, RouteTemplate};
use super::AppState;
use crate::error::ApiError;
use crate::format::html::Page;
use crate::format::{self, Format};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_STATUS: HeaderName = HeaderName::from_static("x-status");

/// `suppress_error_codes=true` (§5.4): every response is 200; the real
/// status stays in the body and in `X-Status`.
fn suppress_requested(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.contains("suppress_error_codes")
            && form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "suppress_error_codes" && (v == "true" || v == "1"))
    })
}

/// The request's id, in request extensions for handlers that want it.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// A client's id is kept when it is short, visible ASCII.
fn accepted_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// A compressed body is a different representation: its strong ETag gets
/// the coding's name (`"abc"` → `"abc-gzip"`), which conditional requests
/// recognise ([`crate::format::tags_match`]).
pub fn tag_coding<B>(mut res: http::Response<B>) -> http::Response<B> {
    let coding = res
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let (Some(coding), Some(tag)) = (coding, res.headers().get(header::ETAG)) {
        if let Some(inner) = tag.to_str().ok().and_then(|t| t.strip_suffix('"')) {
            if let Ok(v) = HeaderValue::from_str(&format!("{inner}-{coding}\"")) {
                res.headers_mut().insert(header::ETAG, v);
            }
        }
    }
    res
}

/// A 304's last step, after compression and [`tag_coding`]: the body
/// dispatch left on it (so that compression chose the coding the 200 would
/// have had, and the ETag names it as the 200's does) is dropped, with the
/// headers that described it (RFC 9110 §15.4.5).
pub fn not_modified_body<B>(res: http::Response<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    if res.status() != StatusCode::NOT_MODIFIED {
        return res.map(Body::new);
    }
    let (mut parts, _unsent) = res.into_parts();
    for name in [
        header::CONTENT_ENCODING,
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
    ] {
        parts.headers.remove(name);
    }
    Response::from_parts(parts, Body::empty())
}

/// HEAD (§4.1): exactly the headers GET would get — taken after
/// compression, so `Content-Encoding`, `ETag` and `Content-Length` match
/// GET's for the same `Accept-Encoding` — and no body. The outermost step:
/// inside it the request is a GET marked [`Head`] (the router would
/// otherwise drop the body before compression could see it). Returns
/// whether the request was a HEAD; [`super::represent::strip_body`] ends it.
pub fn head<B>(req: &mut http::Request<B>) -> bool {
    let head = req.method() == Method::HEAD;
    if head {
        *req.method_mut() = Method::GET;
        req.extensions_mut().insert(Head);
    }
    head
}

/// Names a response of restkit's own routes (`/v1/access_token`,
/// `/metrics`, …) by the path the router matched, unless dispatch already
/// named it by its template.
pub async fn own_route_name(req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| Arc::<str>::from(m.as_str()));
    let mut res = next.run(req).await;
    if let Some(m) = matched {
        if res.extensions().get::<RouteTemplate>().is_none() {
            res.extensions_mut().insert(RouteTemplate(m));
        }
    }
    res
}

/// The edge's view of a request, taken before anything else runs
/// ([`Edge::start`]) and used to finish its response ([`Edge::finish`]).
pub struct Edge {
    started: Instant,
    id: HeaderValue,
    client_ip: Option<std::net::IpAddr>,
    method: Method,
    /// A Host that is not host[:port], or more than one.
    pub bad_host: bool,
    suppress: bool,
    carries_body: bool,
}

impl Edge {
    /// Accepts or makes the request id, finds the client's address, checks
    /// Host; the id and the address go into the request's extensions.
    pub fn start<B>(state: &AppState, req: &mut http::Request<B>) -> Edge {
        let started = Instant::now();
        let id = match req.headers().get(REQUEST_ID) {
            Some(v) if accepted_id(v) => v.clone(),
            _ => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text))
                    .unwrap_or(HeaderValue::from_static("-"))
            }
        };
        req.extensions_mut().insert(RequestId(id.clone()));
        // The client's address (§9): the peer, or what trusted proxies say.
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        let client_ip = state.limiter.trusted.client(peer, req.headers());
        if let Some(ip) = client_ip {
            req.extensions_mut().insert(crate::limit::ClientIp(ip));
        }
        let method = if req.extensions().get::<Head>().is_some() {
            Method::HEAD
        } else {
            req.method().clone()
        };
        // Absolute URLs (Link, Location, _links) are built from Host unless
        // server.public_url is set: refuse a Host that is not host[:port].
        // More than one Host is always refused (RFC 9112 §3.2).
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let first_host = hosts.next();
        let bad_host = hosts.next().is_some()
            || (state.settings.server.public_url.is_empty()
                && first_host.is_some_and(|h| !h.to_str().is_ok_and(super::valid_host)));
        // A request refused early may leave its body unread, and then the
        // connection cannot carry another request: say so (in finish), so
        // that a keep-alive client opens a new one instead of finding it
        // closed.
        let carries_body = req.headers().contains_key(header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        Edge {
            started,
            suppress: suppress_requested(req.uri().query()),
            id,
            client_ip,
            method,
            bad_host,
            carries_body,
        }
    }

    /// The answer to a request whose Host was refused.
    pub fn bad_host_response() -> Response {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_HOST",
            "The Host header is not a valid host[:port].",
        )
        .into_response()
    }

    /// Runs `inner` in a span carrying the request id, within
    /// `server.request_timeout`; past it, the 503 to answer instead.
    pub async fn run<T>(
        &self,
        state: &AppState,
        inner: impl std::future::Future<Output = T>,
    ) -> Result<T, Response> {
        let timeout = state.settings.server.request_timeout;
        // Every line logged while the request runs carries its id.
        let span = tracing::info_span!("request", request_id = self.id.to_str().unwrap_or(""));
        tokio::time::timeout(timeout, tracing::Instrument::instrument(inner, span))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "REQUEST_TIMEOUT",
                    format!("The request took longer than {timeout:?}."),
                )
                .into_response()
            })
    }

    /// Encodes an error left in the response's extensions in the
    /// negotiated `format` (an HTML error describes `page`), sets the
    /// headers every response gets, records metrics and logs one line.
    pub fn finish(
        self,
        state: &AppState,
        mut res: Response,
        format: Format,
        page: Option<&Page>,
    ) -> Response {
        let id = self.id;
        if self.carries_body && (res.status().is_client_error() || res.status().is_server_error()) {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // The §7 code, or the OAuth2 endpoints' RFC 6749 error.
        let mut error_code = res.extensions().get::<OAuthFailure>().map(|f| f.0);
        if let Some(err) = res.extensions_mut().remove::<ApiError>() {
            error_code = Some(err.code);
            // Errors are encoded in the format the request negotiated.
            let no_page = Page::default();
            let (content_type, body) = format::encode_error(
                &err,
                id.to_str().unwrap_or(""),
                format,
                page.unwrap_or(&no_page),
            );
            if format == Format::Html {
                format::html::security_headers(res.headers_mut());
            }
            res.headers_mut().insert(header::CONTENT_TYPE, content_type);
            res.headers_mut().remove(header::CONTENT_LENGTH);
            *res.body_mut() = Body::from(body);
        }
        let status = res.status();
        let failed = status.is_client_error() || status.is_server_error();
        res.headers_mut().insert(
            X_STATUS,
            HeaderValue::from_static(if failed { "ERROR" } else { "SUCCESS" }),
        );
        if self.suppress
            && res.status() != StatusCode::OK
            && res.status() != StatusCode::NOT_MODIFIED
        {
            *res.status_mut() = StatusCode::OK;
        }
        res.headers_mut().insert(REQUEST_ID, id.clone());
        // Every body is of the type it says (JSON, CSV, XML, pages, errors):
        // browsers must not sniff a CSV cell or a JSON string into a page.
        res.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        let route = res
            .extensions()
            .get::<RouteTemplate>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| Arc::from("-"));
        let latency = self.started.elapsed();
        let method = self.method;
        if state.settings.metrics.enabled {
            state.metrics.request(
                &route,
                method.as_str(),
                status.as_u16(),
                latency.as_secs_f64(),
                error_code,
            );
        }
        // The caller dispatch identified, else the client's address (own
        // routes, unmatched paths).
        let by_address;
        let caller = match (res.extensions().get::<LoggedCaller>(), self.client_ip) {
            (Some(c), _) => &*c.0,
            (None, Some(ip)) => {
                by_address = format!("ip:{ip}");
                &by_address
            }
            (None, None) => "-",
        };
        // Rate-limit refusals — over the limit (429), or no decision under
        // on_backend_error = "deny" (503) — are summarised (counts per
        // caller, once a second): a flood must not cost a log line per
        // request.
        if let Some(reason @ ("RATE_LIMITED" | "RATE_LIMIT_UNAVAILABLE")) = error_code {
            state.refusals.record(caller, reason);
            return res;
        }
        tracing::info!(
            target: "restkit::request",
            method = %crate::ops::metrics::method_for_log(method.as_str()),
            route = %route,
            status = status.as_u16(),
            latency_us = latency.as_micros() as u64,
            caller = caller,
            request_id = id.to_str().unwrap_or(""),
        );
        res
    }
}
