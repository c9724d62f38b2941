//! The served API: [`App`] assembles the request pipeline ([`crate::http`])
//! around the routes of the declared model and restkit's own endpoints
//! ([`OwnRoute`]): the health probe and metrics ([`crate::ops`]), the
//! OAuth2 server ([`crate::oauth`]) and the documentation
//! ([`crate::docs`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use http::{HeaderValue, Request, StatusCode};
use tower::Service;

use crate::config::Settings;
use crate::docs::{openapi, page};
use crate::error::ApiError;
use crate::http::own::{OwnRoute, OwnRoutes};
use crate::http::pipeline::Pipeline;
use crate::http::{cors, dispatch, layers, limits, routes, server, AppState};
use crate::model::ApiModel;
use crate::oauth;
use crate::registry::Registry;
use crate::store::Store;

/// A served API: call it in-process ([`App::call`]) or serve its
/// [`App::serve`] it on a socket.
#[derive(Clone)]
pub struct App {
    pipeline: Pipeline,
    state: Arc<AppState>,
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
        let own = OwnRoutes::new(&settings, &model);
        let routes: Vec<Arc<routes::Route>> = built.into_iter().map(Arc::new).collect();
        let keys = crate::auth::keys::KeySet::load(
            &settings.auth.private_key,
            &settings.auth.previous_public_keys,
            settings.database.data_dir().as_deref(),
            settings.auth.stored_private_key.as_deref(),
        )?;
        let issuer = settings.issuer();
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
        let document = openapi::document(&routes, &own, &settings);
        let openapi = bytes::Bytes::from(serde_json::to_vec(&document).unwrap_or_default());
        let docs = bytes::Bytes::from(page::render(&document));
        let descriptions = openapi::describe_routes(&routes, &document);
        let mut live = settings.live.clone();
        // Each feed holds a connection: half of them stay for the rest.
        live.max_streams = live
            .max_streams
            .min(settings.server.max_connections / 2)
            .max(1);
        let state = Arc::new(AppState {
            store,
            settings,
            model,
            routes: routes.clone(),
            own,
            tokens,
            openapi,
            docs,
            descriptions,
            limiter,
            metrics: Default::default(),
            metrics_allow,
            refusals: Default::default(),
            live: crate::http::live::Streams::new(live),
        });
        limits::forget_idle_periodically(Arc::downgrade(&state));
        crate::ops::refusals::Refusals::write_periodically(Arc::downgrade(&state), |s| &s.refusals);
        let mut router: Router<Arc<AppState>> = Router::new();
        for (route, path) in state.own.iter() {
            // OPTIONS answers with the methods (so a browser's CORS
            // preflight — a single-page app signing in from another origin —
            // succeeds); another method is a §7 405.
            let methods = routes::allow_list(route.methods().iter());
            let allowed =
                HeaderValue::from_str(&methods).unwrap_or(HeaderValue::from_static("OPTIONS"));
            let mut handler = own_handler(route)
                .options(move || async move { allow(allowed) })
                .fallback(
                    move || async move { ApiError::method_not_allowed(&methods).into_response() },
                );
            if route.takes_credentials() {
                // The endpoints that take credentials are the `token`
                // tier's (§9), per client IP — with `layer`, not
                // `route_layer`, so that a 405 counts too.
                handler = handler.layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    limits::token_tier,
                ));
            }
            router = router.route(path, handler);
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
        // URL extension).
        let pipeline = Pipeline::new(state.clone(), routes);
        Ok(App { pipeline, state })
    }

    /// Runs one request through the whole pipeline, without a socket
    /// (§2.2). Put an [`crate::auth::Identity`] in the request's extensions
    /// to act as a caller.
    pub async fn call(&self, req: Request<Body>) -> Response {
        let Ok(res) = self.pipeline.clone().call(req).await;
        res
    }

    /// The whole pipeline as a router, to nest in an application of one's
    /// own.
    pub fn router(&self) -> Router {
        Router::new().fallback_service(self.pipeline.clone())
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
            self.state.model.sync_tables(),
        ));
        // Live feeds end when shutdown begins (their clients reconnect
        // elsewhere); in-flight requests get the grace period.
        let streams = self.state.live.clone();
        let shutdown = async move {
            shutdown.await;
            streams.close_all();
        };
        let served = server::serve(self.pipeline, &settings, listener, shutdown).await;
        pruner.abort();
        served
    }
}

/// The handler of one of restkit's own routes.
fn own_handler(route: OwnRoute) -> MethodRouter<Arc<AppState>> {
    match route {
        OwnRoute::Health => get(|State(st): State<Arc<AppState>>| async move {
            crate::ops::health(&st.store, &st.limiter).await
        }),
        OwnRoute::Metrics => get(metrics),
        OwnRoute::Token => post(oauth::token),
        OwnRoute::Revoke => post(oauth::revoke),
        OwnRoute::Introspect => post(oauth::introspect),
        OwnRoute::Authorize => get(oauth::authorize::show).post(oauth::authorize::decide),
        OwnRoute::Authenticate => post(oauth::authenticate),
        OwnRoute::Jwks => get(oauth::jwks),
        OwnRoute::ServerMetadata => get(oauth::metadata),
        OwnRoute::SignIn => get(oauth::browser::sign_in),
        OwnRoute::SignedIn => get(oauth::browser::signed_in),
        OwnRoute::SignOut => post(oauth::browser::sign_out),
        OwnRoute::OpenApi => get(|State(st): State<Arc<AppState>>| async move {
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                st.openapi.clone(),
            )
        }),
        OwnRoute::Docs => get(|State(st): State<Arc<AppState>>| async move {
            (
                [
                    (
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=UTF-8"),
                    ),
                    (http::header::CONTENT_SECURITY_POLICY, page::csp().clone()),
                ],
                st.docs.clone(),
            )
        }),
    }
}

/// `GET /metrics`: to the addresses `metrics.allow` names (empty: anyone);
/// others get 403 (§7).
async fn metrics(State(st): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let ip = req
        .extensions()
        .get::<crate::limit::ClientIp>()
        .map(|c| c.0);
    if !st.metrics_allow.is_empty() && !ip.is_some_and(|ip| st.metrics_allow.contains(ip)) {
        return ApiError::forbidden("Metrics are not served to this address.").into_response();
    }
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    crate::ops::metrics_page(&st.metrics, &st.store, &st.limiter, accept)
}

/// `OPTIONS` on one of restkit's own endpoints: 204 with its methods (the
/// CORS layer turns them into a preflight's
/// `Access-Control-Allow-Methods`).
fn allow(methods: HeaderValue) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(http::header::ALLOW, methods);
    res
}
