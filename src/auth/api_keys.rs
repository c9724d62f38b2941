//! IP-bound API keys (§8.4, as FreshRest had them): `POST
//! {auth.prefix}/authenticate` with a user's username and password returns
//! a key that works only from the IP address that asked for it, sent as
//! `X-API-Key`. Keys are 256 random bits, stored as SHA-256, and expire
//! after `auth.api_key_ttl`. Only modules that list `api_key` among their
//! credentials accept them.

use std::net::IpAddr;

use serde_json::json;

use super::tokens::{digest, now, random_token};
use super::Identity;
use crate::error::ApiError;
use crate::store::own::{self, rows_where};
use crate::store::Store;

/// The request header that carries a key.
pub const HEADER: &str = "x-api-key";

/// Issues a key for the user, usable from `ip` only.
pub async fn issue(
    store: &Store,
    user_id: i64,
    username: &str,
    ip: IpAddr,
    ttl_secs: i64,
) -> Result<String, ApiError> {
    let key = random_token();
    let r = own::api_keys();
    let values = own::values(
        r,
        &[
            ("keyHash", json!(digest(&key))),
            ("userId", json!(user_id)),
            ("username", json!(username)),
            ("ip", json!(ip.to_string())),
            ("expiresAt", json!(now() + ttl_secs)),
        ],
    );
    store.insert(r, &values, &[0]).await?;
    Ok(key)
}

/// The caller a key speaks for, when it is live and `ip` is the one it
/// was issued to.
pub async fn verify(store: &Store, key: &str, ip: Option<IpAddr>) -> Result<Identity, ApiError> {
    let refused =
        || ApiError::unauthorized("The API key is not valid from this address (or has expired).");
    let rows = rows_where(store, own::api_keys(), "keyHash", json!(digest(key)), 1).await?;
    let row = rows.first().ok_or_else(refused)?;
    let bound = row["ip"].as_str().unwrap_or_default();
    let from = ip.map(|ip| ip.to_string()).unwrap_or_default();
    if from.is_empty() || bound != from || row["expiresAt"].as_i64().unwrap_or_default() < now() {
        return Err(refused());
    }
    Ok(Identity::user(
        row["userId"].as_i64().unwrap_or_default(),
        row["username"].as_str().unwrap_or_default(),
        super::PASSWORD_SCOPES,
    ))
}
