//! The controller behind every declared table (§4.1, §4.2, §4.4, §6, §8.6).
//!
//! Per request it only: resolves the scope (parent keys from the path,
//! owner from the identity), parses the collection query, validates bodies
//! against schemas compiled at start-up, and asks the store. Read-only
//! fields sent by a client are ignored (so a client can PUT back what it
//! GOT); unknown and hidden fields are 422 `unknown_field`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{Controller, Ctx, Operation, Page, Reply, SyncInfo};
use crate::config::Settings;
use crate::error::{ApiError, FieldError};
use crate::format::{self, Content, Format};
use crate::model::plan::{owned_below, OwnedPath, ResourcePlan};
use crate::model::{schema, value, ApiModel, Module, OwnerPolicy, RelationKind, Resource};
use crate::query::cursor::CursorKey;
use crate::query::{
    count_preference, CollectionQuery, CountMode, Limits, Paging, Position, QueryError, QueryPolicy,
};
use crate::store::{
    sql, Count, ListQuery, Record, Scope, Selection, Since, StoreError, TombstoneScope, Within,
    WriteTx,
};
use crate::validate::Schema;

/// Most related records one has-many expansion embeds in each record
/// (the first ones by primary key); when there are more, the record's
/// `_links` names the relation's full collection. Documented in the README.
pub const MAX_EXPANDED: u64 = 20;

/// Most related records one response embeds, all expansions together: past
/// it the request is refused (400) rather than served. 100 books × 100
/// reviews of 1 KB made a 32 MB page that took a second to build; the
/// client lowers `limit` instead.
pub const MAX_EMBEDDED: u64 = 1000;

/// Most stored bytes (text as stored, other values counted as 8) one
/// response may embed through expansions: a thousand records of long text
/// would otherwise make a page tens of megabytes once escaped for HTML.
pub const MAX_EMBEDDED_BYTES: usize = 1 << 20;

/// Most records one bulk PUT may carry.
pub const MAX_BULK: usize = 1000;

/// About the most tombstones reported in one `_meta.deleted`: past it the
/// list is cut after a whole group of equal deletion times, and
/// `X-Sync-Timestamp` says to continue from the cut (never silently
/// capped).
const MAX_TOMBSTONES: u64 = 10_000;

/// A request's sync position in stored form (see [`Since`]).
struct SincePos {
    field: usize,
    time: String,
    key: Option<i64>,
}

impl SincePos {
    fn as_since(&self) -> Since<'_> {
        Since {
            field: self.field,
            time: &self.time,
            key: self.key,
        }
    }
}

/// What a sync page read tells [`TableController::sync_info`].
struct SyncPage {
    /// The mark read with the page.
    mark: String,
    has_more: bool,
    /// A feed: `timestamp=` without `sort`, ordered by change time and key.
    feed: bool,
    /// A feed's last record's position.
    last_position: Option<String>,
}

/// Start-up options every table controller shares.
#[derive(Debug, Clone)]
pub struct TableOptions {
    pub paging: Paging,
    pub limits: Limits,
    pub cursor_key: CursorKey,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            paging: Paging::default(),
            limits: Limits::default(),
            cursor_key: CursorKey::new(b"restkit"),
        }
    }
}

impl TableOptions {
    /// What every table controller needs from the settings. An empty
    /// `server.secret` gets a random one here, once per process.
    pub fn from_settings(settings: &Settings) -> TableOptions {
        let secret = if settings.server.secret.is_empty() {
            uuid::Uuid::new_v4().as_bytes().to_vec()
        } else {
            settings.server.secret.as_bytes().to_vec()
        };
        TableOptions {
            paging: Paging {
                default_per_page: settings.pagination.default_per_page,
                max_per_page: settings.pagination.max_per_page,
            },
            limits: crate::query::Limits::default(),
            cursor_key: crate::query::cursor::CursorKey::new(&secret),
        }
    }
}

/// A relation resolved against its target at start-up.
struct Link {
    name: String,
    kind: RelationKind,
    /// The target's plan: its readable fields and parent chain.
    target: ResourcePlan,
    /// Has-many: the target's foreign key; belongs-to: this resource's.
    key: usize,
}

pub struct TableController {
    resource: Arc<Resource>,
    /// Parents, paths and field sets, derived once.
    plan: ResourcePlan,
    links: Vec<Link>,
    /// Query rules for lists; `view_policy` for one record's `fields=`.
    policy: QueryPolicy,
    view_policy: QueryPolicy,
    cursor_key: CursorKey,
    create_schema: Schema,
    update_schema: Schema,
    /// Readable or known-but-not-writable fields, silently dropped from
    /// bodies.
    ignored_on_write: Vec<String>,
    /// What PATCH reads before merging: the updatable fields and the key
    /// (never an empty column list, even when nothing is updatable).
    patch_read: Vec<usize>,
    /// Rows of others that a delete here would take with it (nested
    /// resources with an owner, through any module): checked before every
    /// delete.
    owned_below: Vec<OwnedPath>,
    noun: String,
}

