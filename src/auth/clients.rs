//! OAuth2 clients (§8.1), in restkit's own `restkit_clients` table: the
//! grants, scopes and redirect URIs each may use, and — for confidential
//! clients — an Argon2id hash of the secret, checked with the same bounded,
//! remembered verification as users' passwords.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::store::own::{self, rows_where};
use crate::store::Store;

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The row id (keys the verification memory).
    pub id: i64,
    pub client_id: String,
    /// `None`: a public client (no secret; PKCE required).
    pub secret_hash: Option<String>,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn may_use(&self, grant: &str) -> bool {
        self.grants.iter().any(|g| g == grant)
    }
}

/// What `restkit clients add` (or a seed) registers.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub client_id: String,
    /// `None`: public.
    pub secret: Option<String>,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
}

fn words(v: Option<&Value>) -> Vec<String> {
    v.map(super::tokens::scope_words).unwrap_or_default()
}

fn from_row(row: &crate::store::Record) -> Client {
    Client {
        id: row.get("id").and_then(Value::as_i64).unwrap_or_default(),
        client_id: row
            .get("clientId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        secret_hash: row
            .get("secretHash")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        grants: words(row.get("grants")),
        scopes: words(row.get("scopes")),
        redirect_uris: words(row.get("redirectUris")),
    }
}

/// Registers a client. A client id or redirect URI with whitespace is
/// refused (the lists are space-separated, as OAuth2 writes scopes).
pub async fn add(store: &Store, new: &NewClient) -> Result<(), ApiError> {
    let bad = |s: &String| s.is_empty() || s.chars().any(char::is_whitespace);
    if bad(&new.client_id) || new.redirect_uris.iter().any(bad) || new.scopes.iter().any(bad) {
        return Err(ApiError::bad_body(
            "Client ids, scopes and redirect URIs are non-empty and contain no spaces.",
        ));
    }
    let hash = match &new.secret {
        Some(secret) => {
            let secret = secret.clone();
            Some(super::hashing::hashing(move |h| h.hash(&secret)).await??)
        }
        None => None,
    };
    let r = own::clients();
    let values = own::values(
        r,
        &[
            ("clientId", json!(new.client_id)),
            ("secretHash", hash.map(Value::from).unwrap_or(Value::Null)),
            ("grants", json!(new.grants.join(" "))),
            ("scopes", json!(new.scopes.join(" "))),
            ("redirectUris", json!(new.redirect_uris.join(" "))),
        ],
    );
    store.insert(r, &values, &[0]).await?;
    Ok(())
}

pub async fn find(store: &Store, client_id: &str) -> Result<Option<Client>, ApiError> {
    let rows = rows_where(store, own::clients(), "clientId", json!(client_id), 1).await?;
    Ok(rows.first().map(from_row))
}

pub async fn list(store: &Store) -> Result<Vec<Client>, ApiError> {
    let scope = crate::store::Scope::default();
    let rows = own::rows(store, own::clients(), &scope, Vec::new(), 100_000).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Removes a client; `false` when there was none.
pub async fn remove(store: &Store, client_id: &str) -> Result<bool, ApiError> {
    let r = own::clients();
    let index = r.field_index("clientId").unwrap_or(1);
    let scope = crate::store::Scope::default().and(index, json!(client_id));
    let n = store
        .delete_where(
            r,
            &crate::store::Selection {
                scope: &scope,
                filter: None,
                since: None,
            },
        )
        .await?;
    Ok(n > 0)
}

/// The client when `secret` is its secret. A public client authenticates
/// with its id alone (`secret` `None`); a confidential one never does.
/// Unknown ids cost the same Argon2 check as wrong secrets.
pub async fn authenticate(
    store: &Store,
    client_id: &str,
    secret: Option<&str>,
) -> Result<Option<Client>, ApiError> {
    let client = find(store, client_id).await?;
    // Some client libraries send a public client as `id:` (empty secret).
    let secret = secret.filter(|s| !s.is_empty());
    match (&client, secret) {
        (Some(c), None) if c.is_public() => Ok(client),
        (Some(c), Some(secret)) if !c.is_public() => {
            let hash = c.secret_hash.clone().unwrap_or_default();
            Ok(
                super::users::check_secret(c.id, &hash, secret, &super::users::Open)
                    .await?
                    .then_some(c.clone()),
            )
        }
        (None, Some(secret)) => {
            // Same work as a real check.
            super::users::check_secret(0, "", secret, &super::users::Open).await?;
            Ok(None)
        }
        _ => Ok(None),
    }
}
