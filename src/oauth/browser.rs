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
//! The flow stays on the address the browser uses (`server.public_url`,
//! else the request's `Host`): the client's redirect URI is on it, so the
//! code returns to the server that issued it, whatever name it is reached
//! by. A signed-in person gets `auth.browser_scopes` (by default what
//! their own password gives them over HTTP Basic), never more.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{header, HeaderValue, Request, StatusCode};

use crate::auth::clients::Client;
use crate::auth::session;
use crate::http::AppState;

/// The built-in public client of the browsable pages.
pub const CLIENT_ID: &str = "restkit-browser";
use crate::http::own::SIGNED_IN;
/// The cookie holding the flow's state and verifier while the person
/// signs in.
const FLOW_COOKIE: &str = "restkit-sign-in";
/// How long a sign-in may take.
const FLOW_TTL_SECS: u64 = 600;

/// The built-in client as a request at `base` (`scheme://host[:port]`)
/// sees it: public (PKCE), the code grant only, `auth.browser_scopes`,
/// and one redirect URI, on `base`.
pub fn client(state: &AppState, base: &str) -> Client {
    Client {
        id: -1,
        client_id: CLIENT_ID.into(),
        secret_hash: None,
        grants: vec!["authorization_code".into()],
        scopes: state.settings.auth.browser_scopes.clone(),
        redirect_uris: vec![redirect_uri(base)],
    }
}

fn redirect_uri(base: &str) -> String {
    format!("{base}{SIGNED_IN}")
}

/// Whether the browser reaches this server over https: its cookies are
/// then `Secure` and `__Host-` named (no sibling subdomain can plant
/// them).
fn https(base: &str) -> bool {
    base.starts_with("https://")
}

fn secure(base: &str) -> &'static str {
    if https(base) {
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
    let base = state.base_url(req.headers());
    let flow_state = crate::auth::tokens::random_token();
    let verifier = crate::auth::tokens::random_token();
    // S256: the verifier's SHA-256, base64url (RFC 7636 §4.2).
    let challenge = crate::auth::tokens::digest(&verifier);
    let client = client(&state, &base);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &redirect_uri(&base))
        .append_pair("scope", &client.scopes.join(" "))
        .append_pair("state", &flow_state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let flow = format!(
        "{}={flow_state}.{verifier}.{}; Path=/; HttpOnly; SameSite=Lax; Max-Age={FLOW_TTL_SECS}{}",
        session::cookie_name(FLOW_COOKIE, &base),
        b64(next.as_bytes()),
        secure(&base)
    );
    let authorize = format!("{base}{}/authorize?{query}", state.settings.auth.prefix);
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
    let base = state.base_url(req.headers());
    let clear_flow = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        session::cookie_name(FLOW_COOKIE, &base),
        secure(&base)
    );
    let Some(flow) = session::cookie(req.headers(), &session::cookie_name(FLOW_COOKIE, &base))
    else {
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
            Some(&redirect_uri(&base)),
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
    // It ends with the browser session or when the token inside expires,
    // whichever comes first (a browser that restores sessions keeps a
    // session cookie for ever).
    let session = format!(
        "{}={access}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::cookie_name(session::COOKIE, &base),
        tokens.access_ttl.as_secs(),
        secure(&base)
    );
    see_other(&next, &[session, clear_flow])
}

/// `POST /_restkit/sign-out`: revokes the session's token and clears the
/// cookie. Only from the server's own pages (`Origin`).
pub async fn sign_out(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let base = state.base_url(req.headers());
    if !session::same_origin(req.headers(), req.uri(), &base) {
        return problem(
            StatusCode::FORBIDDEN,
            "Sign out from this server's own pages.",
        );
    }
    let name = session::cookie_name(session::COOKIE, &base);
    if let Some(token) = session::cookie(req.headers(), &name) {
        if let Ok(claims) = state.tokens.verify_signed(token) {
            let jti = claims["jti"].as_str().unwrap_or_default();
            let exp = claims["exp"].as_i64().unwrap_or_default();
            if let Err(e) = state.tokens.revoke_jti(&state.store, jti, exp).await {
                return problem(e.status, &e.detail);
            }
        }
    }
    let clear = format!(
        "{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure(&base)
    );
    see_other(&local(query_param(&req, "next").as_deref()), &[clear])
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
