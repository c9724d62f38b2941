//! restkit's own `restkit_users` table: accounts that sign in with a
//! password (§8). Passwords are stored as Argon2id PHC strings and checked
//! in `spawn_blocking`, with a dummy hash for unknown names so timing does
//! not reveal who exists.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use serde_json::Value;

use crate::error::ApiError;
use crate::model::builder::*;
use crate::model::FieldType;
use crate::store::{ListQuery, Scope, Selection, Store};

/// The table as a model, so migrations create it like any other.
pub fn model() -> ApiModel {
    ApiModel::builder()
        .module(Module::new("/_restkit").resource(users_resource()))
        .build()
        .expect("restkit's own model is valid")
}

fn users_resource() -> Resource {
    Resource::new("users", "restkit_users")
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(
            Field::new("username", FieldType::String)
                .required()
                .unique(),
        )
        .field(Field::new("passwordHash", FieldType::String).hidden())
        .field(Field::new("createdAt", FieldType::DateTime).created_at())
}

fn resource() -> &'static Arc<Resource> {
    static R: OnceLock<Arc<Resource>> = OnceLock::new();
    R.get_or_init(|| model().modules[0].resources[0].clone())
}

/// Argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// Creates a user; returns the id.
pub async fn add(store: &Store, username: &str, password: &str) -> Result<i64, ApiError> {
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    let r = resource();
    let rec = store
        .insert(
            r,
            &[(1, Value::from(username)), (2, Value::from(hash))],
            &[0],
        )
        .await?;
    Ok(rec.get("id").and_then(Value::as_i64).unwrap_or_default())
}

/// The user's id when `password` is theirs.
pub async fn verify(
    store: &Store,
    username: &str,
    password: &str,
) -> Result<Option<i64>, ApiError> {
    let r = resource();
    let scope = Scope::default().and(1, Value::from(username));
    let rows = store
        .list(
            r,
            &ListQuery {
                fields: &[0, 2],
                selection: Selection {
                    scope: &scope,
                    filter: None,
                    since: None,
                },
                sort: Vec::new(),
                after: None,
                limit: 1,
                offset: 0,
            },
        )
        .await?;
    let (id, hash) = match rows.first() {
        Some(rec) => (
            rec.get("id").and_then(Value::as_i64),
            rec.get("passwordHash")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        None => (None, dummy_hash().to_string()),
    };
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(if ok { id } else { None })
}
