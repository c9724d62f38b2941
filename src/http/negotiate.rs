//! Negotiation (§4.5, §5.1): which format and which minor version a
//! request gets. Runs before routing, so a URL extension
//! (`/v1/books/3.json`) is stripped before the router sees the path.
//!
//! Format precedence: `type=` > URL extension > `Accept` (q-values,
//! wildcards) > JSON. An unknown `type=` is 400; an `Accept` that allows
//! none of restkit's formats is 406. The chosen [`Format`] travels in the
//! request's extensions to the encoder; the pipeline keeps it too
//! ([`Negotiated`]) and encodes errors in it.

use axum::extract::Request;
use axum::response::Response;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};

use super::own::Negotiation;
use super::AppState;
use crate::error::ApiError;
use crate::format::csv::CsvOptions;
use crate::format::html::Page;
use crate::format::Format;

/// What negotiation decided for a request: the format its answer (and
/// any error) is encoded in, the page an HTML answer describes, and
/// whether the answer varies with `Accept` (everything but the fixed
/// documents).
pub struct Negotiated {
    pub format: Format,
    pub page: Option<Page>,
    pub varies: bool,
}

/// The negotiation step: decides the format, rewrites an extension off
/// the path, and records the format (and an HTML page's request) in the
/// request's extensions for dispatch. A refusal is the response to send,
/// encoded in JSON.
pub fn decide(state: &AppState, req: &mut Request) -> Result<Negotiated, ApiError> {
    // The compression layer answers 406 when no content coding is
    // acceptable, but only after the request has run — a PATCH would be
    // written and then reported refused. Refuse it here, before anything
    // runs, in the error format.
    if !coding_acceptable(req.headers()) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "Accept-Encoding refuses every content coding this API sends (identity, gzip, br).",
        ));
    }
    // A route description (OPTIONS) and the health probe answer whatever
    // the client accepts: monitors send Accept: text/plain, and an HTML
    // description of a route is a later addition, not a reason to refuse.
    let own = state.own.negotiation(req.uri().path());
    let lenient = req.method() == http::Method::OPTIONS || own == Some(Negotiation::Lenient);
    // Documents with their own media type (`jwks.json`, the docs, the
    // metrics): their names are not extensions to strip, and they answer
    // any Accept.
    if own == Some(Negotiation::Fixed) {
        req.extensions_mut().insert(Format::Json);
        return Ok(Negotiated {
            format: Format::Json,
            page: None,
            varies: false,
        });
    }
    // A live feed (§16): its events carry JSON, and so do its errors.
    if req.method() == http::Method::GET {
        if let Some(stripped) = events_asked(req.uri(), req.headers()) {
            if let Some(uri) = stripped {
                *req.uri_mut() = uri;
            }
            req.extensions_mut().insert(super::marks::Live);
            req.extensions_mut().insert(Format::Json);
            return Ok(Negotiated {
                format: Format::Json,
                page: None,
                varies: true,
            });
        }
    }
    let format = match choose(req.uri(), req.headers()) {
        Ok((format, stripped)) => {
            if let Some(uri) = stripped {
                *req.uri_mut() = uri;
            }
            format
        }
        Err(e) if lenient && e.status == StatusCode::NOT_ACCEPTABLE => Format::default(),
        Err(e) => return Err(e),
    };
    let format = match format {
        Format::Csv(_) => Format::Csv(CsvOptions {
            header: !matches!(
                query_param(req.uri(), "csv_header").as_deref(),
                Some("false" | "0")
            ),
            formula_guard: state.settings.format.csv_formula_guard,
        }),
        other => other,
    };
    // A page shows the request it answers (and errors are pages too).
    let page = (format == Format::Html).then(|| {
        let mut page = Page::new(req.method().as_str(), req.uri().path(), req.uri().query());
        page.account = state.settings.offers_browser_sign_in().then(|| {
            crate::auth::session::signed_in(req.headers(), &state.settings.server.public_url)
        });
        page
    });
    req.extensions_mut().insert(format);
    if let Some(page) = &page {
        req.extensions_mut().insert(page.clone());
    }
    Ok(Negotiated {
        format,
        page,
        varies: true,
    })
}

/// The format and the minor version both follow `Accept`: caches must
/// keep one copy per `Accept`.
pub fn vary(res: &mut Response) {
    res.headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept"));
}

/// Does `Accept-Encoding` allow a coding restkit can send: identity, gzip
/// or br (RFC 9110 §12.5.3)? Identity is acceptable unless refused by name
/// or by `*;q=0`; the others only when named or covered by `*`. No header
/// at all accepts anything.
fn coding_acceptable(headers: &HeaderMap) -> bool {
    let mut listed: Vec<(String, bool)> = Vec::new();
    let mut any_header = false;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        any_header = true;
        let Ok(text) = value.to_str() else {
            return true; // unreadable: let the compression layer decide
        };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if coding.is_empty() {
                continue;
            }
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next_back()
                .unwrap_or(1.0);
            listed.push((coding, q > 0.0));
        }
    }
    if !any_header {
        return true;
    }
    let named = |c: &str| listed.iter().find(|(n, _)| n == c).map(|(_, ok)| *ok);
    let star = named("*");
    let ok = |c: &str| named(c).or(star);
    ok("identity").unwrap_or(true) || ok("gzip").unwrap_or(false) || ok("br").unwrap_or(false)
}

