//! Serving an [`super::App`] on a socket, with the limits that keep a
//! server alive under hostile clients (§12).
//!
//! `axum::serve` has no header timeout, no idle timeout and no connection
//! cap: a review held 20,000 idle sockets open, ran the process out of
//! file descriptors and stalled `/health` for 14 s. This loop serves each
//! connection with hyper directly:
//! - at most `server.max_connections` at once: past it, new connections
//!   wait in the kernel's listen backlog (as nginx does) instead of taking
//!   a file descriptor each;
//! - `server.header_timeout` to send a request's headers, counted from
//!   the connection's start or the end of its previous response, so slow
//!   headers and idle keep-alive connections are closed;
//! - `server.write_timeout` for a response write to make progress, so a
//!   client that never reads its answers cannot hold a slot forever;
//! - graceful shutdown: stop accepting, let in-flight requests finish
//!   within `server.shutdown_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use super::pipeline::Pipeline;
use crate::config::ServerSettings;

/// Serves `pipeline` on `listener` until `shutdown` completes.
pub async fn serve(
    pipeline: Pipeline,
    settings: &ServerSettings,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // the semaphore is never closed
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin; the
                    // connections we hold will close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(settings.write_timeout));
        let service =
            pipeline
                .clone()
                .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.map(axum::body::Body::new)
                });
        let conn = builder.serve_connection(
            TokioIo::new(Box::pin(stream)),
            TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(settings.shutdown_timeout) => {
            tracing::warn!(grace = ?settings.shutdown_timeout, "shutdown timeout: dropping unfinished requests");
        }
    }
    Ok(())
}

/// The peer address a request came from, when it came over a socket.
pub fn peer(req: &http::request::Parts) -> Option<SocketAddr> {
    req.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
