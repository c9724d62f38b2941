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
    /// Token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new RSA-2048 key pair: private.pem (mode 0600) and
    /// public.pem. Point auth.private_key at the first; after a rotation,
    /// list the old public.pem in auth.previous_public_keys.
    Generate {
        /// Directory to write into (created if missing; existing files are
        /// never overwritten).
        #[arg(long)]
        out: PathBuf,
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
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => {
            use restkit::auth::keys;
            std::fs::create_dir_all(&out)
                .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
            let (private, public) = keys::generate()?;
            let public_path = out.join("public.pem");
            if public_path.exists() {
                return Err(format!("{} exists; not overwritten", public_path.display()));
            }
            keys::write_private(&out.join("private.pem"), &private)?;
            std::fs::write(&public_path, public)
                .map_err(|e| format!("cannot write {}: {e}", public_path.display()))?;
            let kid = keys::KeySet::from_pem(&private, &[])?.kid;
            println!(
                "wrote {0}/private.pem and {0}/public.pem (kid {kid})",
                out.display()
            );
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
