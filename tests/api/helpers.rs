//! `TestApp`: the demo (or any model) over a fresh database, called
//! in-process.

use axum::body::Body;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use restkit::config::{Overrides, Settings};
use restkit::model::ApiModel;
use restkit::registry::Registry;
use restkit::{App, Identity};

pub use crate::db::TestDb;
use serde_json::Value;

pub struct TestApp {
    pub app: App,
    pub _dir: tempfile::TempDir,
    /// The database URL the app runs on (SQLite file or PostgreSQL).
    pub url: String,
    _pg: Option<crate::db::PgDatabase>,
    /// Access tokens minted for test callers, by (user, scopes).
    tokens: std::sync::Mutex<std::collections::HashMap<(i64, String), String>>,
}

/// Who a test request acts as.
#[derive(Clone)]
enum Acting {
    /// A user with a real access token (signed by the app's key).
    User(i64, Vec<String>),
    /// Nobody: the request carries what the test put in it.
    Nobody,
}

impl TestApp {
    /// `Bearer <token>` for stan with `basic write`, for hand-built requests.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token_for(1, &["basic", "write"]))
    }

    /// A real `client_credentials` access token of client `1` (no user).
    pub fn client_token(&self, scopes: &[&str]) -> String {
        let grant = restkit::auth::tokens::Grant {
            subject: restkit::auth::tokens::Subject::Client,
            client_id: "1".into(),
            scope: scopes.iter().map(|s| s.to_string()).collect(),
            family: None,
        };
        self.app.state().tokens.access_token(&grant).unwrap().0
    }

    /// A real access token for user `id` with `scopes`, signed by the
    /// app's key (as the token endpoint would issue; minted once per app).
    pub fn token_for(&self, id: i64, scopes: &[&str]) -> String {
        let key = (id, scopes.join(" "));
        let mut cache = self.tokens.lock().unwrap();
        if let Some(t) = cache.get(&key) {
            return t.clone();
        }
        let grant = restkit::auth::tokens::Grant {
            subject: restkit::auth::tokens::Subject::User {
                id,
                username: if id == 1 { "stan" } else { "ana" }.to_string(),
            },
            client_id: "1".into(),
            scope: scopes.iter().map(|s| s.to_string()).collect(),
            family: None,
        };
        let (token, _) = self.app.state().tokens.access_token(&grant).unwrap();
        cache.insert(key, token.clone());
        token
    }
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// The path and query of the `Link` target with this `rel`.
    pub fn link(&self, rel: &str) -> Option<String> {
        let link = self.headers.get("link")?.to_str().ok()?;
        let entry = link
            .split(", ")
            .find(|l| l.ends_with(&format!("rel=\"{rel}\"")))?;
        let url = &entry[1..entry.find('>')?];
        Some(url.replace("http://api.test", ""))
    }

    /// The `cursor` parameter of the next page's link.
    pub fn next_cursor(&self) -> Option<String> {
        let next = self.link("next")?;
        let token = next.split("cursor=").nth(1)?.split('&').next()?;
        Some(token.to_string())
    }

    /// Field names of a 422/409 body's `errors`, sorted.
    pub fn error_fields(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.json()["errors"]
            .as_array()
            .expect("errors array")
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_string(),
                    e["code"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

/// The test suite's token signing key (tests/fixtures; test-only).
pub const TEST_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt-private.pem"
);

/// Settings from `toml` with the database at `url`; tokens are signed
/// with [`TEST_KEY`] unless `toml` names a key.
pub fn settings(toml: &str, url: &str) -> Settings {
    let mut s = Settings::load(
        toml,
        &Overrides {
            bind: None,
            database: Some(url.to_string()),
        },
    )
    .unwrap();
    if s.auth.private_key.is_empty() {
        s.auth.private_key = TEST_KEY.to_string();
    }
    // Tests make many requests from one caller: the tiers are off unless a
    // test configures them (tests/api/limits.rs does).
    if !toml.contains("[rate_limit") {
        s.rate_limit.token.requests = 0;
        s.rate_limit.anonymous.requests = 0;
        s.rate_limit.public.requests = 0;
        s.rate_limit.authenticated.requests = 0;
    }
    s
}

/// A request under construction.
pub struct Call<'a> {
    app: &'a TestApp,
    req: http::request::Builder,
    body: Body,
    acting: Acting,
}

