//! Settings (§1): a TOML file, then `RESTKIT_` environment variables (`__`
//! nests: `RESTKIT_RATE_LIMIT__TOKEN__REQUESTS=100`), then command-line
//! flags. Everything is checked before start-up; a bad value stops it with
//! a message naming the key. Unknown keys are errors too, so a typo never
//! silently leaves a default in force.
//!
//! Durations are written `500ms`, `30s`, `5m`, `1h`, `30d`; sizes `512`,
//! `64KiB`, `1MiB`, `1MB`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{Deserializer, Error as _, IgnoredAny};
use serde::Deserialize;

/// Every setting restkit reads.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub pagination: PaginationSettings,
    pub format: FormatSettings,
    pub cors: CorsSettings,
    pub info: InfoSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub live: LiveSettings,
    /// API declarations live in the same file; read by `model::toml`.
    #[serde(rename = "module")]
    modules: Option<IgnoredAny>,
    seed: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    #[serde(deserialize_with = "addr")]
    pub bind: SocketAddr,
    pub public_url: String,
    /// Signs cursors (§6.8). Empty: a random secret per process, so
    /// cursors do not survive a restart or cross instances; set it when
    /// running several.
    pub secret: String,
    #[serde(deserialize_with = "size")]
    pub body_limit: usize,
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// Time a client has to send a request's headers, counted from when
    /// the connection opens or its previous response ends: closes
    /// slow-header and idle keep-alive connections (§12).
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its headers are in:
    /// past it, 408 (the client stalled; our side did not fail).
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen
    /// backlog until one closes, so file descriptors cannot run out.
    pub max_connections: usize,
    /// Longest a response write may wait for a client that does not read:
    /// past it the connection is closed.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            secret: String::new(),
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Cross-origin requests (§10).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed to call the API from a browser; `"*"`: any (not
    /// with `credentials`, which is refused at start-up). With
    /// `credentials`, the request's origin is echoed, never `*`.
    pub origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
}

impl Default for CorsSettings {
    fn default() -> Self {
        CorsSettings {
            origins: vec!["*".to_string()],
            credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

/// Output formats (§5.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FormatSettings {
    /// Prefix CSV cells that start with `= + - @`, tab or CR with `'` so
    /// spreadsheets do not run them (OWASP CSV injection).
    pub csv_formula_guard: bool,
}

impl Default for FormatSettings {
    fn default() -> Self {
        FormatSettings {
            csv_formula_guard: true,
        }
    }
}

/// Live change feeds (§16): Server-Sent Events on collections and records.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// Serve them at all.
    pub enabled: bool,
    /// Open streams on this instance, all callers together (over: 503);
    /// never more than half of `server.max_connections`, since each holds
    /// a connection and the other requests need the rest.
    pub max_streams: usize,
    /// Open streams of one caller: a user, a client, or an anonymous IP
    /// (over: 429).
    pub max_streams_per_caller: usize,
    /// A comment sent on an idle stream this often, so proxies keep it.
    #[serde(deserialize_with = "duration")]
    pub heartbeat: Duration,
    /// How often the database is asked whether anyone else (another
    /// instance, another process) changed it, while streams are open.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// A feed's reader reads at most this often: changes committed closer
    /// together go out in one write to each follower (a lone change after
    /// a quiet spell goes at once). `0s`: every change at once.
    #[serde(deserialize_with = "duration")]
    pub batch_interval: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            enabled: true,
            max_streams: 512,
            max_streams_per_caller: 16,
            heartbeat: Duration::from_secs(15),
            poll_interval: Duration::from_millis(250),
            batch_interval: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    /// A read statement running longer is cancelled and answered 503
    /// (§6.9). `0s` disables the limit.
    #[serde(deserialize_with = "duration")]
    pub statement_timeout: Duration,
    /// PostgreSQL: how long to wait for a connection (to connect, or for
    /// a free one in the pool) before answering 503.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// How long deletions are remembered for sync clients and live feeds
    /// (§6.7, §16): older tombstones are pruned, and a position from
    /// before what is kept is answered 410 `SYNC_TOO_OLD` (a feed: a
    /// `resync` event). `"forever"`: never pruned. Every instance on one
    /// database must say the same.
    #[serde(deserialize_with = "keep")]
    pub keep_deletions: Option<Duration>,
}

impl DatabaseSettings {
    /// The directory of a file database (where restkit keeps files of its
    /// own, such as a generated signing key); `None` in memory or on a
    /// server.
    pub fn data_dir(&self) -> Option<std::path::PathBuf> {
        let path = self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path.contains(":memory:") || path.starts_with("file::memory") {
            return None;
        }
        let parent = std::path::Path::new(path).parent()?;
        Some(if parent.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            parent.to_path_buf()
        })
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: "sqlite://restkit-demo.db".into(),
            max_connections: 8,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            keep_deletions: Some(DEFAULT_KEEP_DELETIONS),
        }
    }
}

