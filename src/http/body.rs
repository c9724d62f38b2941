//! Request bodies and bracketed parameters (§7).
//!
//! Bodies are JSON (`application/json`, `application/*+json`) or
//! `application/x-www-form-urlencoded` with nested brackets (`a[b]=1`,
//! `a[]=1&a[]=2`), read up to the configured limit (413 past it). Any
//! other content type is 415; JSON that does not parse is 400 with the
//! parser's position.
//!
//! Form bodies are nested by [`crate::query::brackets`].

use axum::body::Body;
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use crate::config::ServerSettings;
use crate::error::ApiError;

/// A parsed body. `form` says the leaves are untyped strings.
#[derive(Debug)]
pub struct ParsedBody {
    pub value: Value,
    pub form: bool,
    /// JSON numbers whose written fraction their float lost
    /// ([`super::exact_numbers`]); integer fields refuse them.
    pub lost_fractions: Vec<super::exact_numbers::LostFraction>,
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("The body is larger than the limit of {limit} bytes."),
    )
}

/// Reads and parses a body, within `server.body_limit` (413) and
/// `server.body_timeout` (408: a client that stalls its body is the
/// client's failure, not ours). An empty body is an empty object.
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    server: &ServerSettings,
) -> Result<ParsedBody, ApiError> {
    let bytes = bytes(body, headers, server).await?;
    parse(bytes, headers)
}

/// The body's bytes, within `server.body_limit` (413) and
/// `server.body_timeout` (408).
pub async fn bytes(
    body: Body,
    headers: &HeaderMap,
    server: &ServerSettings,
) -> Result<bytes::Bytes, ApiError> {
    let limit = server.body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let collected = tokio::time::timeout(server.body_timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "BODY_TIMEOUT",
                format!(
                    "The request body did not arrive within {:?}.",
                    server.body_timeout
                ),
            )
        })?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(e) => Err(ApiError::bad_body(format!(
            "The body could not be read: {e}."
        ))),
    }
}

fn parse(bytes: bytes::Bytes, headers: &HeaderMap) -> Result<ParsedBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ParsedBody {
            value: Value::Object(Map::new()),
            form: false,
            lost_fractions: Vec::new(),
        });
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_body(format!("The body is not valid JSON: {e}.")))?;
        Ok(ParsedBody {
            value,
            form: false,
            lost_fractions: super::exact_numbers::scan(&bytes),
        })
    } else if mime == "application/x-www-form-urlencoded" {
        let pairs = form_urlencoded::parse(&bytes).into_owned();
        Ok(ParsedBody {
            value: crate::query::brackets::nest(pairs)?,
            form: true,
            lost_fractions: Vec::new(),
        })
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!(
                "Send application/json or application/x-www-form-urlencoded, not '{}'.",
                if mime.is_empty() {
                    "no content type"
                } else {
                    &mime
                }
            ),
        ))
    }
}
