//! restkit's own tables — users, OAuth2 clients, refresh tokens,
//! revocations and sync tombstones — declared as models
//! like any resource, so the same migration code creates them. (The change
//! clock is one row of restkit's own DDL, in `migrate`.)

use std::sync::{Arc, OnceLock};

use super::sql::TOMBSTONES;
use crate::model::builder::*;
use crate::model::FieldType;

/// Every own table, as one model.
pub fn model() -> &'static ApiModel {
    static M: OnceLock<ApiModel> = OnceLock::new();
    M.get_or_init(|| {
        ApiModel::builder()
            .module(
                Module::new("/_restkit")
                    .resource(users_resource())
                    .resource(clients_resource())
                    .resource(refresh_tokens_resource())
                    .resource(revocations_resource())
                    .resource(codes_resource())
                    .resource(api_keys_resource())
                    .resource(secrets_resource()),
            )
            .module(
                Module::new("/_restkit_sync")
                    .resource(tombstones_resource())
                    .resource(deletions_kept_resource()),
            )
            .module(Module::new("/_restkit_schema").resource(schema_history_resource()))
            .build()
            .expect("restkit's own model is valid")
    })
}

/// `restkit_users`: accounts that sign in with a password (§8).
pub fn users() -> &'static Arc<Resource> {
    &model().modules[0].resources[0]
}

/// `restkit_clients`: OAuth2 clients (§8.1).
pub fn clients() -> &'static Arc<Resource> {
    &model().modules[0].resources[1]
}

/// `restkit_refresh_tokens`: refresh tokens, by hash only (§8.2).
pub fn refresh_tokens() -> &'static Arc<Resource> {
    &model().modules[0].resources[2]
}

/// `restkit_revocations`: revoked access tokens (`jti`) and token
/// families, until the last token they cover expires (§8.3).
pub fn revocations() -> &'static Arc<Resource> {
    &model().modules[0].resources[3]
}

/// `restkit_auth_codes`: authorization codes (§8.1), by hash only.
pub fn codes() -> &'static Arc<Resource> {
    &model().modules[0].resources[4]
}

/// `restkit_api_keys`: IP-bound API keys (§8.4), by hash only.
pub fn api_keys() -> &'static Arc<Resource> {
    &model().modules[0].resources[5]
}

/// `restkit_secrets`: secrets restkit generated once for every instance
/// sharing the database (the JWT signing key on PostgreSQL, the cursor
/// and form secret) — see [`shared_value`].
pub fn secrets() -> &'static Arc<Resource> {
    &model().modules[0].resources[6]
}

fn secrets_resource() -> Resource {
    Resource::new("secrets", "restkit_secrets")
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(Field::new("name", FieldType::String).required().unique())
        .field(Field::new("value", FieldType::String).required().hidden())
        .field(Field::new("createdAt", FieldType::DateTime).created_at())
}

/// The value stored under `name`, or — the first time — `make()`'s,
/// stored. Decided in one write transaction, which every writer of every
/// instance takes in turn: instances starting at once agree on one value.
pub async fn shared_value(
    store: &super::Store,
    name: &str,
    make: impl Fn() -> Result<String, String>,
) -> Result<String, super::StoreError> {
    // Writers of several instances run at once on PostgreSQL: the one
    // whose insert loses (a duplicate) reads the winner's value.
    match store_value(store, name, &make).await {
        Err(super::StoreError::Unique { .. }) => store_value(store, name, &make).await,
        other => other,
    }
}

async fn store_value(
    store: &super::Store,
    name: &str,
    make: &impl Fn() -> Result<String, String>,
) -> Result<String, super::StoreError> {
    let r = secrets();
    let mut tx = store.begin_write().await?;
    let found = rows_where_in(&mut tx, r, "name", name.into(), 1).await?;
    if let Some(v) = found.first().and_then(|row| row["value"].as_str()) {
        return Ok(v.to_string());
    }
    let value = make().map_err(super::StoreError::Other)?;
    let fields = [r.primary_key];
    let row = values(r, &[("name", name.into()), ("value", value.clone().into())]);
    tx.insert(r, &row, &fields).await?;
    tx.commit().await?;
    Ok(value)
}

fn api_keys_resource() -> Resource {
    Resource::new("api_keys", "restkit_api_keys")
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(Field::new("keyHash", FieldType::String).required().unique())
        .field(Field::new("userId", FieldType::Integer).required())
        .field(Field::new("username", FieldType::String).required())
        // The IP the key was issued to; the only one it works from.
        .field(Field::new("ip", FieldType::String).required())
        .field(Field::new("expiresAt", FieldType::Integer).required())
        .field(Field::new("createdAt", FieldType::DateTime).created_at())
}

