//! Signing in to the browsable API: the authorization-code + PKCE flow of
//! a built-in public client, run by the server for a person at a browser.
//!
//! `GET /_restkit/sign-in?next=/v1/books` makes a PKCE verifier and a
//! state, keeps them in a short-lived `HttpOnly` cookie, and sends the
//! browser to restkit's own `/authorize` page as client
//! [`CLIENT_ID`]; the person signs in and allows; `/authorize` returns to
//! `GET /_restkit/signed-in?code=…&state=…`, which checks the state,
//! redeems the code with the verifier (server-side: the token never
//! passes through a URL or a script) and keeps the access token in the
//! session cookie of [`crate::auth::session`], then returns to `next`.
//! `POST /_restkit/sign-out` revokes the token and clears the cookie.
//!
//! Everything happens on the issuer's origin, whose address the client's
//! one redirect URI names; a sign-in started at another host name of the
//! same server is first sent there.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{header, HeaderValue, Request, StatusCode};
use sha2::{Digest, Sha256};

use crate::auth::clients::Client;
use crate::auth::session;
use crate::http::AppState;

/// The built-in public client of the browsable pages.
pub const CLIENT_ID: &str = "restkit-browser";
/// Where its flow returns.
pub const SIGNED_IN: &str = "/_restkit/signed-in";
pub const SIGN_IN: &str = "/_restkit/sign-in";
pub const SIGN_OUT: &str = "/_restkit/sign-out";
/// The cookie holding the flow's state and verifier while the person
/// signs in.
const FLOW_COOKIE: &str = "restkit-sign-in";
/// How long a sign-in may take.
const FLOW_TTL_SECS: u64 = 600;

/// Whether this server offers the browsable sign-in: it needs the
/// authorization-code grant.
pub fn offered(settings: &crate::config::Settings) -> bool {
    settings
        .auth
        .grants
        .iter()
        .any(|g| g == "authorization_code")
}

