//! Who is calling (§8), and whether the route lets them.
//!
//! Two pipeline steps live here. *Identity* ([`identify`]) turns the
//! request's credentials into a [`Caller`] — before OPTIONS, preflight or
//! rate limiting decide anything — without refusing yet: a preflight with
//! a bad token is still answered. *Authorization* ([`scopes::authorize`])
//! checks the route's declared scope against the identity. Credentials
//! (§8.4): Bearer access tokens ([`tokens`]) in the header or the query,
//! and HTTP Basic with a user's username and password. The OAuth2
//! endpoints that issue tokens are in `crate::oauth`; clients in
//! [`clients`], signing keys in [`keys`]. Ownership of rows (§8.6) is
//! checked by the table controller against the model.

pub mod api_keys;
pub mod clients;
pub mod gate;
pub(crate) mod hashing;
pub mod keys;
pub mod prune;
pub mod refusals;
pub mod scopes;
pub mod session;
pub mod tokens;
pub mod users;

use base64::Engine;

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

pub use crate::model::Credentials;

/// What a module accepts when it does not say (§8.4): Bearer and Basic,
/// and `?access-token=` as `auth.query_param_token` says; not API keys.
pub fn default_credentials(query_param_token: bool) -> Credentials {
    Credentials {
        bearer: true,
        query: query_param_token,
        basic: true,
        api_key: false,
    }
}

/// The `WWW-Authenticate` challenges for the kinds a module accepts.
pub fn challenge(accepted: &Credentials, scope: &str) -> String {
    let mut parts = Vec::new();
    if accepted.bearer || accepted.query {
        if scope.is_empty() {
            parts.push("Bearer realm=\"restkit\"".to_string());
        } else {
            parts.push(format!("Bearer realm=\"restkit\", scope=\"{scope}\""));
        }
    }
    if accepted.basic {
        parts.push("Basic realm=\"restkit\"".to_string());
    }
    if accepted.api_key {
        parts.push("ApiKey realm=\"restkit\", header=\"X-API-Key\"".to_string());
    }
    parts.join(", ")
}

/// Scopes a user authenticated by password holds: everything the demo's
/// resources ask for. (OAuth2 tokens will carry their own.)
pub(crate) const PASSWORD_SCOPES: &[&str] = &["basic", "write"];

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
/// request's extensions (§2.2 `app.call`), else the request's credentials,
/// of the kinds the module accepts (§8.4): `Authorization: Bearer`,
/// `?access-token=`, `Authorization: Basic` with a user's password, or
/// `X-API-Key` from the IP it was issued to. Credentials sent in more than
/// one way are 400 (RFC 6750 §2); a kind the module does not accept is 401.
/// `gate` runs before a password is hashed for real (§9). Without
/// `Authorization`, the browsable pages' session cookie, as set for
/// `public_url` (`server.public_url`, may be empty; see [`session`]).
pub async fn identify(
    parts: &http::request::Parts,
    store: &Store,
    tokens: &tokens::Tokens,
    accepted: Credentials,
    gate: &dyn users::PasswordGate,
    public_url: &str,
) -> Caller {
    if let Some(id) = parts.extensions.get::<Identity>() {
        return Caller::Known(id.clone());
    }
    match authenticate(parts, store, tokens, accepted, gate, public_url).await {
        Ok(None) => Caller::Anonymous,
        Ok(Some(id)) => Caller::Known(id),
        Err(e) => Caller::Refused(e),
    }
}

/// The `access-token` (or `access_token`) query parameter, if sent.
pub fn query_token(query: Option<&str>) -> Option<String> {
    let q = query?;
    if !q.contains("access") {
        return None;
    }
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "access-token" || k == "access_token")
        .map(|(_, v)| v.into_owned())
}

fn two_ways() -> ApiError {
    ApiError::new(
        http::StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        "Credentials were sent in more than one way; send exactly one.",
    )
    .header(
        http::header::WWW_AUTHENTICATE,
        "Bearer realm=\"restkit\", error=\"invalid_request\"",
    )
}

fn not_accepted(kind: &str, accepted: &Credentials) -> ApiError {
    ApiError::new(
        http::StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        format!("{kind} credentials are not accepted here."),
    )
    .header(http::header::WWW_AUTHENTICATE, &challenge(accepted, ""))
}