/// The first value of query parameter `name`, if any.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    if !q.contains(name) {
        return None;
    }
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Does the request ask for a live feed — `type=events`, a `.events`
/// extension, or `Accept` naming `text/event-stream` (what `EventSource`
/// sends) at least as high as anything else it names? `Some(uri)`: yes,
/// and the path without its extension when it had one.
fn events_asked(uri: &Uri, headers: &HeaderMap) -> Option<Option<Uri>> {
    if let Some(t) = query_param(uri, "type") {
        return (t == "events").then_some(None);
    }
    if let Some((path, "events")) = extension(uri.path()) {
        return Some(Some(with_path(uri, path)));
    }
    // Every GET passes here: parse Accept only when it names the type.
    let named = headers.get_all(header::ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(b"event-stream".len())
            .any(|w| w.eq_ignore_ascii_case(b"event-stream"))
    });
    if !named {
        return None;
    }
    let mut events = 0.0f32;
    let mut others = 0.0f32;
    for (media, q) in accept_ranges(headers) {
        if media == super::live::EVENT_STREAM {
            events = events.max(q);
        } else if !media.contains('*') {
            others = others.max(q);
        }
    }
    (events > 0.0 && events >= others).then_some(None)
}

/// `Accept`'s media ranges, lower-cased, with their q-values.
fn accept_ranges(headers: &HeaderMap) -> Vec<(String, f32)> {
    let mut ranges: Vec<(String, f32)> = Vec::new();
    for value in headers.get_all(header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for range in text.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            if media.is_empty() {
                continue;
            }
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.parse::<f32>().ok().filter(|q| q.is_finite()))
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            ranges.push((media, q));
        }
    }
    ranges
}

pub fn choose(uri: &Uri, headers: &HeaderMap) -> Result<(Format, Option<Uri>), ApiError> {
    let by_type = query_param(uri, "type");
    let (by_extension, stripped) = match extension(uri.path()) {
        Some((path, ext)) => match Format::from_name(ext) {
            Some(f) => (Some(f), Some(with_path(uri, path))),
            None => (None, None),
        },
        None => (None, None),
    };
    if let Some(name) = by_type {
        let format = Format::from_name(&name).ok_or_else(|| {
            ApiError::bad_query(format!(
                "type={name} is not a format restkit serves; use one of {}.",
                Format::NAMES
            ))
        })?;
        return Ok((format, stripped));
    }
    if let Some(format) = by_extension {
        return Ok((format, stripped));
    }
    Ok((from_accept(headers)?, None))
}

/// `…/books.json` → (`…/books`, `json`): only the last segment, only
/// letters after the dot.
fn extension(path: &str) -> Option<(&str, &str)> {
    let last = path.rsplit('/').next()?;
    let (stem, ext) = last.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| (&path[..path.len() - ext.len() - 1], ext))
}

fn with_path(uri: &Uri, path: &str) -> Uri {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// The best format `Accept` allows; JSON without one. Highest q wins; a
/// more specific range overrides a wildcard's q for the same format.
fn from_accept(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ranges = accept_ranges(headers);
    if ranges.is_empty() {
        return Ok(Format::default());
    }
    // RFC 9110 §12.5.1: the most specific range that names a format
    // decides its q; the format's own media type is the most specific of
    // all (`application/json` over `application/hal+json`), and among
    // equally specific ranges the highest q counts, whatever their order.
    let specificity = |format: Format, m: &str| match m {
        "*/*" => 0,
        m if m.ends_with("/*") => 1,
        m if format.media_type() == m => 3,
        _ => 2,
    };
    let mut best: Option<(Format, f32)> = None;
    for &format in Format::ALL {
        let matching = ranges.iter().filter(|(m, _)| format.matches(m));
        let top = matching.clone().map(|(m, _)| specificity(format, m)).max();
        let q = matching
            .filter(|(m, _)| Some(specificity(format, m)) == top)
            .map(|(_, q)| *q)
            .fold(0.0f32, f32::max);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((format, q));
        }
    }
    best.map(|(f, _)| f).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "None of the formats this API serves (application/json, application/xml, text/csv, text/html) is acceptable.",
        )
    })
}

