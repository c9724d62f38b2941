//! Access and refresh tokens (§8.2, §8.3).
//!
//! Access tokens are RS256 JWTs in the RFC 9068 profile (`typ: at+jwt`,
//! `kid`; `iss sub aud exp iat nbf jti client_id scope`). A user's token
//! also carries `uid` (and `sub` is that id); a `client_credentials`
//! token has no `uid` and its `sub` is the client id, so a user and a
//! client with the same id never become the same caller. Tokens issued
//! from a refresh token carry their family (`fam`).
//!
//! Refresh tokens are 256 random bits, stored as SHA-256 hashes, rotated
//! on every use; presenting a used one revokes its whole family and the
//! access tokens issued from it.
//!
//! Revocation is checked on every request against an in-process set: a
//! revocation made through this process counts at once, and the set
//! catches up with revocations other processes wrote to the database at
//! most [`REVOCATION_SYNC`] later — no database round trip per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::keys::KeySet;
use super::Identity;
use crate::error::ApiError;
use crate::store::own::{self, rows_where};
use crate::store::{Scope, Store, WriteTx};

/// Revocation rows read per statement when catching up.
const REVOCATION_PAGE: u64 = 1000;

/// How stale the revocation set may be about other processes' writes.
pub const REVOCATION_SYNC: Duration = Duration::from_secs(1);

/// Why a token whose `nbf` is still ahead is refused.
const NOT_YET: &str = "The token is not valid yet.";

/// Refusals decided after the signature verified: the token is one this
/// server signed (expired, say), which clients send in the normal course
/// of things — not a forgery.
const AFTER_SIGNATURE: &[&str] = &[
    "The token has expired.",
    NOT_YET,
    "The token was issued by someone else.",
    "The token is for another audience.",
    "The token lacks jti, sub, client_id or scope.",
];

/// Was the token refused for `why` signed by this server?
fn signed_here(why: &str) -> bool {
    AFTER_SIGNATURE.contains(&why)
}

/// Why a token that claims the current key but whose `jti` tag does not
/// match is refused (no RSA verification ran).
const UNTAGGED: &str = "The token was not issued here.";

/// Does a refusal for `why` make its sender's address pay before its next
/// token is verified? Only a failed signature does: an expired token of
/// ours is normal, and a token with a wrong tag cost an HMAC, not RSA, so
/// charging its sender would only lock out the real tokens sent from the
/// same address (a NAT, an IPv6 /64).
fn marks_sender(why: &str) -> bool {
    !signed_here(why) && why != UNTAGGED
}

/// Allowed clock skew when checking `exp` and `nbf`.
const LEEWAY: u64 = 5;

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User {
        id: i64,
        username: String,
    },
    /// `client_credentials`: the client itself.
    Client,
}

/// What an access token is issued for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: Subject,
    pub client_id: String,
    pub scope: Vec<String>,
    /// The refresh-token family it comes from, if any.
    pub family: Option<String>,
}

/// A verified token: its claims, its caller, and what revocation and
/// expiry checks need, prepared once per token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Value,
    pub identity: Identity,
    exp: i64,
    /// Revocation-set keys of its `jti` and family.
    jti_key: String,
    family_key: Option<String>,
}

impl Verified {
    fn new(claims: Value) -> Verified {
        Verified {
            identity: identity_of(&claims),
            exp: claims["exp"].as_i64().unwrap_or_default(),
            jti_key: Revocations::key("jti", claims["jti"].as_str().unwrap_or_default()),
            family_key: claims["fam"]
                .as_str()
                .map(|f| Revocations::key("family", f)),
            claims,
        }
    }
}

/// Revoked `jti`s and families, each until its tokens have expired.
#[derive(Default)]
pub struct Revocations {
    revoked: Mutex<HashMap<String, i64>>,
    /// How many entries `revoked` holds: none (the common case) needs no
    /// lock.
    count: std::sync::atomic::AtomicUsize,
    /// Where the catch-up stands: the (change time, id) of the last
    /// `restkit_revocations` row read; `None` before the first look.
    seen: Mutex<Option<(String, i64)>>,
    /// When the set last caught up with the database (unix ms).
    synced_ms: AtomicI64,
}

impl Revocations {
    fn key(kind: &str, value: &str) -> String {
        format!("{kind}:{value}")
    }

