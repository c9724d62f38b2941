//! restkit's own `restkit_users` table: accounts that sign in with a
//! password (§8). Passwords are stored as Argon2id PHC strings and checked
//! in the bounded hashing slots of [`super::hashing`], with a dummy hash
//! for unknown names so timing does not reveal who exists. A successful
//! check is remembered for [`VERIFIED_TTL`] under a key that includes the
//! stored hash, so a changed password or a removed user takes effect at
//! once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::hashing::{hashing, Hasher};
use crate::error::ApiError;
use crate::model::Resource;
use crate::store::{ListQuery, Scope, Selection, Store};

/// `restkit_users`, declared with restkit's other own tables.
fn resource() -> &'static Arc<Resource> {
    crate::store::own::users()
}

/// A hash of a password no account has, checked for unknown names so the
/// timing does not say who exists; made inside the first job that needs it.
fn dummy_hash(h: &mut Hasher) -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| h.hash("not a real password").unwrap_or_default())
}

/// How long a successful check is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// Most remembered checks; past it, expired ones are dropped (or all).
const VERIFIED_MAX: usize = 10_000;

/// Successful checks: digest of (process key, user id, stored hash,
/// password) → when checked. The password is never kept.
struct Verified {
    key: [u8; 32],
    seen: Mutex<HashMap<[u8; 32], Instant>>,
}

fn verified() -> &'static Verified {
    static V: OnceLock<Verified> = OnceLock::new();
    V.get_or_init(|| Verified {
        key: {
            let mut k = [0u8; 32];
            k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            k
        },
        seen: Mutex::new(HashMap::new()),
    })
}

impl Verified {
    fn digest(&self, id: i64, stored_hash: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(id.to_le_bytes());
        h.update((stored_hash.len() as u64).to_le_bytes());
        h.update(stored_hash.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn knows(&self, d: &[u8; 32]) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(d).is_some_and(|t| t.elapsed() < VERIFIED_TTL)
    }

    fn remember(&self, d: [u8; 32]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= VERIFIED_MAX {
            seen.retain(|_, t| t.elapsed() < VERIFIED_TTL);
            if seen.len() >= VERIFIED_MAX {
                seen.clear();
            }
        }
        seen.insert(d, Instant::now());
    }
}

/// Creates a user; returns the id.
pub async fn add(store: &Store, username: &str, password: &str) -> Result<i64, ApiError> {
    let password = password.to_string();
    let hash = hashing(move |h| h.hash(&password)).await??;
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

/// Replaces a user's password; `false` when there is no such user. Checks
/// remembered for the old password stop counting at once (their key holds
/// the old hash), and the user's tokens and API keys are cut off
/// ([`super::tokens::revoke_user`]).
pub async fn set_password(
    store: &Store,
    username: &str,
    password: &str,
    tokens_live: std::time::Duration,
) -> Result<bool, ApiError> {
    let password = password.to_string();
    let hash = hashing(move |h| h.hash(&password)).await??;
    let r = resource();
    let scope = Scope::default().and(1, Value::from(username));
    // The new hash and the cut-off commit together: a failure between them
    // must not leave the new password working beside the old sessions.
    let mut tx = store.begin_write().await?;
    let n = tx
        .update_where(r, &scope, &[(2, Value::from(hash))])
        .await?;
    if n > 0 {
        let until = super::tokens::now() + tokens_live.as_secs() as i64;
        super::tokens::revoke_user(&mut tx, username, until).await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// Every user: (id, username), by id.
pub async fn list(store: &Store) -> Result<Vec<(i64, String)>, ApiError> {
    let rows = crate::store::own::rows(store, resource(), &Scope::default(), Vec::new(), 1_000_000)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get("id").and_then(Value::as_i64).unwrap_or_default(),
                r.get("username")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect())
}

/// Removes a user; `false` when there is none. Whatever they hold is
/// cut off ([`super::tokens::revoke_user`]; `tokens_live` is the longest a
/// token of theirs can still live).
pub async fn remove(
    store: &Store,
    username: &str,
    tokens_live: std::time::Duration,
) -> Result<bool, ApiError> {
    let scope = Scope::default().and(1, Value::from(username));
    let until = super::tokens::now() + tokens_live.as_secs() as i64;
    // One transaction: a user is removed with everything they held, or
    // not at all.
    let mut tx = store.begin_write().await?;
    super::tokens::revoke_user(&mut tx, username, until).await?;
    let n = tx
        .delete_where(
            resource(),
            &Selection {
                scope: &scope,
                filter: None,
                since: None,
            },
        )
        .await?;
    tx.commit().await?;
    Ok(n > 0)
}

/// The user's id when `password` is theirs.
pub async fn verify(
    store: &Store,
    username: &str,
    password: &str,
    gate: &dyn PasswordGate,
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
        // Unknown user: a dummy hash (made inside the bounded job, the first
        // time) so the timing does not say who exists.
        None => (None, String::new()),
    };
    let ok = check_secret(id.unwrap_or(0), &hash, password, gate).await?;
    Ok(if ok { id } else { None })
}

pub use super::gate::{Open, PasswordGate};

/// Does `secret` match the Argon2id `stored_hash` (empty: an unknown
/// account, checked against a dummy hash so timing does not tell)? Bounded
/// and remembered as described in the module doc; shared by users'
/// passwords and clients' secrets (`id` and the salted hash key the memory).
pub(crate) async fn check_secret(
    id: i64,
    stored_hash: &str,
    secret: &str,
    gate: &dyn PasswordGate,
) -> Result<bool, ApiError> {
    let known = !stored_hash.is_empty();
    let cached = known.then(|| verified().digest(id, stored_hash, secret));
    if cached.as_ref().is_some_and(|d| verified().knows(d)) {
        return Ok(true);
    }
    gate.admit().await?;
    let secret = secret.to_string();
    let hash = stored_hash.to_string();
    let ok = hashing(move |h| {
        let hash = if hash.is_empty() {
            dummy_hash(h)
        } else {
            &hash
        };
        h.verify(&secret, hash)
    })
    .await?;
    if ok && known {
        if let Some(d) = cached {
            verified().remember(d);
        }
    }
    Ok(ok && known)
}
