//! `{prefix}/authorize` (§8.1, RFC 6749 §4.1–§4.2, RFC 7636): GET shows a
//! sign-in and consent page; POST signs the user in and answers the client
//! with a redirect — a single-use code (`response_type=code`) or, for
//! clients allowed the implicit grant, a token in the fragment.
//!
//! A request that names no known client or no registered redirect URI is
//! refused on the page itself, never redirected (RFC 6749 §4.1.2.1); every
//! other error goes back to the client as `error` and `state`. PKCE: S256
//! only, required of public clients. The form is protected by a token the
//! server signed (HMAC with a server key, an expiry, and the client it was
//! shown for) that an HttpOnly, SameSite=Strict cookie and a hidden field
//! must both carry — a pair planted by someone else is not one the server
//! signed — and a POST a browser marks as cross-site (`Sec-Fetch-Site`, or
//! an `Origin` other than this server's) is refused. The page may not be
//! framed, and every value it echoes is escaped.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Request, StatusCode};

use crate::auth::clients::{self, Client};
use crate::auth::tokens::{self, Approval, Grant, Subject};
use crate::auth::users;
use crate::format::html::{esc as text, Shell};
use crate::http::AppState;
use crate::oauth;

const CSRF_COOKIE: &str = "restkit_csrf";

/// How long a form may be posted after it was shown (the cookie's
/// `Max-Age` too).
const CSRF_TTL: i64 = 600;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The key CSRF tokens are signed with: derived from `server.secret` when
/// set (so every instance accepts every instance's forms), else one random
/// key per process.
fn csrf_mac(state: &AppState) -> HmacSha256 {
    use hmac::Mac;
    static RANDOM: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = &state.settings.server.secret;
    let key: Vec<u8> = if secret.is_empty() {
        RANDOM
            .get_or_init(|| {
                let mut k = [0u8; 32];
                k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                k
            })
            .to_vec()
    } else {
        // Domain-separated from the cursors signed with the same secret.
        format!("restkit authorize csrf\0{secret}").into_bytes()
    };
    HmacSha256::new_from_slice(&key).expect("HMAC accepts any key length")
}

