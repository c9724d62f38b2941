//! Representations and their encodings (§5.1).
//!
//! The pipeline's last two steps: a reply is first *represented* —
//! status, headers and format-neutral [`Content`] (records stay records)
//! — by `http::represent`, then *encoded* here into bytes of the
//! negotiated [`Format`]: JSON ([`json`]), XML ([`xml`]), CSV ([`csv`])
//! and a browsable HTML page ([`html`]). Errors (§7) are encoded here too,
//! in the format the request negotiated (problem+xml when XML was, a page
//! when HTML was, problem+json for the others).

pub mod csv;
pub mod html;
pub mod json;
pub mod xml;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// An output format restkit can encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Xml,
    Csv(csv::CsvOptions),
    Html,
}

impl Format {
    /// Every format, in order of preference when a client accepts several
    /// equally (`*/*` is JSON).
    pub const ALL: &'static [Format] = &[
        Format::Json,
        Format::Xml,
        Format::Csv(csv::CsvOptions {
            header: true,
            formula_guard: true,
        }),
        Format::Html,
    ];

    /// The formats whose bytes depend only on the data: the
    /// representations `If-Match` compares against. CSV in every writing
    /// a GET can get — with or without the header row (`csv_header`), with
    /// or without the formula guard (a server setting) — since each one
    /// names the record's current version. (An HTML page also shows the
    /// request that fetched it.)
    pub const DATA: &'static [Format] = &[
        Format::Json,
        Format::Xml,
        Format::Csv(csv::CsvOptions {
            header: true,
            formula_guard: true,
        }),
        Format::Csv(csv::CsvOptions {
            header: false,
            formula_guard: true,
        }),
        Format::Csv(csv::CsvOptions {
            header: true,
            formula_guard: false,
        }),
        Format::Csv(csv::CsvOptions {
            header: false,
            formula_guard: false,
        }),
    ];

    /// By `type=` value or URL extension (`json`, `xml`, `csv`).
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "xml" => Some(Format::Xml),
            "csv" => Some(Format::Csv(csv::CsvOptions::default())),
            "html" | "htm" => Some(Format::Html),
            _ => None,
        }
    }

    /// The names `type=` accepts, for messages.
    pub const NAMES: &'static str = "json, xml, csv, html";

    /// Does this media type (no parameters, lower case) name the format?
    /// `*/*` names every format; `application/*` names JSON and XML;
    /// `text/*` names CSV and HTML only (XML is `application/xml`, even
    /// though `text/xml` is accepted for it), and CSV wins a tie between
    /// them, being the data rather than a page about it.
    pub fn matches(self, media: &str) -> bool {
        match self {
            Format::Json => {
                matches!(media, "application/json" | "application/*" | "*/*")
                    || (media.starts_with("application/") && media.ends_with("+json"))
            }
            // Not other `+xml` types: `application/xhtml+xml` is a page,
            // and browsers list it.
            Format::Xml => matches!(
                media,
                "application/xml" | "text/xml" | "application/*" | "*/*"
            ),
            Format::Csv(_) => matches!(media, "text/csv" | "text/*" | "*/*"),
            Format::Html => matches!(
                media,
                "text/html" | "application/xhtml+xml" | "text/*" | "*/*"
            ),
        }
    }

    pub fn content_type(self) -> HeaderValue {
        match self {
            Format::Json => HeaderValue::from_static("application/json"),
            Format::Xml => HeaderValue::from_static("application/xml; charset=UTF-8"),
            Format::Csv(_) => HeaderValue::from_static("text/csv; charset=UTF-8"),
            Format::Html => HeaderValue::from_static("text/html; charset=UTF-8"),
        }
    }

    /// The media type without parameters (for matching `Accept`).
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml",
            Format::Csv(_) => "text/csv",
            Format::Html => "text/html",
        }
    }

    /// The content type of an error body in this format: XML for XML, a
    /// page for HTML, problem+json otherwise (a CSV error is not a table).
    pub fn problem_type(self) -> HeaderValue {
        match self {
            Format::Xml => HeaderValue::from_static("application/problem+xml; charset=UTF-8"),
            Format::Html => self.content_type(),
            _ => HeaderValue::from_static("application/problem+json"),
        }
    }
}

/// What a reply says, before it is encoded.
#[derive(Debug)]
pub struct Representation {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content: Content,
    /// `content` is one record in `envelope=true`'s wrapper
    /// ([`record_envelope`]): its tag names the record ([`record_tag`]).
    pub enveloped_record: bool,
}

/// A format-neutral body.
#[derive(Debug)]
pub enum Content {
    Empty,
    /// One record, keys in declaration order.
    Record(Map<String, Value>),
    /// A page of records (a collection without envelope).
    Records(Vec<Map<String, Value>>),
    /// Anything else: envelopes, action results.
    Value(Value),
}