    fn is_revoked_key(&self, key: &str) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let set = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        set.get(key).is_some_and(|until| *until >= now())
    }

    fn remember(&self, kind: &str, value: &str, until: i64) {
        let mut set = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() > 100_000 {
            let t = now();
            set.retain(|_, until| *until >= t);
        }
        set.insert(Self::key(kind, value), until);
        self.count.store(set.len(), Ordering::Release);
    }

    /// Forgets revocations whose tokens have all expired by `now`: the
    /// set holds what can still be presented, not history.
    pub fn prune(&self, now: i64) {
        let mut set = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        set.retain(|_, until| *until >= now);
        self.count.store(set.len(), Ordering::Release);
    }

    /// How many revocations the set holds.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads revocations other processes wrote since the last look, when
    /// the last look is older than [`REVOCATION_SYNC`].
    async fn catch_up(&self, store: &Store) -> Result<(), ApiError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let last = self.synced_ms.load(Ordering::Relaxed);
        if now_ms - last < REVOCATION_SYNC.as_millis() as i64 {
            return Ok(());
        }
        self.synced_ms.store(now_ms, Ordering::Relaxed);
        // Every row after the last one seen, in (change time, id) order,
        // page by page, up to the horizon: writers of other instances
        // commit in any order, and a row whose time is past the horizon
        // may have a predecessor still in flight — it is read next time,
        // never skipped. A new process reads them all (expired ones are
        // skipped), and a burst of revocations elsewhere is never cut short.
        let horizon = store.horizon().await?;
        let r = own::revocations();
        let created = r
            .field_index("createdAt")
            .ok_or_else(|| ApiError::internal("revocations keep no createdAt"))?;
        let order = vec![crate::store::SortKey {
            field: created,
            descending: false,
        }];
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        loop {
            let after = seen.as_ref().map(|(time, id)| vec![json!(time), json!(id)]);
            let rows = own::rows_after(
                store,
                r,
                &Scope::default(),
                order.clone(),
                after.as_deref(),
                REVOCATION_PAGE,
            )
            .await?;
            let before = seen.clone();
            let mut past_horizon = false;
            for row in &rows {
                let time = row.get("createdAt").and_then(Value::as_str).unwrap_or("");
                // Applied at once, but the catch-up does not move past
                // the horizon: a revocation still in flight with an
                // earlier time is read next time.
                past_horizon |= time > horizon.as_str();
                if !past_horizon {
                    let id = row.get("id").and_then(Value::as_i64).unwrap_or_default();
                    seen = Some((time.to_string(), id));
                }
                if let (Some(kind), Some(value), Some(until)) = (
                    row.get("kind").and_then(Value::as_str),
                    row.get("value").and_then(Value::as_str),
                    row.get("expiresAt").and_then(Value::as_i64),
                ) {
                    if until >= now() {
                        self.remember(kind, value, until);
                    }
                }
            }
            // A full page that moved nothing on (times another program
            // wrote in another form compare out of order) ends the look.
            if past_horizon || (rows.len() as u64) < REVOCATION_PAGE || seen == before {
                break;
            }
        }
        let mut stored = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen > *stored {
            *stored = seen;
        }
        Ok(())
    }
}

/// Everything token work needs, built once.
pub struct Tokens {
    pub keys: KeySet,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub revocations: Revocations,
    /// Tokens whose signature and claims were checked: SHA-256 of the
    /// token → its claims. RSA verification costs about twice a whole
    /// request, so each token pays it once; time and revocation are still
    /// checked on every request.
    pub checked: Checked,
    /// Tokens refused lately and the addresses that sent them, so repeated
    /// failures are refused without another RSA verification
    /// ([`super::refusals`]).
    pub refusals: super::refusals::Refusals,
}

/// The verification memory of [`Tokens::checked`], bounded.
#[derive(Default)]
pub struct Checked(Mutex<HashMap<[u8; 32], std::sync::Arc<Verified>>>);

/// Most remembered tokens; past it, expired ones go (or all).
const CHECKED_MAX: usize = 10_000;

impl Checked {
    fn get(&self, key: &[u8; 32]) -> Option<std::sync::Arc<Verified>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    fn put(&self, key: [u8; 32], claims: std::sync::Arc<Verified>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CHECKED_MAX {
            let t = now();
            map.retain(|_, v| v.exp + (LEEWAY as i64) >= t);
            if map.len() >= CHECKED_MAX {
                map.clear();
            }
        }
        map.insert(key, claims);
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys)
            .finish()
    }
}

