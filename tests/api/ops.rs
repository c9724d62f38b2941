//! §12 operations: `/metrics` moves as requests are made (parsed with the
//! Prometheus client library when Python has it), is restricted by
//! `metrics.allow` and never rate-limited; `/health` reports Redis when it
//! is the limiter's backend.

use crate::helpers::{python, require_python, run_with_input, TestApp};

/// `/metrics` as Prometheus asks for it (OpenMetrics first).
async fn metrics(t: &TestApp) -> String {
    let res = t
        .get("/metrics")
        .anonymous()
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        )
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert!(res
        .header("content-type")
        .starts_with("application/openmetrics-text"));
    String::from_utf8(res.body).unwrap()
}

/// The value of the sample `name{labels…}` (labels in any order).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_errors_limits_and_the_pool() {
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 1, period = \"1h\" }\n").await;
    for _ in 0..3 {
        assert_eq!(t.get("/v1/books/3").send().await.status, 200);
    }
    assert_eq!(t.get("/v1/books/99999").send().await.status, 404);
    // Anonymous: one 401 (missing token), then 429s.
    let statuses: Vec<u16> = anonymous_statuses(&t, 3).await;
    assert_eq!(statuses, [401, 429, 429]);
    let text = metrics(&t).await;
    let ok = [
        ("route", "/v1/books/{id}"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(sample(&text, "restkit_http_requests_total", &ok), Some(3.0));
    let missing = [("route", "/v1/books/{id}"), ("status", "404")];
    assert_eq!(
        sample(&text, "restkit_http_requests_total", &missing),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "restkit_http_request_duration_seconds_count",
            &[("route", "/v1/books/{id}")]
        ),
        Some(7.0)
    );
    assert_eq!(
        sample(
            &text,
            "restkit_auth_failures_total",
            &[("kind", "unauthorized")]
        ),
        Some(1.0)
    );
    let refused = [("policy", "anonymous"), ("outcome", "refused")];
    assert_eq!(
        sample(&text, "restkit_rate_limit_decisions_total", &refused),
        Some(2.0)
    );
    assert!(sample(
        &text,
        "restkit_db_pool_connections",
        &[("pool", "read"), ("state", "idle")]
    )
    .is_some());
    assert_eq!(sample(&text, "restkit_build_info", &[]), Some(1.0));
    // /metrics itself is counted by its path, never rate-limited.
    for _ in 0..3 {
        assert_eq!(t.get("/metrics").anonymous().send().await.status, 200);
    }
    let text = metrics(&t).await;
    assert!(
        sample(
            &text,
            "restkit_http_requests_total",
            &[("route", "/metrics")]
        )
        .unwrap()
            >= 4.0
    );
    // A hostile path does not become a label.
    t.get("/no/such/path/x1").send().await;
    let text = metrics(&t).await;
    assert!(!text.contains("x1"));
    assert!(text.contains("route=\"(unmatched)\""));

    // The standard client library reads it.
    if !require_python("prometheus_client") {
        return;
    }
    let out = python_reads(
        "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
             n = {f.name: sum(s.value for s in f.samples if s.name.endswith('_total')) for f in p(sys.stdin.read())}\n\
             print(int(n['restkit_http_requests']))",
        &text,
    );
    let total: u64 = out.trim().parse().unwrap();
    assert!(total >= 12, "{total}");
}

/// What `script` prints, given `input` on its standard input.
fn python_reads(script: &str, input: &str) -> String {
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-c", script]);
    let out = run_with_input(cmd, input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn anonymous_statuses(t: &TestApp, n: usize) -> Vec<u16> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(
            t.get("/v1/books/3")
                .anonymous()
                .sent_from("203.0.113.9")
                .send()
                .await
                .status
                .as_u16(),
        );
    }
    v
}

