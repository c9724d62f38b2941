//! The request pipeline as one service ([`Pipeline`]): every step before
//! and after routing, in order, as plain calls within one future — no
//! layer per step, each boxing its own future and moving the request and
//! the response through it.
//!
//! ```text
//! HEAD → GET marked Head (layers::head)
//!   compression (tower-http; the ETag names the coding; a 304 loses its
//!   body only after the coding is chosen)
//!     CORS: the question (cors::asked)
//!     edge: request id, client IP, Host (layers::Edge::start)
//!     negotiation: format, extension stripped (negotiate::decide)
//!       the router, in a span, within the request timeout, a panic
//!       caught as a 500
//!     edge: errors encoded in the negotiated format, metrics, log line
//!     CORS: the answer, with the answering route's module's settings
//! the body dropped for HEAD
//! ```
//!
//! What a step learns before routing that a later step needs (the format,
//! the page an HTML answer describes) stays a local of this future; only
//! what routing itself decides (the route's template and module, the
//! caller, an error) comes back in the response's extensions.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::FutureExt;
use http::Request;
use tower::Service;
use tower_http::compression::predicate::{And, NotForContentType, Predicate, SizeAbove};
use tower_http::compression::Compression;

use super::layers::{self, Edge};
use super::{cors, negotiate, represent, AppState};
use crate::error::ApiError;
use crate::format::Format;

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The whole pipeline around the declared routes and restkit's own.
#[derive(Clone)]
pub struct Pipeline {
    inner: Compression<Core, And<SizeAbove, NotForContentType>>,
}

impl Pipeline {
    /// The pipeline around `router` (routes with their state applied).
    pub fn new(state: Arc<AppState>, router: Router) -> Pipeline {
        // Compression (gzip, br) when the client accepts it, never for
        // small or empty bodies (204), nor for live feeds (an encoder
        // would hold events back until its buffer fills).
        let inner = Compression::new(Core { state, router })
            .gzip(true)
            .br(true)
            .quality(tower_http::CompressionLevel::Fastest)
            .compress_when(
                SizeAbove::new(256).and(NotForContentType::const_new(super::live::EVENT_STREAM)),
            );
        Pipeline { inner }
    }
}

impl Service<Request<Body>> for Pipeline {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Answer {
        let head = layers::head(&mut req);
        // Core is always ready, and compression is as ready as it is.
        let answer = self.inner.call(req);
        Box::pin(async move {
            let Ok(res) = answer.await;
            // An answer left uncompressed goes on as the body it was: the
            // compression wrapper holds every encoder's state inline
            // (~6 KiB), which boxing would copy for every request and keep
            // for a live feed's whole life.
            let res = if res.headers().contains_key(http::header::CONTENT_ENCODING) {
                res.map(Body::new)
            } else {
                res.map(tower_http::compression::CompressionBody::into_inner)
            };
            // A compressed body's ETag names its coding; a 304 drops the
            // body it kept for the choice of coding.
            let mut res = layers::not_modified_body(layers::tag_coding(res));
            if head {
                represent::strip_body(&mut res);
            }
            Ok(res)
        })
    }
}

/// The steps inside compression: CORS, the edge, negotiation, routing.
#[derive(Clone)]
struct Core {
    state: Arc<AppState>,
    router: Router,
}

impl Service<Request<Body>> for Core {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        Box::pin(core(self.state.clone(), self.router.clone(), req).map(Ok))
    }
}

async fn core(state: Arc<AppState>, router: Router, mut req: Request<Body>) -> Response {
    let asked = cors::asked(&req);
    let edge = Edge::start(&state, &mut req);
    let (res, negotiated) = if edge.bad_host {
        (Edge::bad_host_response(), None)
    } else {
        // Negotiation and routing run within the request timeout, a panic
        // in either caught as a 500; those two answers are problem+json
        // whatever was negotiated (the step that failed may have been the
        // negotiation itself).
        let routed = AssertUnwindSafe(negotiated(state.clone(), router, req))
            .catch_unwind()
            .map(|answer| {
                answer.unwrap_or_else(|_| {
                    (
                        ApiError::internal("a handler panicked").into_response(),
                        None,
                    )
                })
            });
        match edge.run(&state, routed).await {
            Ok(answer) => answer,
            Err(timed_out) => (timed_out, None),
        }
    };
    let (format, page) = match &negotiated {
        Some(n) => (n.format, n.page.as_ref()),
        None => (Format::default(), None),
    };
    let mut res = edge.finish(&state, res, format, page);
    if let Some(asked) = asked {
        cors::answer(&state, asked, &mut res);
    }
    res
}

/// Negotiation, then the router; the answer with what was negotiated.
async fn negotiated(
    state: Arc<AppState>,
    mut router: Router,
    mut req: Request<Body>,
) -> (Response, Option<negotiate::Negotiated>) {
    match negotiate::decide(&state, &mut req) {
        Err(e) => (e.into_response(), None),
        Ok(negotiated) => {
            // The router is always ready.
            let Ok(mut res) = router.call(req).await;
            if negotiated.varies {
                negotiate::vary(&mut res);
            }
            (res, Some(negotiated))
        }
    }
}
