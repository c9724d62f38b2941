//! Replies → responses: status, headers, JSON body (§4.1, §5.2).
//!
//! Collections carry the pagination headers and an RFC 8288 `Link` with
//! absolute URLs that keep the request's other parameters. `Prefer:
//! return=minimal` drops the body of writes (RFC 7240).

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

use super::dispatch::{allow_header, describe};
use super::routes::Route;
use super::AppState;
use crate::controller::{Ctx, Page, Reply};
use crate::error::ApiError;
use crate::format::json::camel_keys;

static JSON: HeaderValue = HeaderValue::from_static("application/json");

pub const TOTAL_COUNT: HeaderName = HeaderName::from_static("x-pagination-total-count");
pub const PAGE_COUNT: HeaderName = HeaderName::from_static("x-pagination-page-count");
pub const CURRENT_PAGE: HeaderName = HeaderName::from_static("x-pagination-current-page");
pub const PER_PAGE: HeaderName = HeaderName::from_static("x-pagination-per-page");
pub const RECORD_COUNT: HeaderName = HeaderName::from_static("x-record-count");
pub const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, JSON.clone());
    res
}

fn serialize<T: serde::Serialize>(v: &T) -> Bytes {
    // Serializing maps and values of JSON cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn wants_minimal(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split([',', ';'])
                    .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
            })
            .unwrap_or(false)
    })
}

pub fn reply(reply: Reply, cx: &Ctx, method: &Method, _state: &AppState) -> Response {
    let minimal =
        matches!(*method, Method::POST | Method::PUT | Method::PATCH) && wants_minimal(&cx.headers);
    let mut res = match reply {
        Reply::Empty => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            res
        }
        Reply::Value(v) => {
            let v = if cx.convert_snake_case {
                camel_keys(v)
            } else {
                v
            };
            json_response(StatusCode::OK, serialize(&v))
        }
        Reply::Record(r) => json_response(StatusCode::OK, serialize(&r)),
        Reply::Collection { records, page } => {
            let mut res = json_response(StatusCode::OK, serialize(&records));
            pagination_headers(res.headers_mut(), &page, records.len(), cx);
            res
        }
        Reply::Created { record, location } => {
            let mut res = json_response(StatusCode::CREATED, serialize(&record));
            if let Ok(v) = HeaderValue::from_str(&format!("{}{}", cx.base_url, location)) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            res
        }
    };
    if minimal && res.status().is_success() {
        if res.status() != StatusCode::CREATED {
            *res.status_mut() = StatusCode::NO_CONTENT;
        }
        *res.body_mut() = Body::empty();
        res.headers_mut().remove(header::CONTENT_TYPE);
        res.headers_mut().insert(
            PREFERENCE_APPLIED,
            HeaderValue::from_static("return=minimal"),
        );
    }
    if *method == Method::HEAD {
        strip_body(&mut res);
    }
    res
}

/// HEAD: same headers as GET (Content-Length included), no body.
pub fn strip_body(res: &mut Response) {
    use http_body::Body as _;
    if let Some(n) = res.body().size_hint().exact() {
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    *res.body_mut() = Body::empty();
}

/// OPTIONS: `Allow` and a JSON description of the route.
pub fn options(route: &Route) -> Response {
    let mut res = json_response(StatusCode::OK, serialize(&describe(route)));
    let (k, v) = allow_header(route);
    res.headers_mut().insert(k, v);
    res
}

fn set(headers: &mut HeaderMap, name: HeaderName, n: u64) {
    headers.insert(name, HeaderValue::from(n));
}

fn pagination_headers(h: &mut HeaderMap, page: &Page, count: usize, cx: &Ctx) {
    let per = page.per_page.max(1);
    let current = page.offset / per + 1;
    set(h, PER_PAGE, per);
    set(h, CURRENT_PAGE, current);
    set(h, RECORD_COUNT, count as u64);
    let pages = page.total.map(|t| t.div_ceil(per).max(1));
    if let (Some(total), Some(pages)) = (page.total, pages) {
        set(h, TOTAL_COUNT, total);
        set(h, PAGE_COUNT, pages);
    }
    let offset_style = cx.query.iter().any(|(k, _)| k == "limit" || k == "offset");
    let kept: Vec<&(String, String)> = cx
        .query
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "limit" | "offset" | "page" | "per-page"))
        .collect();
    let link = |offset: u64| -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        if offset_style {
            q.append_pair("limit", &per.to_string());
            q.append_pair("offset", &offset.to_string());
        } else {
            q.append_pair("page", &(offset / per + 1).to_string());
            q.append_pair("per-page", &per.to_string());
        }
        format!("<{}{}?{}>", cx.base_url, cx.path, q.finish())
    };
    let mut links = vec![
        format!("{}; rel=\"self\"", link(page.offset)),
        format!("{}; rel=\"first\"", link(0)),
    ];
    if page.offset > 0 {
        links.push(format!(
            "{}; rel=\"prev\"",
            link(page.offset.saturating_sub(per))
        ));
    }
    let has_next = match page.total {
        Some(total) => page.offset + per < total,
        None => count as u64 == per,
    };
    if has_next {
        links.push(format!("{}; rel=\"next\"", link(page.offset + per)));
    }
    if let Some(pages) = pages {
        links.push(format!("{}; rel=\"last\"", link((pages - 1) * per)));
    }
    if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
        h.insert(header::LINK, v);
    }
}

/// The §7 body for an error, JSON.
pub fn error_body(e: &ApiError, request_id: &str) -> Bytes {
    serialize(&e.body(request_id))
}

pub fn value(v: &Value) -> Bytes {
    serialize(v)
}
