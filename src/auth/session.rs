//! The browsable API's sign-in session: after the authorization-code +
//! PKCE flow of the built-in public client (`crate::oauth::browser`), the
//! access token sits in an `HttpOnly`, `SameSite=Strict` session cookie —
//! never in a URL, never readable by a page's script — and counts as a
//! bearer token:
//! - on GET and HEAD, always (reading changes nothing);
//! - on other methods only when the request's `Origin` is the server
//!   itself (the browsable page's own form), so another site cannot make
//!   a signed-in browser write (CSRF), even one on the same site.

/// The cookie holding the session's access token.
pub const COOKIE: &str = "restkit-session";

/// Cookie `name` as this server sets it: `__Host-{name}` where it is
/// reached over https — `base`, its public address, says so (a browser
/// then refuses one set by a sibling subdomain, or without `Secure`) —
/// else `name`.
pub fn cookie_name(name: &str, base: &str) -> String {
    if base.starts_with("https://") {
        format!("__Host-{name}")
    } else {
        name.to_string()
    }
}

/// Whether the request carries a session cookie (a page then offers to
/// sign out rather than in); `public_url` as in [`token`].
pub fn signed_in(headers: &http::HeaderMap, public_url: &str) -> bool {
    cookie(headers, &cookie_name(COOKIE, public_url)).is_some()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The session's token, where it may stand for the caller (see the
/// module's rules); `None` otherwise, and the request is anonymous.
/// `public_url` is `server.public_url` (may be empty: the server is then
/// known by the request's Host, over http), the address the sign-in set
/// the cookie for.
pub fn token<'a>(parts: &'a http::request::Parts, public_url: &str) -> Option<&'a str> {
    let token = cookie(&parts.headers, &cookie_name(COOKIE, public_url))?;
    let safe = matches!(parts.method, http::Method::GET | http::Method::HEAD);
    (safe || same_origin(&parts.headers, &parts.uri, public_url)).then_some(token)
}

/// `scheme` and `host[:port]` of a URL (any path cut; the scheme's
/// default port dropped), if it has both.
fn origin_of(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let authority = authority.strip_suffix(default).unwrap_or(authority);
    (!authority.is_empty()).then_some((scheme, authority))
}

/// Is `origin` (an `Origin` header) this server, known by `public_url`
/// (scheme and host[:port] must match; may be empty) or else by the
/// `host` the request was sent to (the scheme is unknown here: TLS may
/// end at a proxy)? `null` (a sandboxed or privacy-stripped origin) never
/// is.
pub fn origin_is_ours(origin: &str, public_url: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin_of(origin) else {
        return false;
    };
    match origin_of(public_url) {
        Some((s, a)) => s.eq_ignore_ascii_case(scheme) && a.eq_ignore_ascii_case(authority),
        None => origin_of(&format!("{scheme}://{host}"))
            .is_some_and(|(_, h)| h.eq_ignore_ascii_case(authority)),
    }
}

/// Whether `Origin` names this server, by [`origin_is_ours`]: its
/// `public_url`, else the host the request was sent to (`Host`, or
/// HTTP/2's `:authority`).
pub fn same_origin(headers: &http::HeaderMap, uri: &http::Uri, public_url: &str) -> bool {
    let Some(origin) = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    origin_is_ours(origin, public_url, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/v1/books");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_cookie_counts_on_reads_and_on_same_origin_writes_only() {
        // No public_url: the server is known by the request's Host.
        let base = "";
        let c = ("cookie", "a=1; restkit-session=tok; b=2");
        let host = ("host", "api.test:8080");
        let at = |method: &str, headers: &[(&str, &str)]| {
            token(&parts(method, headers), base).map(str::to_string)
        };
        assert_eq!(at("GET", &[c]), Some("tok".into()));
        assert_eq!(at("POST", &[c]), None, "no Origin");
        let ours = ("origin", "http://api.test:8080");
        assert_eq!(at("POST", &[c, host, ours]), Some("tok".into()));
        assert_eq!(
            at("DELETE", &[c, host, ("origin", "http://evil.test")]),
            None
        );
        let longer = ("origin", "http://api.test:8080.evil");
        assert_eq!(at("PATCH", &[c, host, longer]), None);
        assert_eq!(at("POST", &[c, host, ("origin", "null")]), None);
        assert_eq!(at("GET", &[("cookie", "restkit-session=")]), None);
    }

    #[test]
    fn behind_a_proxy_the_public_address_counts_and_default_ports_are_the_same() {
        let https = "https://api.example";
        let c = ("cookie", "__Host-restkit-session=tok");
        let ours = ("origin", "https://api.example");
        // A proxy that rewrote Host to its upstream's address.
        let upstream = ("host", "10.0.0.7:8080");
        assert_eq!(
            token(&parts("POST", &[c, upstream, ours]), https),
            Some("tok")
        );
        // Host with the scheme's default port is the same host.
        let h = ("host", "api.example:443");
        assert_eq!(token(&parts("POST", &[c, h, ours]), https), Some("tok"));
        // With a public address, only it counts: the same host over
        // another scheme is another origin (as for the consent form).
        let http_origin = ("origin", "http://api.example");
        let host = ("host", "api.example");
        assert_eq!(token(&parts("POST", &[c, host, http_origin]), https), None);
        // Over https only the __Host- cookie counts; over http only the
        // plain one.
        let plain = ("cookie", "restkit-session=tok");
        assert_eq!(token(&parts("GET", &[plain]), https), None);
        assert_eq!(token(&parts("GET", &[c]), "http://api.example"), None);
    }
}
