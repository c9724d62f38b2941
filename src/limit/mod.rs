//! Rate limiting (§9): three tiers — `token` per client IP on the OAuth2
//! endpoints, `anonymous` per client IP on requests without valid
//! credentials, `authenticated` per caller (a user, or a client for
//! `client_credentials` tokens: never the same key) — each a GCRA
//! quota, overridable per resource and per action.
//!
//! Every limited response carries `X-Rate-Limit-*` and the IETF
//! `RateLimit-Policy`/`RateLimit` fields; over the limit is a 429 in the §7
//! form with `Retry-After`. The in-process backend is `governor`'s keyed
//! GCRA; policies are fixed at start-up, so a decision is one hash-map
//! lookup and an atomic update.

pub mod client_ip;
mod memory;
pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::config::{RateLimitSettings, Tier};
use crate::error::{plural, ApiError};
use crate::model::{RateLimitOverride, RateTier};

pub use client_ip::{ClientIp, Networks, TrustedProxies};

/// Who a decision is about. A client and a user with the same id are
/// different callers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    Ip(IpAddr),
    User(i64),
    Client(Arc<str>),
}

impl Who {
    /// The caller at `ip` (none: an in-process call that gave no address;
    /// all such share the unspecified address). An IPv4 address written as
    /// IPv6 (`::ffff:1.2.3.4`, as a dual-stack socket reports it) is that
    /// IPv4 address, and so is the client of a translation prefix that
    /// embeds one (NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo
    /// `2001::/32`): counted by /64, all those IPv4 clients would share one
    /// allowance. Any other IPv6 address counts by its /64: a subscriber
    /// usually holds a whole /64 and could otherwise take a fresh allowance,
    /// and a fresh key in memory, with every request.
    pub fn ip(ip: Option<IpAddr>) -> Who {
        let Some(ip) = ip else {
            return Who::Ip(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        };
        Who::Ip(match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = v6.to_bits();
                let seg = v6.segments();
                let v4 = |b: u32| IpAddr::V4(std::net::Ipv4Addr::from_bits(b));
                if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
                    v4(bits as u32)
                } else if seg[0] == 0x2002 {
                    v4((bits >> 80) as u32)
                } else if seg[0] == 0x2001 && seg[1] == 0 {
                    v4(!(bits as u32))
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::from_bits(bits & !((1u128 << 64) - 1)))
                }
            }
            v4 => v4,
        })
    }

    /// The key's text for shared backends (`u:1`, `c:spa`, `ip:1.2.3.4`).
    pub fn key(&self) -> String {
        match self {
            Who::Ip(ip) => format!("ip:{ip}"),
            Who::User(id) => format!("u:{id}"),
            Who::Client(id) => format!("c:{id}"),
        }
    }
}

/// One quota, named for `RateLimit-Policy` (`anonymous`,
/// `authenticated`, or a resource's or action's own, e.g.
/// `authenticated.v1.books`).
#[derive(Debug)]
pub struct Policy {
    /// Index into the limiter's policies.
    pub id: usize,
    pub name: String,
    pub requests: u32,
    pub period: Duration,
    /// Up to this many at once; the allowance refills one request per
    /// `period / requests`.
    pub burst: u32,
    /// Decisions so far (§12 metrics), and checks the backend could not
    /// decide.
    pub allowed: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
    pub backend_errors: std::sync::atomic::AtomicU64,
    /// The name as an RFC 9651 string (`"anonymous"`), for the headers.
    quoted: String,
    /// `RateLimit-Policy`, the same on every response.
    policy_header: Option<HeaderValue>,
}

impl Policy {
    pub fn new(id: usize, name: &str, tier: &Tier) -> Policy {
        let (requests, period) = (tier.requests.max(1), tier.period);
        let burst = tier.burst.max(1);
        let quoted = format!("\"{}\"", name.replace(['"', '\\'], ""));
        // The IETF fields have no separate burst: the policy is the whole
        // allowance (`burst`) over the time it takes to refill it.
        let policy_header = HeaderValue::from_str(&format!(
            "{quoted};q={burst};w={}",
            secs(period / requests * burst)
        ))
        .ok();
        Policy {
            id,
            name: name.to_string(),
            requests,
            period,
            burst,
            allowed: Default::default(),
            refused: Default::default(),
            backend_errors: Default::default(),
            quoted,
            policy_header,
        }
    }
}

impl Policy {
    /// The time one request's worth of allowance takes to come back.
    pub fn per(&self) -> Duration {
        self.period / self.requests
    }
}

/// One policy's counts so far, for the metrics.
pub struct PolicyCounts {
    pub name: String,
    pub allowed: u64,
    pub refused: u64,
    pub backend_errors: u64,
}

