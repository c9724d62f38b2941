//! Prometheus metrics (§12), one registry per app (two apps in one process
//! never mix their counts): requests by route template, method and
//! status; a latency histogram; errors by kind (authentication failures,
//! statement timeouts); rate-limit decisions (read from the limiter's own
//! counters at scrape time); database pool connections; build info.
//!
//! Every label value comes from a fixed set, so the number of series — and
//! what a scrape costs — is bounded by the configuration, never by what
//! clients send: the route is a template from the route table (or
//! `(unmatched)`), the method one of the standard names or `other`, the
//! status one restkit answered with.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

/// The metrics label of a request method: the standard methods by name,
/// any other name (clients may invent any token, of any length) as
/// `other`, so invented methods cannot add series.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// A request method as the request log writes it: invented names are kept
/// (they tell an operator what a probe sent) but cut to
/// [`LOGGED_METHOD_MAX`] bytes, so a 60 KB name does not become 60 KB of
/// log per request.
pub fn method_for_log(method: &str) -> std::borrow::Cow<'_, str> {
    match method.get(..LOGGED_METHOD_MAX) {
        Some(head) if method.len() > LOGGED_METHOD_MAX => {
            format!("{head}...({} bytes)", method.len()).into()
        }
        _ => method.into(),
    }
}