pub fn random_token() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn digest(token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// Why a token was not accepted (RFC 6750 `invalid_token`).
fn invalid(detail: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
        detail.to_string(),
    )
    .header(
        http::header::WWW_AUTHENTICATE,
        &format!(
            "Bearer realm=\"restkit\", error=\"invalid_token\", error_description=\"{detail}\""
        ),
    )
}

impl Tokens {
    /// A signed access token for `grant`: (token, claims).
    pub fn access_token(&self, grant: &Grant) -> Result<(String, Value), ApiError> {
        let iat = now();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + self.access_ttl.as_secs() as i64,
            "client_id": grant.client_id,
            "scope": grant.scope.join(" "),
        });
        match &grant.subject {
            Subject::User { id, username } => {
                claims["sub"] = json!(id.to_string());
                claims["uid"] = json!(id);
                claims["username"] = json!(username);
            }
            Subject::Client => claims["sub"] = json!(grant.client_id),
        }
        let id = uuid::Uuid::new_v4().to_string();
        let sub = claims["sub"].as_str().unwrap_or_default().to_string();
        let exp = claims["exp"].as_i64().unwrap_or_default();
        claims["jti"] = json!(format!("{id}.{}", self.keys.jti_tag(&id, &sub, exp)));
        if let Some(family) = &grant.family {
            claims["fam"] = json!(family);
        }
        let token = self.keys.sign(&claims).map_err(ApiError::internal)?;
        Ok((token, claims))
    }

    /// Checks signature (RS256 with a known `kid` only), type, issuer,
    /// audience, time and revocation; the claims and the caller.
    pub async fn verify(
        &self,
        token: &str,
        store: &Store,
    ) -> Result<std::sync::Arc<Verified>, ApiError> {
        self.verify_from(token, store, None, &super::gate::Open)
            .await
    }

    /// As [`Tokens::verify`], for a token sent from `ip`: a token refused
    /// lately is refused again without verifying, and when `ip` has sent
    /// failing credentials lately, a token that needs a real verification
    /// first passes `gate` (the IP's anonymous allowance), so a flood of
    /// forged tokens is refused by the limiter, not by RSA.
    pub async fn verify_from(
        &self,
        token: &str,
        store: &Store,
        ip: Option<std::net::IpAddr>,
        gate: &dyn super::gate::PasswordGate,
    ) -> Result<std::sync::Arc<Verified>, ApiError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let verified = match self.checked.get(&key) {
            Some(v) => {
                // Checked before: only time can have changed.
                if v.exp + (LEEWAY as i64) < now() {
                    return Err(invalid("The token has expired."));
                }
                v
            }
            None => {
                if let Some(why) = self.refusals.token(&key) {
                    if marks_sender(why) {
                        self.refusals.failed(ip);
                    }
                    return Err(invalid(why));
                }
                if !self.tag_matches(token) {
                    self.refusals.refuse(key, UNTAGGED);
                    return Err(invalid(UNTAGGED));
                }
                if self.refusals.failing(ip) {
                    gate.admit().await?;
                }
                self.refusals.verifying();
                match self.check_signed(token) {
                    Ok(claims) => {
                        let v = std::sync::Arc::new(Verified::new(claims));
                        self.checked.put(key, v.clone());
                        v
                    }
                    Err(why) => {
                        // "Not yet valid" may become valid: not remembered.
                        if why != NOT_YET {
                            self.refusals.refuse(key, why);
                        }
                        if marks_sender(why) {
                            self.refusals.failed(ip);
                        }
                        return Err(invalid(why));
                    }
                }
            }
        };
        self.revocations.catch_up(store).await?;
        let r = &self.revocations;
        if r.is_revoked_key(&verified.jti_key)
            || verified
                .family_key
                .as_deref()
                .is_some_and(|k| r.is_revoked_key(k))
        {
            return Err(invalid("The token has been revoked."));
        }
        Ok(verified)
    }

    /// The cheap check before RSA: a token claiming the current key must
    /// carry a `jti` whose tag matches its id, subject and expiry
    /// ([`KeySet::jti_tag`]). Tokens of previous keys (and unknown keys,
    /// refused at once by the RSA step) are not judged here.
    fn tag_matches(&self, token: &str) -> bool {
        use base64::Engine;
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return true; // refused by the full check, without RSA
        };
        if header.kid.as_deref() != Some(self.keys.kid.as_str()) {
            return true;
        }
        let claims = token
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
        let Some(claims) = claims else {
            return false;
        };
        let (Some(jti), Some(sub), Some(exp)) = (
            claims["jti"].as_str(),
            claims["sub"].as_str(),
            claims["exp"].as_i64(),
        ) else {
            return false;
        };
        match jti.split_once('.') {
            Some((id, tag)) => self.keys.jti_tag_matches(id, sub, exp, tag),
            None => false,
        }
    }

    /// Signature, header and registered claims, without revocation.
    pub fn verify_signed(&self, token: &str) -> Result<Value, ApiError> {
        self.check_signed(token).map_err(invalid)
    }

    /// [`Tokens::verify_signed`], refusals as the sentence that says why.
    fn check_signed(&self, token: &str) -> Result<Value, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "The token is not a JWT.")?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err("Only RS256 tokens are accepted.");
        }
        if !matches!(header.typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
            return Err("The token is not an access token (typ at+jwt).");
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.verifying(kid))
            .ok_or("The token's key is not known here.")?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.algorithms = vec![jsonwebtoken::Algorithm::RS256];
        v.leeway = LEEWAY;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => "The token has expired.",
                ImmatureSignature => NOT_YET,
                InvalidIssuer => "The token was issued by someone else.",
                InvalidAudience => "The token is for another audience.",
                InvalidSignature => "The token's signature is wrong.",
                _ => "The token is not valid.",
            }
        })?;
        let text = |name: &str| data.claims[name].as_str().is_some_and(|s| !s.is_empty());
        if !(text("jti") && text("sub") && text("client_id") && data.claims["scope"].is_string()) {
            return Err("The token lacks jti, sub, client_id or scope.");
        }
        Ok(data.claims)
    }

    /// Issues a refresh token in `family` (a new family when `None`).
    pub async fn refresh_token(
        &self,
        store: &Store,
        grant: &Grant,
        family: Option<&str>,
    ) -> Result<(String, String), ApiError> {
        let mut tx = store.begin_write().await?;
        let issued = self.insert_refresh(&mut tx, grant, family).await?;
        tx.commit().await?;
        Ok(issued)
    }

    /// Writes a new refresh token in `family` (a new family when `None`)
    /// inside `tx`: (token, family).
    async fn insert_refresh(
        &self,
        tx: &mut WriteTx,
        grant: &Grant,
        family: Option<&str>,
    ) -> Result<(String, String), ApiError> {
        let token = random_token();
        let family = family
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (user_id, username) = match &grant.subject {
            Subject::User { id, username } => (json!(id), json!(username)),
            Subject::Client => (Value::Null, Value::Null),
        };
        let r = own::refresh_tokens();
        let values = own::values(
            r,
            &[
                ("tokenHash", json!(digest(&token))),
                ("familyId", json!(family)),
                ("clientId", json!(grant.client_id)),
                ("userId", user_id),
                ("username", username),
                ("scope", json!(grant.scope.join(" "))),
                (
                    "expiresAt",
                    json!(now() + self.refresh_ttl.as_secs() as i64),
                ),
                ("used", json!(false)),
            ],
        );
        tx.insert(r, &values, &[0]).await?;
        Ok((token, family))
    }

    /// Exchanges a refresh token (rotation): the grant for the new access
    /// token and the new refresh token, or `Ok(None)` for any token that
    /// is not live for `client_id`. A used one revokes its family.
    ///
    /// `narrow` gets what the token was granted and answers the access
    /// token's scope (or refuses). Every refusal — this one, another
    /// client's token, an expired one — happens before anything is written,
    /// so it consumes nothing; and the old token is marked used in the
    /// transaction that writes its successor, so an exchange that fails
    /// half-way (a 503, a crash) leaves the old token live and the
    /// client's retry is not mistaken for reuse.
    pub async fn rotate_refresh_token<E: From<ApiError>>(
        &self,
        store: &Store,
        token: &str,
        client_id: &str,
        narrow: impl FnOnce(&Grant) -> Result<Vec<String>, E>,
    ) -> Result<Option<(Grant, String)>, E> {
        let r = own::refresh_tokens();
        let rows = rows_where(store, r, "tokenHash", json!(digest(token)), 1)
            .await
            .map_err(ApiError::from)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let family = row["familyId"].as_str().unwrap_or_default().to_string();
        if row["clientId"].as_str() != Some(client_id) {
            return Ok(None);
        }
        self.revocations.catch_up(store).await?;
        if self
            .revocations
            .is_revoked_key(&Revocations::key("family", &family))
        {
            return Ok(None);
        }
        if row["used"].as_bool() == Some(true) {
            tracing::warn!(family = %family, "a used refresh token was presented: family revoked");
            self.revoke_family(store, &family).await?;
            return Ok(None);
        }
        if row["expiresAt"].as_i64().unwrap_or_default() < now() {
            return Ok(None);
        }
        let subject = match (row["userId"].as_i64(), row["username"].as_str()) {
            (Some(id), Some(name)) => Subject::User {
                id,
                username: name.to_string(),
            },
            _ => Subject::Client,
        };
        let granted = Grant {
            subject,
            client_id: client_id.to_string(),
            scope: scope_words(&row["scope"]),
            family: Some(family.clone()),
        };
        let scope = narrow(&granted)?;
        // Mark it used only if it still is not: of two concurrent uses one
        // wins, and the other is a reuse.
        let id = row["id"].as_i64().unwrap_or_default();
        let unused = Scope::default()
            .and(0, json!(id))
            .and(r.field_index("used").unwrap_or(8), json!(false));
        let mut tx = store.begin_write().await.map_err(ApiError::from)?;
        let n = tx
            .update_where(r, &unused, &own::values(r, &[("used", json!(true))]))
            .await
            .map_err(ApiError::from)?;
        if n == 0 {
            tracing::warn!(family = %family, "a used refresh token was presented: family revoked");
            let revoked = self.revoke_family_in(&mut tx, &family).await?;
            tx.commit().await.map_err(ApiError::from)?;
            self.remember(revoked);
            return Ok(None);
        }
        // The new refresh token keeps what was granted (RFC 6749 §6), even
        // when this access token is narrowed.
        let (refresh, _) = self
            .insert_refresh(&mut tx, &granted, Some(&family))
            .await?;
        tx.commit().await.map_err(ApiError::from)?;
        Ok(Some((Grant { scope, ..granted }, refresh)))
    }

    /// The refresh token's row, if `token` is one (live or not).
    pub async fn find_refresh(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Option<crate::store::Record>, ApiError> {
        let rows = rows_where(
            store,
            own::refresh_tokens(),
            "tokenHash",
            json!(digest(token)),
            1,
        )
        .await?;
        Ok(rows.into_iter().next())
    }

    /// Revokes a family: its refresh tokens die, and the access tokens
    /// issued from it are refused until they would have expired anyway —
    /// both in one transaction, so a failure leaves neither half.
    pub async fn revoke_family(&self, store: &Store, family: &str) -> Result<(), ApiError> {
        let mut tx = store.begin_write().await?;
        let revoked = self.revoke_family_in(&mut tx, family).await?;
        tx.commit().await?;
        self.remember(revoked);
        Ok(())
    }

    /// [`Tokens::revoke_family`]'s writes, inside `tx`; what to
    /// [`Tokens::remember`] once it has committed.
    async fn revoke_family_in(
        &self,
        tx: &mut WriteTx,
        family: &str,
    ) -> Result<Option<Revoked>, ApiError> {
        let r = own::refresh_tokens();
        let scope = Scope::default().and(r.field_index("familyId").unwrap_or(2), json!(family));
        tx.update_where(r, &scope, &own::values(r, &[("used", json!(true))]))
            .await?;
        // Until the last token the family could hold has expired: its
        // refresh tokens too (one inserted by an exchange racing this
        // revocation is refused at use, by this entry).
        let ttl = self.access_ttl.max(self.refresh_ttl).as_secs() as i64;
        self.record_revocation_in(tx, "family", family, now() + ttl + LEEWAY as i64)
            .await
    }

    /// Revokes one access token until its `exp`.
    pub async fn revoke_jti(&self, store: &Store, jti: &str, exp: i64) -> Result<(), ApiError> {
        let mut tx = store.begin_write().await?;
        let revoked = self
            .record_revocation_in(&mut tx, "jti", jti, exp + LEEWAY as i64)
            .await?;
        tx.commit().await?;
        self.remember(revoked);
        Ok(())
    }

    /// Writes a revocation row inside `tx`; `None` when this process knows
    /// it already (a replayed dead token, again: nothing to write).
    async fn record_revocation_in(
        &self,
        tx: &mut WriteTx,
        kind: &'static str,
        value: &str,
        until: i64,
    ) -> Result<Option<Revoked>, ApiError> {
        if self
            .revocations
            .is_revoked_key(&Revocations::key(kind, value))
        {
            return Ok(None);
        }
        let r = own::revocations();
        let values = own::values(
            r,
            &[
                ("kind", json!(kind)),
                ("value", json!(value)),
                ("expiresAt", json!(until)),
            ],
        );
        tx.insert(r, &values, &[0]).await?;
        Ok(Some(Revoked {
            kind,
            value: value.to_string(),
            until,
        }))
    }

    /// Makes a committed revocation count in this process at once (other
    /// processes read it within [`REVOCATION_SYNC`]). Only after the
    /// commit: a revocation that rolled back must not refuse anything.
    fn remember(&self, revoked: Option<Revoked>) {
        if let Some(r) = revoked {
            self.revocations.remember(r.kind, &r.value, r.until);
        }
    }
}