/// The limiter's answer, with what the headers report.
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub policy: Arc<Policy>,
    pub remaining: u32,
    /// Until the allowance is whole again.
    pub reset: Duration,
    /// When refused: until the next request may pass.
    pub retry_after: Duration,
}

/// Which tier a request falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierName {
    Token,
    Anonymous,
    Authenticated,
}

/// The policies of one endpoint, resolved at start-up (action, then
/// resource, then the global tier).
#[derive(Debug, Clone, Default)]
pub struct EndpointPolicies {
    pub anonymous: Option<Arc<Policy>>,
    pub authenticated: Option<Arc<Policy>>,
    /// What a password that must be hashed costs first: the `anonymous`
    /// policy this endpoint would have without the `public` tier (on a
    /// public route, guessing is not browsing).
    pub passwords: Option<Arc<Policy>>,
}

/// Every policy the server uses, and the backend that keeps their state.
pub struct RateLimiter {
    policies: Vec<Arc<Policy>>,
    pub token: Option<Arc<Policy>>,
    pub anonymous: Option<Arc<Policy>>,
    /// `anonymous` on routes that need no scope.
    pub public: Option<Arc<Policy>>,
    pub authenticated: Option<Arc<Policy>>,
    backend: Backend,
    /// `on_backend_error = "deny"`: refuse (503) when the backend fails.
    deny_on_error: bool,
    /// Decisions the backend could not make (§12 metrics).
    pub backend_errors: std::sync::atomic::AtomicU64,
    /// When the last backend failure was logged (ms since start).
    logged_at: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
    pub trusted: TrustedProxies,
}

enum Backend {
    Memory(memory::Memory),
    Redis(Box<redis::RedisBackend>),
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Result<RateLimiter, String> {
        let trusted = TrustedProxies::parse(&settings.trusted_proxies)?
            .reading(settings.forwarded_header == "forwarded");
        let backend = match settings.backend.as_str() {
            "redis" => Backend::Redis(Box::new(redis::RedisBackend::new(
                &settings.redis_url,
                settings.redis_timeout,
            )?)),
            _ => Backend::Memory(memory::Memory::default()),
        };
        let mut limiter = RateLimiter {
            policies: Vec::new(),
            token: None,
            anonymous: None,
            public: None,
            authenticated: None,
            backend,
            deny_on_error: settings.on_backend_error == "deny",
            backend_errors: Default::default(),
            logged_at: std::sync::atomic::AtomicU64::new(u64::MAX),
            started: std::time::Instant::now(),
            trusted,
        };
        limiter.token = limiter.policy("token", &settings.token);
        limiter.anonymous = limiter.policy("anonymous", &settings.anonymous);
        limiter.public = limiter.policy("public", &settings.public);
        limiter.authenticated = limiter.policy("authenticated", &settings.authenticated);
        Ok(limiter)
    }

    /// Registers a policy (start-up only); `None` when `tier` is off
    /// (0 requests or a zero period).
    pub fn policy(&mut self, name: &str, tier: &Tier) -> Option<Arc<Policy>> {
        if tier.requests == 0 || tier.period.is_zero() {
            return None;
        }
        let policy = Arc::new(Policy::new(self.policies.len(), name, tier));
        if let Backend::Memory(m) = &mut self.backend {
            m.add(&policy);
        }
        self.policies.push(policy.clone());
        Some(policy)
    }

    /// The global tiers.
    pub fn global(&self) -> EndpointPolicies {
        EndpointPolicies {
            anonymous: self.anonymous.clone(),
            authenticated: self.authenticated.clone(),
            passwords: self.anonymous.clone(),
        }
    }

    /// The policies of a declaration that may override `anonymous` and
    /// `authenticated` (`name` identifies it in `RateLimit-Policy`).
    pub fn overridden(&mut self, name: &str, o: &RateLimitOverride) -> EndpointPolicies {
        let tier = |t: &RateTier| Tier {
            requests: t.requests,
            period: t.period,
            burst: t.burst,
        };
        let anonymous = match &o.anonymous {
            Some(t) => self.policy(&format!("anonymous.{name}"), &tier(t)),
            None => self.anonymous.clone(),
        };
        EndpointPolicies {
            passwords: anonymous.clone(),
            anonymous,
            authenticated: match &o.authenticated {
                Some(t) => self.policy(&format!("authenticated.{name}"), &tier(t)),
                None => self.authenticated.clone(),
            },
        }
    }

    /// Counts a routed request: per caller in the `authenticated` tier when
    /// its credentials are valid (`known`), else per client IP in
    /// `anonymous`. `Ok(None)` when that tier is off here.
    pub async fn decide(
        &self,
        limits: &EndpointPolicies,
        known: Option<Who>,
        ip: Option<IpAddr>,
    ) -> Result<Option<Decision>, ApiError> {
        let (policy, who) = match known {
            Some(who) => (&limits.authenticated, who),
            None => (&limits.anonymous, Who::ip(ip)),
        };
        match policy {
            Some(p) => self.check(p, &who).await,
            None => Ok(None),
        }
    }