/// The MAC of a token's parts: its expiry, nonce and client.
fn csrf_sign(state: &AppState, expires: i64, nonce: &str, client_id: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = csrf_mac(state);
    mac.update(format!("{expires}.{nonce}.{}.{client_id}", client_id.len()).as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A fresh token for a form shown for `client_id`: `expiry.nonce.mac`.
fn csrf_issue(state: &AppState, client_id: &str) -> String {
    let expires = tokens::now() + CSRF_TTL;
    let nonce = tokens::random_token();
    let mac = csrf_sign(state, expires, &nonce, client_id);
    format!("{expires}.{nonce}.{mac}")
}

/// Is `token` one this server signed for `client_id`, not yet expired?
fn csrf_genuine(state: &AppState, token: &str, client_id: &str) -> bool {
    let mut parts = token.splitn(3, '.');
    let (Some(expires), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return false;
    };
    expires >= tokens::now() && constant_time_eq(&csrf_sign(state, expires, nonce, client_id), mac)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Does the browser say this POST comes from another site? Browsers send
/// `Sec-Fetch-Site` (and `Origin` on every POST); a request with neither
/// is not a browser's cross-site form, and the token still guards it.
fn cross_site(state: &AppState, headers: &http::HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or("cross-site"));
    if fetch_site.is_some_and(|s| !matches!(s, "same-origin" | "none")) {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    !crate::auth::session::origin_is_ours(origin, &state.settings.server.public_url, host)
}

/// A validated authorization request.
struct AuthRequest {
    /// `code` or `token`.
    response_type: String,
    client: Client,
    redirect_uri: String,
    /// Whether the request named it (the token request must then too).
    redirect_sent: bool,
    scope: Vec<String>,
    state: Option<String>,
    challenge: Option<String>,
}

/// Why a request is refused, and how the refusal travels.
enum Refusal {
    /// Shown on the page (the redirect URI cannot be trusted).
    Page(StatusCode, String),
    /// Sent back to the client's redirect URI.
    Redirect {
        uri: String,
        fragment: bool,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// Query or form parameters, each at most once.
fn params_of(pairs: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(pairs) {
        if k.contains('\0') || v.contains('\0') {
            return Err("A parameter holds a NUL.".into());
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("The parameter '{k}' is sent more than once."));
        }
    }
    out.retain(|_, v: &mut String| !v.is_empty());
    Ok(out)
}

/// `base`: the address the request came to (`scheme://host[:port]`), on
/// which the browsable pages' built-in client returns.
async fn check(
    state: &AppState,
    p: &HashMap<String, String>,
    base: &str,
) -> Result<AuthRequest, Refusal> {
    let page = |why: &str| Refusal::Page(StatusCode::BAD_REQUEST, why.to_string());
    let client_id = p
        .get("client_id")
        .ok_or_else(|| page("The request names no client (client_id)."))?;
    let client =
        if client_id == super::browser::CLIENT_ID && state.settings.offers_browser_sign_in() {
            // The browsable pages' own client: built in, never stored.
            Some(super::browser::client(state, base))
        } else {
            clients::find(&state.store, client_id)
                .await
                .map_err(|e| Refusal::Page(e.status, e.detail.to_string()))?
        }
        .ok_or_else(|| page("The client is not registered here."))?;
    let redirect_uri = match p.get("redirect_uri") {
        Some(uri) if client.redirect_uris.contains(uri) => uri.clone(),
        Some(_) => {
            return Err(page(
                "The redirect_uri is not one registered for this client.",
            ))
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return Err(page("The request needs a redirect_uri.")),
    };
    let st = p.get("state").cloned();
    let response_type = p.get("response_type").cloned().unwrap_or_default();
    let fragment = response_type == "token";
    let refuse = |error: &'static str, description: &str| Refusal::Redirect {
        uri: redirect_uri.clone(),
        fragment,
        error,
        description: description.to_string(),
        state: st.clone(),
    };
    let grant = match response_type.as_str() {
        "code" => "authorization_code",
        "token" => "implicit",
        _ => {
            return Err(refuse(
                "unsupported_response_type",
                "response_type must be code (or token where allowed).",
            ))
        }
    };
    if !state.settings.auth.grants.iter().any(|g| g == grant) || !client.may_use(grant) {
        return Err(refuse(
            "unauthorized_client",
            "This client may not use this response_type.",
        ));
    }
    let scope = oauth::scopes(&client, p.get("scope"))
        .map_err(|e| refuse("invalid_scope", &e.description))?;
    let method = p.get("code_challenge_method").map(String::as_str);
    let challenge = p.get("code_challenge").cloned();
    match (method, &challenge) {
        (Some(m), _) if m != "S256" => {
            return Err(refuse(
                "invalid_request",
                "Only code_challenge_method=S256 is accepted (plain is refused).",
            ))
        }
        (Some(_), None) => return Err(refuse("invalid_request", "code_challenge is missing.")),
        (None, Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method=S256 is required with a code_challenge.",
            ))
        }
        _ => {}
    }
    if let Some(c) = &challenge {
        let ok = c.len() == 43
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(refuse(
                "invalid_request",
                "code_challenge is not an S256 challenge (43 base64url characters).",
            ));
        }
    }
    if client.is_public() && response_type == "code" && challenge.is_none() {
        return Err(refuse(
            "invalid_request",
            "A public client must use PKCE (code_challenge, S256).",
        ));
    }
    Ok(AuthRequest {
        response_type,
        client,
        redirect_sent: p.contains_key("redirect_uri"),
        redirect_uri,
        scope,
        state: st,
        challenge,
    })
}

/// A redirect to the client with `params` in the query (code) or the
/// fragment (token).
fn redirect_to(uri: &str, fragment: bool, params: &[(&str, &str)]) -> Response {
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let location = if fragment {
        format!("{uri}#{encoded}")
    } else if uri.contains('?') {
        format!("{uri}&{encoded}")
    } else {
        format!("{uri}?{encoded}")
    };
    let mut res = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    no_store(res)
}

fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // `same-origin`, not `no-referrer`: nothing leaves for another site,
    // but a browser's POST of the consent form to this same page keeps its
    // `Origin` (under `no-referrer` Chromium sends `Origin: null`, which
    // the cross-site check rightly refuses).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::Page(status, why) => page(
            status,
            "Cannot authorize",
            &format!("<p class=\"bad\">{}</p>", text(&why)),
            None,
        ),
        Refusal::Redirect {
            uri,
            fragment,
            error,
            description,
            state,
        } => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &state {
                params.push(("state", s));
            }
            redirect_to(&uri, fragment, &params)
        }
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;background:#f5f6f8;color:#1d2330;margin:0}\
main{max-width:26em;margin:3em auto;background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:1.2em 1.5em}\
h1{font-size:1.2em}label{display:block;margin:.6em 0}input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.4em;font:inherit}\
button{font:inherit;padding:.4em 1.2em;margin-right:.6em}.bad{color:#b42318}ul{padding-left:1.2em}code{font-size:13px}";

/// The page's CSP: its own style only, no script at all, never framed.
fn csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| crate::format::html::csp_allowing(STYLE, None, ""))
}