/// `database.keep_deletions` unless set: 90 days.
pub const DEFAULT_KEEP_DELETIONS: Duration = Duration::from_secs(90 * 86_400);

/// The database URLs restkit opens (`database.url`), and how errors say
/// so.
pub const SUPPORTED_SCHEMES: &[&str] = &["sqlite:", "postgres://", "postgresql://"];
pub const SUPPORTED_TEXT: &str =
    "use sqlite:PATH (or sqlite::memory:) or postgres://USER:PASSWORD@HOST:PORT/DB; \
     MySQL is not supported";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The `iss` of tokens and the base of the OAuth2 metadata; empty (the
    /// default): derived, see [`Settings::issuer`].
    pub issuer: String,
    #[serde(deserialize_with = "duration")]
    pub access_token_ttl: Duration,
    #[serde(deserialize_with = "duration")]
    pub refresh_token_ttl: Duration,
    pub private_key: String,
    pub public_key: String,
    pub query_param_token: bool,
    pub grants: Vec<String>,
    /// The `aud` of access tokens; empty: the issuer.
    pub audience: String,
    /// Where the OAuth2 endpoints live (`{prefix}/access_token`, …).
    pub prefix: String,
    /// The scopes a person signed in to the browsable pages gets (the
    /// built-in client `restkit-browser` may ask for no others): by
    /// default what their own password gives them over HTTP Basic. Empty:
    /// the pages offer no sign-in.
    pub browser_scopes: Vec<String>,
    /// Public keys (PEM files) of earlier signing keys: still published
    /// and accepted, so tokens signed before a rotation verify until they
    /// expire.
    pub previous_public_keys: Vec<String>,
    /// How long an API key from `{prefix}/authenticate` lives (§8.4).
    #[serde(deserialize_with = "duration")]
    pub api_key_ttl: Duration,
    /// The signing key (PKCS#8 PEM) restkit generated and keeps in the
    /// database, when no `private_key` is configured and the database has
    /// no directory to keep it in (PostgreSQL): every instance sharing
    /// the database signs with it. Set by [`crate::open`], never read
    /// from configuration.
    #[serde(skip)]
    pub stored_private_key: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            issuer: String::new(),
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 86400),
            private_key: String::new(),
            public_key: String::new(),
            query_param_token: true,
            grants: vec![
                "authorization_code".into(),
                "client_credentials".into(),
                "refresh_token".into(),
            ],
            audience: String::new(),
            prefix: "/v1".into(),
            browser_scopes: vec!["basic".into(), "write".into()],
            previous_public_keys: Vec::new(),
            api_key_ttl: Duration::from_secs(86400),
            stored_private_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawRateLimit")]
pub struct RateLimitSettings {
    pub backend: String,
    pub redis_url: String,
    pub on_backend_error: String,
    /// The longest a decision may wait for Redis before
    /// `on_backend_error` applies.
    pub redis_timeout: Duration,
    pub trusted_proxies: Vec<String>,
    /// The one forwarding header trusted proxies set:
    /// `"x-forwarded-for"` (nginx, HAProxy, cloud load balancers) or
    /// `"forwarded"` (RFC 7239). The other is ignored, so a client cannot
    /// pick its address through the header a proxy passes along untouched.
    /// Required with `trusted_proxies`: guessing wrong either way lets
    /// clients choose their address.
    pub forwarded_header: String,
    pub token: Tier,
    pub anonymous: Tier,
    /// Requests without valid credentials to a route whose scope is empty
    /// (a public catalogue): per client IP, like `anonymous`, but with an
    /// allowance a person browsing or a script reading can live with.
    pub public: Tier,
    pub authenticated: Tier,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            backend: "memory".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            on_backend_error: "allow".into(),
            redis_timeout: Duration::from_millis(100),
            trusted_proxies: Vec::new(),
            forwarded_header: String::new(),
            // One sign-in per 5 s sustained, as Yii's defaults, but a
            // standard client's burst (authorize, token exchange, refresh,
            // a client_credentials call) passes at once.
            token: Tier::new(1, 5).burst(10),
            anonymous: Tier::new(10, 60),
            public: Tier::new(300, 60),
            authenticated: Tier::new(600, 3600),
        }
    }
}

