//! The `restkit` command line: parses arguments, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use restkit::config::{Overrides, Settings};
use restkit::registry::Registry;

/// The server's allocator. A request allocates and frees many small
/// objects (a record's keys and values, header values, the log line) from
/// the runtime's threads; glibc's malloc and free took about 15% of the
/// server's CPU under load. A library does not choose for its embedder:
/// the choice is the binary's. See [`no_huge_pages`].
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc reserves its
/// memory in large aligned regions; where the kernel backs anonymous
/// memory with huge pages by default (`transparent_hugepage=always`),
/// each thread's first touch of a region makes 2 MiB resident: 61 MiB at
/// start instead of 46, 67 under load instead of 50 (the target is under
/// 64). Later faults get normal pages; nothing else changes.
fn no_huge_pages() {
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    {
        // prctl is variadic: every argument is passed as the unsigned
        // long the kernel reads (it refuses non-zero unused ones).
        let zero: libc::c_ulong = 0;
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and reads no
        // memory of ours. A kernel without it refuses, the default stays,
        // and only memory use differs (see above): nothing to report.
        let _ = unsafe {
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1 as libc::c_ulong,
                zero,
                zero,
                zero,
            )
        };
    }
}

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
    /// Create or upgrade restkit's tables and the declared resources'
    /// tables, in one transaction, printing each change (in words and
    /// SQL) as it is made; refuse, changing nothing, what would leave
    /// stored data contradicting the declaration.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        database: Option<String>,
        /// Print what would change, and change nothing.
        #[arg(long, conflicts_with = "status")]
        plan: bool,
        /// Say whether the database matches the declaration (exit 1 when
        /// changes are pending), and change nothing.
        #[arg(long)]
        status: bool,
        /// Also drop the columns no declaration names (kept otherwise).
        #[arg(long)]
        drop: bool,
    },
    /// Print the route table: method, path, handler, required scope.
    Routes {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document (§11), as GET /openapi.json serves it.
    Openapi {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Users who sign in with a password (password, authorization code).
    Users {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// OAuth2 clients.
    Clients {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: ClientsCommand,
    },
}

/// Which database to work on (as for `migrate`).
#[derive(clap::Args)]
struct DbArgs {
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[arg(long, global = true)]
    database: Option<String>,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user. The password is read from the terminal (not echoed),
    /// or from the first line of stdin when it is not a terminal.
    Add { username: String },
    /// List users: id and username.
    List,
    /// Remove a user (their refresh tokens die with them).
    Remove { username: String },
    /// Set a user's password (read as for `add`).
    Passwd { username: String },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Register a client. A confidential client's secret is generated and
    /// shown once; only its hash is kept.
    Add {
        client_id: String,
        /// Grants, comma-separated: authorization_code, client_credentials,
        /// refresh_token, password, implicit.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "authorization_code,refresh_token"
        )]
        grants: Vec<String>,
        /// Scopes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "basic")]
        scopes: Vec<String>,
        /// A redirect URI (repeat for several); matched exactly.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A public client: no secret, PKCE required.
        #[arg(long)]
        public: bool,
    },
    /// List clients: id, kind, grants, scopes, redirect URIs.
    List,
    /// Remove a client.
    Remove { client_id: String },
}

/// A password from the terminal (twice, not echoed) or stdin's first line.
fn read_password(prompt: &str) -> Result<String, String> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt).map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err("an empty password is not allowed".into());
    }
    Ok(password)
}