/// A revocation written in a transaction, to remember once committed.
struct Revoked {
    kind: &'static str,
    value: String,
    until: i64,
}

/// Authorization codes live this long (§8.1).
pub const CODE_TTL: i64 = 600;

/// What a user approved at `/authorize`, for a code.
#[derive(Debug, Clone)]
pub struct Approval {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: i64,
    pub username: String,
    pub scope: Vec<String>,
    /// PKCE S256 challenge.
    pub challenge: Option<String>,
}

/// Is `verifier` (RFC 7636 §4.1: 43–128 unreserved characters) the one
/// whose S256 challenge is `challenge`?
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    // Constant time: the challenge is not secret, but it costs nothing.
    computed.len() == challenge.len()
        && computed
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Tokens {
    /// A single-use code for `approval`, valid [`CODE_TTL`] seconds.
    pub async fn issue_code(&self, store: &Store, approval: &Approval) -> Result<String, ApiError> {
        let code = random_token();
        let r = own::codes();
        let values = own::values(
            r,
            &[
                ("codeHash", json!(digest(&code))),
                ("clientId", json!(approval.client_id)),
                ("redirectUri", json!(approval.redirect_uri)),
                ("userId", json!(approval.user_id)),
                ("username", json!(approval.username)),
                ("scope", json!(approval.scope.join(" "))),
                (
                    "codeChallenge",
                    approval
                        .challenge
                        .clone()
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                ),
                ("expiresAt", json!(now() + CODE_TTL)),
                ("used", json!(false)),
            ],
        );
        store.insert(r, &values, &[0]).await?;
        Ok(code)
    }

    /// Redeems a code for `client_id` (RFC 6749 §4.1.3, RFC 7636 §4.6):
    /// `Ok(Err(why))` for any code that may not be redeemed. A code used
    /// before revokes what it was exchanged for. On success, the grant
    /// (its `family` set: the tokens issued for it go there) and, when
    /// `with_refresh`, the refresh token — written in the transaction that
    /// consumes the code, so a failure leaves the code unused.
    pub async fn use_code(
        &self,
        store: &Store,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        with_refresh: bool,
    ) -> Result<Result<(Grant, Option<String>), &'static str>, ApiError> {
        let r = own::codes();
        let rows = rows_where(store, r, "codeHash", json!(digest(code)), 1).await?;
        let Some(row) = rows.first() else {
            return Ok(Err("The code is not valid."));
        };
        if row["clientId"].as_str() != Some(client_id) {
            return Ok(Err("The code was issued to another client."));
        }
        let id = row["id"].as_i64().unwrap_or_default();
        // Used, and the family its tokens will belong to, in one write: a
        // replay always finds what to revoke.
        let family = uuid::Uuid::new_v4().to_string();
        let scope = Scope::default()
            .and(0, json!(id))
            .and(r.field_index("used").unwrap_or(9), json!(false));
        let mut tx = store.begin_write().await?;
        let n = tx
            .update_where(
                r,
                &scope,
                &own::values(r, &[("used", json!(true)), ("familyId", json!(family))]),
            )
            .await?;
        if n == 0 {
            // Replayed: whatever the first exchange issued dies (RFC 6749
            // §4.1.2).
            let again = own::rows_where_in(&mut tx, r, "id", json!(id), 1).await?;
            let mut revoked = None;
            if let Some(family) = again.first().and_then(|row| row["familyId"].as_str()) {
                tracing::warn!(family = %family, "an authorization code was replayed: its tokens are revoked");
                revoked = self.revoke_family_in(&mut tx, family).await?;
            }
            tx.commit().await?;
            self.remember(revoked);
            return Ok(Err("The code has already been used."));
        }
        // A code refused from here on stays consumed (RFC 6749 §4.1.2: one
        // attempt per code): the mark commits, nothing is issued.
        let refused = if row["expiresAt"].as_i64().unwrap_or_default() < now() {
            Some("The code has expired.")
        } else {
            let stored = row["redirectUri"].as_str().unwrap_or_default();
            if !stored.is_empty() && redirect_uri != Some(stored) {
                Some("redirect_uri differs from the authorization request's.")
            } else {
                match (row["codeChallenge"].as_str(), verifier) {
                    (Some(challenge), Some(v)) if pkce_matches(v, challenge) => None,
                    (Some(_), _) => Some("code_verifier does not match the code_challenge."),
                    (None, Some(_)) => {
                        Some("code_verifier sent for a code issued without a challenge.")
                    }
                    (None, None) => None,
                }
            }
        };
        if let Some(why) = refused {
            tx.commit().await?;
            return Ok(Err(why));
        }
        let grant = Grant {
            subject: Subject::User {
                id: row["userId"].as_i64().unwrap_or_default(),
                username: row["username"].as_str().unwrap_or_default().to_string(),
            },
            client_id: client_id.to_string(),
            scope: scope_words(&row["scope"]),
            family: Some(family),
        };
        let refresh = if with_refresh {
            let (token, _) = self
                .insert_refresh(&mut tx, &grant, grant.family.as_deref())
                .await?;
            Some(token)
        } else {
            None
        };
        tx.commit().await?;
        Ok(Ok((grant, refresh)))
    }
}

