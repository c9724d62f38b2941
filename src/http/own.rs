//! restkit's own routes — the health probe, the metrics, the OAuth2
//! endpoints, the well-known documents and the docs — declared once.
//! The router ([`crate::app`]) mounts a handler for each, the OpenAPI
//! document ([`crate::docs::openapi`]) describes each, `restkit routes`
//! lists them, and negotiation ([`super::negotiate`]) treats each as
//! declared here. Each of those matches on [`OwnRoute`] without a
//! catch-all arm, so a new route cannot be served undocumented.

use http::Method;

use crate::config::Settings;
use crate::model::ApiModel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnRoute {
    /// `GET /health`.
    Health,
    /// `GET /metrics`, when `metrics.enabled`.
    Metrics,
    /// `POST {prefix}/access_token` (RFC 6749).
    Token,
    /// `POST {prefix}/revoke` (RFC 7009).
    Revoke,
    /// `POST {prefix}/introspect` (RFC 7662).
    Introspect,
    /// `GET, POST {prefix}/authorize`: the sign-in and consent page.
    Authorize,
    /// `POST {prefix}/authenticate` (§8.4), when a module takes API keys.
    Authenticate,
    /// `GET /.well-known/jwks.json` (RFC 7517).
    Jwks,
    /// `GET /.well-known/oauth-authorization-server` (RFC 8414).
    ServerMetadata,
    /// `GET /openapi.json`.
    OpenApi,
    /// `GET /docs`.
    Docs,
    /// `GET /_restkit/sign-in`: starts the browsable API's sign-in
    /// (`oauth::browser`), when the authorization-code grant is served.
    SignIn,
    /// `GET /_restkit/signed-in`: where that flow returns.
    SignedIn,
    /// `POST /_restkit/sign-out`.
    SignOut,
}

/// The browsable pages' sign-in (`oauth::browser`): where it starts,
/// where its flow returns, where it ends.
pub const SIGN_IN: &str = "/_restkit/sign-in";
pub const SIGNED_IN: &str = "/_restkit/signed-in";
pub const SIGN_OUT: &str = "/_restkit/sign-out";

/// How an own route meets content negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Negotiation {
    /// Like a declared route.
    Negotiated,
    /// Like a declared route, but an `Accept` it cannot meet gets the
    /// default format, not 406: monitors send `Accept: text/plain`.
    Lenient,
    /// Always its own media type, whatever `Accept` says; the path's
    /// ending (`jwks.json`) is a name, not a format extension.
    Fixed,
}

impl OwnRoute {
    pub const ALL: [OwnRoute; 14] = [
        OwnRoute::Health,
        OwnRoute::Metrics,
        OwnRoute::Token,
        OwnRoute::Revoke,
        OwnRoute::Introspect,
        OwnRoute::Authorize,
        OwnRoute::Authenticate,
        OwnRoute::Jwks,
        OwnRoute::ServerMetadata,
        OwnRoute::Docs,
        OwnRoute::OpenApi,
        OwnRoute::SignIn,
        OwnRoute::SignedIn,
        OwnRoute::SignOut,
    ];

    /// Its path, the OAuth2 endpoints under `auth.prefix`.
    pub fn path(self, settings: &Settings) -> String {
        let prefix = &settings.auth.prefix;
        match self {
            OwnRoute::Health => "/health".into(),
            OwnRoute::Metrics => "/metrics".into(),
            OwnRoute::Token => format!("{prefix}/access_token"),
            OwnRoute::Revoke => format!("{prefix}/revoke"),
            OwnRoute::Introspect => format!("{prefix}/introspect"),
            OwnRoute::Authorize => format!("{prefix}/authorize"),
            OwnRoute::Authenticate => format!("{prefix}/authenticate"),
            OwnRoute::Jwks => "/.well-known/jwks.json".into(),
            OwnRoute::ServerMetadata => "/.well-known/oauth-authorization-server".into(),
            OwnRoute::OpenApi => "/openapi.json".into(),
            OwnRoute::Docs => "/docs".into(),
            OwnRoute::SignIn => SIGN_IN.into(),
            OwnRoute::SignedIn => SIGNED_IN.into(),
            OwnRoute::SignOut => SIGN_OUT.into(),
        }
    }