impl TableController {
    pub fn new(
        model: &ApiModel,
        module: &Module,
        plan: &ResourcePlan,
        options: &TableOptions,
    ) -> Result<Self, String> {
        let resource = plan.resource.clone();
        let create_schema = Schema::compile(schema::input_schema(&resource, true))?;
        let update_schema = Schema::compile(schema::input_schema(&resource, false))?;
        let ignored_on_write = resource
            .fields
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                !f.hidden && !plan.create_fields.contains(i) && !plan.update_fields.contains(i)
            })
            .map(|(_, f)| f.name.clone())
            .collect();
        let mut links = Vec::new();
        for rel in &resource.relations {
            let target = module
                .find_resource(&rel.resource)
                .ok_or_else(|| format!("relation {} targets no resource", rel.name))?;
            let key = match rel.kind {
                RelationKind::HasMany => target.field_index(&rel.foreign_key),
                RelationKind::BelongsTo => resource.field_index(&rel.foreign_key),
            }
            .ok_or_else(|| format!("relation {}: no field {}", rel.name, rel.foreign_key))?;
            links.push(Link {
                name: rel.name.clone(),
                kind: rel.kind,
                target: module.plan(target),
                key,
            });
        }
        let policy = QueryPolicy {
            paging: options.paging,
            limits: options.limits,
            readable: plan.list_fields.clone(),
            filterable: plan.filterable.clone(),
            sortable: plan.sortable.clone(),
            count: resource.count,
            cursor_by_default: resource.cursor_pagination,
        };
        let view_policy = QueryPolicy {
            readable: plan.view_fields.clone(),
            ..policy.clone()
        };
        let mut patch_read = plan.update_fields.clone();
        patch_read.push(resource.primary_key);
        Ok(TableController {
            owned_below: owned_below(model, &resource.table),
            patch_read,
            plan: plan.clone(),
            links,
            policy,
            view_policy,
            cursor_key: options.cursor_key.clone(),
            create_schema,
            update_schema,
            ignored_on_write,
            noun: singular(&resource.name),
            resource,
        })
    }

    fn not_found(&self, id: &str) -> ApiError {
        // In API terms only (§7): the table and column behind a resource
        // are internals.
        ApiError::not_found(&self.noun, id).dev(format!(
            "No {} has {} {id} within the caller's scope (the parent the path names, and the owner for private resources).",
            self.noun,
            self.resource.pk().name
        ))
    }

    /// The scope every statement on this resource carries: parent keys
    /// (each ancestor checked to exist, within its own scope) and, for
    /// private resources, the owner.
    async fn scope(&self, cx: &Ctx, op: Operation) -> Result<Scope, ApiError> {
        let mut scope = Scope::default();
        if let Some(link) = &self.resource.parent {
            let parent_id = parent_chain_id(cx, &self.plan, None).await?;
            scope = scope.and(link.field, Value::from(parent_id));
        }
        if let Some(owner) = &self.resource.owner {
            let private = owner.policy == OwnerPolicy::Private;
            if private || op.is_write() {
                let user = cx.require_user()?;
                if private {
                    scope = scope.and(owner.field, Value::from(user));
                }
            }
        }
        Ok(scope)
    }

    /// For read-all/write-own resources: the caller must own record `id`.
    /// Runs inside the write transaction, so ownership cannot change
    /// between the check and the write.
    async fn check_owner(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        id: i64,
        scope: &Scope,
    ) -> Result<(), ApiError> {
        let Some(owner) = &self.resource.owner else {
            return Ok(());
        };
        if owner.policy != OwnerPolicy::ReadAllWriteOwn {
            return Ok(());
        }
        let user = cx.require_user()?;
        let rec = tx
            .fetch(&self.resource, &[owner.field], id, scope)
            .await?
            .ok_or_else(|| self.not_found(&id.to_string()))?;
        let field = &self.resource.fields[owner.field].name;
        if rec.get(field).and_then(Value::as_i64) != Some(user) {
            return Err(ApiError::forbidden(
                "Only the owner may change this record.",
            ));
        }
        Ok(())
    }

    /// What a write to one record must satisfy before it runs, inside its
    /// transaction: the caller owns it (read-all/write-own resources) and
    /// `If-Match`, when sent, names its current version.
    async fn preconditions(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        id: i64,
        scope: &Scope,
    ) -> Result<(), ApiError> {
        self.check_owner(cx, tx, id, scope).await?;
        self.check_if_match(cx, tx, id, scope).await
    }

    /// `If-Match` (§5.6), checked inside the write transaction, so nothing
    /// can change between the check and the write. The tag must be one of
    /// the record's current representations as a GET returns it — JSON,
    /// XML or CSV (with whatever CSV options), plain or as this request's
    /// parameters shape it (`envelope`), whichever the client fetched; a
    /// compressed response's tag names the same representation. `*` needs
    /// the record to exist. Otherwise 412, and nothing is written.
    async fn check_if_match(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        id: i64,
        scope: &Scope,
    ) -> Result<(), ApiError> {
        if !cx.headers.contains_key(http::header::IF_MATCH) {
            return Ok(());
        }
        let current = tx
            .fetch(&self.resource, &self.plan.view_fields, id, scope)
            .await?;
        let tags: Vec<http::HeaderValue> = match current {
            Some(rec) => {
                let Reply::Record(rec) = self.record_reply(cx, rec) else {
                    unreachable!("record_reply makes records")
                };
                // The record as a GET with this request's parameters
                // represents it too, when that differs (an envelope).
                let enveloped = matches!(cx.query_param("envelope"), Some("true") | Some("1"));
                let mut contents = Vec::with_capacity(2);
                if enveloped {
                    contents.push(Content::Value(format::record_envelope(Value::Object(
                        rec.clone(),
                    ))));
                }
                contents.push(Content::Record(rec));
                contents
                    .iter()
                    .flat_map(|c| Format::DATA.iter().filter_map(|f| format::bytes_of(c, *f)))
                    .map(|b| format::etag(&b))
                    .collect()
            }
            None => Vec::new(),
        };
        if format::tags_match(
            cx.headers.get_all(http::header::IF_MATCH).iter(),
            &tags,
            true,
        ) {
            return Ok(());
        }
        Err(ApiError::new(
            http::StatusCode::PRECONDITION_FAILED,
            "PRECONDITION_FAILED",
            "The record is not the version If-Match names: it changed (or is gone) since you read it. Read it again and retry.",
        ))
    }

    /// Drops fields a client may send but not write, brings values into
    /// their fields' form ([`value::normalize`]); refuses non-objects.
    fn writable_body(&self, body: Value) -> Result<Map<String, Value>, ApiError> {
        match body {
            Value::Object(mut map) => {
                for name in &self.ignored_on_write {
                    map.remove(name);
                }
                // A representation member, not a field: a client may PUT
                // back what it GOT (§5.5).
                map.remove("_links");
                let mut errors = Vec::new();
                for (name, v) in map.iter_mut() {
                    let Some(field) = self.resource.find_field(name) else {
                        continue; // the schema reports unknown fields
                    };
                    if let Err(refusal) = value::normalize(field, v) {
                        errors.push(FieldError {
                            message: format!("{name} {}", refusal.message()),
                            field: name.clone(),
                            code: refusal.code().into(),
                        });
                    }
                }
                if !errors.is_empty() {
                    return Err(ApiError::validation(errors));
                }
                Ok(map)
            }
            other => Err(ApiError::validation(vec![FieldError {
                field: String::new(),
                code: "type".into(),
                message: format!("The body must be a JSON object, not {}.", kind(&other)),
            }])),
        }
    }

    fn values(
        &self,
        body: &Map<String, Value>,
        fields: &[usize],
        fill: bool,
    ) -> Vec<(usize, Value)> {
        let mut out = Vec::with_capacity(fields.len());
        for &i in fields {
            let f = &self.resource.fields[i];
            match body.get(&f.name) {
                Some(v) => out.push((i, v.clone())),
                None if fill => out.push((i, f.default.clone().unwrap_or(Value::Null))),
                None => {}
            }
        }
        out
    }

    fn conflict(e: StoreError) -> ApiError {
        ApiError::from(e)
    }
}

