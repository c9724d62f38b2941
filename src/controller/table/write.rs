//! Writing (§4.4, §5.6): create, replace, merge-patch, delete, one record
//! or many, each one transaction; bodies checked before it begins.

use serde_json::{Map, Value};

use super::read::SincePos;
use super::{parse_id, TableController};
use crate::controller::{Ctx, Operation, Reply};
use crate::error::{ApiError, FieldError};
use crate::format;
use crate::model::value;
use crate::query::CollectionQuery;
use crate::store::{Record, Scope, Selection, StoreError, WriteTx};

/// Most records one bulk PUT may carry.
pub const MAX_BULK: usize = 1000;

impl TableController {
    pub(super) async fn create_one(&self, cx: &Ctx, body: Value) -> Result<Reply, ApiError> {
        let scope = self.write_scope(cx, Operation::Create).await?;
        let body = self.writable_body(body, Some(&self.create_schema))?;
        let mut values = self.values(&body, &self.plan.create_fields, false);
        for (i, f) in self.resource.fields.iter().enumerate() {
            if values.iter().any(|(j, _)| *j == i) {
                continue;
            }
            if f.generated {
                let id = uuid::Uuid::new_v4().hyphenated().to_string();
                values.push((i, Value::String(id)));
            } else if f.default.is_some() && f.writable() {
                values.push((i, f.default.clone().unwrap_or(Value::Null)));
            }
        }
        // The parent keys, and the caller as owner where there is one —
        // over any declared default for those fields.
        values.retain(|(i, _)| !scope.equal.iter().any(|(f, _)| f == i));
        values.extend(scope.equal.iter().cloned());
        let mut tx = cx.store.begin_write().await?;
        self.confirm_parents(cx, &mut tx).await?;
        self.check_references(cx, &mut tx, &values, "").await?;
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

    pub(super) async fn replace(&self, cx: &Ctx, id: &str, body: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Update).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        let body = self.writable_body(body, Some(&self.update_schema))?;
        // PUT replaces: omitted optional fields become their default or null.
        // The body was checked against the update schema just now.
        let values = self.values(&body, &self.plan.update_fields, true);
        let mut tx = cx.store.begin_write().await?;
        self.preconditions(cx, &mut tx, n, &scope).await?;
        let current = self.current(&mut tx, id, n, &scope).await?;
        let rec = self
            .write_checked(cx, &mut tx, id, n, &scope, &current, values)
            .await?;
        tx.commit().await?;
        Ok(self.record_reply(cx, rec))
    }

