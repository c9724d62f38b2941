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
