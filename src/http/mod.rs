//! The HTTP side: the [`App`] (router + layers), built from the model.
//!
//! A request flows: [`layers::edge`] (request id, timeout, logging, error
//! rendering) → panic catcher → router (routes from [`routes`]) →
//! [`dispatch`] (method, identity, parameters, body, controller) →
//! [`render`]. See docs/ARCHITECTURE.md.

pub mod body;
pub mod dispatch;
pub mod layers;
pub mod render;
pub mod routes;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Body;
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
}

impl AppState {
    /// `scheme://host[:port]` for absolute URLs: `server.public_url`, else
    /// the request's Host.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        let public = self.settings.server.public_url.trim_end_matches('/');
        if !public.is_empty() {
            return public.to_string();
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("localhost");
        format!("http://{host}")
    }
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
        let routes: Vec<Arc<routes::Route>> =
            routes::build(&model, registry, &settings.table_options())?
                .into_iter()
                .map(Arc::new)
                .collect();
        let state = Arc::new(AppState {
            store,
            settings,
            model,
            routes: routes.clone(),
        });
        let mut router: Router<Arc<AppState>> =
            Router::new().route("/health", get(crate::ops::health));
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
        let router = router
            .fallback(dispatch::not_found)
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                layers::edge,
            ))
            .with_state(state.clone());
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
    /// requests finish (bounded by `server.shutdown_timeout`).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.settings.server.shutdown_timeout;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(());
        });
        let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
        tokio::select! {
            res = &mut server => res,
            _ = async { let _ = rx.await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "shutdown timeout: dropping unfinished requests");
                Ok(())
            }
        }
    }
}