/// One rate-limit tier: `requests` per `period` sustained, of which up to
/// `burst` may come at once (GCRA: the allowance holds `burst` requests and
/// refills one per `period / requests`); 0 requests disables it.
#[derive(Debug, Clone)]
pub struct Tier {
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
}

/// A tier as written: either key may be left out and keeps that tier's
/// default (so `RESTKIT_RATE_LIMIT__TOKEN__REQUESTS=100` alone works).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    requests: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    period: Option<Duration>,
    burst: Option<u32>,
}

impl RawTier {
    /// What is left out keeps the default, except that a tier given its
    /// own `requests` without a `burst` takes them all at once (`requests
    /// = 2, period = "10s"` means 2, not the default tier's burst of 10).
    fn or(self, d: Tier) -> Tier {
        let burst = match (self.burst, self.requests) {
            (Some(b), _) => b,
            (None, Some(requests)) => requests,
            (None, None) => d.burst,
        };
        Tier {
            requests: self.requests.unwrap_or(d.requests),
            period: self.period.unwrap_or(d.period),
            burst,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRateLimit {
    backend: Option<String>,
    redis_url: Option<String>,
    on_backend_error: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    redis_timeout: Option<Duration>,
    trusted_proxies: Option<Vec<String>>,
    forwarded_header: Option<String>,
    token: RawTier,
    anonymous: RawTier,
    public: RawTier,
    authenticated: RawTier,
}

impl From<RawRateLimit> for RateLimitSettings {
    fn from(r: RawRateLimit) -> Self {
        let d = RateLimitSettings::default();
        RateLimitSettings {
            backend: r.backend.unwrap_or(d.backend),
            redis_url: r.redis_url.unwrap_or(d.redis_url),
            on_backend_error: r.on_backend_error.unwrap_or(d.on_backend_error),
            redis_timeout: r.redis_timeout.unwrap_or(d.redis_timeout),
            trusted_proxies: r.trusted_proxies.unwrap_or(d.trusted_proxies),
            forwarded_header: r
                .forwarded_header
                .map(|h| h.to_ascii_lowercase())
                .unwrap_or(d.forwarded_header),
            token: r.token.or(d.token),
            anonymous: r.anonymous.or(d.anonymous),
            public: r.public.or(d.public),
            authenticated: r.authenticated.or(d.authenticated),
        }
    }
}

impl Tier {
    fn new(requests: u32, secs: u64) -> Tier {
        Tier {
            requests,
            period: Duration::from_secs(secs),
            burst: requests,
        }
    }

    fn burst(self, burst: u32) -> Tier {
        Tier { burst, ..self }
    }
}

/// `[log]`: `format = "text"` (default) or `"json"` (one object per line).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "text".into(),
        }
    }
}

/// `[metrics]`: `GET /metrics` (§12), Prometheus text.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Addresses or CIDR blocks that may read it; empty: anyone.
    pub allow: Vec<String>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            enabled: true,
            allow: Vec::new(),
        }
    }
}

/// `[info]`: what the generated documentation (§11) says about the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfoSettings {
    pub title: String,
    pub description: String,
    /// The API's own version (not restkit's).
    pub version: String,
}