/// Encodes `repr` in `format`; with `tag`, a 200's body also gets its
/// strong `ETag` (§5.6): one record's in a data format from the record
/// ([`record_tag`]), anything else's from the encoded bytes (no copy of
/// the body). An HTML page describes the request `page` names.
pub fn encode(repr: Representation, format: Format, tag: bool, page: &html::Page) -> Response {
    let body = match (&repr.content, format) {
        (Content::Empty, _) => None,
        (content, Format::Html) => Some(html::encode(
            repr.status,
            &format.content_type(),
            &repr.headers,
            content,
            page,
        )),
        (content, format) => bytes_of(content, format),
    };
    let etag = match (&body, tag && repr.status == StatusCode::OK) {
        (Some(b), true) => Some(match one_record(&repr) {
            Some((record, enveloped)) if format != Format::Html => {
                // A bare record's JSON body is the record's JSON.
                let digest = if format == Format::Json && !enveloped {
                    RecordDigest::of_json(b)
                } else {
                    RecordDigest::of(record)
                };
                record_tag(&digest, format, enveloped)
            }
            _ => etag(b),
        }),
        _ => None,
    };
    let mut res = Response::new(body.map(Body::from).unwrap_or_else(Body::empty));
    *res.status_mut() = repr.status;
    *res.headers_mut() = repr.headers;
    if !matches!(repr.content, Content::Empty) {
        res.headers_mut()
            .insert(header::CONTENT_TYPE, format.content_type());
    }
    if let Some(v) = etag {
        res.headers_mut().insert(header::ETAG, v);
    }
    if format == Format::Html {
        html::security_headers(res.headers_mut());
    }
    res
}

/// The record `repr` holds, and whether in `envelope=true`'s wrapper.
fn one_record(repr: &Representation) -> Option<(&Map<String, Value>, bool)> {
    match &repr.content {
        Content::Record(r) if !repr.enveloped_record => Some((r, false)),
        Content::Value(Value::Object(v)) if repr.enveloped_record => v
            .get("record")
            .and_then(Value::as_object)
            .map(|r| (r, true)),
        _ => None,
    }
}

/// The SHA-256 of a record's JSON: what its tags are made from.
pub struct RecordDigest([u8; 32]);

impl RecordDigest {
    /// The digest of `record`, serialized into the hash (no buffer).
    pub fn of(record: &Map<String, Value>) -> RecordDigest {
        struct Hashing(sha2::Sha256);
        impl std::io::Write for Hashing {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                sha2::Digest::update(&mut self.0, buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut h = Hashing(<sha2::Sha256 as sha2::Digest>::new());
        // Writing into a hash cannot fail, nor can serializing a map of
        // JSON values.
        let _ = serde_json::to_writer(&mut h, record);
        RecordDigest(sha2::Digest::finalize(h.0).into())
    }

    /// The digest of a record already serialized as JSON.
    fn of_json(json: &[u8]) -> RecordDigest {
        RecordDigest(<sha2::Sha256 as sha2::Digest>::digest(json).into())
    }
}

/// The strong tag of one record represented in `format` (a data format),
/// bare or `enveloped`: a hash of the record's JSON and of what
/// represents it. The representation is a function of both, so the tag
/// is as strong as a hash of its bytes — and `If-Match` can name the
/// stored record's tag in every representation a GET gives from one
/// digest, without encoding any ([`record_tags`]).
pub fn record_tag(digest: &RecordDigest, format: Format, enveloped: bool) -> HeaderValue {
    use sha2::Digest;
    // restkit's version names the encoders: a release that writes a
    // record's bytes differently gives it new tags (a fleet of mixed
    // versions disagrees on tags, which costs a re-fetch, never a stale
    // copy).
    let mut h = sha2::Sha256::new();
    h.update(concat!("restkit-record;", env!("CARGO_PKG_VERSION"), ";").as_bytes());
    h.update(format.media_type().as_bytes());
    if let Format::Csv(o) = format {
        h.update([b';', u8::from(o.header), u8::from(o.formula_guard)]);
    }
    h.update(if enveloped {
        &b";envelope"[..]
    } else {
        b";bare"
    });
    h.update(digest.0);
    tag_of(&h.finalize())
}

/// Every tag a GET of `record` can carry: each data format
/// ([`Format::DATA`]), bare or enveloped.
pub fn record_tags(record: &Map<String, Value>) -> Vec<HeaderValue> {
    let digest = RecordDigest::of(record);
    Format::DATA
        .iter()
        .flat_map(|f| [false, true].map(|enveloped| record_tag(&digest, *f, enveloped)))
        .collect()
}

/// Does an `If-None-Match` / `If-Match` field (`values`, possibly several
/// headers, each a comma list) match one of `current` (RFC 9110 §13.1)?
/// `*` matches any current representation. `strong` (If-Match) never
/// matches a weak tag; weak comparison (If-None-Match) ignores `W/`.
pub fn tags_match<'a>(
    values: impl Iterator<Item = &'a HeaderValue>,
    current: &[HeaderValue],
    strong: bool,
) -> bool {
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for tag in text.split(',').map(str::trim) {
            if tag == "*" {
                if !current.is_empty() {
                    return true;
                }
                continue;
            }
            let (weak, opaque) = match tag.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, tag),
            };
            if strong && weak {
                continue;
            }
            // A tag a compressed response carried names the same entity.
            // The tag as sent is tried too: a base64url tag may itself end
            // in `-br`.
            let uncoded = ["-gzip\"", "-br\""]
                .iter()
                .find_map(|coding| opaque.strip_suffix(coding).map(|t| format!("{t}\"")));
            if current.iter().any(|c| {
                c.as_bytes() == opaque.as_bytes()
                    || uncoded
                        .as_ref()
                        .is_some_and(|u| c.as_bytes() == u.as_bytes())
            }) {
                return true;
            }
        }
    }
    false
}