    /// Counts one request of `who` against `policy`. `Ok(None)`: the
    /// backend failed and `on_backend_error` lets the request through
    /// (without rate-limit headers); `Err`: it failed and the request is
    /// refused (503).
    pub async fn check(
        &self,
        policy: &Arc<Policy>,
        who: &Who,
    ) -> Result<Option<Decision>, ApiError> {
        use std::sync::atomic::Ordering;
        let decided = match &self.backend {
            Backend::Memory(m) => Ok(m.check(policy, who)),
            Backend::Redis(r) => r.check(policy, who).await,
        };
        let failure = match decided {
            Ok(d) => {
                let counter = if d.allowed {
                    &policy.allowed
                } else {
                    &policy.refused
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(d));
            }
            Err(e) => e,
        };
        self.backend_errors.fetch_add(1, Ordering::Relaxed);
        policy.backend_errors.fetch_add(1, Ordering::Relaxed);
        // One log line per outage second, not one per request.
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.logged_at.load(Ordering::Relaxed);
        if last == u64::MAX || now.saturating_sub(last) >= 1000 {
            self.logged_at.store(now, Ordering::Relaxed);
            tracing::warn!(
                error = %failure.0,
                on_backend_error = if self.deny_on_error { "deny" } else { "allow" },
                "rate limiter backend unavailable"
            );
        }
        if self.deny_on_error {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "RATE_LIMIT_UNAVAILABLE",
                "The rate limiter cannot decide right now; retry shortly.",
            )
            .header(http::header::RETRY_AFTER, "1"))
        } else {
            Ok(None)
        }
    }

    /// Drops idle state (callers whose allowance is whole again), so
    /// memory follows active callers, not every caller ever seen. Redis
    /// expires its keys itself.
    pub fn forget_idle(&self) {
        if let Backend::Memory(m) = &self.backend {
            m.forget_idle();
        }
    }

    /// Whether a failed backend refuses requests (`on_backend_error =
    /// "deny"`): then a Redis outage makes the instance unusable, and
    /// `/health` says so.
    pub fn denies_on_error(&self) -> bool {
        self.deny_on_error
    }

    /// For `/health`: `None` without Redis, else whether a decision can be
    /// made now.
    pub async fn redis_ok(&self) -> Option<bool> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis(r) => Some(r.ping().await),
        }
    }

    /// Per policy: decisions allowed and refused, and backend failures,
    /// so far.
    pub fn counts(&self) -> Vec<PolicyCounts> {
        use std::sync::atomic::Ordering;
        self.policies
            .iter()
            .map(|p| PolicyCounts {
                name: p.name.clone(),
                allowed: p.allowed.load(Ordering::Relaxed),
                refused: p.refused.load(Ordering::Relaxed),
                backend_errors: p.backend_errors.load(Ordering::Relaxed),
            })
            .collect()
    }
}

pub const LIMIT: HeaderName = HeaderName::from_static("x-rate-limit-limit");
pub const REMAINING: HeaderName = HeaderName::from_static("x-rate-limit-remaining");
pub const RESET: HeaderName = HeaderName::from_static("x-rate-limit-reset");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds, rounded up: a client waiting that long is never early.
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Decision {
    /// The headers every limited response carries: Yii's `X-Rate-Limit-*`
    /// and the IETF fields (draft-ietf-httpapi-ratelimit-headers-10:
    /// `RateLimit-Policy: "name";q=…;w=…`, `RateLimit: "name";r=…;t=…`).
    pub fn write_headers(&self, h: &mut HeaderMap) {
        let p = &self.policy;
        let reset = secs(self.reset);
        h.insert(LIMIT, HeaderValue::from(p.burst));
        h.insert(REMAINING, HeaderValue::from(self.remaining));
        h.insert(RESET, HeaderValue::from(reset));
        if let Some(v) = &p.policy_header {
            h.insert(RATELIMIT_POLICY, v.clone());
        }
        if let Ok(v) =
            HeaderValue::from_str(&format!("{};r={};t={reset}", p.quoted, self.remaining))
        {
            h.insert(RATELIMIT, v);
        }
    }

    /// 429 in the §7 form, with `Retry-After` and the rate-limit headers.
    pub fn refusal(&self) -> ApiError {
        let wait = secs(self.retry_after).max(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!(
                "Rate limit of {} per {} s{} exceeded ({}); retry in {wait} s.",
                plural(self.policy.requests, "request"),
                secs(self.policy.period),
                if self.policy.burst > self.policy.requests {
                    format!(", in bursts of up to {}", self.policy.burst)
                } else {
                    String::new()
                },
                self.policy.name
            ),
        )
        .header(http::header::RETRY_AFTER, &wait.to_string())
    }
}
