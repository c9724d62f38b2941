//! The authorization step (§8.5): a route declares the scope each method
//! needs (default: read → `basic`, write → `write`); an identified caller
//! without it gets 403 with `WWW-Authenticate: Bearer
//! error="insufficient_scope"`.
//!
//! Anonymous callers pass this step for now: the demo's resources are
//! open until the OAuth2 server lands, and then requiring a token is
//! decided here too. Ownership of rows (§8.6) is the table controller's.

use http::{header, StatusCode};

use super::Identity;
use crate::error::ApiError;

/// Does `identity` hold `required`? (Anonymous: see the module doc.)
pub fn authorize(required: &str, identity: Option<&Identity>) -> Result<(), ApiError> {
    let Some(identity) = identity else {
        return Ok(());
    };
    if required.is_empty() || identity.scopes.iter().any(|s| s == required) {
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
        let reader = Identity::user(1, "stan", &["basic"]);
        assert!(authorize("basic", Some(&reader)).is_ok());
        let e = authorize("write", Some(&reader)).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.code, "INSUFFICIENT_SCOPE");
        assert!(authorize("write", None).is_ok());
    }
}