    /// The methods it serves (besides HEAD for GET, and OPTIONS).
    pub fn methods(self) -> &'static [Method] {
        match self {
            OwnRoute::Token
            | OwnRoute::Revoke
            | OwnRoute::Introspect
            | OwnRoute::Authenticate
            | OwnRoute::SignOut => &[Method::POST],
            OwnRoute::Authorize => &[Method::GET, Method::POST],
            OwnRoute::Health
            | OwnRoute::Metrics
            | OwnRoute::Jwks
            | OwnRoute::ServerMetadata
            | OwnRoute::OpenApi
            | OwnRoute::Docs
            | OwnRoute::SignIn
            | OwnRoute::SignedIn => &[Method::GET],
        }
    }

    /// The code that answers it, for `restkit routes`.
    pub fn handler(self) -> &'static str {
        match self {
            OwnRoute::Health => "ops::health",
            OwnRoute::Metrics => "ops::metrics",
            OwnRoute::Token => "oauth::token",
            OwnRoute::Revoke => "oauth::revoke",
            OwnRoute::Introspect => "oauth::introspect",
            OwnRoute::Authorize => "oauth::authorize",
            OwnRoute::Authenticate => "oauth::authenticate",
            OwnRoute::Jwks => "oauth::jwks",
            OwnRoute::ServerMetadata => "oauth::metadata",
            OwnRoute::OpenApi => "docs::openapi",
            OwnRoute::Docs => "docs::page",
            OwnRoute::SignIn => "oauth::browser::sign_in",
            OwnRoute::SignedIn => "oauth::browser::signed_in",
            OwnRoute::SignOut => "oauth::browser::sign_out",
        }
    }

    pub fn negotiation(self) -> Negotiation {
        match self {
            OwnRoute::Health => Negotiation::Lenient,
            OwnRoute::Token
            | OwnRoute::Revoke
            | OwnRoute::Introspect
            | OwnRoute::Authorize
            | OwnRoute::Authenticate
            // Their answers are pages and redirects, but a refusal before
            // them (the token tier's 429) is an error page for a browser.
            | OwnRoute::SignIn
            | OwnRoute::SignedIn
            | OwnRoute::SignOut => Negotiation::Negotiated,
            // The metrics and the docs choose their own text format.
            OwnRoute::Metrics
            | OwnRoute::Jwks
            | OwnRoute::ServerMetadata
            | OwnRoute::OpenApi
            | OwnRoute::Docs => Negotiation::Fixed,
        }
    }

    /// Whether it takes credentials: the `token` rate-limit tier's (§9).
    pub fn takes_credentials(self) -> bool {
        matches!(
            self,
            OwnRoute::Token
                | OwnRoute::Revoke
                | OwnRoute::Introspect
                | OwnRoute::Authorize
                | OwnRoute::Authenticate
                | OwnRoute::SignIn
                | OwnRoute::SignedIn
                | OwnRoute::SignOut
        )
    }

    /// Whether this app serves it.
    fn served(self, settings: &Settings, model: &ApiModel) -> bool {
        match self {
            OwnRoute::Metrics => settings.metrics.enabled,
            OwnRoute::Authenticate => model
                .modules
                .iter()
                .any(|m| m.credentials.is_some_and(|c| c.api_key)),
            OwnRoute::SignIn | OwnRoute::SignedIn | OwnRoute::SignOut => {
                settings.offers_browser_sign_in()
            }
            _ => true,
        }
    }
}

/// The own routes an app with these settings and this model serves, each
/// with its path.
#[derive(Debug, Clone, Default)]
pub struct OwnRoutes(Vec<(OwnRoute, String)>);

impl OwnRoutes {
    pub fn new(settings: &Settings, model: &ApiModel) -> OwnRoutes {
        OwnRoutes(
            OwnRoute::ALL
                .into_iter()
                .filter(|r| r.served(settings, model))
                .map(|r| (r, r.path(settings)))
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = (OwnRoute, &str)> {
        self.0.iter().map(|(r, p)| (*r, p.as_str()))
    }

    /// The own route at `path`, if any.
    pub fn at(&self, path: &str) -> Option<OwnRoute> {
        self.iter().find(|(_, p)| *p == path).map(|(r, _)| r)
    }

    /// How a request for `path` meets negotiation, when restkit's own
    /// routes decide it: the route's [`OwnRoute::negotiation`], and
    /// [`Negotiation::Fixed`] for the whole `/.well-known/` namespace (its
    /// names end in `.json` or `.txt`; an unknown one is a JSON 404).
    pub fn negotiation(&self, path: &str) -> Option<Negotiation> {
        match self.at(path) {
            Some(route) => Some(route.negotiation()),
            None if path.starts_with("/.well-known/") => Some(Negotiation::Fixed),
            None => None,
        }
    }
}