fn codes_resource() -> Resource {
    Resource::new("auth_codes", "restkit_auth_codes")
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(
            Field::new("codeHash", FieldType::String)
                .required()
                .unique(),
        )
        .field(Field::new("clientId", FieldType::String).required())
        .field(Field::new("redirectUri", FieldType::String).required())
        .field(Field::new("userId", FieldType::Integer).required())
        .field(Field::new("username", FieldType::String).required())
        .field(Field::new("scope", FieldType::String).required())
        // PKCE (RFC 7636): the S256 challenge, if one was sent.
        .field(Field::new("codeChallenge", FieldType::String))
        .field(Field::new("expiresAt", FieldType::Integer).required())
        .field(Field::new("used", FieldType::Boolean).required())
        // The refresh-token family issued for the code: a replayed code
        // revokes it.
        .field(Field::new("familyId", FieldType::String))
        .field(Field::new("createdAt", FieldType::DateTime).created_at())
}

fn clients_resource() -> Resource {
    Resource::new("clients", "restkit_clients")
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(
            Field::new("clientId", FieldType::String)
                .required()
                .unique(),
        )
        // Argon2id PHC string; none for a public client.
        .field(Field::new("secretHash", FieldType::String).hidden())
        // Space-separated lists, as OAuth2 writes scopes.
        .field(Field::new("grants", FieldType::String).required())
        .field(Field::new("scopes", FieldType::String).required())
        .field(Field::new("redirectUris", FieldType::String))
        .field(Field::new("createdAt", FieldType::DateTime).created_at())
}

fn refresh_tokens_resource() -> Resource {
    Resource::new("refresh_tokens", "restkit_refresh_tokens")
        .field(Field::new("id", FieldType::Integer).primary_key())
        // SHA-256 of the token (256 random bits: no slow hash needed).
        .field(
            Field::new("tokenHash", FieldType::String)
                .required()
                .unique(),
        )
        .field(
            Field::new("familyId", FieldType::String)
                .required()
                .indexed(),
        )
        .field(Field::new("clientId", FieldType::String).required())
        .field(Field::new("userId", FieldType::Integer))
        .field(Field::new("username", FieldType::String))
        .field(Field::new("scope", FieldType::String).required())
        .field(Field::new("expiresAt", FieldType::Integer).required())
        // Set when the token is exchanged (rotation) or its family revoked.
        .field(Field::new("used", FieldType::Boolean).required())
        .field(Field::new("createdAt", FieldType::DateTime).created_at())
}

fn revocations_resource() -> Resource {
    Resource::new("revocations", "restkit_revocations")
        .field(Field::new("id", FieldType::Integer).primary_key())
        // `jti` or `family`.
        .field(Field::new("kind", FieldType::String).required())
        .field(Field::new("value", FieldType::String).required())
        // Unix seconds: after it, every token the row covers has expired.
        .field(Field::new("expiresAt", FieldType::Integer).required())
        .field(Field::new("createdAt", FieldType::DateTime).created_at())
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

/// The history of migrations: the table where `migrate` records each one
/// it applied (see `migrate`).
pub const HISTORY: &str = "restkit_schema_history";

/// `restkit_schema_history`: one row per migration that changed
/// something or met a new declaration (§15; see `migrate`). Field order
/// is what `migrate` writes.
pub fn schema_history() -> &'static Arc<Resource> {
    &model().modules[2].resources[0]
}

fn schema_history_resource() -> Resource {
    Resource::new("schema_history", HISTORY)
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(Field::new("appliedAt", FieldType::DateTime).required())
        .field(
            Field::new("declarationHash", FieldType::String)
                .required()
                .indexed(),
        )
        // The declaration's storage facts, as JSON.
        .field(Field::new("declaration", FieldType::String).required())
        // What was done, as JSON.
        .field(Field::new("steps", FieldType::String).required())
}

/// `restkit_tombstones`: one row per deleted row of a sync table.
pub fn tombstones() -> &'static Arc<Resource> {
    &model().modules[1].resources[0]
}

/// `restkit_deletions_kept`: at most one row, where the kept tombstones
/// begin (see [`super::Store::prune_deletions`]).
pub fn deletions_kept() -> &'static Arc<Resource> {
    &model().modules[1].resources[1]
}

fn deletions_kept_resource() -> Resource {
    Resource::new("deletions_kept", "restkit_deletions_kept")
        .field(Field::new("id", FieldType::Integer).primary_key())
        // Tombstones of deletions before this time may be gone.
        .field(Field::new("keptFrom", FieldType::DateTime).required())
}

/// `restkit_tombstones`: one row per deleted row of a sync table (§6.7).
fn tombstones_resource() -> Resource {
    Resource::new("tombstones", TOMBSTONES)
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(Field::new("tableName", FieldType::String).required())
        .field(Field::new("recordId", FieldType::Integer).required())
        .field(Field::new("deletedAt", FieldType::DateTime).required())
        // The deleted row's owner and parent keys, so a sync read of a
        // private or nested resource reports only its caller's deletions.
        .field(Field::new("ownerId", FieldType::Integer))
        .field(Field::new("parentId", FieldType::Integer))
}