/// The store of `db`, migrated (restkit's own tables included), and how
/// long a token issued there can live.
async fn own_store(db: DbArgs) -> Result<(restkit::store::Store, std::time::Duration), String> {
    let (settings, model) = load(
        &db.config,
        Overrides {
            bind: None,
            database: db.database,
        },
    )?;
    let store = restkit::store::Store::open(&settings.database.url, &(&settings.database).into())
        .await
        .map_err(|e| e.to_string())?;
    store.migrate(&model).await.map_err(|e| e.to_string())?;
    let live = settings
        .auth
        .access_token_ttl
        .max(settings.auth.refresh_token_ttl);
    Ok((store, live))
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

/// Writes to stdout; a reader that has gone (`restkit openapi | head`)
/// ends the command quietly and successfully, as `cat` does, instead of
/// the panic `print!` gives.
fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("restkit: cannot write to stdout: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}

macro_rules! out {
    ($($t:tt)*) => { out(format_args!($($t)*)) };
}

macro_rules! outln {
    ($($t:tt)*) => { out(format_args!("{}\n", format_args!($($t)*))) };
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            bind,
            database,
        } => {
            let (settings, model) = load(&config, Overrides { bind, database })?;
            restkit::serve(model, settings, &Registry::builtin())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Migrate {
            config,
            database,
            plan,
            status,
            drop,
        } => {
            let (settings, model) = load(
                &config,
                Overrides {
                    bind: None,
                    database,
                },
            )?;
            let store =
                restkit::store::Store::open(&settings.database.url, &(&settings.database).into())
                    .await
                    .map_err(|e| e.to_string())?;
            let options = restkit::store::migrate::Options {
                drop,
                refuse_if_ahead: false,
            };
            let apply = !(plan || status);
            let report = store
                .migrate_with(&model, options, apply)
                .await
                .map_err(|e| e.to_string())?;
            let url = &settings.database.url;
            if status {
                match &report.last {
                    Some((hash, at)) => outln!(
                        "last migration: {at}, declaration {hash}{}",
                        if *hash == report.declaration {
                            " (this one)"
                        } else {
                            ""
                        }
                    ),
                    None => outln!("no migration recorded in {url}"),
                }
                if report.steps.is_empty() {
                    outln!(
                        "up to date: {url} matches this declaration ({})",
                        report.declaration
                    );
                    for note in &report.notes {
                        outln!("note: {note}");
                    }
                    return Ok(());
                }
                outln!(
                    "{} change(s) pending; `restkit migrate` makes them:",
                    report.steps.len()
                );
                out!("{}", report.render());
                std::process::exit(1);
            }
            if plan {
                outln!("plan for {url} (nothing is changed):");
            } else {
                outln!("migrating {url}:");
            }
            out!("{}", report.render());
            if apply {
                outln!("migrated {url}");
            }
            Ok(())
        }
        Command::Routes { config } => {
            let (settings, model) = load(&config, Overrides::default())?;
            let routes = restkit::http::routes::build(
                &model,
                &Registry::builtin(),
                &restkit::controller::table::TableOptions::from_settings(&settings),
            )?;
            let own = restkit::http::own::OwnRoutes::new(&settings, &model);
            out!("{}", restkit::http::routes::table_text(&routes, &own));
            Ok(())
        }
        Command::Users { db, command } => {
            use restkit::auth::users;
            let (store, live) = own_store(db).await?;
            let e = |e: restkit::ApiError| e.detail.to_string();
            match command {
                UsersCommand::Add { username } => {
                    let password = read_password("Password: ")?;
                    let id = users::add(&store, &username, &password).await.map_err(e)?;
                    outln!("added user {username} (id {id})");
                }
                UsersCommand::List => {
                    for (id, name) in users::list(&store).await.map_err(e)? {
                        outln!("{id}\t{name}");
                    }
                }
                UsersCommand::Remove { username } => {
                    if !users::remove(&store, &username, live).await.map_err(e)? {
                        return Err(format!("no user {username}"));
                    }
                    outln!("removed user {username}");
                }
                UsersCommand::Passwd { username } => {
                    let password = read_password("New password: ")?;
                    if !users::set_password(&store, &username, &password, live)
                        .await
                        .map_err(e)?
                    {
                        return Err(format!("no user {username}"));
                    }
                    outln!("changed the password of {username}");
                }
            }
            Ok(())
        }
        Command::Clients { db, command } => {
            use restkit::auth::clients;
            let (store, _) = own_store(db).await?;
            let e = |e: restkit::ApiError| e.detail.to_string();
            match command {
                ClientsCommand::Add {
                    client_id,
                    grants,
                    scopes,
                    redirect_uris,
                    public,
                } => {
                    const GRANTS: &[&str] = &[
                        "authorization_code",
                        "client_credentials",
                        "refresh_token",
                        "password",
                        "implicit",
                    ];
                    if let Some(g) = grants.iter().find(|g| !GRANTS.contains(&g.as_str())) {
                        return Err(format!("'{g}' is not a grant; use {}", GRANTS.join(", ")));
                    }
                    let needs_redirect = grants
                        .iter()
                        .any(|g| g == "authorization_code" || g == "implicit");
                    if needs_redirect && redirect_uris.is_empty() {
                        return Err("authorization_code and implicit need --redirect-uri".into());
                    }
                    if public && grants.iter().any(|g| g == "client_credentials") {
                        return Err("a public client cannot use client_credentials".into());
                    }
                    let secret = (!public).then(restkit::auth::tokens::random_token);
                    clients::add(
                        &store,
                        &clients::NewClient {
                            client_id: client_id.clone(),
                            secret: secret.clone(),
                            grants,
                            scopes,
                            redirect_uris,
                        },
                    )
                    .await
                    .map_err(e)?;
                    match secret {
                        Some(secret) => outln!(
                            "added confidential client {client_id}\nsecret: {secret}\n(shown once: only its hash is kept)"
                        ),
                        None => outln!("added public client {client_id} (no secret; PKCE required)"),
                    }
                }
                ClientsCommand::List => {
                    for c in clients::list(&store).await.map_err(e)? {
                        outln!(
                            "{}\t{}\tgrants={}\tscopes={}\tredirect_uris={}",
                            c.client_id,
                            if c.is_public() {
                                "public"
                            } else {
                                "confidential"
                            },
                            c.grants.join(","),
                            c.scopes.join(","),
                            c.redirect_uris.join(",")
                        );
                    }
                }
                ClientsCommand::Remove { client_id } => {
                    if !clients::remove(&store, &client_id).await.map_err(e)? {
                        return Err(format!("no client {client_id}"));
                    }
                    outln!("removed client {client_id}");
                }
            }
            Ok(())
        }
        Command::Openapi { config } => {
            let (settings, model) = load(&config, Overrides::default())?;
            let routes: Vec<std::sync::Arc<_>> = restkit::http::routes::build(
                &model,
                &Registry::builtin(),
                &restkit::controller::table::TableOptions::from_settings(&settings),
            )?
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
            let own = restkit::http::own::OwnRoutes::new(&settings, &model);
            let doc = restkit::docs::openapi::document(&routes, &own, &settings);
            outln!(
                "{}",
                serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
            );
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
            outln!(
                "wrote {0}/private.pem and {0}/public.pem (kid {kid})",
                out.display()
            );
            Ok(())
        }
    }
}

/// The configuration file a command reads, if any.
fn config_of(cli: &Cli) -> Option<PathBuf> {
    match &cli.command {
        Command::Serve { config, .. }
        | Command::Migrate { config, .. }
        | Command::Routes { config }
        | Command::Openapi { config } => config.clone(),
        Command::Users { db, .. } | Command::Clients { db, .. } => db.config.clone(),
        Command::Keys { .. } => None,
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    // `[log] format` (or RESTKIT_LOG__FORMAT) chooses text or JSON lines; a
    // configuration that does not load is reported by the command itself.
    let log = read_config(&config_of(&cli))
        .ok()
        .and_then(|text| Settings::load(&text, &Overrides::default()).ok())
        .map(|s| s.log)
        .unwrap_or_default();
    // The guard flushes what is queued when main returns.
    let _flush_on_exit = restkit::init_logging(&log);
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
