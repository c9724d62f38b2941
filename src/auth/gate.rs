//! The gate a password or token check passes before it costs the server
//! real work (an Argon2 hash, an RSA verification): a leaf that both the
//! password and the token code use, so neither imports the other for it.

use crate::error::ApiError;

/// Runs before a secret is checked for real (not remembered): the HTTP
/// layer charges the attempt to the caller's rate limit (§9), so guessing
/// costs the guesser's allowance before it costs the server an Argon2 hash
/// (or, for a caller whose tokens failed lately, an RSA verification:
/// [`super::refusals`]).
#[async_trait::async_trait]
pub trait PasswordGate: Send + Sync {
    async fn admit(&self) -> Result<(), ApiError>;
}

/// No gate: the endpoint is limited before it reads credentials (the
/// OAuth2 endpoints' `token` tier).
pub struct Open;

#[async_trait::async_trait]
impl PasswordGate for Open {
    async fn admit(&self) -> Result<(), ApiError> {
        Ok(())
    }
}