fn page(status: StatusCode, title: &str, body: &str, cookie: Option<HeaderValue>) -> Response {
    let mut html = String::with_capacity(2048);
    Shell {
        title,
        style: STYLE,
        header: None,
        noindex: true,
    }
    .open(&mut html);
    html.push_str(&format!("<h1>{}</h1>{body}", text(title)));
    Shell::close(&mut html, None);
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        html,
    )
        .into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp().clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(c) = cookie {
        h.insert(header::SET_COOKIE, c);
    }
    no_store(res)
}

/// The sign-in and consent form for `req`, with a fresh CSRF token.
fn form_page(
    state: &AppState,
    req: &AuthRequest,
    p: &HashMap<String, String>,
    problem: Option<&str>,
) -> Response {
    let csrf = csrf_issue(state, &req.client.client_id);
    let secure = if state.tokens.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let path = format!("{}/authorize", state.settings.auth.prefix);
    let cookie = HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={csrf}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={CSRF_TTL}{secure}"
    ))
    .ok();
    let mut body = String::new();
    body.push_str(&format!(
        "<p><b>{}</b> asks to act for you with these scopes:</p><ul>",
        text(&req.client.client_id)
    ));
    for s in &req.scope {
        body.push_str(&format!("<li><code>{}</code></li>", text(s)));
    }
    body.push_str("</ul>");
    body.push_str(&format!(
        "<p>You will be sent back to <code>{}</code>.</p>",
        text(&req.redirect_uri)
    ));
    if let Some(problem) = problem {
        body.push_str(&format!("<p class=\"bad\">{}</p>", text(problem)));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{}\">",
        text(&path)
    ));
    for name in [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    ] {
        if let Some(v) = p.get(name) {
            body.push_str(&format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                text(v)
            ));
        }
    }
    body.push_str(&format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Username <input type=\"text\" name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button></form>"
    ));
    let status = if problem.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(status, "Authorize access", &body, cookie)
}

/// GET: the form, or the refusal.
pub async fn show(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let p = match params_of(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(why) => return refused(Refusal::Page(StatusCode::BAD_REQUEST, why)),
    };
    let base = state.base_url(req.headers());
    match check(&state, &p, &base).await {
        Ok(ar) => form_page(&state, &ar, &p, None),
        Err(r) => refused(r),
    }
}

