//! restkit's own `restkit_users` table: accounts that sign in with a
//! password (§8). Passwords are stored as Argon2id PHC strings and checked
//! in `spawn_blocking`, with a dummy hash for unknown names so timing does
//! not reveal who exists.
//!
//! Argon2id is deliberately expensive (about 19 MiB and tens of
//! milliseconds per check), so it is bounded: at most one check per core
//! runs at once, a check waits at most [`HASH_WAIT`] for its turn (then
//! 503), and a successful check is remembered for [`VERIFIED_TTL`] under a
//! key that includes the stored hash, so a changed password or a removed
//! user takes effect at once. (Unbounded, 50 clients sending a wrong
//! password took a process from 66 MB to 6.6 GB.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use serde_json::Value;

use crate::error::ApiError;
use crate::model::Resource;
use crate::store::{ListQuery, Scope, Selection, Store};

/// `restkit_users`, declared with restkit's other own tables.
fn resource() -> &'static Arc<Resource> {
    crate::store::own::users()
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

/// Longest a password check waits for a free hashing slot.
pub const HASH_WAIT: Duration = Duration::from_secs(2);

/// How long a successful check is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// Most remembered checks; past it, expired ones are dropped (or all).
const VERIFIED_MAX: usize = 10_000;

fn hash_slots() -> &'static Semaphore {
    static S: OnceLock<Semaphore> = OnceLock::new();
    S.get_or_init(|| {
        Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    })
}

/// Runs Argon2 work on the blocking pool, at most one job per core at a
/// time; a job that cannot start within [`HASH_WAIT`] is a 503.
pub(crate) async fn hashing<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let slot = tokio::time::timeout(HASH_WAIT, hash_slots().acquire())
        .await
        .map_err(|_| {
            ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "AUTH_BUSY",
                "Too many password checks at once; retry in a moment.",
            )
            .header(http::header::RETRY_AFTER, "1")
        })?
        .map_err(ApiError::internal)?;
    // The slot travels with the job: if the request is cancelled while
    // Argon2 runs, the slot stays taken until the hashing really ends.
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        job()
    })
    .await
    .map_err(ApiError::internal)
}

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
    let hash = hashing(move || hash_password(&password)).await??;
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
    let hash = hashing(move || hash_password(&password)).await??;
    let r = resource();
    let scope = Scope::default().and(1, Value::from(username));
    let mut tx = store.begin_write().await?;
    let n = tx
        .update_where(r, &scope, &[(2, Value::from(hash))])
        .await?;
    tx.commit().await?;
    if n > 0 {
        let until = super::tokens::now() + tokens_live.as_secs() as i64;
        super::tokens::revoke_user(store, username, until).await?;
    }
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
    super::tokens::revoke_user(store, username, until).await?;
    let n = store
        .delete_where(
            resource(),
            &Selection {
                scope: &scope,
                filter: None,
                since: None,
            },
        )
        .await?;
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

/// Runs before a secret is checked for real (not remembered): the HTTP
/// layer charges the attempt to the caller's rate limit (§9), so guessing
/// costs the guesser's allowance before it costs the server an Argon2 hash.
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
    let ok = hashing(move || {
        let hash = if hash.is_empty() { dummy_hash() } else { &hash };
        PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await?;
    if ok && known {
        if let Some(d) = cached {
            verified().remember(d);
        }
    }
    Ok(ok && known)
}
