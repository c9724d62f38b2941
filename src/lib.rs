//! restkit: declare resources over SQL tables, serve them as a complete
//! REST API.
//!
//! The declared model ([`model`]) is the single source of truth: the route
//! table ([`http::routes`]), SQL ([`store`]), validation ([`validate`]) and
//! representations ([`format`]) are derived from it. See
//! docs/ARCHITECTURE.md for how a request flows.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = restkit::config::Settings::load(restkit::demo::DEMO_TOML, &Default::default())?;
//! let model = restkit::model::toml::parse(restkit::demo::DEMO_TOML)?;
//! let app = restkit::open(model, settings, &restkit::registry::Registry::builtin()).await?;
//! let res = app
//!     .call(http::Request::get("/v1/books/3").body(axum::body::Body::empty())?)
//!     .await;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```

pub mod actions;
pub mod app;
pub mod auth;
pub mod config;
pub mod controller;
pub mod demo;
pub mod docs;
pub mod error;
pub mod format;
pub mod http;
pub mod limit;
pub mod model;
pub mod oauth;
pub mod ops;
pub mod query;
pub mod registry;
pub mod store;
pub mod validate;

pub use crate::app::App;
pub use crate::auth::Identity;
pub use crate::controller::{Controller, Ctx, Operation, Reply};
pub use crate::error::ApiError;

/// Serves `model` as `restkit serve` does: binds `settings.server.bind`
/// (port 0 picks a free one, and the URLs the server advertises — the
/// OAuth2 issuer, OpenAPI's `servers` — name the real address), logs the
/// start-up warnings, connects, migrates and seeds ([`open`]), then serves
/// with every limit and timeout of `settings` until SIGINT or SIGTERM,
/// after which in-flight requests finish within
/// `server.shutdown_timeout`. Call [`init_logging`] first for the request
/// log.
///
/// ```no_run
/// # async fn run() -> Result<(), restkit::ServeError> {
/// let text = std::fs::read_to_string("api.toml").unwrap();
/// let settings = restkit::config::Settings::load(&text, &Default::default())?;
/// let model = restkit::model::toml::parse(&text)?;
/// restkit::serve(model, settings, &restkit::registry::Registry::builtin()).await
/// # }
/// ```
pub async fn serve(
    model: model::ApiModel,
    settings: config::Settings,
    registry: &registry::Registry,
) -> Result<(), ServeError> {
    serve_until(model, settings, registry, shutdown_signal()).await
}

/// [`serve`], stopping when `shutdown` completes instead of on a signal.
pub async fn serve_until(
    model: model::ApiModel,
    mut settings: config::Settings,
    registry: &registry::Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Bound first, so that the address the server derives its URLs from
    // is the real one, port 0 included.
    let asked = settings.server.bind;
    let listener = tokio::net::TcpListener::bind(asked)
        .await
        .map_err(|e| ServeError::Listen(format!("cannot listen on {asked}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(e.to_string()))?;
    settings.server.bind = addr;
    for warning in [settings.public_url_warning(), settings.issuer_warning()]
        .into_iter()
        .flatten()
    {
        tracing::warn!("{warning}");
    }
    if settings.auth.issuer.is_empty() && settings.server.public_url.is_empty() {
        tracing::info!(
            issuer = %settings.issuer(),
            "the token issuer is this server's bound address: set server.public_url (or \
             auth.issuer) when clients reach it by another name, or several instances serve \
             one API"
        );
    }
    let app = open(model, settings, registry).await?;
    tracing::info!("serving on http://{addr}");
    app.serve(listener, shutdown)
        .await
        .map_err(|e| ServeError::Listen(e.to_string()))
}

/// SIGINT (Ctrl-C) or SIGTERM, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}

/// Installs the request log `restkit serve` writes: one line per request
/// on stdout, text or JSON (`[log] format`), filtered by `RUST_LOG`
/// (default `info,sqlx=warn`). Lines are formatted on the request's thread
/// and written by a background one, so a slow stdout never slows requests;
/// keep the returned guard alive while serving — dropping it flushes what
/// is queued. Does nothing (but still returns a guard) if a global
/// subscriber is already set.
pub fn init_logging(log: &config::LogSettings) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::BufWriter::with_capacity(
        64 * 1024,
        std::io::stdout(),
    ));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter)
        .with_target(false);
    let _ = if log.format == "json" {
        // Each line carries the request span (its id) it was logged in.
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init()
    };
    LogGuard(guard)
}

