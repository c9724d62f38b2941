//! The one error type that reaches the wire (§7).
//!
//! Policy:
//! - Every layer has its own error type (`store::StoreError`,
//!   `http::body::BodyError`, `model::ModelError`, …) and exactly one
//!   `From` conversion into [`ApiError`]. Nothing else builds error bodies.
//! - A handler returns `Err(ApiError)`; its `IntoResponse` only stashes the
//!   error in the response extensions. The outermost layer
//!   ([`crate::http::layers`]) renders it, because only there are the
//!   request id and the negotiated format known.
//! - `dev_message` carries context for developers (which record, which
//!   field) in API terms; `user_message` is a safe sentence for end users.
//!   Neither ever holds SQL, table or column names, file paths or stack
//!   traces: a 500 says only that something failed and gives the request
//!   id to look up in the logs.
//!
//! Stable `errorCode`s (documented in README.md):
//!
//! | status | errorCode |
//! |---|---|
//! | 400 | `MALFORMED_BODY`, `INVALID_QUERY`, `INVALID_PARAMETER` |
//! | 401 | `UNAUTHORIZED` |
//! | 403 | `FORBIDDEN` |
//! | 404 | `ROUTE_NOT_FOUND`, `RESOURCE_NOT_FOUND` |
//! | 405 | `METHOD_NOT_ALLOWED` |
//! | 406 | `NOT_ACCEPTABLE` |
//! | 409 | `DUPLICATE_VALUE` |
//! | 412 | `PRECONDITION_FAILED` |
//! | 413 | `PAYLOAD_TOO_LARGE` |
//! | 414 | `URI_TOO_LONG` |
//! | 415 | `UNSUPPORTED_MEDIA_TYPE` |
//! | 422 | `VALIDATION_FAILED` |
//! | 500 | `INTERNAL_ERROR` |
//! | 503 | `DATABASE_UNAVAILABLE`, `REQUEST_TIMEOUT` |

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

/// One failed constraint of a 422 (or the field of a 409).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

/// A §7 error: status, stable code and messages, plus headers it needs.
/// Boxed ([`Problem`] inside) so `Result<T, ApiError>` stays one pointer
/// wide on the hot path.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Problem>);

/// The contents of an [`ApiError`]; reach them through `Deref`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: Cow<'static, str>,
    pub user_message: Cow<'static, str>,
    pub dev_message: Cow<'static, str>,
    pub errors: Vec<FieldError>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// For OAuth2 clients: RFC 6749's `error` code, sent as `error` (in
    /// place of §7's numeric copy of the status) with `error_description`.
    pub oauth_error: Option<&'static str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        let detail = detail.into();
        ApiError(Box::new(Problem {
            status,
            code,
            user_message: Cow::Borrowed(default_user_message(status)),
            dev_message: detail.clone(),
            detail,
            errors: Vec::new(),
            headers: Vec::new(),
            oauth_error: None,
        }))
    }

    /// Also an RFC 6749 error (`error`: `code`, `error_description`), for
    /// the answers of the OAuth2 endpoints that are otherwise in §7 form.
    pub fn oauth(mut self, code: &'static str) -> ApiError {
        self.oauth_error = Some(code);
        self
    }

    pub fn dev(mut self, msg: impl Into<Cow<'static, str>>) -> ApiError {
        self.dev_message = msg.into();
        self
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn route_not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ROUTE_NOT_FOUND",
            "No route matches this path.",
        )
        .dev(format!("No route is declared for {path}."))
    }

    /// A row that does not exist (or is out of the caller's scope).
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            format!("No {what} with id {id}."),
        )
    }

    pub fn method_not_allowed(allow: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("This route allows {allow}."),
        )
        .header(header::ALLOW, allow)
    }

    pub fn bad_body(detail: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_BODY", detail)
    }

    pub fn bad_query(detail: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_QUERY", detail)
    }

    /// A 422 listing every failed constraint — up to
    /// [`MAX_FIELD_ERRORS`]; past that the detail says how many were left
    /// out (a form with 100,000 unknown keys made an 8 MB error body).
    pub fn validation(mut errors: Vec<FieldError>) -> ApiError {
        let n = errors.len();
        let detail = match n {
            1 => Cow::Borrowed("1 field failed validation."),
            n if n > MAX_FIELD_ERRORS => Cow::Owned(format!(
                "{n} fields failed validation; the first {MAX_FIELD_ERRORS} are listed."
            )),
            n => Cow::Owned(format!("{n} fields failed validation.")),
        };
        errors.truncate(MAX_FIELD_ERRORS);
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            detail,
        );
        e.errors = errors;
        e
    }

    pub fn unauthorized(detail: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", detail)
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"restkit\"")
    }

    pub fn forbidden(detail: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", detail)
    }

    /// A failure whose cause must not reach the client. `cause` goes to the
    /// log, with the request id, and never into the body.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "The server failed to handle this request.",
        )
        .dev("See the server log for this request id.")
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> ApiError {
        tracing::warn!(%cause, "database unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DATABASE_UNAVAILABLE",
            "The database is unavailable; try again shortly.",
        )
        .header(header::RETRY_AFTER, "1")
    }

    /// The §7 body. `request_id` comes from the edge layer.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "error": self.status.as_u16(),
            "errorCode": self.code,
            "userMessage": self.user_message,
            "devMessage": self.dev_message,
            "more": "",
            "requestId": request_id,
        });
        if !self.errors.is_empty() {
            v["errors"] = serde_json::to_value(&self.errors).unwrap_or_default();
        }
        if let Some(code) = self.oauth_error {
            v["error"] = code.into();
            v["error_description"] = self.detail.clone().into();
        }
        v
    }
}

fn default_user_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be understood.",
        401 => "Please sign in to continue.",
        403 => "You are not allowed to do this.",
        404 => "The requested resource was not found.",
        405 => "This operation is not available here.",
        406 => "The requested format or version is not available.",
        408 => "The request took too long to arrive.",
        409 => "This conflicts with existing data.",
        410 => "Your copy is too old to bring up to date; reload it.",
        412 => "The resource was changed by someone else; reload and retry.",
        413 => "The request is too large.",
        414 => "The request address is too long.",
        415 => "This content type is not supported.",
        422 => "Some of the data is invalid.",
        429 => "Too many requests; please slow down.",
        503 => "The service is temporarily unavailable.",
        _ => "Something went wrong on our side.",
    }
}

/// `1 character`, `2 characters`: a count and its noun, agreeing.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// Most field errors one 422 lists.
pub const MAX_FIELD_ERRORS: usize = 100;

impl std::ops::Deref for ApiError {
    type Target = Problem;
    fn deref(&self) -> &Problem {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut Problem {
        &mut self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        for (k, v) in &self.headers {
            res.headers_mut().append(k.clone(), v.clone());
        }
        res.extensions_mut().insert(self);
        res
    }
}