/// The longest method name the request log writes whole.
pub const LOGGED_METHOD_MAX: usize = 32;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    policy: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Latency buckets, seconds: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    auth_failures: Family<KindLabels, Counter>,
    statement_timeouts: Counter,
    rate_limit: Family<LimitLabels, Counter<u64, AtomicU64>>,
    pool: Family<PoolLabels, Gauge>,
    write_commits: Counter<u64, AtomicU64>,
    committed_writes: Counter<u64, AtomicU64>,
    /// Scrapes bring the limiter's counts up to date one at a time.
    scrape: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("restkit");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from the request's arrival to its response's head",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let auth_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused for their credentials or scope, by error code",
            auth_failures.clone(),
        );
        let statement_timeouts = Counter::default();
        registry.register(
            "db_statement_timeouts",
            "Statements interrupted by database.statement_timeout",
            statement_timeouts.clone(),
        );
        let rate_limit = Family::<LimitLabels, Counter<u64, AtomicU64>>::default();
        registry.register(
            "rate_limit_decisions",
            "Rate-limit decisions by policy and outcome (allowed, refused, backend_error)",
            rate_limit.clone(),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections by pool and state",
            pool.clone(),
        );
        let write_commits = Counter::<u64, AtomicU64>::default();
        registry.register(
            "db_write_commits",
            "Commits of the SQLite writer, each carrying a group of write requests",
            write_commits.clone(),
        );
        let committed_writes = Counter::<u64, AtomicU64>::default();
        registry.register(
            "db_committed_writes",
            "Write requests committed by the SQLite writer (over db_write_commits: requests per commit)",
            committed_writes.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "restkit's version", build);
        Metrics {
            registry,
            requests,
            latency,
            auth_failures,
            statement_timeouts,
            rate_limit,
            pool,
            write_commits,
            committed_writes,
            scrape: Default::default(),
        }
    }

    /// One finished request; `error` is the §7 error code it failed with,
    /// or the RFC 6749 error of an OAuth2 endpoint. Auth failures are
    /// counted by that code, lower-cased (`unauthorized`, `invalid_token`,
    /// `invalid_client`, `invalid_grant`, …).
    pub fn request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        seconds: f64,
        error: Option<&str>,
    ) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method,
            })
            .observe(seconds);
        match error {
            Some(
                code @ ("UNAUTHORIZED"
                | "INVALID_TOKEN"
                | "INSUFFICIENT_SCOPE"
                | "FORBIDDEN"
                | "invalid_client"
                | "invalid_grant"
                | "unauthorized_client"
                | "access_denied"),
            ) => {
                self.auth_failures
                    .get_or_create(&KindLabels {
                        kind: code.to_ascii_lowercase(),
                    })
                    .inc();
            }
            Some("QUERY_TIMEOUT") => {
                self.statement_timeouts.inc();
            }
            _ => {}
        }
    }

    /// The text exposition, with the gauges read now and the limiter's
    /// counters brought up to its counts.
    pub fn render(
        &self,
        pools: &[(&'static str, u32, u32)],
        write_groups: Option<(u64, u64)>,
        limits: &[crate::limit::PolicyCounts],
    ) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        for (pool, in_use, idle) in pools {
            for (state, n) in [("in_use", in_use), ("idle", idle)] {
                self.pool
                    .get_or_create(&PoolLabels { pool, state })
                    .set(i64::from(*n));
            }
        }
        if let Some((commits, writes)) = write_groups {
            for (counter, n) in [
                (&self.write_commits, commits),
                (&self.committed_writes, writes),
            ] {
                counter.inc_by(n.saturating_sub(counter.get()));
            }
        }
        for p in limits {
            for (outcome, n) in [
                ("allowed", p.allowed),
                ("refused", p.refused),
                ("backend_error", p.backend_errors),
            ] {
                let counter = self.rate_limit.get_or_create(&LimitLabels {
                    policy: p.name.clone(),
                    outcome,
                });
                counter.inc_by(n.saturating_sub(counter.get()));
            }
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Does `accept` prefer OpenMetrics (`application/openmetrics-text`) to
/// the classic `text/plain`, by their q-values? Prometheus asks for it
/// first; anything else (curl, Telegraf, a bare `text/plain`) gets the
/// classic text format.
pub fn wants_openmetrics(accept: &str) -> bool {
    let (mut openmetrics, mut plain) = (0.0f32, 0.0f32);
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" => plain = plain.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= plain
}

/// The OpenMetrics exposition in Prometheus's classic text format
/// (`text/plain; version=0.0.4`): no `# EOF` or `# UNIT`, and a counter's
/// family named as its samples are (`…_total`).
pub fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let tail = if tail == "unknown" { "untyped" } else { tail };
            Some(if counters.contains(name) {
                format!("{prefix}{name}_total {tail}")
            } else {
                format!("{prefix}{name} {tail}")
            })
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics(
            "application/openmetrics-text;q=0, text/plain"
        ));
    }

    #[test]
    fn invented_methods_share_one_label_and_long_ones_are_cut_in_the_log() {
        for m in ["GET", "HEAD", "DELETE", "TRACE"] {
            assert_eq!(method_label(m), m);
        }
        for m in ["get", "FOO", "PROPFIND", ""] {
            assert_eq!(method_label(m), "other", "{m}");
        }
        assert_eq!(method_for_log("PROPFIND"), "PROPFIND");
        let long = "X".repeat(60_000);
        let logged = method_for_log(&long);
        assert!(logged.len() < 64, "{logged}");
        assert!(logged.ends_with("(60000 bytes)"));
    }

    #[test]
    fn the_classic_format_names_counter_families_by_their_samples() {
        let m = Metrics::new();
        m.request("/v1/books", "GET", 200, 0.001, Some("UNAUTHORIZED"));
        let om = m.render(&[("read", 1, 2)], Some((2, 5)), &[]);
        assert!(om.contains("# TYPE restkit_http_requests counter"));
        assert!(om.ends_with("# EOF\n"));
        let text = classic_text(&om);
        assert!(text.contains("# TYPE restkit_http_requests_total counter\n"));
        assert!(text.contains("# HELP restkit_http_requests_total HTTP requests"));
        assert!(text.contains("# TYPE restkit_http_request_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE restkit_db_pool_connections gauge\n"));
        assert!(text.contains("restkit_db_write_commits_total 2\n"));
        assert!(text.contains("restkit_db_committed_writes_total 5\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
        assert!(text.contains("restkit_http_requests_total{"));
    }
}