fn cookie_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// POST: check the CSRF token and the request again, sign the user in,
/// and redirect with a code or a token (or `access_denied`).
pub async fn decide(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let (parts, p) = match oauth::form(&state, req).await {
        Ok(x) => x,
        Err(e) => return refused(Refusal::Page(StatusCode::BAD_REQUEST, e.description)),
    };
    let sent = p.get("csrf").map(String::as_str).unwrap_or("");
    let cookie = cookie_value(&parts.headers, CSRF_COOKIE).unwrap_or_default();
    let client_id = p.get("client_id").map(String::as_str).unwrap_or("");
    // The pair must match (this browser holds the form's cookie) and be
    // one this server signed for this client: a pair someone planted is
    // not.
    let genuine = !sent.is_empty()
        && constant_time_eq(sent, &cookie)
        && csrf_genuine(&state, sent, client_id);
    if cross_site(&state, &parts.headers) {
        return refused(Refusal::Page(
            StatusCode::FORBIDDEN,
            "The form was posted from another site; open the authorization link again.".into(),
        ));
    }
    if !genuine {
        return refused(Refusal::Page(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this server; open the authorization link again."
                .into(),
        ));
    }
    let ar = match check(&state, &p, &state.base_url(&parts.headers)).await {
        Ok(ar) => ar,
        Err(r) => return refused(r),
    };
    let fragment = ar.response_type == "token";
    let mut back: Vec<(&str, String)> = Vec::new();
    if p.get("decision").map(String::as_str) != Some("approve") {
        back.push(("error", "access_denied".into()));
        back.push(("error_description", "The user denied the request.".into()));
    } else {
        let (Some(username), Some(password)) = (p.get("username"), p.get("password")) else {
            return form_page(&state, &ar, &p, Some("Enter your username and password."));
        };
        let user = match users::verify(&state.store, username, password, &users::Open).await {
            Ok(Some(id)) => id,
            Ok(None) => return form_page(&state, &ar, &p, Some("Wrong username or password.")),
            Err(e) => return refused(Refusal::Page(e.status, e.detail.to_string())),
        };
        let result = if fragment {
            let grant = Grant {
                subject: Subject::User {
                    id: user,
                    username: username.clone(),
                },
                client_id: ar.client.client_id.clone(),
                scope: ar.scope.clone(),
                family: None,
            };
            state.tokens.access_token(&grant).map(|(token, _)| {
                vec![
                    ("access_token", token),
                    ("token_type", "Bearer".to_string()),
                    ("expires_in", state.tokens.access_ttl.as_secs().to_string()),
                    ("scope", ar.scope.join(" ")),
                ]
            })
        } else {
            let approval = Approval {
                client_id: ar.client.client_id.clone(),
                // RFC 6749 §4.1.3: the token request must repeat it only
                // when this request named it.
                redirect_uri: if ar.redirect_sent {
                    ar.redirect_uri.clone()
                } else {
                    String::new()
                },
                user_id: user,
                username: username.clone(),
                scope: ar.scope.clone(),
                challenge: ar.challenge.clone(),
            };
            state
                .tokens
                .issue_code(&state.store, &approval)
                .await
                .map(|code| vec![("code", code)])
        };
        match result {
            Ok(params) => back.extend(params),
            Err(e) => {
                back.push(("error", "server_error".into()));
                back.push(("error_description", e.detail.to_string()));
            }
        }
    }
    if let Some(s) = &ar.state {
        back.push(("state", s.clone()));
    }
    let pairs: Vec<(&str, &str)> = back.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut res = redirect_to(&ar.redirect_uri, fragment, &pairs);
    // The CSRF token is spent.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}=; Path={}/authorize; HttpOnly; SameSite=Strict; Max-Age=0",
        state.settings.auth.prefix
    )) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    fn foreign_origin(origin: &str, public_url: &str, host: &str) -> bool {
        !crate::auth::session::origin_is_ours(origin, public_url, host)
    }

    #[test]
    fn only_this_servers_origin_is_its_own() {
        // By Host, without a public URL.
        assert!(!foreign_origin("http://api.test", "", "api.test"));
        assert!(!foreign_origin(
            "https://api.test:8443",
            "",
            "api.test:8443"
        ));
        assert!(foreign_origin("https://evil.example", "", "api.test"));
        assert!(foreign_origin(
            "http://api.test.evil.example",
            "",
            "api.test"
        ));
        assert!(foreign_origin("null", "", "api.test"));
        assert!(foreign_origin("http://", "", ""));
        // By the public URL, path and all.
        let public = "https://example.com/api/";
        assert!(!foreign_origin(
            "https://example.com",
            public,
            "internal:8080"
        ));
        assert!(foreign_origin("http://example.com", public, "example.com"));
        assert!(foreign_origin(
            "https://example.com:8443",
            public,
            "example.com"
        ));
    }
}
