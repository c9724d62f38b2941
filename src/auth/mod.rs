//! Who is calling (§8), and whether the route lets them.
//!
//! Two pipeline steps live here. *Identity* ([`identify`]) turns the
//! request's credentials into a [`Caller`] — before OPTIONS, preflight or
//! rate limiting decide anything — without refusing yet: a preflight with
//! a bad token is still answered. *Authorization* ([`scopes::authorize`])
//! checks the route's declared scope against the identity. Today the
//! credentials are HTTP Basic with a user's username and password (§8.4);
//! the OAuth2 server and JWT verification extend [`identify`]. Ownership
//! of rows (§8.6) is checked by the table controller against the model.

pub mod scopes;
pub mod users;

use base64::Engine;
use http::HeaderMap;

use crate::error::ApiError;
use crate::store::Store;

/// The authenticated caller. In-process callers (§2.2 `app.call`) may put
/// one into the request's extensions themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user, when a user authenticated.
    pub user_id: Option<i64>,
    pub username: Option<String>,
    /// The OAuth2 client the token was issued to, if any.
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

impl Identity {
    /// A user with the given scopes.
    pub fn user(id: i64, username: &str, scopes: &[&str]) -> Identity {
        Identity {
            user_id: Some(id),
            username: Some(username.to_string()),
            client_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Scopes a user authenticated by password holds: everything the demo's
/// resources ask for. (OAuth2 tokens will carry their own.)
const PASSWORD_SCOPES: &[&str] = &["basic", "write"];

/// The identity step's answer.
#[derive(Debug)]
pub enum Caller {
    /// No credentials were sent.
    Anonymous,
    Known(Identity),
    /// Credentials were sent and are wrong: refused by the steps that need
    /// a caller (OPTIONS and preflight do not).
    Refused(ApiError),
}

impl Caller {
    /// The identity, if any; wrong credentials are the error they carry
    /// (401), never an anonymous request.
    pub fn into_identity(self) -> Result<Option<Identity>, ApiError> {
        match self {
            Caller::Anonymous => Ok(None),
            Caller::Known(id) => Ok(Some(id)),
            Caller::Refused(e) => Err(e),
        }
    }
}

/// The identity step: an [`Identity`] an in-process caller put in the
/// request's extensions (§2.2 `app.call`), else the request's credentials.
pub async fn identify(parts: &http::request::Parts, store: &Store) -> Caller {
    if let Some(id) = parts.extensions.get::<Identity>() {
        return Caller::Known(id.clone());
    }
    match authenticate(&parts.headers, store).await {
        Ok(None) => Caller::Anonymous,
        Ok(Some(id)) => Caller::Known(id),
        Err(e) => Caller::Refused(e),
    }
}

/// Reads credentials from the request. `Ok(None)`: none were sent.
/// Wrong credentials are a 401, never an anonymous request.
pub async fn authenticate(
    headers: &HeaderMap,
    store: &Store,
) -> Result<Option<Identity>, ApiError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("The Authorization header is not valid text."))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::unauthorized(
            "Unsupported authorization scheme; use Basic.",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::unauthorized("Malformed Basic credentials."))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| ApiError::unauthorized("Malformed Basic credentials."))?;
    match users::verify(store, username, password).await? {
        Some(id) => Ok(Some(Identity::user(id, username, PASSWORD_SCOPES))),
        None => Err(ApiError::unauthorized("Invalid username or password.")),
    }
}
