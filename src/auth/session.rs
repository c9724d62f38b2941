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
pub fn token(parts: &http::request::Parts) -> Option<&str> {
    let token = cookie(&parts.headers, COOKIE)?;
    let safe = matches!(parts.method, http::Method::GET | http::Method::HEAD);
    (safe || same_origin(&parts.headers)).then_some(token)
}

/// Whether `Origin` names the host the request was sent to.
pub fn same_origin(headers: &http::HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (
        headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok()),
        headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest == host)
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
        let c = ("cookie", "a=1; restkit-session=tok; b=2");
        assert_eq!(token(&parts("GET", &[c])), Some("tok"));
        assert_eq!(token(&parts("POST", &[c])), None, "no Origin");
        let host = ("host", "api.test:8080");
        assert_eq!(
            token(&parts(
                "POST",
                &[c, host, ("origin", "http://api.test:8080")]
            )),
            Some("tok")
        );
        assert_eq!(
            token(&parts("DELETE", &[c, host, ("origin", "http://evil.test")])),
            None
        );
        assert_eq!(
            token(&parts(
                "PATCH",
                &[c, host, ("origin", "http://api.test:8080.evil")]
            )),
            None
        );
        assert_eq!(
            token(&parts("GET", &[("cookie", "restkit-session=")])),
            None
        );
    }
}
