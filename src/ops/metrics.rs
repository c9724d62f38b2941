//! Prometheus metrics (§12), one registry per app (two apps in one process
//! never mix their counts): requests by route template, method and
//! status; a latency histogram; errors by kind (authentication failures,
//! statement timeouts); rate-limit decisions (read from the limiter's own
//! counters at scrape time); database pool connections; build info.

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
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

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
    rate_limit: Family<LimitLabels, Gauge<u64, AtomicU64>>,
    pool: Family<PoolLabels, Gauge>,
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
        let rate_limit = Family::<LimitLabels, Gauge<u64, AtomicU64>>::default();
        registry.register(
            "rate_limit_decisions",
            "Rate-limit decisions by policy and outcome (allowed, refused, backend_error), since start",
            rate_limit.clone(),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections by pool and state",
            pool.clone(),
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
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
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

    /// The text exposition, with the gauges read now.
    pub fn render(
        &self,
        pools: &[(&'static str, u32, u32)],
        limits: &[(String, u64, u64)],
        backend_errors: u64,
    ) -> String {
        for (pool, in_use, idle) in pools {
            for (state, n) in [("in_use", in_use), ("idle", idle)] {
                self.pool
                    .get_or_create(&PoolLabels { pool, state })
                    .set(i64::from(*n));
            }
        }
        for (policy, allowed, refused) in limits {
            for (outcome, n) in [("allowed", allowed), ("refused", refused)] {
                self.rate_limit
                    .get_or_create(&LimitLabels {
                        policy: policy.clone(),
                        outcome,
                    })
                    .set(*n);
            }
        }
        self.rate_limit
            .get_or_create(&LimitLabels {
                policy: "-".into(),
                outcome: "backend_error",
            })
            .set(backend_errors);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