impl<'a> Call<'a> {
    /// Adds a header. Sending credentials drops the default caller, so
    /// the request is authenticated by what it sends.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        if k.eq_ignore_ascii_case("authorization") {
            self = self.anonymous();
        }
        self.req = self.req.header(k, v);
        self
    }

    /// Sends no credentials (requests act as stan, user 1, by default).
    pub fn anonymous(mut self) -> Self {
        self.acting = Acting::Nobody;
        self
    }

    /// Acts as stan holding only `scopes`.
    pub fn with_scopes(mut self, scopes: &[&str]) -> Self {
        self.acting = Acting::User(1, scopes.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Acts as this user (1 stan, 2 ana) with `basic write`.
    pub fn by_user(mut self, id: i64) -> Self {
        self.acting = Acting::User(id, vec!["basic".into(), "write".into()]);
        self
    }

    /// Acts as `identity`, put in the request's extensions as an
    /// in-process caller may (§2.2), with no credentials.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.acting = Acting::Nobody;
        self.req = self.req.extension(identity);
        self
    }

    /// As if it came over a socket from `ip` (what the server records).
    pub fn sent_from(mut self, ip: &str) -> Self {
        let addr = std::net::SocketAddr::new(ip.parse().unwrap(), 40000);
        self.req = self.req.extension(axum::extract::ConnectInfo(addr));
        self
    }

    pub fn json(mut self, v: Value) -> Self {
        self.req = self.req.header(header::CONTENT_TYPE, "application/json");
        self.body = Body::from(v.to_string());
        self
    }

    pub fn raw(mut self, content_type: &str, body: &str) -> Self {
        self.req = self.req.header(header::CONTENT_TYPE, content_type);
        self.body = Body::from(body.to_string());
        self
    }

    pub async fn send(self) -> TestResponse {
        let mut req = self.req;
        if let Acting::User(id, scopes) = &self.acting {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let token = self.app.token_for(*id, &scopes);
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(self.body).unwrap();
        let res = self.app.app.call(req).await;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

impl TestApp {
    /// The demo API, seeded.
    pub async fn demo() -> TestApp {
        TestApp::with(restkit::demo::DEMO_TOML, "", Registry::builtin()).await
    }

    /// The demo under extra settings TOML (`[rate_limit]`, `[metrics]`, …).
    pub async fn demo_with(settings: &str) -> TestApp {
        TestApp::with(restkit::demo::DEMO_TOML, settings, Registry::builtin()).await
    }

    /// A model from TOML (plus extra settings TOML) and a registry.
    pub async fn with(model_toml: &str, settings_toml: &str, registry: Registry) -> TestApp {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            // Server-side errors of a failing test: `TEST_LOG=error`.
            let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
        }
        let db = TestDb::new().await;
        let text = format!("{model_toml}\n{settings_toml}");
        let settings = settings(&text, &db.url);
        let model = restkit::model::toml::parse(&text).unwrap();
        TestApp::from_model(model, settings, registry, db).await
    }

    /// `model` under `settings`, over `db` (`settings` must name its URL).
    pub async fn from_model(
        model: ApiModel,
        settings: Settings,
        registry: Registry,
        db: TestDb,
    ) -> TestApp {
        let app = restkit::open(model, settings, &registry).await.unwrap();
        TestApp::in_dir(app, db)
    }

    /// Closes the app and keeps its database, to open another app over
    /// the same data.
    pub fn into_dir(self) -> TestDb {
        TestDb::from_parts(self._dir, self.url, self._pg)
    }

    /// An app of `model` (TOML) over `db`, a database another app left:
    /// start-up migrates it, or refuses with its message (and `db` back).
    pub async fn reopen(db: TestDb, model: &str) -> Result<TestApp, (String, TestDb)> {
        let settings = settings(model, &db.url);
        let parsed = restkit::model::toml::parse(model).unwrap();
        match restkit::open(parsed, settings, &Registry::builtin()).await {
            Ok(app) => Ok(TestApp::in_dir(app, db)),
            Err(e) => Err((e.to_string(), db)),
        }
    }

    /// An app opened over `db`, kept as long as the app.
    pub fn in_dir(app: App, db: TestDb) -> TestApp {
        let (dir, url, pg) = db.into_parts();
        TestApp {
            app,
            _dir: dir,
            url,
            _pg: pg,
            tokens: Default::default(),
        }
    }

    /// An app opened elsewhere (its database lives where its caller says).
    pub fn from_app(app: App) -> TestApp {
        TestApp {
            app,
            _dir: tempfile::tempdir().unwrap(),
            url: String::new(),
            _pg: None,
            tokens: Default::default(),
        }
    }

    /// A request acting as stan (user 1, scopes `basic write`) with a real
    /// access token: tests are identified callers unless they ask for
    /// `.anonymous()`.
    pub fn call(&self, method: Method, uri: &str) -> Call<'_> {
        Call {
            app: self,
            req: Request::builder()
                .method(method)
                .uri(uri)
                .header(header::HOST, "api.test"),
            body: Body::empty(),
            acting: Acting::User(1, vec!["basic".into(), "write".into()]),
        }
    }

    pub fn get(&self, uri: &str) -> Call<'_> {
        self.call(Method::GET, uri)
    }
    pub fn post(&self, uri: &str) -> Call<'_> {
        self.call(Method::POST, uri)
    }
    pub fn put(&self, uri: &str) -> Call<'_> {
        self.call(Method::PUT, uri)
    }
    pub fn patch(&self, uri: &str) -> Call<'_> {
        self.call(Method::PATCH, uri)
    }
    pub fn delete(&self, uri: &str) -> Call<'_> {
        self.call(Method::DELETE, uri)
    }
}

