//! Representations and their encodings (§5.1).
//!
//! The pipeline's last two steps: a reply is first *represented* —
//! status, headers and format-neutral [`Content`] (records stay records)
//! — by `http::represent`, then *encoded* here into bytes of the
//! negotiated [`Format`]. JSON is the one format today; XML, CSV and HTML
//! add a [`Format`] variant and an encoder beside [`json`], and nothing
//! above this module changes. Errors (§7) are encoded here too, in the
//! format the request negotiated.

pub mod json;

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
}

impl Format {
    /// Every format, in order of preference when a client accepts several
    /// equally.
    pub const ALL: &'static [Format] = &[Format::Json];

    /// By `type=` value or URL extension (`json`).
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// Does this media type (no parameters, lower case) name the format?
    /// `application/*` and `*/*` name every format.
    pub fn matches(self, media: &str) -> bool {
        match self {
            Format::Json => {
                matches!(media, "application/json" | "application/*" | "*/*")
                    || (media.starts_with("application/") && media.ends_with("+json"))
            }
        }
    }

    pub fn content_type(self) -> HeaderValue {
        match self {
            Format::Json => HeaderValue::from_static("application/json"),
        }
    }

    /// The content type of an error body in this format.
    pub fn problem_type(self) -> HeaderValue {
        match self {
            Format::Json => HeaderValue::from_static("application/problem+json"),
        }
    }
}

/// What a reply says, before it is encoded.
#[derive(Debug)]
pub struct Representation {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content: Content,
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

/// Encodes `repr` in `format`.
pub fn encode(repr: Representation, format: Format) -> Response {
    let body = match (&repr.content, format) {
        (Content::Empty, _) => None,
        (content, Format::Json) => Some(json::encode(content)),
    };
    let mut res = Response::new(body.map(Body::from).unwrap_or_else(Body::empty));
    *res.status_mut() = repr.status;
    *res.headers_mut() = repr.headers;
    if !matches!(repr.content, Content::Empty) {
        res.headers_mut()
            .insert(header::CONTENT_TYPE, format.content_type());
    }
    res
}

/// The §7 body of `err` in `format`, with its content type.
pub fn encode_error(err: &ApiError, request_id: &str, format: Format) -> (HeaderValue, Bytes) {
    match format {
        Format::Json => (
            format.problem_type(),
            json::encode(&Content::Value(err.body(request_id))),
        ),
    }
}
