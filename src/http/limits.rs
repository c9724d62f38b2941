//! Rate limiting wired into HTTP (§9): each endpoint's policies, the
//! `token` tier on the OAuth2 routes, the rate-limit step's caller, and
//! the periodic clean-up of idle callers. The limiter itself is
//! [`crate::limit`], which knows nothing of routes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::{Route, Target};
use super::AppState;
use crate::limit::{ClientIp, EndpointPolicies, RateLimiter, Who};
use crate::model::RateLimitOverride;

/// The password gate of the identity step: an HTTP Basic password that is
/// not remembered from a recent success costs the client IP one request of
/// its `anonymous` allowance before Argon2 runs, so wrong guesses are
/// refused (429) before they cost the server a hash. A remembered one
/// costs nothing here. On a public route that is still the `anonymous`
/// tier, not the roomier `public` one: guessing is not browsing.
pub struct PasswordAttempts<'a> {
    pub limiter: &'a RateLimiter,
    pub policies: &'a EndpointPolicies,
    pub ip: Option<IpAddr>,
}

#[async_trait::async_trait]
impl crate::auth::users::PasswordGate for PasswordAttempts<'_> {
    async fn admit(&self) -> Result<(), crate::error::ApiError> {
        let Some(policy) = &self.policies.passwords else {
            return Ok(());
        };
        match self.limiter.check(policy, &Who::ip(self.ip)).await? {
            Some(d) if !d.allowed => {
                let mut refusal = d.refusal();
                let mut headers = http::HeaderMap::new();
                d.write_headers(&mut headers);
                for (k, v) in &headers {
                    refusal.headers.push((k.clone(), v.clone()));
                }
                Err(refusal)
            }
            _ => Ok(()),
        }
    }
}

/// Who the `authenticated` tier counts: the user, else the client of a
/// `client_credentials` token (never the same key); `None` for requests
/// without valid credentials (the `anonymous` tier's, by IP).
pub fn known(caller: &crate::auth::Caller) -> Option<Who> {
    match caller {
        crate::auth::Caller::Known(id) => match (&id.user_id, &id.client_id) {
            (Some(user), _) => Some(Who::User(*user)),
            (None, Some(client)) => Some(Who::Client(client.as_str().into())),
            (None, None) => None,
        },
        _ => None,
    }
}

/// Gives every endpoint its policies: an action's own, else its
/// resource's, else the global tier. A resource's override is one
/// allowance for all its endpoints; an action's is its own. A route that
/// needs no scope answers callers without credentials from the `public`
/// tier rather than `anonymous`, unless its declaration set `anonymous`.
pub fn assign(limiter: &mut RateLimiter, routes: &mut [Route]) {
    let mut by_resource: std::collections::HashMap<String, EndpointPolicies> = Default::default();
    for route in routes.iter_mut() {
        let prefix = route.module.prefix.trim_matches('/').replace('/', ".");
        for e in &mut route.endpoints {
            let (resource, action) = match &e.target {
                Target::Operation { controller, .. } => (controller.resource().cloned(), None),
                Target::Action {
                    action, controller, ..
                } => (
                    controller.as_ref().and_then(|c| c.resource().cloned()),
                    Some(action.clone()),
                ),
            };
            let base = match &resource {
                Some(r) => by_resource
                    .entry(format!("{prefix}.{}", r.name))
                    .or_insert_with_key(|name| limiter.overridden(name, &r.rate_limit))
                    .clone(),
                None => limiter.global(),
            };
            e.limits = match action {
                Some(a) if a.rate_limit != RateLimitOverride::default() => {
                    let path = a.path.trim_matches('/').replace('/', ".");
                    let name = match &resource {
                        Some(r) => format!("{prefix}.{}.{path}", r.name),
                        None => format!("{prefix}.{path}"),
                    };
                    let own = limiter.overridden(&name, &a.rate_limit);
                    let anonymous = if a.rate_limit.anonymous.is_some() {
                        own.anonymous
                    } else {
                        base.anonymous
                    };
                    EndpointPolicies {
                        passwords: anonymous.clone(),
                        anonymous,
                        authenticated: if a.rate_limit.authenticated.is_some() {
                            own.authenticated
                        } else {
                            base.authenticated
                        },
                    }
                }
                _ => base,
            };
            let inherited = match (&e.limits.anonymous, &limiter.anonymous) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if e.scope.is_empty() && inherited {
                e.limits.anonymous = limiter.public.clone();
            }
        }
    }
}

/// The `token` tier (§9) on the OAuth2 endpoints: per client IP, before
/// any credential is looked at.
pub async fn token_tier(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let who = client(&req);
    // The request line names the address: attempts at these endpoints
    // are traceable to it.
    let logged = req
        .extensions()
        .get::<ClientIp>()
        .map(|c| format!("ip:{}", c.0))
        .unwrap_or_else(|| "-".into());
    // OPTIONS (a CORS preflight) carries no credentials: it is the
    // anonymous tier's, and does not spend a sign-in.
    let policy = if req.method() == http::Method::OPTIONS {
        &state.limiter.anonymous
    } else {
        &state.limiter.token
    };
    let decision = match policy {
        Some(policy) => state.limiter.check(policy, &who).await,
        None => Ok(None),
    };
    // Over the limit is §7's 429, which OAuth2 clients read too: with
    // RFC 6749's `error` (`temporarily_unavailable`: "unable to handle the
    // request due to a temporary overloading") and `error_description`,
    // Authlib and its kin report why rather than a bare status.
    let mut res = match &decision {
        Err(refused) => refused
            .clone()
            .oauth("temporarily_unavailable")
            .into_response(),
        Ok(Some(d)) if !d.allowed => d.refusal().oauth("temporarily_unavailable").into_response(),
        Ok(_) => next.run(req).await,
    };
    if let Ok(Some(d)) = decision {
        d.write_headers(res.headers_mut());
    }
    res.extensions_mut()
        .insert(super::marks::LoggedCaller(Arc::from(logged)));
    res
}

/// The caller's address as the edge layer found it ([`Who::ip`]).
fn client(req: &Request) -> Who {
    Who::ip(req.extensions().get::<ClientIp>().map(|c| c.0))
}

/// Forgets idle callers once a minute while the app lives.
pub fn forget_idle_periodically(state: std::sync::Weak<AppState>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            match state.upgrade() {
                Some(s) => s.limiter.forget_idle(),
                None => return,
            }
        }
    });
}
