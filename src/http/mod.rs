//! The HTTP side: the [`App`] (router + layers), built from the model.
//!
//! A request flows: [`layers::edge`] (request id, timeout, logging, error
//! rendering) → panic catcher → router (routes from [`routes`]) →
//! [`dispatch`] (method, identity, parameters, body, controller) →
//! [`render`]. See docs/ARCHITECTURE.md.

pub mod authorize;
pub mod body;
pub mod cors;
pub mod date;
pub mod dispatch;
pub mod docs_page;
pub mod exact_numbers;
pub mod layers;
pub mod limits;
pub mod marks;
pub mod negotiate;
pub mod oauth;
pub mod openapi;
pub mod represent;
pub mod routes;
pub mod server;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use http::{HeaderMap, Request};
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Settings;
use crate::error::ApiError;
use crate::model::ApiModel;
use crate::registry::Registry;
use crate::store::Store;

/// What every request can reach.
pub struct AppState {
    pub store: Store,
    pub settings: Settings,
    pub model: ApiModel,
    pub routes: Vec<Arc<routes::Route>>,
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
}

impl AppState {
    /// `scheme://host[:port]` for absolute URLs: `server.public_url`, else
    /// the request's Host (checked by [`layers::edge`] to be a plain
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

/// A served API: call it in-process ([`App::call`]) or serve its
/// [`App::router`] on a socket.
#[derive(Clone)]
pub struct App {
    router: Router,
    state: Arc<AppState>,
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("a handler panicked").into_response()
}

impl App {
    /// Builds routes and layers. The store must be migrated already.
    pub fn new(
        model: ApiModel,
        store: Store,
        settings: Settings,
        registry: &Registry,
    ) -> Result<App, String> {
        cors::check(&settings.cors, &model.modules)?;
        let mut limiter = crate::limit::RateLimiter::new(&settings.rate_limit)?;
        let metrics_allow =
            crate::limit::Networks::parse(&settings.metrics.allow, "metrics.allow")?;
        let mut built = routes::build(
            &model,
            registry,
            &crate::controller::table::TableOptions::from_settings(&settings),
        )?;
        limits::assign(&mut limiter, &mut built);
        let routes: Vec<Arc<routes::Route>> = built.into_iter().map(Arc::new).collect();
        let keys = crate::auth::keys::KeySet::load(
            &settings.auth.private_key,
            &settings.auth.previous_public_keys,
            settings.database.data_dir().as_deref(),
            settings.auth.stored_private_key.as_deref(),
        )?;
        let issuer = settings.auth.issuer.trim_end_matches('/').to_string();
        let tokens = Arc::new(crate::auth::tokens::Tokens {
            keys,
            audience: if settings.auth.audience.is_empty() {
                issuer.clone()
            } else {
                settings.auth.audience.clone()
            },
            issuer,
            access_ttl: settings.auth.access_token_ttl,
            refresh_ttl: settings.auth.refresh_token_ttl,
            revocations: Default::default(),
            checked: Default::default(),
            refusals: Default::default(),
        });
        let document = openapi::document(&routes, &settings);
        let openapi = bytes::Bytes::from(serde_json::to_vec(&document).unwrap_or_default());
        let docs = bytes::Bytes::from(docs_page::render(&document));
        let descriptions = openapi::describe_routes(&routes, &document);
        let state = Arc::new(AppState {
            store,
            settings,
            model,
            routes: routes.clone(),
            tokens,
            openapi,
            docs,
            descriptions,
            limiter,
            metrics: Default::default(),
            metrics_allow,
            refusals: Default::default(),
        });
        limits::forget_idle_periodically(Arc::downgrade(&state));
        crate::ops::refusals::Refusals::write_periodically(Arc::downgrade(&state), |s| &s.refusals);
        let mut router: Router<Arc<AppState>> = Router::new().route(
            "/health",
            get(|State(st): State<Arc<AppState>>| async move {
                crate::ops::health(&st.store, &st.limiter).await
            }),
        );
        let api_keys = state
            .model
            .modules
            .iter()
            .any(|m| m.credentials.is_some_and(|c| c.api_key));
        router = oauth::routes(
            router,
            &state,
            api_keys,
            get(authorize::show).post(authorize::decide),
        )
        .route(
            "/openapi.json",
            get(|State(st): State<Arc<AppState>>| async move {
                (
                    [(http::header::CONTENT_TYPE, "application/json")],
                    st.openapi.clone(),
                )
            }),
        )
        .route(
            "/docs",
            get(|State(st): State<Arc<AppState>>| async move {
                (
                    [
                        (
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/html; charset=UTF-8"),
                        ),
                        (
                            http::header::CONTENT_SECURITY_POLICY,
                            docs_page::csp().clone(),
                        ),
                    ],
                    st.docs.clone(),
                )
            }),
        );
        if state.settings.metrics.enabled {
            router = router.route(
                "/metrics",
                get(
                    |State(st): State<Arc<AppState>>, req: Request<Body>| async move {
                        // `metrics.allow` (empty: anyone); others get 403 (§7).
                        let ip = req
                            .extensions()
                            .get::<crate::limit::ClientIp>()
                            .map(|c| c.0);
                        if !st.metrics_allow.is_empty()
                            && !ip.is_some_and(|ip| st.metrics_allow.contains(ip))
                        {
                            return crate::error::ApiError::forbidden(
                                "Metrics are not served to this address.",
                            )
                            .into_response();
                        }
                        let accept = req
                            .headers()
                            .get(http::header::ACCEPT)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        crate::ops::metrics_page(&st.metrics, &st.store, &st.limiter, accept)
                    },
                ),
            );
        }
        // restkit's own routes are logged and counted by their path (a
        // fixed set); declared routes by their template (dispatch).
        router = router.route_layer(axum::middleware::from_fn(layers::own_route_name));
        for route in routes {
            let st = state.clone();
            let path = route.router_path.clone();
            let r = route.clone();
            let handler =
                any(move |req: Request<Body>| dispatch::handle(r.clone(), st.clone(), req));
            // The router panics on conflicting paths; report them instead.
            router =
                std::panic::catch_unwind(AssertUnwindSafe(move || router.route(&path, handler)))
                    .map_err(|_| {
                        format!("route {} conflicts with another route", route.template)
                    })?;
        }
        let routes = router
            .fallback(dispatch::not_found)
            .with_state(state.clone());
        // The steps before routing wrap the router itself (a layer added
        // with Router::layer would run after routing, too late to strip a
        // URL extension): edge → panic catcher → negotiation → routing.
        let pipeline = tower::ServiceBuilder::new()
            // HEAD drops the body last, so its headers are GET's.
            .layer(axum::middleware::from_fn(layers::head))
            // Compression (gzip, br) when the client accepts it, never for
            // small or empty bodies (204). A compressed body's ETag names
            // its coding; a 304 keeps its body until the coding is chosen,
            // so its ETag is the 200's, then drops it.
            .map_response(layers::not_modified_body)
            .map_response(layers::tag_coding)
            .layer(
                tower_http::compression::CompressionLayer::new()
                    .gzip(true)
                    .br(true)
                    .quality(tower_http::CompressionLevel::Fastest)
                    .compress_when(tower_http::compression::predicate::SizeAbove::new(256)),
            )
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                cors::layer,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                layers::edge,
            ))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                negotiate::layer,
            ))
            .service(routes);
        let router = Router::new().fallback_service(pipeline);
        Ok(App { router, state })
    }

    /// Runs one request through the whole pipeline, without a socket
    /// (§2.2). Put an [`crate::auth::Identity`] in the request's extensions
    /// to act as a caller.
    pub async fn call(&self, req: Request<Body>) -> Response {
        match self.router.clone().oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        }
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves on `listener` until `shutdown` completes, then lets in-flight
    /// requests finish (bounded by `server.shutdown_timeout`); see
    /// [`server`] for the connection limits. Expired rows of restkit's own
    /// tables are pruned meanwhile ([`crate::auth::prune`]).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let settings = self.state.settings.server.clone();
        // restkit's own expired rows are pruned while the server runs.
        let pruner = tokio::spawn(crate::auth::prune::run(
            self.state.store.clone(),
            self.state.tokens.clone(),
        ));
        let served = server::serve(self.router, &settings, listener, shutdown).await;
        pruner.abort();
        served
    }
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