/// Scrapers that speak only the classic format (Telegraf, curl, a
/// Prometheus limited to it) get `text/plain; version=0.0.4`, which the
/// client library's classic parser reads.
#[tokio::test]
async fn metrics_answer_the_classic_text_format_to_whoever_does_not_ask_for_openmetrics() {
    let t = TestApp::demo().await;
    assert_eq!(t.get("/v1/books/3").send().await.status, 200);
    for accept in [
        "text/plain;version=0.0.4",
        "application/vnd.google.protobuf;q=0.7,text/plain;version=0.0.4;q=0.3",
        "*/*",
        "application/json",
    ] {
        let res = t
            .get("/metrics")
            .anonymous()
            .header("accept", accept)
            .send()
            .await;
        assert_eq!(res.status, 200, "{accept}");
        assert_eq!(
            res.header("content-type"),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
    let res = t.get("/metrics").anonymous().send().await;
    let text = String::from_utf8(res.body).unwrap();
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE restkit_http_requests_total counter"));
    if !require_python("prometheus_client") {
        return;
    }
    let out = python_reads(
        "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
         f = {f.name: f for f in p(sys.stdin.read())}\n\
         print(f['restkit_http_requests'].type, int(sum(s.value for s in f['restkit_http_requests'].samples)))",
        &text,
    );
    let mut words = out.split_whitespace();
    assert_eq!(words.next(), Some("counter"));
    assert!(words.next().unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn oauth_endpoint_failures_count_as_auth_failures_by_their_error() {
    let t = TestApp::demo().await;
    let token = |basic: &'static str, form: &'static str| {
        t.post("/v1/access_token")
            .header("authorization", basic)
            .raw("application/x-www-form-urlencoded", form)
            .send()
    };
    // Client 1 with a wrong secret; then the right one, a wrong password.
    let res = token("Basic MTp3cm9uZw==", "grant_type=client_credentials").await;
    assert_eq!(res.status, 401);
    let res = token(
        "Basic MTpwYXNzMg==",
        "grant_type=password&username=stan&password=nope",
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "invalid_grant");
    let text = metrics(&t).await;
    for kind in ["invalid_client", "invalid_grant"] {
        assert_eq!(
            sample(&text, "restkit_auth_failures_total", &[("kind", kind)]),
            Some(1.0),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn metrics_can_be_restricted_to_some_addresses() {
    let t = TestApp::demo_with("[metrics]\nallow = [\"10.0.0.0/8\", \"::1\"]\n").await;
    let res = t
        .get("/metrics")
        .anonymous()
        .sent_from("203.0.113.1")
        .send()
        .await;
    crate::helpers::assert_problem(&res, 403, "FORBIDDEN");
    let res = t
        .get("/metrics")
        .anonymous()
        .sent_from("10.2.3.4")
        .send()
        .await;
    assert_eq!(res.status, 200);
    let off = TestApp::demo_with("[metrics]\nenabled = false\n").await;
    assert_eq!(off.get("/metrics").anonymous().send().await.status, 404);
}

/// What the app logs while a test runs, on this test's thread (a tokio
/// test runs its app on one thread).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    /// Starts capturing the log lines of this thread, until the guard drops.
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let c = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(c.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (c, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Invented methods (any token, any length, on any path, refused or not)
/// share one label: they cannot grow `/metrics`, and a 60 KB name is
/// neither a label nor 60 KB of log.
#[tokio::test]
async fn invented_methods_do_not_grow_metrics_or_the_log() {
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 5, period = \"1h\" }\n").await;
    let (log, _guard) = Captured::start();
    let invent = |i: usize| http::Method::from_bytes(format!("PROBE{i}").as_bytes()).unwrap();
    for i in 0..20 {
        for path in ["/health", "/v1/books", "/no/such/path"] {
            t.call(invent(i), path).anonymous().send().await;
        }
    }
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    // The first scrape adds /metrics' own series.
    metrics(&t).await;
    let before = metrics(&t).await;
    for i in 20..60 {
        for path in ["/health", "/v1/books", "/no/such/path"] {
            t.call(invent(i), path).anonymous().send().await;
        }
    }
    let after = metrics(&t).await;
    assert!(!after.contains("PROBE"), "{after}");
    assert!(after.contains("method=\"other\""));
    // Only the count of /metrics itself moved, not the number of series.
    assert_eq!(series(&before), series(&after));

    let long = "X".repeat(60_000);
    let long_method = http::Method::from_bytes(long.as_bytes()).unwrap();
    for path in ["/health", "/v1/books/3", "/nothing"] {
        let res = t.call(long_method.clone(), path).anonymous().send().await;
        assert!(res.status.is_client_error(), "{path}: {}", res.status);
    }
    let text = metrics(&t).await;
    assert!(!text.contains("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"));
    assert!(text.len() < 64 * 1024, "{}", text.len());
    let logged = log.text();
    assert!(logged.contains("(60000 bytes)"), "{logged}");
    assert!(
        !logged.contains(&"X".repeat(64)),
        "the log holds the whole name"
    );
}

/// Rate-limit refusals are summarised per caller and reason, at most once
/// a second, instead of one line each; served requests keep their lines.
#[tokio::test]
async fn refusals_are_logged_as_counts_not_one_line_each() {
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 1, period = \"1h\" }\n").await;
    let (log, _guard) = Captured::start();
    let statuses = anonymous_statuses(&t, 201).await;
    assert_eq!(statuses[0], 401);
    assert!(statuses[1..].iter().all(|s| *s == 429));
    assert_eq!(t.get("/v1/books/3").send().await.status, 200);
    // The timer writes what is left within two ticks of the last summary.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let text = log.text();
    let lines: Vec<&str> = text.lines().collect();
    let served: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("restkit::request"))
        .collect();
    // The 401 and the 200: one line each; no 429 line.
    assert_eq!(served.len(), 2, "{text}");
    assert!(served.iter().all(|l| !l.contains("status=429")), "{text}");
    let summaries: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("restkit::refused"))
        .collect();
    assert!(
        (1..=4).contains(&summaries.len()),
        "{} summaries: {text}",
        summaries.len()
    );
    let refused: u64 = summaries
        .iter()
        .inspect(|l| {
            assert!(
                l.contains("caller=\"ip:203.0.113.9\"") || l.contains("caller=ip:203.0.113.9"),
                "{l}"
            );
            assert!(l.contains("RATE_LIMITED"), "{l}");
        })
        .filter_map(|l| l.split("refused=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(refused, 200, "{text}");
}

/// Under `on_backend_error = "deny"` a Redis outage refuses every limited
/// request (503): those are summarised too, not one line each.
#[tokio::test]
async fn backend_refusals_are_summarised_too() {
    // A port nothing listens on: every decision fails at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = TestApp::demo_with(&format!(
        "[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}\"\n\
         on_backend_error = \"deny\"\n"
    ))
    .await;
    let (log, _guard) = Captured::start();
    for _ in 0..30 {
        let res = t.get("/v1/books/3").send().await;
        crate::helpers::assert_problem(&res, 503, "RATE_LIMIT_UNAVAILABLE");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let text = log.text();
    assert!(
        !text.lines().any(|l| l.contains("restkit::request")),
        "{text}"
    );
    let refused: u64 = text
        .lines()
        .filter(|l| l.contains("restkit::refused") && l.contains("RATE_LIMIT_UNAVAILABLE"))
        .filter_map(|l| l.split("refused=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(refused, 30, "{text}");
}

/// Every response says its type is not to be sniffed: JSON, CSV, XML,
/// errors in each, and restkit's own endpoints.
#[tokio::test]
async fn every_response_forbids_content_sniffing() {
    let t = TestApp::demo().await;
    for uri in [
        "/v1/books/3",
        "/v1/books.csv",
        "/v1/books/3.xml",
        "/v1/books/99999.csv",
        "/v1/books/99999.xml",
        "/v1/books?filter=nope",
        "/health",
        "/metrics",
        "/openapi.json",
        "/no/such/path",
    ] {
        let res = t.get(uri).send().await;
        assert_eq!(res.header("x-content-type-options"), "nosniff", "{uri}");
    }
    let res = t.get("/v1/books/3").anonymous().send().await;
    assert_eq!(res.status, 401);
    assert_eq!(res.header("x-content-type-options"), "nosniff");
}

/// The database holds password and token hashes: a new one (and its WAL
/// files, which SQLite gives the main file's mode) is its owner's only.
#[cfg(unix)]
#[tokio::test]
async fn a_new_database_file_is_readable_by_its_owner_only() {
    if !crate::db::about_sqlite_files() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let t = TestApp::demo().await;
    // A write, so the WAL files exist.
    let res = t
        .post("/v1/books")
        .json(serde_json::json!({"title": "Private", "author": "Me"}))
        .send()
        .await;
    assert!(res.status.is_success(), "{}", res.status);
    let db = t._dir.path().join("test.db");
    let mut checked = 0;
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 2, "the database and its WAL exist");
}
