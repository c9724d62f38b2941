//! The `restkit` command line: parses arguments, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use restkit::config::{Overrides, Settings};
use restkit::registry::Registry;

#[derive(Parser)]
#[command(
    name = "restkit",
    version,
    about = "Serve declared resources over SQL as a REST API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the built-in demo without --config).
    Serve {
        /// TOML file with settings and [[module]] declarations.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        bind: Option<String>,
        /// Database URL, e.g. sqlite://app.db.
        #[arg(long)]
        database: Option<String>,
    },
    /// Create or upgrade restkit's tables and the declared resources' tables.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        database: Option<String>,
    },
    /// Print the route table: method, path, handler, required scope.
    Routes {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn read_config(path: &Option<PathBuf>) -> Result<String, String> {
    match path {
        None => Ok(restkit::demo::DEMO_TOML.to_string()),
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        }
    }
}

fn load(
    path: &Option<PathBuf>,
    overrides: Overrides,
) -> Result<(Settings, restkit::model::ApiModel), String> {
    let text = read_config(path)?;
    let settings = Settings::load(&text, &overrides).map_err(|e| e.to_string())?;
    let model =
        restkit::model::toml::parse(&text).map_err(|e| format!("invalid API declaration: {e}"))?;
    Ok((settings, model))
}

async fn shutdown_signal() {
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

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            bind,
            database,
        } => {
            let (settings, model) = load(&config, Overrides { bind, database })?;
            let addr = settings.server.bind;
            let app = restkit::open(model, settings, &Registry::builtin())
                .await
                .map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            tracing::info!("serving on http://{addr}");
            app.serve(listener, shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Migrate { config, database } => {
            let (settings, model) = load(
                &config,
                Overrides {
                    bind: None,
                    database,
                },
            )?;
            let store = restkit::store::Store::connect(&settings.database.url, 1)
                .await
                .map_err(|e| e.to_string())?;
            store.migrate(&model).await.map_err(|e| e.to_string())?;
            println!("migrated {}", settings.database.url);
            Ok(())
        }
        Command::Routes { config } => {
            let (settings, model) = load(&config, Overrides::default())?;
            let routes = restkit::http::routes::build(
                &model,
                &Registry::builtin(),
                &restkit::controller::table::TableOptions::from_settings(&settings),
            )?;
            print!("{}", restkit::http::routes::table_text(&routes));
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // Log lines are formatted on the request's thread but written by a
    // background thread: a slow stdout must not slow requests down. The
    // guard flushes what is queued when main returns.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(std::io::stdout());
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("restkit: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("restkit: {e}");
            ExitCode::FAILURE
        }
    }
}
