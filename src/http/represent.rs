//! Replies → representations: status, headers and format-neutral content
//! (§4.1, §5.2, §5.3). The negotiated format's encoder (`crate::format`)
//! turns them into bytes afterwards.
//!
//! Collections carry the pagination headers and an RFC 8288 `Link` with
//! absolute URLs that keep the request's other parameters. `Prefer:
//! return=minimal` drops the body of writes (RFC 7240).

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use super::routes::{allow_header, Route};
use crate::controller::{Ctx, Page, Reply};
use crate::format::json::camel_keys;
use crate::format::{record_envelope, Content, Representation};

pub const TOTAL_COUNT: HeaderName = HeaderName::from_static("x-pagination-total-count");
pub const PAGE_COUNT: HeaderName = HeaderName::from_static("x-pagination-page-count");
pub const CURRENT_PAGE: HeaderName = HeaderName::from_static("x-pagination-current-page");
pub const PER_PAGE: HeaderName = HeaderName::from_static("x-pagination-per-page");
pub const RECORD_COUNT: HeaderName = HeaderName::from_static("x-record-count");
pub const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

fn represented(status: StatusCode, content: Content) -> Representation {
    Representation {
        status,
        // Room for what the pipeline adds (caching, rate limits, version,
        // request id…) without growing the map as it goes.
        headers: HeaderMap::with_capacity(24),
        content,
        enveloped_record: false,
    }
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

/// Represents a controller's reply: status, headers, content. A write's
/// body is dropped when the client prefers it (`return=minimal`) or may
/// not read what it wrote (`may_read` false).
pub fn reply(reply: Reply, cx: &Ctx, method: &Method, may_read: bool) -> Representation {
    let asked = wants_minimal(&cx.headers);
    let minimal =
        matches!(*method, Method::POST | Method::PUT | Method::PATCH) && (asked || !may_read);
    let envelope = matches!(cx.query_param("envelope"), Some("true") | Some("1"));
    let mut repr = match reply {
        Reply::Empty => represented(StatusCode::NO_CONTENT, Content::Empty),
        Reply::Value(v) => {
            let v = if cx.convert_snake_case {
                camel_keys(v)
            } else {
                v
            };
            let v = match (envelope, v) {
                (true, Value::Array(items)) => {
                    json!({"_meta": {"status": "SUCCESS", "count": items.len()}, "records": items})
                }
                (true, v) => record_envelope(v),
                (false, v) => v,
            };
            represented(StatusCode::OK, Content::Value(v))
        }
        Reply::Dated { record, modified } => {
            let mut repr = self::reply(Reply::Record(record), cx, method, may_read);
            // HTTP-date (IMF-fixdate), whole seconds.
            let date = super::date::format(modified);
            if let Ok(v) = HeaderValue::from_str(&date) {
                repr.headers.insert(header::LAST_MODIFIED, v);
            }
            return repr;
        }
        Reply::Record(r) if envelope => Representation {
            enveloped_record: true,
            ..represented(
                StatusCode::OK,
                Content::Value(record_envelope(Value::Object(r))),
            )
        },
        Reply::Record(r) => represented(StatusCode::OK, Content::Record(r)),
        Reply::Collection { records, page } => {
            let count = records.len();
            let links = page_links(&page, cx);
            let content = if envelope {
                Content::Value(collection_envelope(records, &page, &links))
            } else {
                Content::Records(records)
            };
            let mut repr = represented(StatusCode::OK, content);
            pagination_headers(&mut repr.headers, &page, count, &links);
            repr
        }
        Reply::Created { record, location } => {
            let content = if envelope {
                Content::Value(record_envelope(Value::Object(record)))
            } else {
                Content::Record(record)
            };
            let mut repr = represented(StatusCode::CREATED, content);
            if let Ok(v) = HeaderValue::from_str(&format!("{}{}", cx.base_url, location)) {
                repr.headers.insert(header::LOCATION, v);
            }
            repr
        }
    };
    if minimal && repr.status.is_success() {
        if repr.status != StatusCode::CREATED {
            repr.status = StatusCode::NO_CONTENT;
        }
        repr.content = Content::Empty;
        if asked {
            repr.headers.insert(
                PREFERENCE_APPLIED,
                HeaderValue::from_static("return=minimal"),
            );
        }
    }
    repr
}

/// HEAD: same headers as GET (Content-Length included), no body.
pub fn strip_body(res: &mut Response) {
    use http_body::Body as _;
    let bodiless = matches!(
        res.status(),
        StatusCode::NOT_MODIFIED | StatusCode::NO_CONTENT
    );
    if let Some(n) = res.body().size_hint().exact().filter(|_| !bodiless) {
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    *res.body_mut() = Body::empty();
}

/// OPTIONS: `Allow` and a description of the route.
pub fn options(route: &Route, description: Option<&std::sync::Arc<Value>>) -> Representation {
    let body = description.map(|d| Value::clone(d)).unwrap_or(Value::Null);
    let mut repr = represented(StatusCode::OK, Content::Value(body));
    let (k, v) = allow_header(route);
    repr.headers.insert(k, v);
    repr
}

fn set(headers: &mut HeaderMap, name: HeaderName, n: u64) {
    headers.insert(name, HeaderValue::from(n));
}

pub const SYNC_TIMESTAMP: HeaderName = HeaderName::from_static("x-sync-timestamp");

/// Absolute URLs of a page's neighbours, keeping the request's other
/// parameters.
#[derive(Debug, Default)]
struct PageLinks {
    this: String,
    first: String,
    prev: Option<String>,
    next: Option<String>,
    last: Option<String>,
}

fn page_links(page: &Page, cx: &Ctx) -> PageLinks {
    let per = page.per_page.max(1);
    // Paging parameters are rewritten per link; a credential in the query
    // string is never copied into a URL that clients log and share.
    let replaced = [
        "limit",
        "offset",
        "page",
        "per-page",
        "cursor",
        "sync_mark",
        "access-token",
        "access_token",
    ];
    let kept: Vec<&(String, String)> = cx
        .query
        .iter()
        .filter(|(k, _)| !replaced.contains(&k.as_str()))
        .collect();
    let offset_style = cx.query.iter().any(|(k, _)| k == "limit" || k == "offset");
    let url = |extra: &[(&str, String)]| -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        format!("{}{}?{}", cx.base_url, cx.path, q.finish())
    };
    // Only `next` continues a sync traversal, so only it carries the first
    // page's mark: a client that jumps (last, first, prev) starts a new
    // traversal and is told its own timestamp back, never a later one.
    let mark = page
        .sync
        .as_ref()
        .and_then(|s| s.mark.clone())
        .map(|m| ("sync_mark", m));
    let continuing = |mut extra: Vec<(&'static str, String)>| {
        extra.extend(mark.clone());
        extra
    };
    let Some(offset) = page.offset else {
        // Cursor pages: forward only.
        let at = |cursor: &str, continues: bool| {
            let extra = vec![("cursor", cursor.to_string()), ("limit", per.to_string())];
            url(&if continues { continuing(extra) } else { extra })
        };
        return PageLinks {
            this: at(cx.query_param("cursor").unwrap_or(""), false),
            first: at("", false),
            prev: None,
            next: page.next_cursor.as_deref().map(|c| at(c, true)),
            last: None,
        };
    };
    let at = |offset: u64, continues: bool| {
        let extra = if offset_style {
            vec![("limit", per.to_string()), ("offset", offset.to_string())]
        } else {
            vec![
                ("page", page_number(offset, per).to_string()),
                ("per-page", per.to_string()),
            ]
        };
        url(&if continues { continuing(extra) } else { extra })
    };
    let has_next = match page.total {
        Some(total) => offset.saturating_add(per) < total,
        None => page.has_more,
    };
    // A feed continues from its last record's position, at offset 0.
    let feed_next = page
        .sync
        .as_ref()
        .and_then(|s| s.next_position.as_deref())
        .map(|position| {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in kept.iter().filter(|(k, _)| k != "timestamp") {
                q.append_pair(k, v);
            }
            q.append_pair("timestamp", position);
            q.append_pair(
                if offset_style { "limit" } else { "per-page" },
                &per.to_string(),
            );
            format!("{}{}?{}", cx.base_url, cx.path, q.finish())
        });
    PageLinks {
        this: at(offset, false),
        first: at(0, false),
        prev: (offset > 0).then(|| at(offset.saturating_sub(per), false)),
        next: feed_next.or_else(|| has_next.then(|| at(offset.saturating_add(per), true))),
        last: page
            .total
            .map(|t| at(t.div_ceil(per).max(1).saturating_sub(1) * per, false)),
    }
}

/// The 1-based page an offset falls on (offsets go up to `u64::MAX`).
fn page_number(offset: u64, per: u64) -> u64 {
    (offset / per.max(1)).saturating_add(1)
}

fn pagination_headers(h: &mut HeaderMap, page: &Page, count: usize, links: &PageLinks) {
    let per = page.per_page.max(1);
    set(h, PER_PAGE, per);
    set(h, RECORD_COUNT, count as u64);
    if let Some(offset) = page.offset {
        set(h, CURRENT_PAGE, page_number(offset, per));
    }
    if let Some(total) = page.total {
        set(h, TOTAL_COUNT, total);
        if page.offset.is_some() {
            set(h, PAGE_COUNT, total.div_ceil(per).max(1));
        }
    }
    if let Some(mode) = page.count_applied {
        if let Ok(v) = HeaderValue::from_str(&format!("count={mode}")) {
            h.append(PREFERENCE_APPLIED, v);
        }
    }
    if let Some(sync) = &page.sync {
        if let Ok(v) = HeaderValue::from_str(&sync.next_timestamp) {
            h.insert(SYNC_TIMESTAMP, v);
        }
    }
    let mut parts = vec![
        format!("<{}>; rel=\"self\"", links.this),
        format!("<{}>; rel=\"first\"", links.first),
    ];
    if let Some(u) = &links.prev {
        parts.push(format!("<{u}>; rel=\"prev\""));
    }
    if let Some(u) = &links.next {
        parts.push(format!("<{u}>; rel=\"next\""));
    }
    if let Some(u) = &links.last {
        parts.push(format!("<{u}>; rel=\"last\""));
    }
    if let Ok(v) = HeaderValue::from_str(&parts.join(", ")) {
        h.insert(header::LINK, v);
    }
}

/// `envelope=true` (§5.3): the collection under `records` with `_meta` and
/// `_links`.
fn collection_envelope(
    records: Vec<crate::store::Record>,
    page: &Page,
    links: &PageLinks,
) -> Value {
    let per = page.per_page.max(1);
    let mut meta = serde_json::Map::new();
    meta.insert("status".into(), json!("SUCCESS"));
    meta.insert("count".into(), json!(records.len()));
    if let Some(total) = page.total {
        meta.insert("totalCount".into(), json!(total));
        if page.offset.is_some() {
            meta.insert("pageCount".into(), json!(total.div_ceil(per).max(1)));
        }
    }
    if let Some(offset) = page.offset {
        meta.insert("currentPage".into(), json!(page_number(offset, per)));
    }
    meta.insert("perPage".into(), json!(per));
    if let Some(sync) = &page.sync {
        meta.insert("timestamp".into(), json!(sync.next_timestamp));
        if let Some(deleted) = &sync.deleted {
            meta.insert("deleted".into(), json!(deleted));
        }
    }
    let href = |u: &str| json!({ "href": u });
    let mut l = serde_json::Map::new();
    l.insert("self".into(), href(&links.this));
    l.insert("first".into(), href(&links.first));
    for (name, u) in [
        ("prev", &links.prev),
        ("next", &links.next),
        ("last", &links.last),
    ] {
        if let Some(u) = u {
            l.insert(name.into(), href(u));
        }
    }
    json!({"_meta": meta, "_links": l, "records": records})
}