/// Cuts a user off (their password changed, or they were removed): their
/// refresh tokens die, the families they belong to are revoked until
/// `until` (unix seconds) — so access tokens issued from them are refused
/// by every process within [`REVOCATION_SYNC`] — and their API keys go.
/// All inside `tx`, with whatever else its caller writes: a user is cut
/// off entirely or not at all.
pub async fn revoke_user(tx: &mut WriteTx, username: &str, until: i64) -> Result<(), ApiError> {
    let r = own::refresh_tokens();
    let rows = own::rows_where_in(tx, r, "username", json!(username), 1_000_000).await?;
    let mut families: Vec<&str> = rows
        .iter()
        .filter_map(|row| row["familyId"].as_str())
        .collect();
    families.sort_unstable();
    families.dedup();
    tx.update_where(
        r,
        &Scope::default().and(r.field_index("username").unwrap_or(5), json!(username)),
        &own::values(r, &[("used", json!(true))]),
    )
    .await?;
    let revocations = own::revocations();
    for family in families {
        let values = own::values(
            revocations,
            &[
                ("kind", json!("family")),
                ("value", json!(family)),
                ("expiresAt", json!(until)),
            ],
        );
        tx.insert(revocations, &values, &[0]).await?;
    }
    let keys = own::api_keys();
    let scope = Scope::default().and(keys.field_index("username").unwrap_or(3), json!(username));
    tx.delete_where(
        keys,
        &crate::store::Selection {
            scope: &scope,
            filter: None,
            since: None,
        },
    )
    .await?;
    Ok(())
}

/// A space-separated scope (or grant) list, as OAuth2 writes it.
pub(crate) fn scope_words(v: &Value) -> Vec<String> {
    v.as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The caller a verified token speaks for.
fn identity_of(claims: &Value) -> Identity {
    let scopes = scope_words(&claims["scope"]);
    Identity {
        user_id: claims["uid"].as_i64(),
        username: claims["username"].as_str().map(str::to_string),
        client_id: claims["client_id"].as_str().map(str::to_string),
        scopes,
    }
}
