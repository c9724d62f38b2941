//! The OAuth2 authorization server's endpoints (§8.1–§8.3), under
//! `auth.prefix` (default `/v1`), and the `.well-known` documents:
//!
//! - `POST {prefix}/access_token` (RFC 6749 §4–§6): `password`,
//!   `client_credentials`, `refresh_token` (rotation, reuse detection);
//! - `POST {prefix}/revoke` (RFC 7009), `POST {prefix}/introspect`
//!   (RFC 7662), both for authenticated clients;
//! - `GET /.well-known/jwks.json`, `GET /.well-known/oauth-authorization-server`
//!   (RFC 8414).
//!
//! Requests are form bodies; every parameter at most once. Answers and
//! errors are RFC 6749's JSON (`error`, `error_description`), not §7's,
//! so standard OAuth2 client libraries read them; token responses carry
//! `Cache-Control: no-store`.

pub mod authorize;
pub mod browser;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{header, HeaderValue, Request, StatusCode};
use serde_json::{json, Value};

use crate::auth::clients::{self, Client};
use crate::auth::tokens::{Grant, Subject};
use crate::auth::users;
use crate::http::AppState;

/// An RFC 6749 §5.2 error.
pub struct OAuthError {
    status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `invalid_client` asks for credentials again.
    challenge: bool,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            challenge: false,
        }
    }

    fn invalid_client(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
            challenge: true,
        }
    }
}

impl From<crate::error::ApiError> for OAuthError {
    fn from(e: crate::error::ApiError) -> OAuthError {
        // Body limits, timeouts, a busy hasher or the database: keep the
        // status, speak OAuth2.
        let error = if e.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request"
        };
        OAuthError {
            status: e.status,
            error,
            description: e.detail.to_string(),
            challenge: false,
        }
    }
}

fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": self.error, "error_description": self.description}).to_string(),
        )
            .into_response();
        if self.challenge {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"restkit\", charset=\"UTF-8\""),
            );
        }
        res.extensions_mut()
            .insert(crate::http::marks::OAuthFailure(self.error));
        no_store(res)
    }
}

fn json_response(body: Value) -> Response {
    no_store(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
    )
}

/// A form body's parameters; each at most once (RFC 6749 §3.1), none
/// empty-named.
pub(crate) async fn form(
    state: &AppState,
    req: Request<Body>,
) -> Result<(http::request::Parts, HashMap<String, String>), OAuthError> {
    let (parts, body) = req.into_parts();
    let mime = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if mime.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(OAuthError::new(
            "invalid_request",
            "Send the parameters as application/x-www-form-urlencoded.",
        ));
    }
    let bytes = crate::http::body::bytes(body, &parts.headers, &state.settings.server).await?;
    let mut params = HashMap::new();
    for (k, v) in form_urlencoded::parse(&bytes) {
        if v.contains('\0') || k.contains('\0') {
            return Err(OAuthError::new(
                "invalid_request",
                "A parameter holds a NUL.",
            ));
        }
        if params.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::new(
                "invalid_request",
                format!("The parameter '{k}' is sent more than once."),
            ));
        }
    }
    params.retain(|_, v| !v.is_empty());
    Ok((parts, params))
}

/// Client authentication (RFC 6749 §2.3): HTTP Basic, or `client_id` and
/// `client_secret` in the body — one way, not both. A public client sends
/// its `client_id` alone.
async fn client(
    state: &AppState,
    parts: &http::request::Parts,
    params: &mut HashMap<String, String>,
) -> Result<Client, OAuthError> {
    let basic = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then(|| rest.trim().to_string())
        });
    let (id, secret) = match basic {
        Some(b64) => {
            if params.contains_key("client_secret") {
                return Err(OAuthError::new(
                    "invalid_request",
                    "Authenticate the client one way: HTTP Basic or client_secret, not both.",
                ));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::invalid_client("Malformed Basic credentials."))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("Malformed Basic credentials."))?;
            // RFC 6749 §2.3.1: both parts are form-encoded first.
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let id = decode(id);
            let secret = decode(secret);
            if id.contains('\0') || secret.contains('\0') {
                return Err(OAuthError::invalid_client("Malformed Basic credentials."));
            }
            if params
                .get("client_id")
                .is_some_and(|body_id| *body_id != id)
            {
                return Err(OAuthError::new(
                    "invalid_request",
                    "client_id differs from the authenticated client.",
                ));
            }
            (id, Some(secret))
        }
        None => (
            params
                .get("client_id")
                .cloned()
                .ok_or_else(|| OAuthError::invalid_client("The client is not identified."))?,
            params.remove("client_secret"),
        ),
    };
    clients::authenticate(&state.store, &id, secret.as_deref())
        .await?
        .ok_or_else(|| OAuthError::invalid_client("Unknown client or wrong secret."))
}