    /// JSON Merge Patch (RFC 7396), read–merge–validate–write in one
    /// transaction: concurrent patches of different fields both stay, and
    /// only the fields the patch names are written (a declared default
    /// never overwrites a field the client did not send; `null` clears).
    pub(super) async fn merge(&self, cx: &Ctx, id: &str, patch: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Patch).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        // A patch is checked whole once merged (in `write_checked`).
        let patch = self.writable_body(patch, None)?;
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
        // The record as it will be must be whole and valid.
        self.update_schema.check(&merged)?;
        let rec = self
            .write_checked(cx, &mut tx, id, n, &scope, &current, values)
            .await?;
        tx.commit().await?;
        Ok(self.record_reply(cx, rec))
    }

    pub(super) async fn remove(&self, cx: &Ctx, id: &str) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Delete).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        let mut tx = cx.store.begin_write().await?;
        self.preconditions(cx, &mut tx, n, &scope).await?;
        if !self.owned_below.is_empty() || !self.references.is_empty() {
            let one = scope.clone().and(self.resource.primary_key, Value::from(n));
            let selection = Selection {
                scope: &one,
                filter: None,
                since: None,
            };
            self.release_references(&mut tx, &selection).await?;
            self.check_cascade(cx, &mut tx, &selection).await?;
        }
        if !tx.delete(&self.resource, n, &scope).await? {
            return Err(self.not_found(id));
        }
        tx.commit().await?;
        Ok(Reply::Empty)
    }

    pub(super) async fn replace_many(&self, cx: &Ctx, body: Value) -> Result<Reply, ApiError> {
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
            let body = match self.writable_body(item, Some(&self.update_schema)) {
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
            if let Value::Object(map) = &body {
                writes.push((id, self.values(map, &self.plan.update_fields, true)));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let mut tx = cx.store.begin_write().await?;
        let mut records = Vec::with_capacity(writes.len());
        for (i, (id, values)) in writes.into_iter().enumerate() {
            self.check_owner(cx, &mut tx, id, &scope).await?;
            // Dropping the transaction on any error rolls every write back.
            let raw = id.to_string();
            let current = self.current(&mut tx, &raw, id, &scope).await?;
            let changed = self.changed(&current, values);
            self.check_references(cx, &mut tx, &changed, &format!("[{i}]."))
                .await?;
            let rec = self
                .write_changed(&mut tx, &raw, id, &scope, changed)
                .await?;
            records.push(Value::Object(rec));
        }
        tx.commit().await?;
        Ok(Reply::Value(Value::Array(records)))
    }

    pub(super) async fn remove_many(&self, cx: &Ctx) -> Result<Reply, ApiError> {
        // Read-all resources still delete only the caller's rows.
        let scope = self.write_scope(cx, Operation::DeleteAll).await?;
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
        self.release_references(&mut tx, &selection).await?;
        self.check_cascade(cx, &mut tx, &selection).await?;
        let n = tx.delete_where(&self.resource, &selection).await?;
        tx.commit().await?;
        Reply::json(&serde_json::json!({ "deleted": n }))
    }

    /// What a write to one record must satisfy before it runs, inside its
    /// transaction: the caller owns it (read-all/write-own resources) and
    /// `If-Match`, when sent, names its current version.
    pub(super) async fn preconditions(
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
    /// can change between the check and the write. The tag must be one a
    /// GET of the record gives now — in JSON, XML or CSV (with whatever CSV
    /// options), bare or enveloped — as [`format::record_tags`] names them
    /// from one digest of the record, the code that tags a GET's record;
    /// a compressed response's tag names the same representation. `*`
    /// needs the record to exist. Otherwise 412, and nothing is written.
    pub(super) async fn check_if_match(
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
        let tags = match current {
            Some(rec) => match self.record_reply(cx, rec) {
                Reply::Record(rec) => format::record_tags(&rec),
                _ => unreachable!("record_reply makes records"),
            },
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
    /// The body's writable members, each value in its canonical spelling,
    /// checked against `schema` too when given: every refused value and
    /// every failed constraint in one 422 (a field whose value was refused
    /// is not also reported by the schema).
    pub(super) fn writable_body(
        &self,
        body: Value,
        schema: Option<&crate::validate::Schema>,
    ) -> Result<Map<String, Value>, ApiError> {
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
                if let Some(schema) = schema {
                    let instance = Value::Object(map);
                    let refused: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
                    errors.extend(schema.errors(&instance, "").into_iter().filter(|e| {
                        !refused.iter().any(|r| {
                            e.field == *r
                                || e.field.starts_with(&format!("{r}."))
                                || e.field.starts_with(&format!("{r}["))
                        })
                    }));
                    let Value::Object(back) = instance else {
                        unreachable!("made an object above")
                    };
                    map = back;
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

    pub(super) fn values(
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

    pub(super) fn conflict(e: StoreError) -> ApiError {
        ApiError::from(e)
    }

    /// Writes those of `values` that differ from `current` (the stored
    /// updatable fields) in `tx`, once every key among them names a record
    /// the caller can see; the caller has validated the record as it will
    /// be against the update schema (a PUT's body, a PATCH's merge). A
    /// write that changes nothing writes nothing: no new change time,
    /// nothing for sync clients to fetch again.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_checked(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        id: &str,
        n: i64,
        scope: &Scope,
        current: &Record,
        values: Vec<(usize, Value)>,
    ) -> Result<Record, ApiError> {
        let changed = self.changed(current, values);
        self.check_references(cx, tx, &changed, "").await?;
        self.write_changed(tx, id, n, scope, changed).await
    }

    /// Those of `values` that differ from `current` (compared as the
    /// values bound to SQL).
    pub(super) fn changed(
        &self,
        current: &Record,
        values: Vec<(usize, Value)>,
    ) -> Vec<(usize, Value)> {
        let fields = &self.resource.fields;
        values
            .into_iter()
            .filter(|(i, v)| {
                let f = &fields[*i];
                let stored = current.get(&f.name).unwrap_or(&Value::Null);
                crate::store::to_sql_value(f.ty, v) != crate::store::to_sql_value(f.ty, stored)
            })
            .collect()
    }

    /// Writes `changed` to record `n`; when it is empty, reads the record
    /// instead.
    pub(super) async fn write_changed(
        &self,
        tx: &mut WriteTx,
        id: &str,
        n: i64,
        scope: &Scope,
        changed: Vec<(usize, Value)>,
    ) -> Result<Record, ApiError> {
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
    pub(super) async fn current(
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
}
