//! The database a test runs on. The suite is built twice from the same
//! source (Cargo.toml): `api` runs every test on SQLite, `api_pg` on
//! PostgreSQL — a throwaway cluster this process starts (`initdb` +
//! `postgres` in a temporary directory, on 127.0.0.1 and a free port, as a
//! non-root user), with a database of its own for every test.
//!
//! The cluster stops by itself: a watcher shell stops it and removes its
//! directory as soon as this process is gone, however it ended.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Is this the PostgreSQL build of the suite?
pub fn postgres() -> bool {
    env!("CARGO_CRATE_NAME") == "api_pg"
}

/// Is this test's subject present? Tests about SQLite's files (its
/// locks, its WAL, its file modes) hold on the SQLite build only; on
/// PostgreSQL there is no such file, and they return at once — they ran,
/// and passed or failed, in the `api` build of the same source.
pub fn about_sqlite_files() -> bool {
    !postgres()
}

/// A database for one test: a file in `dir` on SQLite, a fresh database
/// in the shared cluster on PostgreSQL (dropped with this value).
pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub url: String,
    _pg: Option<PgDatabase>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        if postgres() {
            let pg = PgDatabase::create().await;
            TestDb {
                dir,
                url: pg.url.clone(),
                _pg: Some(pg),
            }
        } else {
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            TestDb {
                dir,
                url,
                _pg: None,
            }
        }
    }

    /// The parts, for `TestApp`.
    pub fn into_parts(self) -> (tempfile::TempDir, String, Option<PgDatabase>) {
        (self.dir, self.url, self._pg)
    }

    pub fn from_parts(dir: tempfile::TempDir, url: String, pg: Option<PgDatabase>) -> TestDb {
        TestDb { dir, url, _pg: pg }
    }
}

/// One database of the cluster, dropped (connections and all) when this
/// value is.
pub struct PgDatabase {
    name: String,
    pub url: String,
    /// The cluster's maintenance database, to drop this one from.
    admin: String,
}

impl PgDatabase {
    /// A fresh database in the shared cluster.
    pub async fn create() -> PgDatabase {
        PgDatabase::create_in(cluster()).await
    }

    /// A fresh database in cluster `c`.
    pub async fn create_in(c: &Cluster) -> PgDatabase {
        use sqlx::Connection;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("t{n}");
        // Accepting TCP is not yet accepting logins (57P03 while starting).
        let mut tries = 0;
        let mut admin = loop {
            match sqlx::PgConnection::connect(&c.url("postgres")).await {
                Ok(conn) => break conn,
                Err(e) if tries < 300 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect to the test cluster: {e}"),
            }
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        let _ = admin.close().await;
        PgDatabase {
            url: c.url(&name),
            admin: c.url("postgres"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin.clone(), self.name.clone());
        // Off the test's runtime, which may be ending.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        });
    }
}

pub struct Cluster {
    pub port: u16,
    /// The cluster's data directory (`postmaster.pid` names the server).
    pub data: PathBuf,
    /// Runs a command as the cluster's owner (`runuser -u postgres --`
    /// when this process is root; nothing otherwise).
    as_owner: Vec<String>,
    /// Serves TLS too (a self-signed certificate in the data directory).
    tls: bool,
}

impl Cluster {
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// `pg_ctl` run as the cluster's owner with `args` (stop, start).
    pub fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let pg_ctl = bin("pg_ctl").expect("pg_ctl");
        let mut cmd = self.command(&pg_ctl);
        cmd.arg("-D").arg(&self.data).args(args);
        cmd.output().unwrap()
    }

    fn command(&self, program: &Path) -> std::process::Command {
        let mut cmd = match self.as_owner.split_first() {
            Some((first, rest)) => {
                let mut c = std::process::Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => std::process::Command::new(program),
        };
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    }

    /// The options the server runs with (restated by `start` after a stop).
    pub fn server_options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=500{}",
            self.port,
            self.data.parent().unwrap().display(),
            if self.tls { " -c ssl=on" } else { "" }
        )
    }
}

/// The shared cluster, started on first use. PostgreSQL is required by
/// the `api_pg` suite: without it every test fails, saying what to install
/// (never a pass that checked nothing).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| launch(false)) {
        Ok(c) => c,
        Err(e) => cannot_start(e),
    }
}

fn cannot_start(e: &str) -> ! {
    panic!(
        "the api_pg suite runs on PostgreSQL, which could not be started: {e}. \
         Install: apt-get install postgresql (or put initdb and postgres on PATH)"
    )
}

impl Cluster {
    /// A cluster of the caller's own, to stop and start (fault tests);
    /// removed when this process ends.
    pub fn private() -> Cluster {
        launch(false).unwrap_or_else(|e| cannot_start(&e))
    }

    /// As [`Cluster::private`], serving TLS with a self-signed
    /// certificate (made with the `openssl` command).
    pub fn private_tls() -> Cluster {
        launch(true).unwrap_or_else(|e| cannot_start(&e))
    }