/// The built-in client: public (PKCE), the code grant only, every scope
/// the API's routes name, and one redirect URI on the issuer.
pub fn client(state: &AppState) -> Client {
    let mut scopes: Vec<String> = Vec::new();
    for e in state.routes.iter().flat_map(|r| r.endpoints.iter()) {
        for s in e.scope.split(' ').filter(|s| !s.is_empty()) {
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
    }
    Client {
        id: -1,
        client_id: CLIENT_ID.into(),
        secret_hash: None,
        grants: vec!["authorization_code".into()],
        scopes,
        redirect_uris: vec![redirect_uri(state)],
    }
}

fn redirect_uri(state: &AppState) -> String {
    format!("{}{SIGNED_IN}", state.tokens.issuer)
}

fn secure(state: &AppState) -> &'static str {
    if state.tokens.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

fn see_other(location: &str, cookies: &[String]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A local path to return to: `/…` but not `//…` (another host), no
/// backslash or control character; anything else is `/`.
fn local(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

fn query_param(req: &Request<Body>, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `GET /_restkit/sign-in?next=PATH`.
pub async fn sign_in(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let next = local(query_param(&req, "next").as_deref());
    let here = state.base_url(req.headers());
    if here != state.tokens.issuer {
        // The flow's cookies must live on the origin it returns to.
        let again = form_urlencoded::Serializer::new(String::new())
            .append_pair("next", &next)
            .finish();
        return see_other(&format!("{}{SIGN_IN}?{again}", state.tokens.issuer), &[]);
    }
    let flow_state = crate::auth::tokens::random_token();
    let verifier = crate::auth::tokens::random_token();
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    let client = client(&state);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &redirect_uri(&state))
        .append_pair("scope", &client.scopes.join(" "))
        .append_pair("state", &flow_state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let flow = format!(
        "{FLOW_COOKIE}={flow_state}.{verifier}.{}; Path=/_restkit; HttpOnly; SameSite=Lax; Max-Age={FLOW_TTL_SECS}{}",
        b64(next.as_bytes()),
        secure(&state)
    );
    let authorize = format!(
        "{}{}/authorize?{query}",
        state.tokens.issuer, state.settings.auth.prefix
    );
    see_other(&authorize, &[flow])
}

/// A small page for a flow that cannot go on.
fn problem(status: StatusCode, why: &str) -> Response {
    let mut out = String::new();
    crate::format::html::Shell {
        title: "Sign-in · restkit",
        style: "body{font:15px system-ui,sans-serif;margin:2em auto;max-width:40em;padding:0 1em}",
        header: None,
        noindex: true,
    }
    .open(&mut out);
    out.push_str("<h1>Sign-in did not complete</h1><p>");
    out.push_str(&crate::format::html::esc(why));
    out.push_str("</p><p><a href=\"/\">Back to the API</a></p>");
    crate::format::html::Shell::close(&mut out, None);
    let mut res = (status, out).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET /_restkit/signed-in?code=…&state=…` (or `error=…`).
pub async fn signed_in(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let clear_flow = format!("{FLOW_COOKIE}=; Path=/_restkit; HttpOnly; SameSite=Lax; Max-Age=0");
    let Some(flow) = session::cookie(req.headers(), FLOW_COOKIE) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "This sign-in was not started here, or took longer than ten minutes. Start again.",
        );
    };
    let mut pieces = flow.splitn(3, '.');
    let (Some(expected), Some(verifier), Some(next)) =
        (pieces.next(), pieces.next(), pieces.next())
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "The sign-in cookie is damaged. Start again.",
        );
    };
    let next = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(next)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let next = local(next.as_deref());
    if query_param(&req, "state").as_deref() != Some(expected) {
        return problem(
            StatusCode::BAD_REQUEST,
            "The sign-in's state does not match. Start again.",
        );
    }
    if let Some(error) = query_param(&req, "error") {
        let why = query_param(&req, "error_description").unwrap_or(error);
        return problem(StatusCode::FORBIDDEN, &why);
    }
    let Some(code) = query_param(&req, "code") else {
        return problem(
            StatusCode::BAD_REQUEST,
            "The authorization server sent no code.",
        );
    };
    let tokens = &state.tokens;
    let grant = match tokens
        .use_code(
            &state.store,
            &code,
            CLIENT_ID,
            Some(&redirect_uri(&state)),
            Some(verifier),
            false,
        )
        .await
    {
        Ok(Ok((grant, _))) => grant,
        Ok(Err(why)) => return problem(StatusCode::BAD_REQUEST, why),
        Err(e) => return problem(e.status, &e.detail),
    };
    let access = match tokens.access_token(&grant) {
        Ok((access, _)) => access,
        Err(e) => return problem(e.status, &e.detail),
    };
    // A session cookie (no Max-Age): it ends with the browser session, and
    // the token inside expires on its own.
    let session = format!(
        "{}={access}; Path=/; HttpOnly; SameSite=Strict{}",
        session::COOKIE,
        secure(&state)
    );
    see_other(&next, &[session, clear_flow])
}

/// `POST /_restkit/sign-out`: revokes the session's token and clears the
/// cookie. Only from the server's own pages (`Origin`).
pub async fn sign_out(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    if !session::same_origin(req.headers()) {
        return problem(
            StatusCode::FORBIDDEN,
            "Sign out from this server's own pages.",
        );
    }
    if let Some(token) = session::cookie(req.headers(), session::COOKIE) {
        if let Ok(claims) = state.tokens.verify_signed(token) {
            let jti = claims["jti"].as_str().unwrap_or_default();
            let exp = claims["exp"].as_i64().unwrap_or_default();
            if let Err(e) = state.tokens.revoke_jti(&state.store, jti, exp).await {
                return problem(e.status, &e.detail);
            }
        }
    }
    let clear = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        session::COOKIE,
        secure(&state)
    );
    see_other("/", &[clear])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(local(Some("/v1/books?limit=2")), "/v1/books?limit=2");
        for bad in [
            "//evil.test/x",
            "https://evil.test",
            "/\\evil.test",
            "v1",
            "/a\nb",
        ] {
            assert_eq!(local(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local(None), "/");
    }
}