/// Asserts the §7 error shape and returns the body.
pub fn assert_problem(res: &TestResponse, status: u16, code: &str) -> Value {
    assert_eq!(
        res.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&res.body)
    );
    assert_eq!(res.header("content-type"), "application/problem+json");
    let b = res.json();
    assert_eq!(b["status"], status);
    // §7's numeric `error`, or, on the OAuth2 endpoints' 429, RFC 6749's
    // code with its `error_description`.
    if b["error"].is_string() {
        assert!(b["error_description"].is_string(), "{b}");
    } else {
        assert_eq!(b["error"], status);
    }
    assert_eq!(b["errorCode"], code);
    assert_eq!(b["type"], "about:blank");
    for key in [
        "title",
        "detail",
        "userMessage",
        "devMessage",
        "more",
        "requestId",
    ] {
        assert!(b[key].is_string(), "missing {key} in {b}");
    }
    assert_eq!(b["requestId"], res.header("x-request-id"));
    b
}

impl TestApp {
    /// Inserts `count` rows into `table` straight through the store (no
    /// API, no validation), `row(n)` giving the values of `columns` for
    /// n = 0..count, in transactions of 1,000 rows.
    pub async fn fill<F>(&self, table: &str, columns: &[&str], count: i64, row: F)
    where
        F: Fn(i64) -> Vec<sea_query::Value>,
    {
        for start in (0..count).step_by(1000) {
            let mut insert = sea_query::Query::insert();
            insert
                .into_table(sea_query::Alias::new(table))
                .columns(columns.iter().map(|c| sea_query::Alias::new(*c)));
            for n in start..(start + 1000).min(count) {
                insert.values_panic(row(n).into_iter().map(sea_query::Expr::val));
            }
            self.app
                .state()
                .store
                .execute_batch(vec![insert])
                .await
                .unwrap();
        }
    }
}