    /// Stops the server at once (`pg_ctl stop -m fast`: sessions are
    /// ended, open transactions rolled back).
    pub fn stop(&self) {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    /// Starts it again on the same port, once it accepts connections.
    pub fn start(&self) {
        let log = self.data.parent().unwrap().join("restart.log");
        let out = self.pg_ctl(&[
            "start",
            "-w",
            "-l",
            &log.display().to_string(),
            "-o",
            &self.server_options(),
        ]);
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }
}

/// `name` from PATH, else from Debian's `/usr/lib/postgresql/<version>/bin`.
pub fn bin(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
            .filter(|p| p.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(mut cmd: std::process::Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn launch(tls: bool) -> Result<Cluster, String> {
    let initdb = bin("initdb").ok_or("initdb not found")?;
    let postgres = bin("postgres").ok_or("postgres not found")?;
    let root = tempfile::Builder::new()
        .prefix("restkit-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    // PostgreSQL refuses to run as root: as root, the cluster belongs to
    // the `postgres` user (made if missing).
    let as_owner: Vec<String> = if is_root() {
        if run(
            {
                let mut c = std::process::Command::new("id");
                c.arg("postgres");
                c
            },
            "id postgres",
        )
        .is_err()
        {
            let mut c = std::process::Command::new("useradd");
            c.args(["--system", "--no-create-home", "postgres"]);
            run(c, "useradd postgres")?;
        }
        let mut c = std::process::Command::new("chown");
        c.arg("postgres").arg(&root);
        run(c, "chown")?;
        ["runuser", "-u", "postgres", "--"]
            .map(String::from)
            .to_vec()
    } else {
        Vec::new()
    };
    let data = root.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let cluster = Cluster {
        port,
        data: data.clone(),
        as_owner,
        tls,
    };
    // The default collation is a natural-language one (ICU en-US, which
    // sorts "a" < "B"), so a text column or comparison that misses
    // restkit's COLLATE "C" shows in the tests; PostgreSQL before 15 has no
    // ICU default, and gets the C locale.
    let init = |icu: bool| {
        let mut c = cluster.command(&initdb);
        c.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"]);
        if icu {
            c.args(["--locale-provider=icu", "--icu-locale=en-US"]);
        }
        c
    };
    if run(init(true), "initdb").is_err() {
        let _ = std::fs::remove_dir_all(&data);
        run(init(false), "initdb")?;
    }
    if tls {
        // server.crt and server.key, PostgreSQL's defaults, owned by the
        // server's user, the key readable by it alone.
        let mut cert = cluster.command(Path::new("openssl"));
        cert.args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(data.join("server.key"))
        .arg("-out")
        .arg(data.join("server.crt"));
        run(cert, "openssl req")?;
        let mut private = cluster.command(Path::new("chmod"));
        private.arg("600").arg(data.join("server.key"));
        run(private, "chmod")?;
    }
    // The watcher: runs the server until this process is gone, then stops
    // it and removes the cluster.
    // Signals meant for the test run (Ctrl-C) do not stop the watcher
    // before it has cleaned up; it removes the cluster only once the
    // server is gone.
    let script = r#"
        trap '' INT TERM HUP
        parent=$1; data=$2; root=$3; shift 3
        "$@" &
        while [ -d /proc/$parent ]; do sleep 0.5; done
        pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null)
        if [ -n "$pid" ]; then
            kill -INT "$pid" 2>/dev/null
            for _ in $(seq 100); do [ -d /proc/$pid ] || break; sleep 0.1; done
        fi
        rm -rf "$root"
    "#;
    let mut server: Vec<String> = cluster.as_owner.clone();
    server.push(postgres.display().to_string());
    server.extend(["-D".to_string(), data.display().to_string()]);
    server.extend(
        cluster
            .server_options()
            .split(' ')
            .map(String::from)
            .collect::<Vec<_>>(),
    );
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watcher")
        .arg(std::process::id().to_string())
        .arg(&data)
        .arg(&root)
        .args(&server)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            return Err("the server did not accept connections within 30 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(cluster)
}

/// A connection of the test's own to the app's database, beside the app
/// (another program touching the same data, or a fault installed).
pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    pub async fn connect(url: &str) -> Raw {
        if url.starts_with("sqlite:") {
            Raw::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Raw::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Raw::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `sql`; the database's refusal, if any.
    pub async fn try_execute(&self, sql: &str) -> Result<(), String> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Raw::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .map_err(|e| e.to_string())
    }

    /// The first column of the first row, as an integer.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    /// Rows of two integer columns, the second nullable.
    pub async fn pairs(&self, sql: &str) -> Vec<(i64, Option<i64>)> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
            Raw::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        }
    }

    /// A table's column names, in order.
    pub async fn columns(&self, table: &str) -> Vec<String> {
        let rows: Vec<(String,)> = match self {
            Raw::Sqlite(p) => sqlx::query_as("SELECT name FROM pragma_table_info(?)")
                .bind(table)
                .fetch_all(p)
                .await
                .unwrap(),
            Raw::Postgres(p) => sqlx::query_as(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(p)
            .await
            .unwrap(),
        };
        rows.into_iter().map(|(c,)| c).collect()
    }

    /// SQL for the current Unix time in seconds.
    pub fn now_secs(&self) -> &'static str {
        match self {
            Raw::Sqlite(_) => "strftime('%s','now')",
            Raw::Postgres(_) => "extract(epoch from now())::bigint",
        }
    }

    /// Makes every insert into `table` fail until [`Raw::heal`].
    pub async fn fail_inserts(&self, table: &str) {
        self.execute(&match self {
            Raw::Sqlite(_) => format!(
                "CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            ),
            Raw::Postgres(_) => format!(
                "CREATE FUNCTION fail_{table}() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                 CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION fail_{table}()"
            ),
        })
        .await;
    }

    pub async fn heal(&self, table: &str) {
        self.execute(&match self {
            Raw::Sqlite(_) => format!("DROP TRIGGER fail_{table}"),
            Raw::Postgres(_) => {
                format!("DROP TRIGGER fail_{table} ON {table}; DROP FUNCTION fail_{table}()")
            }
        })
        .await;
    }

    pub async fn close(self) {
        match self {
            Raw::Sqlite(p) => p.close().await,
            Raw::Postgres(p) => p.close().await,
        }
    }
}