/// Flushes the request log when dropped (see [`init_logging`]).
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{0}")]
    Listen(String),
}

impl From<config::ConfigError> for ServeError {
    fn from(e: config::ConfigError) -> Self {
        ServeError::Start(e.into())
    }
}

impl From<model::ModelError> for ServeError {
    fn from(e: model::ModelError) -> Self {
        ServeError::Start(e.into())
    }
}

/// Why an app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("invalid API declaration: {0}")]
    Model(#[from] model::ModelError),
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    #[error("seeding failed: {0}")]
    Seed(String),
    /// Building the app: keys, limiter, routes (each message names the
    /// setting or declaration it is about).
    #[error("{0}")]
    Setup(String),
}

/// Connects, migrates, seeds (when the model names a seed) and builds the
/// app.
///
/// Secrets the settings leave unset are generated once and kept in the
/// database, so every instance sharing it agrees on them: `server.secret`
/// (cursors, consent forms) always, and the JWT signing key when the
/// database has no directory to keep its key file in (PostgreSQL).
pub async fn open(
    model: model::ApiModel,
    mut settings: config::Settings,
    registry: &registry::Registry,
) -> Result<App, StartError> {
    // Another instance starting over the same database holds its write
    // lock while it migrates and seeds (longer than a request's wait):
    // start-up waits for it instead of failing.
    let started = std::time::Instant::now();
    let store = loop {
        match store::Store::open(&settings.database.url, &(&settings.database).into()).await {
            Err(store::StoreError::Unavailable(cause)) if started.elapsed() < STARTUP_WAIT => {
                tracing::info!(%cause, "the database is busy (another instance starting?); retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => break other?,
        }
    };
    loop {
        match prepare(&store, &model, &mut settings).await {
            Err(StartError::Store(store::StoreError::Unavailable(cause)))
                if started.elapsed() < STARTUP_WAIT =>
            {
                tracing::info!(%cause, "the database is busy (another instance starting?); retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => break other?,
        }
    }
    App::new(model, store, settings, registry).map_err(StartError::Setup)
}

/// How long start-up waits for a database another instance keeps busy.
const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Migrates, seeds, and fills the secrets the settings leave unset. Each
/// step is idempotent, so a retry after a busy database repeats none.
async fn prepare(
    store: &store::Store,
    model: &model::ApiModel,
    settings: &mut config::Settings,
) -> Result<(), StartError> {
    let options = store::migrate::Options {
        drop: false,
        refuse_if_ahead: true,
    };
    let report = store.migrate_with(model, options, true).await?;
    for step in &report.steps {
        tracing::info!(subject = %step.subject, "migrated: {}", step.what);
    }
    for note in &report.notes {
        tracing::warn!("{note}");
    }
    demo::seed(store, model).await.map_err(|e| {
        if e.status == ::http::StatusCode::SERVICE_UNAVAILABLE {
            StartError::Store(store::StoreError::Unavailable(e.to_string()))
        } else {
            StartError::Seed(e.to_string())
        }
    })?;
    if settings.server.secret.is_empty() {
        settings.server.secret =
            store::own::shared_value(store, "server.secret", random_secret).await?;
    }
    if settings.auth.private_key.is_empty() && settings.database.data_dir().is_none() {
        let pem = store::own::shared_value(store, "auth.signing_key", || {
            auth::keys::generate().map(|(private, _)| private)
        })
        .await?;
        settings.auth.stored_private_key = Some(pem);
    }
    Ok(())
}

/// 256 random bits, as hex.
fn random_secret() -> Result<String, String> {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    Ok(format!("{}{}", a.simple(), b.simple()))
}