impl Default for InfoSettings {
    fn default() -> Self {
        InfoSettings {
            title: "restkit API".into(),
            description: String::new(),
            version: "1.0.0".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaginationSettings {
    pub default_per_page: u64,
    pub max_per_page: u64,
}

impl Default for PaginationSettings {
    fn default() -> Self {
        PaginationSettings {
            default_per_page: 20,
            max_per_page: 100,
        }
    }
}

/// Command-line values that override file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<String>,
    pub database: Option<String>,
}

/// A configuration problem, naming the key where known.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Reads `toml_text` (the file's text, or the built-in demo's), then the
    /// environment, then `overrides`, and checks the result.
    pub fn load(toml_text: &str, overrides: &Overrides) -> Result<Settings, ConfigError> {
        Settings::load_with_env(toml_text, overrides, None)
    }

    /// As [`Settings::load`], reading `RESTKIT_` variables from `env`
    /// instead of the process environment when given (tests).
    pub fn load_with_env(
        toml_text: &str,
        overrides: &Overrides,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        // `DATABASE_URL`, as PostgreSQL tools and hosting platforms set
        // it, stands in for `RESTKIT_DATABASE__URL` when that is unset.
        let database_url = match &env {
            Some(vars) => vars.get("DATABASE_URL").cloned(),
            None => std::env::var("DATABASE_URL").ok(),
        }
        .filter(|_| match &env {
            Some(vars) => !vars.contains_key("RESTKIT_DATABASE__URL"),
            None => std::env::var_os("RESTKIT_DATABASE__URL").is_none(),
        });
        let env = config::Environment::with_prefix("RESTKIT")
            .source(env)
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("rate_limit.trusted_proxies")
            .with_list_parse_key("auth.grants")
            .with_list_parse_key("auth.browser_scopes")
            .with_list_parse_key("auth.previous_public_keys")
            .with_list_parse_key("cors.origins")
            .with_list_parse_key("metrics.allow");
        let mut b = config::Config::builder()
            .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
            .add_source(env);
        if let Some(url) = database_url {
            b = b
                .set_override("database.url", url)
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        let set = |b: config::ConfigBuilder<config::builder::DefaultState>,
                   k: &str,
                   v: &Option<String>| match v {
            Some(v) => b.set_override(k, v.as_str()),
            None => Ok(b),
        };
        b = set(b, "server.bind", &overrides.bind).map_err(|e| ConfigError(e.to_string()))?;
        b = set(b, "database.url", &overrides.database).map_err(|e| ConfigError(e.to_string()))?;
        let settings: Settings = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    /// The token issuer and the base of every OAuth2 URL it advertises:
    /// `auth.issuer` if set, else `server.public_url`, else the address
    /// the server is bound to — so tokens, the RFC 8414 metadata, the JWKS
    /// URL and OpenAPI's `servers` name the same place.
    pub fn issuer(&self) -> String {
        let explicit = self.auth.issuer.trim_end_matches('/');
        if !explicit.is_empty() {
            return explicit.to_string();
        }
        self.server_url()
    }

    /// `server.public_url`, else `http://` and the bound address.
    pub fn server_url(&self) -> String {
        let public = self.server.public_url.trim_end_matches('/');
        if public.is_empty() {
            format!("http://{}", self.server.bind)
        } else {
            public.to_string()
        }
    }

    /// Whether the browsable pages offer a sign-in (`oauth::browser`): it
    /// needs the authorization-code grant and scopes to give
    /// (`auth.browser_scopes`).
    pub fn offers_browser_sign_in(&self) -> bool {
        self.auth.grants.iter().any(|g| g == "authorization_code")
            && !self.auth.browser_scopes.is_empty()
    }

    /// The start-up warning for an `auth.issuer` that names neither
    /// `server.public_url` nor the bound address: clients that check the
    /// metadata's `issuer` against the URL they fetched it from (RFC 8414
    /// §3.3) refuse it, and tokens name a server clients cannot find.
    pub fn issuer_warning(&self) -> Option<String> {
        let explicit = self.auth.issuer.trim_end_matches('/');
        let server = self.server_url();
        if explicit.is_empty() || explicit == server {
            return None;
        }
        Some(format!(
            "auth.issuer ({explicit}) is neither server.public_url nor the bound address \
             ({server}): standard OAuth2 clients compare the issuer with the address they \
             fetched the metadata from; set server.public_url, or leave auth.issuer empty \
             to derive it"
        ))
    }

    /// The start-up warning for a server that builds absolute URLs
    /// (`Location`, `Link`, `_links`) from the request's `Host` — no
    /// `server.public_url` — while bound to an address other machines can
    /// reach: behind a proxy, that `Host` is whatever the proxy or the
    /// client sends, not the public address. `None` when either is not so.
    pub fn public_url_warning(&self) -> Option<String> {
        let bind = self.server.bind.ip();
        if !self.server.public_url.is_empty() || bind.is_loopback() {
            return None;
        }
        Some(format!(
            "server.public_url is not set and server.bind ({bind}) is not a loopback address: \
             absolute URLs in Location and Link headers are built from each request's Host \
             header; behind a proxy, set server.public_url to the public address"
        ))
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return bad("server.max_connections", "must be between 1 and 1000000");
        }
        for (key, d) in [
            ("server.header_timeout", self.server.header_timeout),
            ("server.body_timeout", self.server.body_timeout),
            ("server.request_timeout", self.server.request_timeout),
            ("server.write_timeout", self.server.write_timeout),
        ] {
            if d.is_zero() {
                return bad(key, "must be longer than zero");
            }
        }
        // Live feeds: each holds a connection, so they must leave room for
        // every other request; zero intervals would make readers spin.
        for (key, d) in [
            ("live.heartbeat", self.live.heartbeat),
            ("live.poll_interval", self.live.poll_interval),
        ] {
            if d < Duration::from_millis(10) {
                return bad(key, "must be at least 10ms");
            }
        }
        if self
            .database
            .keep_deletions
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return bad(
                "database.keep_deletions",
                "must be at least 1s, or \"forever\"",
            );
        }
        // Longer would hold every change back for longer than anyone waits.
        if self.live.batch_interval > Duration::from_secs(5) {
            return bad("live.batch_interval", "must be at most 5s");
        }
        if !(1..=1_000_000).contains(&self.live.max_streams) {
            return bad("live.max_streams", "must be between 1 and 1000000");
        }
        if self.live.max_streams_per_caller == 0 {
            return bad("live.max_streams_per_caller", "must be at least 1");
        }

        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad("log.format", "must be \"text\" or \"json\"");
        }
        for (key, tier) in [
            ("rate_limit.token", &self.rate_limit.token),
            ("rate_limit.anonymous", &self.rate_limit.anonymous),
            ("rate_limit.public", &self.rate_limit.public),
            ("rate_limit.authenticated", &self.rate_limit.authenticated),
        ] {
            if tier.requests > 0 && tier.period.is_zero() {
                return bad(
                    &format!("{key}.period"),
                    "must be longer than zero (requests = 0 turns the tier off)",
                );
            }
            if tier.requests > 0 && tier.burst == 0 {
                return bad(
                    &format!("{key}.burst"),
                    "must be at least 1 (requests = 0 turns the tier off)",
                );
            }
        }
        match self.rate_limit.forwarded_header.as_str() {
            "x-forwarded-for" | "forwarded" => {}
            "" if self.rate_limit.trusted_proxies.is_empty() => {}
            "" => {
                return bad(
                    "rate_limit.forwarded_header",
                    "must be set with trusted_proxies: \"x-forwarded-for\" or \"forwarded\", \
                     whichever header those proxies set (the other is ignored)",
                )
            }
            _ => {
                return bad(
                    "rate_limit.forwarded_header",
                    "must be \"x-forwarded-for\" or \"forwarded\"",
                )
            }
        }
        if !matches!(self.rate_limit.backend.as_str(), "memory" | "redis") {
            return bad("rate_limit.backend", "must be \"memory\" or \"redis\"");
        }
        if !matches!(self.rate_limit.on_backend_error.as_str(), "allow" | "deny") {
            return bad(
                "rate_limit.on_backend_error",
                "must be \"allow\" or \"deny\"",
            );
        }
        if !SUPPORTED_SCHEMES
            .iter()
            .any(|s| self.database.url.starts_with(s))
        {
            return bad("database.url", SUPPORTED_TEXT);
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        const GRANTS: &[&str] = &[
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "password",
            "implicit",
        ];
        if let Some(g) = self
            .auth
            .grants
            .iter()
            .find(|g| !GRANTS.contains(&g.as_str()))
        {
            return bad(
                "auth.grants",
                &format!("'{g}' is not a grant restkit serves"),
            );
        }
        if !self.auth.prefix.starts_with('/') || self.auth.prefix.ends_with('/') {
            return bad("auth.prefix", "must start with / and not end with one");
        }
        if self.pagination.default_per_page == 0
            || self.pagination.default_per_page > self.pagination.max_per_page
        {
            return bad(
                "pagination.default_per_page",
                "must be between 1 and pagination.max_per_page",
            );
        }
        if self.server.body_limit == 0 {
            return bad("server.body_limit", "must be more than 0");
        }
        refuse_any_origin_with_credentials(
            &self.cors.origins,
            self.cors.credentials,
            "cors.origins",
            "cors.credentials",
        )
        .map_err(ConfigError)?;
        let url = &self.server.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return bad(
                "server.public_url",
                "must be empty or start with http:// or https://",
            );
        }
        Ok(())
    }
}

