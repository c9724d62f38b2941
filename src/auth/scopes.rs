//! The authorization step (§8.5): a route declares the scope each method
//! needs (default: read → `basic`, write → `write`); an identified caller
//! without it gets 403 with `WWW-Authenticate: Bearer
//! error="insufficient_scope"`.
//!
//! A caller without credentials gets 401 with a challenge naming the
//! credentials restkit accepts, wherever a scope is required; a route
//! declared with an empty scope is public. Ownership of rows (§8.6) is
//! the table controller's.

use http::{header, StatusCode};

use super::{Credentials, Identity};
use crate::error::ApiError;

/// Does `identity` hold `required`? An empty scope is public.
pub fn holds(required: &str, identity: Option<&Identity>) -> bool {
    required.is_empty() || identity.is_some_and(|i| i.scopes.iter().any(|s| s == required))
}

/// Does `identity` hold `required`? An empty scope is public; otherwise
/// 401 without credentials, 403 without the scope.
pub fn authorize(
    required: &str,
    identity: Option<&Identity>,
    accepted: &Credentials,
) -> Result<(), ApiError> {
    if required.is_empty() {
        return Ok(());
    }
    let Some(identity) = identity else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            format!("This needs credentials with the scope '{required}'."),
        )
        .header(
            header::WWW_AUTHENTICATE,
            &super::challenge(accepted, required),
        ));
    };
    if holds(required, Some(identity)) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "INSUFFICIENT_SCOPE",
        format!("This needs the scope '{required}'."),
    )
    .header(
        header::WWW_AUTHENTICATE,
        &format!("Bearer error=\"insufficient_scope\", scope=\"{required}\""),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_needs_the_routes_scope() {
        let accepted = &super::super::default_credentials(true);
        let authorize = |s: &str, i: Option<&Identity>| super::authorize(s, i, accepted);
        let reader = Identity::user(1, "stan", &["basic"]);
        assert!(authorize("basic", Some(&reader)).is_ok());
        let e = authorize("write", Some(&reader)).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.code, "INSUFFICIENT_SCOPE");
        let e = authorize("write", None).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(authorize("", None).is_ok(), "an empty scope is public");
    }
}
