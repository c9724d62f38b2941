//! The request pipeline, and nothing else: the steps a request passes
//! through and the state they share ([`AppState`]). [`crate::app::App`]
//! assembles them with restkit's own endpoints into a served API.
//!
//! A request flows through one service, [`pipeline::Pipeline`]: HEAD,
//! compression, [`cors`], the edge ([`layers::Edge`]: request id, timeout,
//! logging, error rendering), [`negotiate`], the router (routes from
//! [`routes`]) → [`dispatch`] (method, identity, limits, parameters,
//! body, controller) → [`represent`] → encoding ([`crate::format`]). See
//! docs/ARCHITECTURE.md.

pub mod body;
pub mod cors;
pub mod date;
pub mod dispatch;
pub mod exact_numbers;
pub mod layers;
pub mod limits;
pub mod live;
pub mod marks;
pub mod negotiate;
pub mod own;
pub mod pipeline;
pub mod represent;
pub mod routes;
pub mod server;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::Settings;
use crate::model::ApiModel;
use crate::store::Store;

/// What every request can reach.
pub struct AppState {
    pub store: Store,
    pub settings: Settings,
    pub model: ApiModel,
    pub routes: Vec<Arc<routes::Route>>,
    /// restkit's own routes this app serves.
    pub own: own::OwnRoutes,
    /// Signing keys, token issue and verification, revocations (§8.2).
    pub tokens: Arc<crate::auth::tokens::Tokens>,
    /// The OpenAPI document (§11), made once at start-up.
    pub openapi: bytes::Bytes,
    /// `/docs`, rendered once from the document.
    pub docs: bytes::Bytes,
    /// Rate limits (§9): every policy and its state.
    pub limiter: crate::limit::RateLimiter,
    /// Prometheus metrics (§12), this app's own.
    pub metrics: crate::ops::metrics::Metrics,
    /// Who may read `/metrics` (empty: anyone).
    pub metrics_allow: crate::limit::Networks,
    /// Rate-limit refusals waiting for their once-a-second log summary.
    pub refusals: crate::ops::refusals::Refusals,
    /// What OPTIONS answers, per route template: cut from the document.
    pub descriptions: std::collections::HashMap<String, Arc<serde_json::Value>>,
    /// Open live feeds (§16): caps and shutdown.
    pub live: Arc<live::Streams>,
}

impl AppState {
    /// `scheme://host[:port]` for absolute URLs: `server.public_url`, else
    /// the request's Host (checked by [`layers::Edge`] to be a plain
    /// `host[:port]`, so it cannot inject markup or a second URL).
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        let public = self.settings.server.public_url.trim_end_matches('/');
        if !public.is_empty() {
            return public.to_string();
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| valid_host(h))
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

/// Is `s` a syntactically valid `host[:port]` (RFC 3986 reg-name, IPv4,
/// or bracketed IPv6, and a port of at most 65535)?
pub fn valid_host(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        let ok = !v6.is_empty()
            && v6.len() <= 45
            && v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("ok", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts_are_plain_host_and_port() {
        for ok in [
            "api.test",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:80",
            "my_host",
            "a-b.example:65535",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example\"><x",
            "a b",
            "host:",
            "host:99999",
            "host:80:80",
            "[::1",
            "[zz]",
            "user@host",
            "host/path",
        ] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
