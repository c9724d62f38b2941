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
pub mod auth;
pub mod config;
pub mod controller;
pub mod demo;
pub mod error;
pub mod format;
pub mod http;
pub mod limit;
pub mod model;
pub mod ops;
pub mod query;
pub mod registry;
pub mod store;
pub mod validate;

pub use crate::auth::Identity;
pub use crate::controller::{Controller, Ctx, Operation, Reply};
pub use crate::error::ApiError;
pub use crate::http::App;

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
pub async fn open(
    model: model::ApiModel,
    settings: config::Settings,
    registry: &registry::Registry,
) -> Result<App, StartError> {
    let store = store::Store::connect_with_timeout(
        &settings.database.url,
        settings.database.max_connections,
        settings.database.statement_timeout,
    )
    .await?;
    store.migrate(&model).await?;
    demo::seed(&store, &model)
        .await
        .map_err(|e| StartError::Seed(e.to_string()))?;
    App::new(model, store, settings, registry).map_err(StartError::Setup)
}