/// The scopes a request may get: those asked for (all of them the
/// client's), or, without `scope`, all the client's.
pub(crate) fn scopes(client: &Client, asked: Option<&String>) -> Result<Vec<String>, OAuthError> {
    let Some(asked) = asked else {
        return Ok(client.scopes.clone());
    };
    let mut out: Vec<String> = Vec::new();
    for s in asked.split(' ').filter(|s| !s.is_empty()) {
        if !client.scopes.iter().any(|c| c == s) {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("The client may not ask for the scope '{s}'."),
            ));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

fn require<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a String, OAuthError> {
    params
        .get(name)
        .ok_or_else(|| OAuthError::new("invalid_request", format!("'{name}' is missing.")))
}

pub async fn token(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    match issue(&state, req).await {
        Ok(body) => json_response(body),
        Err(e) => e.into_response(),
    }
}

/// The refresh token a grant hands out.
enum Refresh {
    None,
    /// A new one, in a new family.
    Issue,
    /// Already written by the exchange, in the transaction that consumed
    /// what was exchanged.
    Issued(String),
}

async fn issue(state: &AppState, req: Request<Body>) -> Result<Value, OAuthError> {
    let (parts, mut params) = form(state, req).await?;
    let grant_type = require(&params, "grant_type")?.clone();
    let client = client(state, &parts, &mut params).await?;
    let enabled = state.settings.auth.grants.contains(&grant_type);
    let known = matches!(
        grant_type.as_str(),
        "password" | "client_credentials" | "refresh_token" | "authorization_code"
    );
    if !known || !enabled {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            format!("The grant '{grant_type}' is not served here."),
        ));
    }
    if !client.may_use(&grant_type) {
        return Err(OAuthError::new(
            "unauthorized_client",
            format!("This client may not use the grant '{grant_type}'."),
        ));
    }
    let tokens = &state.tokens;
    let refresh_enabled = state
        .settings
        .auth
        .grants
        .iter()
        .any(|g| g == "refresh_token")
        && client.may_use("refresh_token");
    // The grant, and the refresh token to hand out: `Issue` for a new
    // family, `Issued` when the exchange wrote it in its own transaction.
    let (grant, refresh) = match grant_type.as_str() {
        "client_credentials" => {
            if client.is_public() {
                return Err(OAuthError::new(
                    "unauthorized_client",
                    "A public client cannot use client_credentials.",
                ));
            }
            let scope = scopes(&client, params.get("scope"))?;
            let grant = Grant {
                subject: Subject::Client,
                client_id: client.client_id.clone(),
                scope,
                family: None,
            };
            // RFC 6749 §4.4.3: no refresh token.
            (grant, Refresh::None)
        }
        "password" => {
            let username = require(&params, "username")?;
            let password = require(&params, "password")?;
            let scope = scopes(&client, params.get("scope"))?;
            let id = users::verify(&state.store, username, password, &users::Open)
                .await?
                .ok_or_else(|| OAuthError::new("invalid_grant", "Wrong username or password."))?;
            let grant = Grant {
                subject: Subject::User {
                    id,
                    username: username.clone(),
                },
                client_id: client.client_id.clone(),
                scope,
                family: None,
            };
            let refresh = if refresh_enabled {
                Refresh::Issue
            } else {
                Refresh::None
            };
            (grant, refresh)
        }
        "refresh_token" => {
            let presented = require(&params, "refresh_token")?;
            // A narrower scope may be asked for, never a wider one; it
            // narrows this access token only (RFC 6749 §6: the refresh
            // token keeps what was granted). Checked before the old token
            // is consumed: a refused refresh changes nothing.
            let asked = params.get("scope");
            let narrow = |granted: &Grant| -> Result<Vec<String>, OAuthError> {
                let Some(asked) = asked else {
                    return Ok(granted.scope.clone());
                };
                let wanted: Vec<String> = asked
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some(s) = wanted.iter().find(|s| !granted.scope.contains(s)) {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        format!("The refresh token was not granted the scope '{s}'."),
                    ));
                }
                if wanted.is_empty() {
                    return Err(OAuthError::new("invalid_scope", "The scope is empty."));
                }
                Ok(wanted)
            };
            let (grant, token) = tokens
                .rotate_refresh_token(&state.store, presented, &client.client_id, narrow)
                .await?
                .ok_or_else(|| {
                    OAuthError::new(
                        "invalid_grant",
                        "The refresh token is not valid (expired, used, revoked or another client's).",
                    )
                })?;
            (grant, Refresh::Issued(token))
        }
        "authorization_code" => {
            let code = require(&params, "code")?;
            let (grant, token) = tokens
                .use_code(
                    &state.store,
                    code,
                    &client.client_id,
                    params.get("redirect_uri").map(String::as_str),
                    params.get("code_verifier").map(String::as_str),
                    refresh_enabled,
                )
                .await?
                .map_err(|why| OAuthError::new("invalid_grant", why))?;
            let refresh = match token {
                Some(t) => Refresh::Issued(t),
                None => Refresh::None,
            };
            (grant, refresh)
        }
        _ => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("The grant '{grant_type}' is not served here."),
            ))
        }
    };
    let mut grant = grant;
    let refresh = match refresh {
        Refresh::None => None,
        Refresh::Issued(token) => Some(token),
        Refresh::Issue => {
            let (token, family) = tokens.refresh_token(&state.store, &grant, None).await?;
            grant.family = Some(family);
            Some(token)
        }
    };
    let (access, _) = tokens.access_token(&grant)?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": tokens.access_ttl.as_secs(),
        "scope": grant.scope.join(" "),
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    Ok(body)
}