/// The Python with the test tools (Authlib, openapi-spec-validator,
/// schemathesis): `TEST_PYTHON`, else the virtual environment `.ci/run`
/// makes in `target/ci-venv`, else `python3`.
/// Runs `tests/clients/{script}` with the tests' Python and `args`, for
/// at most `secs`: what it printed is echoed (`--nocapture` shows it) and
/// a non-zero exit fails the test with its output.
pub async fn run_client_script(script: &str, args: &[&str], secs: u64) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new(python())
        .arg(&path)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(secs), run)
        .await
        .unwrap_or_else(|_| panic!("{script} finished within {secs} s"))
        .expect("python ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("TEST_PYTHON") {
        return p.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

/// Whether [`python`] can import every module in `modules`
/// (`"authlib, requests"`).
pub fn python_has(modules: &str) -> bool {
    std::process::Command::new(python())
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether a test may go on with an external tool (`found`: the caller
/// looked for it). CI must never pass with a test that did nothing, so
/// under `CI=true` (`.ci/run` sets it) a missing tool fails the test with
/// what to install. Elsewhere the test returns early and says loudly, on
/// stderr, that it did not run (`cargo test -- --nocapture` shows it).
pub fn require_tool(tool: &str, found: bool, install: &str) -> bool {
    if found {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: {tool} not found, and under CI=true a missing tool is a failure. Install: {install}"
    );
    eprintln!("NOT RUN: {test}: {tool} not found. Install: {install}");
    false
}

/// [`require_tool`] for Python modules in [`python`] (the environment
/// `.ci/run` builds).
pub fn require_python(modules: &str) -> bool {
    require_tool(
        &format!("the Python modules {modules} (in {})", python().display()),
        python_has(modules),
        "run .ci/run (it builds target/ci-venv), or pip install them and set TEST_PYTHON",
    )
}

impl TestApp {
    /// Serves the app on a fresh 127.0.0.1 port until the returned sender
    /// is dropped or used.
    pub async fn listen(&self) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(self.app.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }
}

/// `GET path` over a fresh connection to `addr`, with extra header lines
/// (each ending in CRLF): status, head (lower-cased) and body.
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
) -> std::io::Result<(u16, String, String)> {
    http_request(addr, "GET", path, headers, "").await
}

/// Any request over a fresh connection (a body gets its Content-Length).
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let (status, head, body) = http_request_raw(addr, method, path, headers, body).await?;
    Ok((status, head.to_ascii_lowercase(), body))
}

/// As [`http_request`], the head as sent (values keep their case:
/// ETags, cursors in Link).
pub async fn http_request_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}{length}Connection: close\r\n\r\n{body}"
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((status, head.to_string(), body.to_string()))
}

/// A free 127.0.0.1 address (the port is released for the caller to bind).
pub fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The `restkit` binary serving the demo from `dir` on `addr` with extra
/// environment `env`, returned once `/health` answers (60 s at most).
pub async fn start_binary(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    env: &[(&str, &str)],
    stdout: std::process::Stdio,
) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_restkit"))
        .args(["serve", "--bind", &addr.to_string()])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        // A developer's shell may point DATABASE_URL at a real database.
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .stdout(stdout)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !matches!(http_get(addr, "/health", "").await, Ok((200, _, _))) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    child
}

/// SIGTERM to `child` (the shell's builtin kill: no procps needed).
pub fn sigterm(child: &tokio::process::Child) {
    signal_to(child, "TERM");
}

/// Signal `name` (`TERM`, `KILL`, …) to `child`.
pub fn signal_to(child: &tokio::process::Child, name: &str) {
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("sh")
        .args(["-c", &format!("kill -{name} {pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// Runs `cmd` with `input` on its standard input; its output, whatever its
/// exit status.
pub fn run_with_input(mut cmd: std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