/// The encoded bytes of `content` (`None` for no body). A page made
/// here describes no request; [`encode`] makes the real one.
pub fn bytes_of(content: &Content, format: Format) -> Option<Bytes> {
    match (content, format) {
        (Content::Empty, _) => None,
        (content, Format::Json) => Some(json::encode(content)),
        (content, Format::Xml) => Some(xml::encode(content)),
        (content, Format::Csv(opts)) => Some(csv::encode(content, opts)),
        (content, Format::Html) => Some(html::encode(
            StatusCode::OK,
            &format.content_type(),
            &HeaderMap::new(),
            content,
            &html::Page::default(),
        )),
    }
}

/// A strong entity tag for exactly these bytes: the first 128 bits of
/// their SHA-256, base64url, quoted. The format is part of the bytes, so
/// each representation has its own tag.
pub fn etag(bytes: &[u8]) -> HeaderValue {
    use sha2::Digest;
    tag_of(&sha2::Sha256::digest(bytes))
}

/// A quoted tag of a SHA-256 digest's first 128 bits, base64url.
fn tag_of(digest: &[u8]) -> HeaderValue {
    use base64::Engine;
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
    // Base64url is visible ASCII: always a valid header value.
    HeaderValue::from_str(&format!("\"{tag}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The §7 body of `err` in `format`, with its content type. An HTML
/// error is a page about the request `page` names.
pub fn encode_error(
    err: &ApiError,
    request_id: &str,
    format: Format,
    page: &html::Page,
) -> (HeaderValue, Bytes) {
    let body = Content::Value(err.body(request_id));
    let content_type = format.problem_type();
    let bytes = match format {
        Format::Xml => xml::encode(&body),
        Format::Html => html::encode(err.status, &content_type, &HeaderMap::new(), &body, page),
        _ => json::encode(&body),
    };
    (content_type, bytes)
}

/// `envelope=true` (§5.3) around one record.
pub fn record_envelope(record: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"_meta": {"status": "SUCCESS"}, "record": record})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(sent: &str, current: &str, strong: bool) -> bool {
        let sent = HeaderValue::from_str(sent).unwrap();
        let current = [HeaderValue::from_str(current).unwrap()];
        tags_match(std::iter::once(&sent), &current, strong)
    }

    /// A GET's tag of one record, in every data format, bare or
    /// enveloped, is among the tags `If-Match` accepts for that record —
    /// and a changed record's tags are all different.
    #[test]
    fn a_record_is_tagged_by_get_as_if_match_expects() {
        let record: Map<String, Value> =
            serde_json::from_str(r#"{"id": 5, "title": "=1+1", "price": 1.5, "tags": null}"#)
                .unwrap();
        let accepted = record_tags(&record);
        let mut seen = Vec::new();
        for format in Format::DATA {
            for enveloped in [false, true] {
                let content = if enveloped {
                    Content::Value(record_envelope(Value::Object(record.clone())))
                } else {
                    Content::Record(record.clone())
                };
                let repr = Representation {
                    status: StatusCode::OK,
                    headers: HeaderMap::new(),
                    content,
                    enveloped_record: enveloped,
                };
                let res = encode(repr, *format, true, &html::Page::default());
                let tag = res.headers()[header::ETAG].clone();
                assert!(accepted.contains(&tag), "{format:?} {enveloped}");
                assert!(!seen.contains(&tag), "{format:?} {enveloped}: tag shared");
                seen.push(tag);
            }
        }
        let mut changed = record.clone();
        changed.insert("price".into(), Value::from(1.25));
        assert!(record_tags(&changed).iter().all(|t| !accepted.contains(t)));
    }

    #[test]
    fn a_compressed_variant_names_the_same_entity() {
        assert!(matches("\"abc-br\"", "\"abc\"", true));
        assert!(matches("\"abc-gzip\"", "\"abc\"", true));
        assert!(matches("W/\"abc-gzip\"", "\"abc\"", false));
        assert!(!matches("W/\"abc-gzip\"", "\"abc\"", true));
        assert!(!matches("\"abd-br\"", "\"abc\"", false));
    }

    #[test]
    fn a_tag_that_itself_ends_in_a_coding_name_still_matches() {
        // Base64url has '-': an uncompressed tag can end in "-br".
        assert!(matches("\"xy-br\"", "\"xy-br\"", true));
        assert!(matches("\"xy-br-br\"", "\"xy-br\"", true));
    }
}