/// RFC 7009: 200 whatever the token was (unknown, expired, another
/// client's: nothing to say); a refresh token takes its family with it.
pub async fn revoke(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let run = async {
        let (parts, mut params) = form(&state, req).await?;
        let client = client(&state, &parts, &mut params).await?;
        let token = require(&params, "token")?;
        let tokens = &state.tokens;
        if let Some(row) = tokens.find_refresh(&state.store, token).await? {
            if row["clientId"].as_str() == Some(client.client_id.as_str()) {
                if let Some(family) = row["familyId"].as_str() {
                    tokens.revoke_family(&state.store, family).await?;
                }
            }
        } else if let Ok(claims) = tokens.verify_signed(token) {
            if claims["client_id"].as_str() == Some(client.client_id.as_str()) {
                let jti = claims["jti"].as_str().unwrap_or_default();
                let exp = claims["exp"].as_i64().unwrap_or_default();
                tokens.revoke_jti(&state.store, jti, exp).await?;
            }
        }
        Ok::<_, OAuthError>(())
    };
    match run.await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

/// RFC 7662: for authenticated clients; a client learns about its own
/// tokens only (others' are `{"active": false}`).
pub async fn introspect(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let run = async {
        let (parts, mut params) = form(&state, req).await?;
        let client = client(&state, &parts, &mut params).await?;
        let token = require(&params, "token")?;
        let tokens = &state.tokens;
        let inactive = json!({"active": false});
        if let Ok(v) = tokens.verify(token, &state.store).await {
            let c = &v.claims;
            if c["client_id"].as_str() != Some(client.client_id.as_str()) {
                return Ok(inactive);
            }
            let mut out = json!({
                "active": true,
                "token_type": "Bearer",
                "scope": c["scope"], "client_id": c["client_id"], "sub": c["sub"],
                "exp": c["exp"], "iat": c["iat"], "nbf": c["nbf"],
                "iss": c["iss"], "aud": c["aud"], "jti": c["jti"],
            });
            if let Some(u) = c.get("username") {
                out["username"] = u.clone();
            }
            return Ok(out);
        }
        if let Some(row) = tokens.find_refresh(&state.store, token).await? {
            let live = row["used"] == json!(false)
                && row["expiresAt"].as_i64().unwrap_or_default() >= crate::auth::tokens::now();
            if live && row["clientId"].as_str() == Some(client.client_id.as_str()) {
                let mut out = json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "scope": row["scope"], "client_id": row["clientId"],
                    "exp": row["expiresAt"],
                });
                if let Some(u) = row.get("username").filter(|u| !u.is_null()) {
                    out["username"] = u.clone();
                    out["sub"] = json!(row["userId"].as_i64().unwrap_or_default().to_string());
                }
                return Ok(out);
            }
        }
        Ok::<_, OAuthError>(inactive)
    };
    match run.await {
        Ok(body) => json_response(body),
        Err(e) => e.into_response(),
    }
}

pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let mut res = (
        [(header::CONTENT_TYPE, "application/json")],
        state.tokens.keys.jwks().to_string(),
    )
        .into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// RFC 8414 metadata; `issuer` is [`crate::config::Settings::issuer`] and every endpoint is
/// under it.
pub async fn metadata(State(state): State<Arc<AppState>>) -> Response {
    let auth = &state.settings.auth;
    let issuer = &state.tokens.issuer;
    let at = |path: &str| format!("{issuer}{}{path}", auth.prefix);
    let grants = &auth.grants;
    let mut response_types = Vec::new();
    if grants.iter().any(|g| g == "authorization_code") {
        response_types.push("code");
    }
    if grants.iter().any(|g| g == "implicit") {
        response_types.push("token");
    }
    let mut scopes: Vec<String> = Vec::new();
    for route in &state.routes {
        for e in &route.endpoints {
            if !e.scope.is_empty() && !scopes.contains(&e.scope) {
                scopes.push(e.scope.clone());
            }
        }
    }
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": at("/authorize"),
        "token_endpoint": at("/access_token"),
        "revocation_endpoint": at("/revoke"),
        "introspection_endpoint": at("/introspect"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": grants,
        "response_types_supported": response_types,
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `POST {prefix}/authenticate` (§8.4): a user's username and password
/// (form or JSON) → an API key usable only from the caller's IP. Errors in
/// §7's format (this is restkit's endpoint, not OAuth2's).
pub async fn authenticate(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let run = async {
        let ip = req
            .extensions()
            .get::<crate::limit::ClientIp>()
            .map(|c| c.0)
            .ok_or_else(|| {
                crate::error::ApiError::bad_body(
                    "An API key is bound to the client's address, and this request has none.",
                )
            })?;
        let (parts, body) = req.into_parts();
        let parsed = crate::http::body::read(body, &parts.headers, &state.settings.server).await?;
        let field = |name: &str| {
            parsed
                .value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            return Err(crate::error::ApiError::bad_body(
                "Send username and password.",
            ));
        };
        let id = users::verify(&state.store, &username, &password, &users::Open)
            .await?
            .ok_or_else(|| crate::error::ApiError::unauthorized("Invalid username or password."))?;
        let ttl = state.settings.auth.api_key_ttl.as_secs() as i64;
        let key = crate::auth::api_keys::issue(&state.store, id, &username, ip, ttl).await?;
        Ok::<_, crate::error::ApiError>(json!({
            "api_key": key,
            "token_type": "ApiKey",
            "header": "X-API-Key",
            "expires_in": ttl,
            "ip": ip.to_string(),
        }))
    };
    match run.await {
        Ok(body) => json_response(body),
        Err(e) => e.into_response(),
    }
}