impl TableController {
    /// Validates `doc` (the complete record as it will be) against the
    /// update schema and writes those of `values` that differ from
    /// `current` (the stored updatable fields) in `tx`. A write that
    /// changes nothing writes nothing: no new change time, nothing for
    /// sync clients to fetch again.
    #[allow(clippy::too_many_arguments)]
    async fn write_checked(
        &self,
        tx: &mut WriteTx,
        id: &str,
        n: i64,
        scope: &Scope,
        doc: &Value,
        current: &Record,
        values: Vec<(usize, Value)>,
    ) -> Result<Record, ApiError> {
        self.update_schema.check(doc)?;
        self.write_changed(tx, id, n, scope, current, values).await
    }

    /// Writes those of `values` that differ from `current` (compared as
    /// the values bound to SQL); when none does, reads the record instead.
    async fn write_changed(
        &self,
        tx: &mut WriteTx,
        id: &str,
        n: i64,
        scope: &Scope,
        current: &Record,
        values: Vec<(usize, Value)>,
    ) -> Result<Record, ApiError> {
        let fields = &self.resource.fields;
        let changed: Vec<(usize, Value)> = values
            .into_iter()
            .filter(|(i, v)| {
                let f = &fields[*i];
                let stored = current.get(&f.name).unwrap_or(&Value::Null);
                crate::store::to_sql_value(f.ty, v) != crate::store::to_sql_value(f.ty, stored)
            })
            .collect();
        let written = if changed.is_empty() {
            tx.fetch(&self.resource, &self.plan.view_fields, n, scope)
                .await?
        } else {
            tx.update(&self.resource, n, scope, &changed, &self.plan.view_fields)
                .await
                .map_err(Self::conflict)?
        };
        written.ok_or_else(|| self.not_found(id))
    }

    /// The stored updatable fields of record `n` (what a write compares
    /// against), read in `tx`; 404 when it is not within `scope`.
    async fn current(
        &self,
        tx: &mut WriteTx,
        id: &str,
        n: i64,
        scope: &Scope,
    ) -> Result<Record, ApiError> {
        tx.fetch(&self.resource, &self.patch_read, n, scope)
            .await?
            .ok_or_else(|| self.not_found(id))
    }

    /// Re-checks, inside the write transaction that inserts, that every
    /// parent in the path still exists: one deleted since the request's
    /// scope was resolved cannot gain a child.
    async fn confirm_parents(&self, cx: &Ctx, tx: &mut WriteTx) -> Result<(), ApiError> {
        if self.resource.parent.is_some() {
            parent_chain_id(cx, &self.plan, Some(tx)).await?;
        }
        Ok(())
    }

    /// Refuses (409) a delete of the selection's rows that would take
    /// rows owned by others with it (nested resources' rows, deleted by
    /// the cascade): a caller who may not delete someone's review may not
    /// delete it by deleting its book either. Runs in the deleting
    /// transaction.
    async fn check_cascade(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        selection: &Selection<'_>,
    ) -> Result<(), ApiError> {
        let user = cx.identity.as_ref().and_then(|i| i.user_id);
        for path in &self.owned_below {
            let n = tx
                .count_owned_below(&self.resource, selection, path, user)
                .await?;
            if n > 0 {
                let Some((child, _)) = path.steps.last() else {
                    continue;
                };
                // Others' private rows do not exist for the caller (§8.6):
                // say neither what nor how many.
                let detail = if path.private {
                    "Records of other users depend on this one, so it cannot be deleted.".into()
                } else {
                    let what = if n == 1 {
                        singular(&child.name)
                    } else {
                        child.name.clone()
                    };
                    format!(
                        "{n} {what} of other users would be deleted with this; only their owners may delete them."
                    )
                };
                return Err(ApiError::new(
                    http::StatusCode::CONFLICT,
                    "REFERENCE_CONFLICT",
                    detail,
                ));
            }
        }
        Ok(())
    }

    fn record_reply(&self, cx: &Ctx, rec: Record) -> Reply {
        let mut one = [rec];
        self.add_links(cx, &mut one);
        let [rec] = one;
        Reply::Record(rec)
    }