fn addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| D::Error::custom(format!("'{s}' is not an address like 127.0.0.1:8080")))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .ok_or_else(|| D::Error::custom(format!("'{s}' is not a duration like 30s, 5m, 1h, 30d")))
}

/// A duration, or `"forever"` (`None`).
fn keep<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim() == "forever" {
        return Ok(None);
    }
    parse_duration(&s).map(Some).ok_or_else(|| {
        D::Error::custom(format!(
            "'{s}' is neither \"forever\" nor a duration like 30d"
        ))
    })
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let s = String::deserialize(d)?;
    parse_size(&s)
        .ok_or_else(|| D::Error::custom(format!("'{s}' is not a size like 512KiB or 1MiB")))
}

/// `500ms`, `30s`, `5m`, `1h`, `30d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(ms)?))
}

/// `512`, `64KiB`, `1MiB`, `1MB`, `1GiB`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: usize = n.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "kb" => 1000,
        "mib" => 1 << 20,
        "mb" => 1_000_000,
        "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Refuses `*` among `origins` together with credentials (§10): a browser
/// would then send a user's cookies or remembered Basic credentials from
/// any site and let that site read the answer. The keys name where each
/// setting came from.
pub fn refuse_any_origin_with_credentials(
    origins: &[String],
    credentials: bool,
    origins_key: &str,
    credentials_key: &str,
) -> Result<(), String> {
    if credentials && origins.iter().any(|o| o == "*") {
        return Err(format!(
            "{origins_key} = [\"*\"] cannot be combined with {credentials_key} = true: \
             every site could read signed-in users' data; list the allowed origins, \
             or turn credentials off"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn deletions_are_kept_for_a_while_or_forever() {
        let load = |t: &str| Settings::load(t, &Overrides::default());
        assert_eq!(
            load("").unwrap().database.keep_deletions,
            Some(DEFAULT_KEEP_DELETIONS)
        );
        let forever = load("[database]\nkeep_deletions = \"forever\"\n").unwrap();
        assert_eq!(forever.database.keep_deletions, None);
        let week = load("[database]\nkeep_deletions = \"7d\"\n").unwrap();
        assert_eq!(
            week.database.keep_deletions,
            Some(Duration::from_secs(7 * 86_400))
        );
        for bad in ["0s", "500ms", "never"] {
            let e = load(&format!("[database]\nkeep_deletions = \"{bad}\"\n")).unwrap_err();
            assert!(e.to_string().contains("keep_deletions"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let e =
            Settings::load("[server]\nbody_limit = \"lots\"\n", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("body_limit"), "{e}");
        let e = Settings::load("[rate_limit]\nbackend = \"disk\"\n", &Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("rate_limit.backend"), "{e}");
        let e = Settings::load("[servr]\nbind = \"x\"\n", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("servr"), "{e}");
        // A zero period would divide the quota by nothing: refused, not
        // read as "off".
        let e = Settings::load(
            "[rate_limit]\ntoken = { requests = 5, period = \"0s\" }\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("rate_limit.token.period"), "{e}");
        assert!(Settings::load(
            "[rate_limit]\ntoken = { requests = 0, period = \"0s\" }\n",
            &Overrides::default()
        )
        .is_ok());
        // Trusting proxies means saying which header they set.
        let e = Settings::load(
            "[rate_limit]\ntrusted_proxies = [\"10.0.0.1\"]\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("rate_limit.forwarded_header"), "{e}");
        assert!(Settings::load(
            "[rate_limit]\ntrusted_proxies = [\"10.0.0.1\"]\nforwarded_header = \"Forwarded\"\n",
            &Overrides::default()
        )
        .is_ok());
    }

    #[test]
    fn environment_overrides_the_file_and_is_checked() {
        let env = |k: &str, v: &str| Some([(k.to_string(), v.to_string())].into_iter().collect());
        let s = Settings::load_with_env(
            "[pagination]\nmax_per_page = 50\n",
            &Overrides::default(),
            env("RESTKIT_PAGINATION__MAX_PER_PAGE", "77"),
        )
        .unwrap();
        assert_eq!(s.pagination.max_per_page, 77);
        let s = Settings::load_with_env(
            "",
            &Overrides::default(),
            env("RESTKIT_RATE_LIMIT__TOKEN__REQUESTS", "100"),
        )
        .unwrap();
        assert_eq!(s.rate_limit.token.requests, 100);
        let s = Settings::load_with_env(
            "",
            &Overrides::default(),
            env("RESTKIT_METRICS__ALLOW", "127.0.0.2,10.0.0.0/8"),
        )
        .unwrap();
        assert_eq!(s.metrics.allow, ["127.0.0.2", "10.0.0.0/8"]);
        let e = Settings::load_with_env(
            "",
            &Overrides::default(),
            env("RESTKIT_PAGINATION__DEFAULT_PER_PAGE", "x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("default_per_page"), "{e}");
        let e = Settings::load_with_env("", &Overrides::default(), env("RESTKIT_SERVR__BIND", "x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("servr"), "{e}");
    }

    #[test]
    fn a_reachable_server_without_public_url_is_warned_about() {
        let warning = |toml: &str| {
            Settings::load(toml, &Overrides::default())
                .unwrap()
                .public_url_warning()
        };
        assert_eq!(warning(""), None, "the default binds to 127.0.0.1");
        assert_eq!(warning("[server]\nbind = \"[::1]:8080\"\n"), None);
        let w = warning("[server]\nbind = \"0.0.0.0:8080\"\n").unwrap();
        assert!(
            w.contains("server.public_url") && w.contains("0.0.0.0"),
            "{w}"
        );
        assert!(warning("[server]\nbind = \"10.1.2.3:80\"\n").is_some());
        assert_eq!(
            warning("[server]\nbind = \"0.0.0.0:8080\"\npublic_url = \"https://api.example\"\n"),
            None
        );
    }

    #[test]
    fn the_issuer_is_the_public_url_else_the_bound_address_and_a_stray_one_is_warned_about() {
        let load = |toml: &str| Settings::load(toml, &Overrides::default()).unwrap();
        let s = load("[server]\nbind = \"127.0.0.1:9090\"\n");
        assert_eq!(s.issuer(), "http://127.0.0.1:9090");
        assert_eq!(s.issuer_warning(), None);
        let s = load("[server]\nbind = \"0.0.0.0:80\"\npublic_url = \"https://api.example/\"\n");
        assert_eq!(s.issuer(), "https://api.example");
        assert_eq!(s.server_url(), "https://api.example");
        let s = load("[server]\npublic_url = \"https://api.example\"\n[auth]\nissuer = \"https://api.example/\"\n");
        assert_eq!(s.issuer(), "https://api.example");
        assert_eq!(s.issuer_warning(), None);
        let s =
            load("[server]\nbind = \"127.0.0.1:9090\"\n[auth]\nissuer = \"https://id.example\"\n");
        assert_eq!(
            s.issuer(),
            "https://id.example",
            "an explicit issuer is kept"
        );
        let w = s.issuer_warning().unwrap();
        assert!(
            w.contains("https://id.example") && w.contains("127.0.0.1:9090"),
            "{w}"
        );
    }

    #[test]
    fn a_tier_absorbs_a_burst_and_one_given_its_own_rate_takes_it_at_once() {
        let load = |toml: &str| Settings::load(toml, &Overrides::default()).unwrap();
        let d = load("").rate_limit;
        assert_eq!((d.token.requests, d.token.burst), (1, 10));
        assert_eq!((d.anonymous.requests, d.anonymous.burst), (10, 10));
        assert_eq!((d.public.requests, d.public.burst), (300, 300));
        let s = load("[rate_limit]\ntoken = { requests = 100 }\n").rate_limit;
        assert_eq!((s.token.requests, s.token.burst), (100, 100));
        let s = load("[rate_limit]\ntoken = { burst = 1 }\n").rate_limit;
        assert_eq!((s.token.requests, s.token.burst), (1, 1));
        let s = load("[rate_limit]\ntoken = { period = \"10s\" }\n").rate_limit;
        assert_eq!((s.token.requests, s.token.burst), (1, 10));
        let e = Settings::load(
            "[rate_limit]\npublic = { burst = 0 }\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("rate_limit.public.burst"), "{e}");
    }

    #[test]
    fn overrides_win() {
        let s = Settings::load(
            "[server]\nbind = \"127.0.0.1:1\"\n",
            &Overrides {
                bind: Some("127.0.0.1:9".into()),
                database: None,
            },
        )
        .unwrap();
        assert_eq!(s.server.bind.port(), 9);
    }
}