/// Reads credentials from the request. `Ok(None)`: none were sent.
/// Wrong credentials are a 401, never an anonymous request.
pub async fn authenticate(
    parts: &http::request::Parts,
    store: &Store,
    tokens: &tokens::Tokens,
    accepted: Credentials,
    gate: &dyn users::PasswordGate,
    public_url: &str,
) -> Result<Option<Identity>, ApiError> {
    let mut headers = parts.headers.get_all(http::header::AUTHORIZATION).iter();
    let header = headers.next();
    let mut keys = parts.headers.get_all(api_keys::HEADER).iter();
    let key = keys.next();
    if headers.next().is_some() || keys.next().is_some() {
        return Err(two_ways());
    }
    let in_query = query_token(parts.uri.query());
    let sent = usize::from(header.is_some())
        + usize::from(key.is_some())
        + usize::from(in_query.is_some());
    if sent > 1 {
        return Err(two_ways());
    }
    if let Some(token) = in_query {
        if !accepted.query {
            return Err(not_accepted("Query-string", &accepted));
        }
        return bearer(parts, &token, store, tokens, gate).await.map(Some);
    }
    if let Some(key) = key {
        if !accepted.api_key {
            return Err(not_accepted("API key", &accepted));
        }
        let key = key
            .to_str()
            .map_err(|_| ApiError::unauthorized("The API key is not valid text."))?;
        let ip = parts
            .extensions
            .get::<crate::limit::ClientIp>()
            .map(|c| c.0);
        return api_keys::verify(store, key, ip).await.map(Some);
    }
    let Some(value) = header else {
        // The browsable API's session (see `session`): a bearer token
        // kept in a cookie, where the rules there let it count.
        // A stale or revoked session is no credential at all (the page
        // then offers to sign in again), not a 401 on every route.
        return match session::token(parts, public_url) {
            Some(token) if accepted.bearer => {
                Ok(bearer(parts, token, store, tokens, gate).await.ok())
            }
            _ => Ok(None),
        };
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("The Authorization header is not valid text."))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        if !accepted.bearer {
            return Err(not_accepted("Bearer", &accepted));
        }
        return bearer(parts, rest.trim(), store, tokens, gate)
            .await
            .map(Some);
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::unauthorized("Unsupported authorization scheme.")
            .header(http::header::WWW_AUTHENTICATE, &challenge(&accepted, "")));
    }
    if !accepted.basic {
        return Err(not_accepted("Basic", &accepted));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::unauthorized("Malformed Basic credentials."))?;
    let (username, password) = decoded
        .split_once(':')
        .filter(|_| !decoded.contains('\0'))
        .ok_or_else(|| ApiError::unauthorized("Malformed Basic credentials."))?;
    match users::verify(store, username, password, gate).await? {
        Some(id) => Ok(Some(Identity::user(id, username, PASSWORD_SCOPES))),
        None => Err(ApiError::unauthorized("Invalid username or password.")),
    }
}

/// The bearer token a request was authenticated with, if it was one (in
/// `Authorization`, the query string or the session cookie): what a long
/// response — a live feed — checks again for expiry and revocation.
pub fn bearer_token(parts: &http::request::Parts, public_url: &str) -> Option<String> {
    if let Some(token) = query_token(parts.uri.query()) {
        return Some(token);
    }
    match parts.headers.get(http::header::AUTHORIZATION) {
        Some(value) => {
            let (scheme, rest) = value.to_str().ok()?.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        }
        // The session counts only when no other credential was sent.
        None if parts.headers.contains_key(api_keys::HEADER) => None,
        None => session::token(parts, public_url).map(str::to_string),
    }
}

async fn bearer(
    parts: &http::request::Parts,
    token: &str,
    store: &Store,
    tokens: &tokens::Tokens,
    gate: &dyn users::PasswordGate,
) -> Result<Identity, ApiError> {
    let ip = parts
        .extensions
        .get::<crate::limit::ClientIp>()
        .map(|c| c.0);
    tokens
        .verify_from(token, store, ip, gate)
        .await
        .map(|v| v.identity.clone())
}