    /// A record reply with its change time, when the resource keeps one and
    /// the record shows it (§5.6 `Last-Modified`).
    fn dated(&self, reply: Reply) -> Reply {
        let Reply::Record(record) = reply else {
            return reply;
        };
        let modified = self
            .resource
            .updated_at()
            .and_then(|f| record.get(&f.name))
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc());
        match modified {
            Some(modified) => Reply::Dated { record, modified },
            None => Reply::Record(record),
        }
    }

    /// The collection's path with this request's parent ids filled in.
    fn collection_url(&self, cx: &Ctx) -> String {
        let mut path = self.plan.collection_path.clone();
        for (name, value) in &cx.params {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        format!("{}{path}", cx.base_url)
    }

    /// HATEOAS (§5.5): `_links.self`, and `parent` for nested resources.
    fn add_links(&self, cx: &Ctx, records: &mut [Record]) {
        if !self.resource.links {
            return;
        }
        let base = self.collection_url(cx);
        let pk = &self.resource.pk().name;
        let parent = base.rsplit_once('/').map(|(p, _)| p.to_string());
        for rec in records {
            let Some(id) = rec.get(pk).map(|v| v.to_string()) else {
                continue;
            };
            let mut links = serde_json::Map::new();
            links.insert(
                "self".into(),
                serde_json::json!({"href": format!("{base}/{id}")}),
            );
            if let (Some(_), Some(p)) = (&self.resource.parent, &parent) {
                links.insert("parent".into(), serde_json::json!({"href": p}));
            }
            // Links an expansion left (`link_rest`) follow these.
            if let Some(Value::Object(rest)) = rec.shift_remove("_links") {
                links.extend(rest);
            }
            rec.insert("_links".into(), Value::Object(links));
        }
    }

    /// The request's sync position (`timestamp=`), in stored form.
    fn since_of(&self, q: &CollectionQuery) -> Option<SincePos> {
        let field = self.resource.fields.iter().position(|f| f.updated_at)?;
        q.since.map(|t| SincePos {
            field,
            time: crate::model::value::format_datetime(t),
            key: q.since_key,
        })
    }

    /// Whose tombstones a read within `scope` may see: its owner and
    /// parent keys.
    fn tombstone_scope(&self, scope: &Scope) -> TombstoneScope {
        let key_of = |field: Option<usize>| {
            field.and_then(|f| {
                scope
                    .equal
                    .iter()
                    .find(|(i, _)| *i == f)
                    .and_then(|(_, v)| v.as_i64())
            })
        };
        TombstoneScope {
            owner: key_of(self.resource.owner.as_ref().map(|o| o.field)),
            parent: key_of(self.resource.parent.as_ref().map(|p| p.field)),
        }
    }

    /// Reads one page of the collection as `q` asks.
    ///
    /// A sync read (`timestamp=`) without `sort` is a feed: ordered by
    /// change time, then key, so that the position of its last record is
    /// a place to continue from (see [`Self::sync_info`]).
    async fn read_page(
        &self,
        cx: &Ctx,
        q: &CollectionQuery,
        scope: &Scope,
    ) -> Result<Reply, ApiError> {
        let r = &self.resource;
        let shown: Vec<usize> = q
            .fields
            .clone()
            .unwrap_or_else(|| self.plan.list_fields.clone());
        let since = self.since_of(q);
        let feed = match &since {
            Some(s) if q.sort.is_empty() => Some(s.field),
            _ => None,
        };
        let sort = match feed {
            Some(updated) => vec![crate::query::SortKey {
                field: updated,
                descending: false,
            }],
            None => q.sort.clone(),
        };
        let order = sql::full_order(r, &sort);
        // Also read what expansion, cursors and positions need; strip it
        // afterwards.
        let mut select = shown.clone();
        let mut need = |i: usize| {
            if !select.contains(&i) {
                select.push(i);
            }
        };
        need(r.primary_key);
        if let Some(updated) = feed {
            need(updated);
        }
        for e in &q.expand {
            let link = &self.links[e.relation];
            if link.kind == RelationKind::BelongsTo {
                need(link.key);
            }
        }
        let cursor = matches!(q.position, Position::Cursor { .. });
        if cursor {
            for k in &order {
                need(k.field);
            }
        }
        let after = match (&q.position, cx.query_param("cursor")) {
            (Position::Cursor { .. }, Some(token)) if !token.is_empty() => {
                let keys = self
                    .cursor_key
                    .open(token, &self.plan.collection_path, &q.signature)?;
                if keys.len() != order.len() {
                    return Err(QueryError::BadCursor("it does not fit this sort".into()).into());
                }
                Some(keys)
            }
            _ => None,
        };
        let selection = Selection {
            scope,
            filter: q.filter.as_ref(),
            since: since.as_ref().map(SincePos::as_since),
        };
        let limit = q.position.limit();
        let offset = match q.position {
            Position::Offset(p) => p.offset,
            Position::Cursor { .. } => 0,
        };
        // Sync pages must know for certain whether more remain.
        let probe = cursor || q.count == CountMode::None || r.sync;
        let list = ListQuery {
            fields: &select,
            selection,
            sort,
            after: after.as_deref(),
            limit: if probe { limit + 1 } else { limit },
            offset,
        };
        let count = async {
            match q.count {
                CountMode::Exact => cx
                    .store
                    .count(r, &selection)
                    .await
                    .map(|n| Some(Count::Exact(n))),
                CountMode::Estimated => cx.store.estimate(r, &selection).await.map(Some),
                CountMode::None => Ok(None),
            }
        };
        // A sync resource reads its mark with the page, in one statement
        // and one snapshot: any change the page does not show is later.
        let tombstones = self.tombstone_scope(scope);
        let page = async {
            if r.sync {
                let (mark, records) = cx.store.list_with_mark(r, &list, tombstones).await?;
                Ok::<_, StoreError>((Some(mark), records))
            } else {
                Ok((None, cx.store.list(r, &list).await?))
            }
        };
        let ((mark, mut records), total) = tokio::try_join!(page, count)?;
        let has_more = probe && records.len() as u64 > limit;
        records.truncate(limit as usize);
        let next_cursor = match (cursor, has_more, records.last()) {
            (true, true, Some(last)) => Some(
                self.cursor_key.issue(
                    &self.plan.collection_path,
                    &q.signature,
                    order
                        .iter()
                        .map(|k| {
                            last.get(&r.fields[k.field].name)
                                .cloned()
                                .unwrap_or(Value::Null)
                        })
                        .collect(),
                ),
            ),
            _ => None,
        };
        // The feed position of the last record: its change time and key.
        let last_position = feed.zip(records.last()).and_then(|(updated, last)| {
            let time = last.get(&r.fields[updated].name)?.as_str()?;
            let key = last.get(&r.pk().name)?.as_i64()?;
            Some(crate::query::format_position(time, Some(key)))
        });
        self.expand(cx, q, &mut records).await?;
        self.add_links(cx, &mut records);
        if select.len() > shown.len() {
            let extra: Vec<&str> = select[shown.len()..]
                .iter()
                .map(|i| r.fields[*i].name.as_str())
                .collect();
            for rec in &mut records {
                for name in &extra {
                    rec.shift_remove(*name);
                }
            }
        }
        let sync = match mark {
            Some(mark) => Some(
                self.sync_info(
                    cx,
                    q,
                    scope,
                    since.as_ref(),
                    SyncPage {
                        mark,
                        has_more,
                        feed: feed.is_some(),
                        last_position,
                    },
                )
                .await?,
            ),
            None => None,
        };
        Ok(Reply::Collection {
            records,
            page: Page {
                total: total.map(Count::value),
                count_applied: q.count_requested.then(|| match total {
                    Some(Count::Estimated(_)) => "estimated",
                    Some(Count::Exact(_)) if q.count == CountMode::Estimated => "estimated",
                    Some(Count::Exact(_)) => "exact",
                    None => "none",
                }),
                per_page: limit,
                offset: (!cursor).then_some(offset),
                next_cursor,
                has_more,
                sync,
            },
        })
    }

    /// What a sync page tells the client (§6.7): the tombstones after its
    /// `timestamp`, and the `timestamp` to use next, chosen so that no
    /// change is ever skipped however the client pages — following `next`
    /// links, or passing each `X-Sync-Timestamp` back. Call the request's
    /// position T and the mark read with this page M (the latest change
    /// among the rows and tombstones the caller may read, never the
    /// database's clock: positions reveal nothing of other owners' writes).
    ///
    /// A feed (`timestamp=` without `sort`) is ordered by (change time,
    /// key), so on a page that starts at T — the first offset page, or any
    /// cursor page — everything up to its last record has been shown:
    /// - more pages remain: the last record's position `time~key` (ties at
    ///   one time continue at the next key), which the `next` link also
    ///   carries as its `timestamp`;
    /// - the last page: M.
    ///
    /// A feed page further in by offset may have been shifted past a row
    /// that changed meanwhile, so it answers T.
    ///
    /// Any other sync read (a `sort`, or no `timestamp`):
    /// - more pages remain: T (the client has not seen everything after T;
    ///   one that follows this header instead of the `next` link re-reads,
    ///   it never skips);
    /// - a single page (the first, and the last): M;
    /// - the last page of a longer traversal: the mark of its first page,
    ///   M1, which restkit's links carry as `sync_mark`. Keyset (cursor)
    ///   pages cannot skip a row, so M1 holds. Offset pages can: a row
    ///   deleted or moved under the reader shifts the next page past a row
    ///   it never sent. So with offsets, M1 holds only if nothing the
    ///   caller may read changed since M1; otherwise, and when the
    ///   traversal's first mark is unknown (URLs built by hand), T: the
    ///   client reads again from where it started (duplicates are allowed,
    ///   misses are not).
    ///
    /// Never later than where a long tombstone list was cut.
    async fn sync_info(
        &self,
        cx: &Ctx,
        q: &CollectionQuery,
        scope: &Scope,
        since: Option<&SincePos>,
        page: SyncPage,
    ) -> Result<SyncInfo, ApiError> {
        let SyncPage {
            mark,
            has_more,
            feed,
            last_position,
        } = page;
        let from = since.map_or(crate::store::EPOCH.to_string(), |s| {
            crate::query::format_position(&s.time, s.key)
        });
        let tombstones = self.tombstone_scope(scope);
        let first_page = match q.position {
            Position::Offset(p) => p.offset == 0,
            Position::Cursor { .. } => cx.query_param("cursor").is_none_or(str::is_empty),
        };
        let from_start = first_page || matches!(q.position, Position::Cursor { .. });
        let (mut next, mut next_position, carried_mark) = if feed {
            match (from_start, has_more) {
                (true, true) => match last_position {
                    Some(at) => {
                        let link = matches!(q.position, Position::Offset(_)).then(|| at.clone());
                        (at, link, None)
                    }
                    // A change time restkit cannot read back (written by
                    // another program): stay, and page by offset.
                    None => (from.clone(), None, None),
                },
                (true, false) => (mark, None, None),
                (false, _) => (from.clone(), None, None),
            }
        } else {
            let carried = q.sync_mark.map(crate::model::value::format_datetime);
            let first_mark = match (&carried, first_page) {
                (Some(m1), false) => m1.clone().min(mark.clone()),
                _ => mark.clone(),
            };
            let next = if has_more {
                from.clone()
            } else if first_page {
                mark
            } else {
                match (carried, &q.position) {
                    (Some(_), Position::Cursor { .. }) => first_mark.clone(),
                    (Some(_), Position::Offset(_)) => {
                        let changed = cx
                            .store
                            .changed_since(&self.resource, &first_mark, scope, tombstones)
                            .await?;
                        if changed {
                            from.clone()
                        } else {
                            first_mark.clone()
                        }
                    }
                    (None, _) => from.clone(),
                }
            };
            (next, None, Some(first_mark))
        };
        let deleted = match since {
            Some(s) => {
                let d = cx
                    .store
                    .deleted_since(&self.resource, &s.time, MAX_TOMBSTONES, tombstones)
                    .await?;
                if let Some(cut) = d.cut {
                    // Positions are `time[~key]`, times fixed-width: a cut
                    // earlier than a position's time comes first.
                    let before = |p: &str| cut.as_str() < p.split('~').next().unwrap_or(p);
                    if before(&next) {
                        next = cut.clone();
                    }
                    if next_position.as_deref().is_some_and(before) {
                        next_position = Some(cut);
                    }
                }
                Some(d.ids)
            }
            None => None,
        };
        Ok(SyncInfo {
            next_timestamp: next,
            deleted,
            mark: carried_mark,
            next_position,
        })
    }

    /// Embeds the requested relations (§6.4). Targets are read within
    /// their own owner scope: private rows of others never appear. Bounded
    /// twice: [`MAX_EXPANDED`] per record and relation (a record with more
    /// gets `_links.<relation>`, its full collection), and
    /// [`MAX_EMBEDDED`] per response (past it, 400).
    async fn expand(
        &self,
        cx: &Ctx,
        q: &CollectionQuery,
        records: &mut [Record],
    ) -> Result<(), ApiError> {
        let r = &self.resource;
        let mut embedded = 0u64;
        let mut embedded_bytes = 0usize;
        for e in &q.expand {
            let link = &self.links[e.relation];
            let t = &link.target.resource;
            let shown: Vec<usize> = match &e.fields {
                None => link.target.list_fields.clone(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        t.field_index(n)
                            .filter(|i| link.target.list_fields.contains(i))
                            .ok_or_else(|| {
                                ApiError::from(QueryError::UnknownField {
                                    param: "fields".into(),
                                    field: format!("{}.{n}", link.name),
                                })
                            })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let (mine, theirs) = match link.kind {
                RelationKind::HasMany => (r.primary_key, link.key),
                RelationKind::BelongsTo => (link.key, t.primary_key),
            };
            let mut select = shown.clone();
            if !select.contains(&theirs) {
                select.push(theirs);
            }
            let user = cx.identity.as_ref().and_then(|i| i.user_id);
            let Some(scope) = read_scope(&link.target.chain, user) else {
                // A private owner somewhere up the chain, and no user.
                for rec in records.iter_mut() {
                    rec.insert(link.name.clone(), empty(link.kind));
                }
                continue;
            };
            let mine_name = &r.fields[mine].name;
            let mut distinct = HashSet::new();
            let keys: Vec<Value> = records
                .iter()
                .filter_map(|rec| rec.get(mine_name).filter(|v| !v.is_null()))
                .filter(|v| distinct.insert(v.to_string()))
                .cloned()
                .collect();
            // One row past the bound per key tells whether a record has
            // more; the total read is capped too, so a refused page costs
            // at most what an accepted one does.
            let per_key = (link.kind == RelationKind::HasMany).then_some(MAX_EXPANDED + 1);
            let budget = MAX_EMBEDDED - embedded;
            let cap = budget
                + 1
                + if per_key.is_some() {
                    keys.len() as u64
                } else {
                    0
                };
            let rows = cx
                .store
                .fetch_by_keys(t, &select, theirs, &keys, &scope, per_key, cap)
                .await?;
            // Each key adds at most one row it does not embed, so a read
            // cut at `cap` embeds more than the budget.
            let too_many = |n: u64| {
                ApiError::bad_query(format!(
                    "This page would embed more than {MAX_EMBEDDED} related records \
                     (expand={}); lower `limit`.",
                    link.name
                ))
                .dev(format!(
                    "{n} or more records to embed; at most {MAX_EMBEDDED} per response."
                ))
            };
            if rows.len() as u64 >= cap {
                return Err(too_many(embedded + rows.len() as u64 - keys.len() as u64));
            }
            embedded_bytes += rows.iter().map(stored_size).sum::<usize>();
            if embedded_bytes > MAX_EMBEDDED_BYTES {
                return Err(ApiError::bad_query(format!(
                    "This page would embed more than 1 MiB of related records (expand={}); \
                     lower `limit`, or choose their fields (fields={}.id).",
                    link.name, link.name
                )));
            }
            // Group once by key: linear in records + rows.
            let theirs_name = &t.fields[theirs].name;
            let strip = !shown.contains(&theirs);
            let mut by_key: HashMap<String, Vec<Value>> = HashMap::with_capacity(keys.len());
            for mut row in rows {
                let Some(k) = row.get(theirs_name).map(Value::to_string) else {
                    continue;
                };
                if strip {
                    row.shift_remove(theirs_name);
                }
                by_key.entry(k).or_default().push(Value::Object(row));
            }
            for rec in records.iter_mut() {
                let key = rec
                    .get(mine_name)
                    .filter(|v| !v.is_null())
                    .map(Value::to_string);
                let mut matching = match (key, link.kind) {
                    // Each record has its own children: move them.
                    (Some(k), RelationKind::HasMany) => by_key.remove(&k),
                    // Several records may share one parent: copy it.
                    (Some(k), RelationKind::BelongsTo) => by_key.get(&k).cloned(),
                    (None, _) => None,
                }
                .unwrap_or_default();
                let v = match link.kind {
                    RelationKind::HasMany => {
                        if matching.len() as u64 > MAX_EXPANDED {
                            matching.truncate(MAX_EXPANDED as usize);
                            self.link_rest(cx, rec, link);
                        }
                        embedded += matching.len() as u64;
                        Value::Array(matching)
                    }
                    RelationKind::BelongsTo => {
                        let parent = matching.into_iter().next().unwrap_or(Value::Null);
                        embedded += u64::from(!parent.is_null());
                        parent
                    }
                };
                rec.insert(link.name.clone(), v);
            }
            if embedded > MAX_EMBEDDED {
                return Err(too_many(embedded));
            }
        }
        Ok(())
    }

    /// Points a record whose has-many expansion was cut at
    /// [`MAX_EXPANDED`] to all of it: `_links.<relation>.href` is the
    /// target's collection under this record when it is nested here, else
    /// the target's collection filtered by the foreign key (`null` when
    /// neither can be addressed: the cut is still shown).
    /// [`Self::add_links`] keeps it.
    fn link_rest(&self, cx: &Ctx, rec: &mut Record, link: &Link) {
        let Some(id) = rec.get(&self.resource.pk().name).map(Value::to_string) else {
            return;
        };
        let target = &link.target;
        let nested_here = target
            .resource
            .parent
            .as_ref()
            .is_some_and(|p| p.resource == self.resource.name && p.field == link.key);
        let href = if nested_here {
            Value::from(format!(
                "{}/{id}/{}",
                self.collection_url(cx),
                target.resource.name
            ))
        } else if !target.collection_path.contains('{') && target.filterable.contains(&link.key) {
            Value::from(format!(
                "{}{}?filter[{}]={id}",
                cx.base_url, target.collection_path, target.resource.fields[link.key].name
            ))
        } else {
            Value::Null
        };
        let links = rec
            .entry("_links")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(links) = links {
            links.insert(link.name.clone(), serde_json::json!({ "href": href }));
        }
    }
}

/// The rows of `chain`'s last resource a caller may read when they are
/// reached from elsewhere (an expansion): within its private owner's rows,
/// and each parent within its own scope in turn, up the chain. `None` when
/// a private owner is met and there is no user (nothing is readable).
fn read_scope(chain: &[Arc<Resource>], user: Option<i64>) -> Option<Scope> {
    let mut above: Option<Scope> = None;
    for (i, res) in chain.iter().enumerate() {
        let mut scope = Scope::default();
        if let Some(owner) = res
            .owner
            .as_ref()
            .filter(|o| o.policy == OwnerPolicy::Private)
        {
            scope = scope.and(owner.field, Value::from(user?));
        }
        if let (Some(link), Some(parent_scope)) = (&res.parent, above.take()) {
            if !parent_scope.equal.is_empty() || !parent_scope.within.is_empty() {
                scope.within.push(Within {
                    field: link.field,
                    parent: chain[i - 1].clone(),
                    scope: parent_scope,
                });
            }
        }
        above = Some(scope);
    }
    above
}

/// About how many bytes a record holds: its text as stored, and 8 for
/// any other value.
fn stored_size(rec: &Record) -> usize {
    rec.values()
        .map(|v| match v {
            Value::String(s) => s.len(),
            _ => 8,
        })
        .sum()
}

fn empty(kind: RelationKind) -> Value {
    match kind {
        RelationKind::HasMany => Value::Array(Vec::new()),
        RelationKind::BelongsTo => Value::Null,
    }
}

/// Resolves the parent id of `r` from the path, checking every ancestor
/// exists within its own scope: a missing parent, or a child under the
/// wrong parent, is 404.
async fn parent_chain_id(
    cx: &Ctx,
    plan: &ResourcePlan,
    mut tx: Option<&mut WriteTx>,
) -> Result<i64, ApiError> {
    // Walk from the top-most ancestor down to the direct parent; the path
    // names each parent's key in the same order.
    let parents = &plan.chain[..plan.chain.len() - 1];
    let mut id = 0;
    let mut above: Option<i64> = None;
    for (parent, param) in parents.iter().zip(&plan.parent_params) {
        let raw = cx.param(param).unwrap_or_default();
        let noun = singular(&parent.name);
        id = raw
            .parse::<i64>()
            .map_err(|_| ApiError::not_found(&noun, raw))?;
        let mut scope = Scope::default();
        if let (Some(link), Some(above_id)) = (&parent.parent, above) {
            scope = scope.and(link.field, Value::from(above_id));
        }
        if let Some(owner) = &parent.owner {
            if owner.policy == OwnerPolicy::Private {
                scope = scope.and(owner.field, Value::from(cx.require_user()?));
            }
        }
        let found = match tx.as_deref_mut() {
            Some(tx) => tx
                .fetch(parent, &[parent.primary_key], id, &scope)
                .await?
                .is_some(),
            None => cx.store.exists(parent, id, &scope).await?,
        };
        if !found {
            return Err(ApiError::not_found(&noun, raw));
        }
        above = Some(id);
    }
    Ok(id)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `books` → `book`, `shelves` → `shelf`, `reviews` → `review`: for
/// messages only.
pub fn singular(plural: &str) -> String {
    if let Some(stem) = plural.strip_suffix("ves") {
        format!("{stem}f")
    } else if let Some(stem) = plural.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = plural.strip_suffix('s') {
        stem.to_string()
    } else {
        plural.to_string()
    }
}

/// RFC 7396 JSON Merge Patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn parse_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok()
}

#[async_trait]
impl Controller for TableController {
    fn operations(&self) -> Vec<Operation> {
        use Operation::*;
        let mut ops = vec![Find, Fetch, Create, Update, Patch, Delete];
        if self.resource.bulk {
            ops.extend([BulkUpdate, DeleteAll]);
        }
        ops
    }

    fn resource(&self) -> Option<&Arc<Resource>> {
        Some(&self.resource)
    }

    fn input_schema(&self, op: Operation) -> Option<&Value> {
        match op {
            Operation::Create => Some(&self.create_schema.source),
            Operation::Update | Operation::Patch => Some(&self.update_schema.source),
            Operation::BulkUpdate => Some(&self.update_schema.source),
            _ => None,
        }
    }

    fn query_shape(&self) -> Option<crate::query::QueryShape> {
        let relations = self
            .links
            .iter()
            .map(|l| {
                let t = &l.target.resource;
                let names = l.target.list_fields.iter();
                (
                    l.name.clone(),
                    names.map(|i| t.fields[*i].name.clone()).collect(),
                )
            })
            .collect();
        Some(crate::query::QueryShape {
            list: self.policy.clone(),
            view: self.view_policy.clone(),
            relations,
        })
    }

    async fn find(&self, cx: &Ctx) -> Result<Reply, ApiError> {
        let q = CollectionQuery::parse(
            &cx.query,
            &self.resource,
            &self.policy,
            count_preference(&cx.headers),
        )?;
        let scope = self.scope(cx, Operation::Find).await?;
        self.read_page(cx, &q, &scope).await
    }

    async fn bulk_update(&self, cx: &Ctx, body: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::BulkUpdate).await?;
        let Value::Array(items) = body else {
            return Err(ApiError::validation(vec![FieldError {
                field: String::new(),
                code: "type".into(),
                message: "A bulk update is a JSON array of records.".into(),
            }]));
        };
        if items.len() > MAX_BULK {
            return Err(ApiError::validation(vec![FieldError {
                field: String::new(),
                code: "max_items".into(),
                message: format!("At most {MAX_BULK} records per request."),
            }]));
        }
        let pk = self.resource.pk().name.clone();
        let mut errors = Vec::new();
        let mut writes: Vec<(i64, Vec<(usize, Value)>)> = Vec::with_capacity(items.len());
        let mut first_index = std::collections::HashMap::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let prefix = format!("[{i}]");
            let id = match item.get(&pk) {
                Some(Value::Number(n)) => crate::model::integral(n),
                _ => None,
            };
            let body = match self.writable_body(item) {
                Ok(b) => Value::Object(b),
                Err(e) => {
                    errors.extend(e.errors.iter().cloned().map(|mut f| {
                        f.field = if f.field.is_empty() {
                            prefix.clone()
                        } else {
                            format!("{prefix}.{}", f.field)
                        };
                        f
                    }));
                    continue;
                }
            };
            let Some(id) = id else {
                errors.push(FieldError {
                    field: format!("{prefix}.{pk}"),
                    code: "required".into(),
                    message: format!(
                        "{prefix}.{pk} is required (an integer) to say which record to replace."
                    ),
                });
                continue;
            };
            // Two replacements of one record in one request: which wins
            // would depend on order, so neither is written.
            if let Some(first) = first_index.insert(id, i) {
                errors.push(FieldError {
                    field: format!("{prefix}.{pk}"),
                    code: "duplicate".into(),
                    message: format!("{prefix}.{pk} {id} also appears at [{first}]."),
                });
                continue;
            }
            errors.extend(self.update_schema.errors(&body, &prefix));
            if let Value::Object(map) = &body {
                writes.push((id, self.values(map, &self.plan.update_fields, true)));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let mut tx = cx.store.begin_write().await?;
        let mut records = Vec::with_capacity(writes.len());
        for (id, values) in writes {
            self.check_owner(cx, &mut tx, id, &scope).await?;
            // Dropping the transaction on any error rolls every write back.
            let raw = id.to_string();
            let current = self.current(&mut tx, &raw, id, &scope).await?;
            let rec = self
                .write_changed(&mut tx, &raw, id, &scope, &current, values)
                .await?;
            records.push(Value::Object(rec));
        }
        tx.commit().await?;
        Ok(Reply::Value(Value::Array(records)))
    }

    async fn delete_all(&self, cx: &Ctx) -> Result<Reply, ApiError> {
        let mut scope = self.scope(cx, Operation::DeleteAll).await?;
        if let Some(owner) = &self.resource.owner {
            // Read-all resources still delete only the caller's rows.
            if owner.policy == OwnerPolicy::ReadAllWriteOwn {
                scope = scope.and(owner.field, Value::from(cx.require_user()?));
            }
        }
        let q = CollectionQuery::parse(&cx.query, &self.resource, &self.policy, None)?;
        let all = match cx.query_param("all") {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(ApiError::bad_query("'all' is true or false.")),
        };
        // A filter that can only match everything (an empty `like`, a
        // wildcard of stars) is not one: the empty search box of a client
        // must not wipe the table.
        let filtered = q.filter.as_ref().is_some_and(|f| !f.is_vacuous());
        if !filtered && !all {
            return Err(ApiError::bad_query(
                "Deleting a collection needs q= or filter= that narrows it (an empty pattern matches every record), or all=true to delete every record.",
            ));
        }
        let since = self.since_of(&q);
        let selection = Selection {
            scope: &scope,
            filter: q.filter.as_ref(),
            since: since.as_ref().map(SincePos::as_since),
        };
        let mut tx = cx.store.begin_write().await?;
        if !all {
            // Whatever its spelling, a filter that matches every record
            // of several deletes them all only when asked to (`all=true`).
            if tx.covers_all_of_several(&self.resource, &selection).await? {
                return Err(ApiError::bad_query(
                    "The filter matches every record; add all=true to delete them all.",
                ));
            }
        }
        self.check_cascade(cx, &mut tx, &selection).await?;
        let n = tx.delete_where(&self.resource, &selection).await?;
        tx.commit().await?;
        Reply::json(&serde_json::json!({ "deleted": n }))
    }

    async fn fetch(&self, cx: &Ctx, id: &str) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Fetch).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        // `fields` and `expand` apply to one record as to a collection.
        let shaped = cx.query.iter().any(|(k, _)| k == "fields" || k == "expand");
        if !shaped {
            let rec = cx
                .store
                .fetch(&self.resource, &self.plan.view_fields, n, &scope)
                .await?
                .ok_or_else(|| self.not_found(id))?;
            return Ok(self.dated(self.record_reply(cx, rec)));
        }
        let q = CollectionQuery::parse(&cx.query, &self.resource, &self.view_policy, None)?;
        let shown = q
            .fields
            .clone()
            .unwrap_or_else(|| self.plan.view_fields.clone());
        let mut select = shown.clone();
        for i in std::iter::once(self.resource.primary_key).chain(
            q.expand
                .iter()
                .filter(|e| self.links[e.relation].kind == RelationKind::BelongsTo)
                .map(|e| self.links[e.relation].key),
        ) {
            if !select.contains(&i) {
                select.push(i);
            }
        }
        let rec = cx
            .store
            .fetch(&self.resource, &select, n, &scope)
            .await?
            .ok_or_else(|| self.not_found(id))?;
        let mut records = [rec];
        self.expand(cx, &q, &mut records).await?;
        self.add_links(cx, &mut records);
        let [mut rec] = records;
        for i in &select[shown.len()..] {
            rec.shift_remove(&self.resource.fields[*i].name);
        }
        Ok(self.dated(self.record_reply(cx, rec)))
    }

    async fn create(&self, cx: &Ctx, body: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Create).await?;
        let body = self.writable_body(body)?;
        let instance = Value::Object(body);
        self.create_schema.check(&instance)?;
        let Value::Object(body) = instance else {
            unreachable!("checked above")
        };
        let mut values = self.values(&body, &self.plan.create_fields, false);
        for (i, f) in self.resource.fields.iter().enumerate() {
            if f.default.is_some() && !values.iter().any(|(j, _)| *j == i) && f.writable() {
                values.push((i, f.default.clone().unwrap_or(Value::Null)));
            }
        }
        values.extend(scope.equal.iter().cloned());
        if let Some(owner) = &self.resource.owner {
            if !values.iter().any(|(i, _)| *i == owner.field) {
                values.push((owner.field, Value::from(cx.require_user()?)));
            }
        }
        let mut tx = cx.store.begin_write().await?;
        self.confirm_parents(cx, &mut tx).await?;
        let record: Record = tx
            .insert(&self.resource, &values, &self.plan.view_fields)
            .await
            .map_err(Self::conflict)?;
        tx.commit().await?;
        let id = record
            .get(&self.resource.pk().name)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let location = format!("{}/{}", cx.path.trim_end_matches('/'), id);
        let Reply::Record(record) = self.record_reply(cx, record) else {
            unreachable!("record_reply makes records")
        };
        Ok(Reply::Created { record, location })
    }

    async fn update(&self, cx: &Ctx, id: &str, body: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Update).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        let body = self.writable_body(body)?;
        // PUT replaces: omitted optional fields become their default or null.
        let values = self.values(&body, &self.plan.update_fields, true);
        let doc = Value::Object(body);
        let mut tx = cx.store.begin_write().await?;
        self.preconditions(cx, &mut tx, n, &scope).await?;
        let current = self.current(&mut tx, id, n, &scope).await?;
        let rec = self
            .write_checked(&mut tx, id, n, &scope, &doc, &current, values)
            .await?;
        tx.commit().await?;
        Ok(self.record_reply(cx, rec))
    }

    /// JSON Merge Patch (RFC 7396), read–merge–validate–write in one
    /// transaction: concurrent patches of different fields both stay, and
    /// only the fields the patch names are written (a declared default
    /// never overwrites a field the client did not send; `null` clears).
    async fn patch(&self, cx: &Ctx, id: &str, patch: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Patch).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        let patch = self.writable_body(patch)?;
        let mut tx = cx.store.begin_write().await?;
        self.preconditions(cx, &mut tx, n, &scope).await?;
        let current = self.current(&mut tx, id, n, &scope).await?;
        // Nulls of optional fields are absent in the merged document, as a
        // merge patch would leave them.
        let pk = &self.resource.pk().name;
        let mut merged = Value::Object(
            current
                .iter()
                .filter(|(k, v)| !v.is_null() && *k != pk)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        merge_patch(&mut merged, &Value::Object(patch.clone()));
        let named: Vec<usize> = self
            .plan
            .update_fields
            .iter()
            .copied()
            .filter(|i| patch.contains_key(&self.resource.fields[*i].name))
            .collect();
        let values: Vec<(usize, Value)> = named
            .into_iter()
            .map(|i| {
                let name = &self.resource.fields[i].name;
                (i, merged.get(name).cloned().unwrap_or(Value::Null))
            })
            .collect();
        let rec = self
            .write_checked(&mut tx, id, n, &scope, &merged, &current, values)
            .await?;
        tx.commit().await?;
        Ok(self.record_reply(cx, rec))
    }

    async fn delete(&self, cx: &Ctx, id: &str) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Delete).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        let mut tx = cx.store.begin_write().await?;
        self.preconditions(cx, &mut tx, n, &scope).await?;
        if !self.owned_below.is_empty() {
            let one = scope.clone().and(self.resource.primary_key, Value::from(n));
            let selection = Selection {
                scope: &one,
                filter: None,
                since: None,
            };
            self.check_cascade(cx, &mut tx, &selection).await?;
        }
        if !tx.delete(&self.resource, n, &scope).await? {
            return Err(self.not_found(id));
        }
        tx.commit().await?;
        Ok(Reply::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1]});
        merge_patch(&mut t, &json!({"a": {"b": "c"}}));
        assert_eq!(t, json!({"a": {"b": "c"}}));
    }

    #[test]
    fn nouns_are_singular() {
        assert_eq!(singular("books"), "book");
        assert_eq!(singular("shelves"), "shelf");
        assert_eq!(singular("categories"), "category");
    }
}