/// The rows of `r` whose `field` (an API name of restkit's own model)
/// equals `value`.
fn field_scope(
    r: &Resource,
    field: &str,
    value: serde_json::Value,
) -> Result<super::Scope, super::StoreError> {
    let index = r
        .field_index(field)
        .ok_or_else(|| super::StoreError::Other(format!("{} has no field {field}", r.table)))?;
    Ok(super::Scope::default().and(index, value))
}

/// Every field of `r`'s rows whose `field` equals `value` (at most
/// `limit`), for restkit's own lookups by name, hash or id.
pub async fn rows_where(
    store: &super::Store,
    r: &Resource,
    field: &str,
    value: serde_json::Value,
    limit: u64,
) -> Result<Vec<super::Record>, super::StoreError> {
    let scope = field_scope(r, field, value)?;
    rows(store, r, &scope, Vec::new(), limit).await
}

/// As [`rows_where`], inside the write transaction `tx`: what a write
/// decides from is read under the lock it writes under.
pub async fn rows_where_in(
    tx: &mut super::WriteTx,
    r: &Resource,
    field: &str,
    value: serde_json::Value,
    limit: u64,
) -> Result<Vec<super::Record>, super::StoreError> {
    let scope = field_scope(r, field, value)?;
    let fields: Vec<usize> = (0..r.fields.len()).collect();
    tx.list(r, &whole_rows(&fields, &scope, Vec::new(), None, limit))
        .await
}

/// Every field (`fields`: all of them) of the rows in `scope`, in `sort`
/// order after `after`, at most `limit`.
fn whole_rows<'a>(
    fields: &'a [usize],
    scope: &'a super::Scope,
    sort: Vec<super::SortKey>,
    after: Option<&'a [serde_json::Value]>,
    limit: u64,
) -> super::ListQuery<'a> {
    super::ListQuery {
        fields,
        selection: super::Selection {
            scope,
            filter: None,
            since: None,
        },
        sort,
        after,
        limit,
        offset: 0,
    }
}

/// Every field of `r`'s rows in `scope`, in `sort` order (then by key).
pub async fn rows(
    store: &super::Store,
    r: &Resource,
    scope: &super::Scope,
    sort: Vec<super::SortKey>,
    limit: u64,
) -> Result<Vec<super::Record>, super::StoreError> {
    rows_after(store, r, scope, sort, None, limit).await
}

/// As [`rows`], from after the keyset position `after` (the order's key
/// values of the last row seen).
pub async fn rows_after(
    store: &super::Store,
    r: &Resource,
    scope: &super::Scope,
    sort: Vec<super::SortKey>,
    after: Option<&[serde_json::Value]>,
    limit: u64,
) -> Result<Vec<super::Record>, super::StoreError> {
    let fields: Vec<usize> = (0..r.fields.len()).collect();
    store
        .list(r, &whole_rows(&fields, scope, sort, after, limit))
        .await
}

/// Deletes, in one transaction, at most `limit` rows of `r` whose integer
/// `field` (unix seconds) is below `before`; returns how many went. Bounded,
/// so pruning a large backlog never holds the single writer for long.
pub async fn delete_expired(
    store: &super::Store,
    r: &Resource,
    field: &str,
    before: i64,
    limit: u64,
) -> Result<u64, super::StoreError> {
    use sea_query::{Alias, Expr, ExprTrait, Query};
    let index = r
        .field_index(field)
        .ok_or_else(|| super::StoreError::Other(format!("{} has no field {field}", r.table)))?;
    let table = Alias::new(r.table.as_str());
    let key = Alias::new(r.fields[r.primary_key].column.as_str());
    let mut oldest = Query::select();
    oldest
        .from(table.clone())
        .column(key.clone())
        .and_where(Expr::col(Alias::new(r.fields[index].column.as_str())).lt(before))
        .limit(limit);
    let mut stmt = Query::delete();
    stmt.from_table(table)
        .and_where(Expr::col(key).in_subquery(oldest));
    let mut tx = store.begin_write().await?;
    let n = tx.execute(r, stmt).await?;
    tx.commit().await?;
    Ok(n)
}

/// The values of `pairs` (API field name → value) as the store's
/// (field index, value) list.
pub fn values(
    r: &Resource,
    pairs: &[(&str, serde_json::Value)],
) -> Vec<(usize, serde_json::Value)> {
    pairs
        .iter()
        .filter_map(|(name, v)| r.field_index(name).map(|i| (i, v.clone())))
        .collect()
}