/// The minor version the client asked for (§4.5): `Accept: …; version=1.1`
/// or `Accept: application/vnd.restkit.v1.1+json`; without one, the
/// module's latest. A version the module does not list is 406.
pub fn version(headers: &HeaderMap, offered: &[String]) -> Result<Option<String>, ApiError> {
    if offered.is_empty() {
        return Ok(None);
    }
    let mut asked = None;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for range in text.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let mime = parts.next().unwrap_or("");
            if let Some(v) = mime
                .strip_prefix("application/vnd.restkit.v")
                .and_then(|m| m.split('+').next())
            {
                asked = Some(v.to_string());
            }
            for p in parts {
                if let Some(v) = p.strip_prefix("version=") {
                    asked = Some(v.trim_matches('"').to_string());
                }
            }
        }
    }
    match asked {
        None => Ok(offered.last().cloned()),
        Some(v) if offered.contains(&v) => Ok(Some(v)),
        Some(v) => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            format!(
                "Version {v} is not offered here; this API offers {}.",
                offered.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn a_coding_is_acceptable_unless_every_one_is_refused() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            h
        };
        assert!(coding_acceptable(&HeaderMap::new()));
        assert!(coding_acceptable(&h("")));
        assert!(coding_acceptable(&h("gzip, br")));
        assert!(coding_acceptable(&h("zstd")), "identity stays acceptable");
        assert!(coding_acceptable(&h("identity;q=0, gzip")));
        assert!(coding_acceptable(&h("*;q=0, br;q=0.5")));
        assert!(!coding_acceptable(&h("identity;q=0")));
        assert!(!coding_acceptable(&h("*;q=0")));
        assert!(!coding_acceptable(&h("zstd, identity;q=0")));
        assert!(!coding_acceptable(&h("gzip;q=0, identity;q=0, br;q=0.0")));
    }

    #[test]
    fn accept_q_values_and_wildcards() {
        assert_eq!(from_accept(&HeaderMap::new()).unwrap(), Format::Json);
        assert_eq!(from_accept(&accept("*/*")).unwrap(), Format::Json);
        // What browsers send: the page.
        assert_eq!(
            from_accept(&accept(
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            ))
            .unwrap(),
            Format::Html
        );
        assert_eq!(
            from_accept(&accept("application/vnd.restkit.v2.1+json")).unwrap(),
            Format::Json
        );
        assert_eq!(from_accept(&accept("text/html")).unwrap(), Format::Html);
        assert!(from_accept(&accept("image/png")).is_err());
        assert!(from_accept(&accept("application/json;q=0")).is_err());
        assert_eq!(
            from_accept(&accept("*/*, application/json;q=0")).unwrap(),
            Format::Xml,
            "the specific range overrides the wildcard for JSON; XML is still acceptable"
        );
        assert!(from_accept(&accept(
            "application/json;q=0, application/xml;q=0, text/csv;q=0, text/html;q=0"
        ))
        .is_err());
        assert_eq!(
            from_accept(&accept("application/xml")).unwrap(),
            Format::Xml
        );
        assert!(matches!(
            from_accept(&accept("text/csv")).unwrap(),
            Format::Csv(_)
        ));
        for order in [
            "application/json, application/hal+json;q=0",
            "application/hal+json;q=0, application/json",
        ] {
            assert_eq!(
                from_accept(&accept(order)).unwrap(),
                Format::Json,
                "{order}"
            );
        }
        assert_eq!(
            from_accept(&accept("application/json;q=NaN")).unwrap(),
            Format::Json
        );
    }

    #[test]
    fn text_ranges_cover_only_text_formats() {
        // text/* is CSV or HTML, never XML (application/xml); CSV wins the
        // tie, as the data itself.
        assert!(matches!(
            from_accept(&accept("text/*")).unwrap(),
            Format::Csv(_)
        ));
        // A specific range's q decides its format, over the wildcard's.
        assert_eq!(
            from_accept(&accept("text/csv;q=0.1, text/*;q=0.9")).unwrap(),
            Format::Html
        );
        assert_eq!(
            from_accept(&accept("text/csv;q=0, text/*")).unwrap(),
            Format::Html
        );
        assert_eq!(
            from_accept(&accept("text/csv;q=0, text/html;q=0, text/*"))
                .unwrap_err()
                .status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert!(matches!(
            from_accept(&accept("text/*;q=0.5, application/xml;q=0.4")).unwrap(),
            Format::Csv(_)
        ));
        assert_eq!(
            from_accept(&accept("text/*;q=0.5, application/xml;q=0.6")).unwrap(),
            Format::Xml
        );
        assert_eq!(from_accept(&accept("text/xml")).unwrap(), Format::Xml);
    }

    #[test]
    fn extensions_come_off_the_last_segment_only() {
        assert_eq!(extension("/v1/books.json"), Some(("/v1/books", "json")));
        assert_eq!(extension("/v1/books/3.json"), Some(("/v1/books/3", "json")));
        assert_eq!(extension("/v1.5/books"), None);
        assert_eq!(extension("/v1/books"), None);
        assert_eq!(extension("/v1/.json"), None);
    }

    #[test]
    fn type_wins_over_extension_and_accept() {
        let uri: Uri = "/v1/books.json?type=json".parse().unwrap();
        let (f, stripped) = choose(&uri, &accept("text/html")).unwrap();
        assert_eq!(f, Format::Json);
        assert_eq!(stripped.unwrap().to_string(), "/v1/books?type=json");
        let uri: Uri = "/v1/books?type=yaml".parse().unwrap();
        assert_eq!(choose(&uri, &HeaderMap::new()).unwrap_err().status, 400);
    }
}
