//! The controller behind every declared table (§4.1, §4.2, §8.6).
//!
//! Per request it only: resolves the scope (parent keys from the path,
//! owner from the identity), validates the body against schemas compiled at
//! start-up, and asks the store. Read-only fields sent by a client are
//! ignored (so a client can PUT back what it GOT); unknown and hidden fields
//! are 422 `unknown_field`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{Controller, Ctx, Operation, Page, Reply};
use crate::error::{ApiError, FieldError};
use crate::model::{schema, Module, OwnerPolicy, Resource};
use crate::query::PageRequest;
use crate::store::{ListQuery, Record, Scope, SortKey, StoreError};
use crate::validate::Schema;

/// Paging limits a table controller applies.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub default_per_page: u64,
    pub max_per_page: u64,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            default_per_page: 20,
            max_per_page: 100,
        }
    }
}

pub struct TableController {
    resource: Arc<Resource>,
    /// Parents, nearest first.
    ancestors: Vec<Arc<Resource>>,
    create_schema: Schema,
    update_schema: Schema,
    list_fields: Vec<usize>,
    view_fields: Vec<usize>,
    /// Every writable field for PUT, in order.
    update_fields: Vec<usize>,
    /// Readable or known-but-not-writable fields, silently dropped from
    /// bodies.
    ignored_on_write: Vec<String>,
    noun: String,
    paging: Paging,
}

impl TableController {
    pub fn new(module: &Module, resource: Arc<Resource>, paging: Paging) -> Result<Self, String> {
        let create_schema = Schema::compile(schema::input_schema(&resource, true))?;
        let update_schema = Schema::compile(schema::input_schema(&resource, false))?;
        let writable_create = resource.writable(true);
        let writable_update = resource.writable(false);
        let ignored_on_write = resource
            .fields
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                !f.hidden && !writable_create.contains(i) && !writable_update.contains(i)
            })
            .map(|(_, f)| f.name.clone())
            .collect();
        Ok(TableController {
            ancestors: module.ancestors(&resource),
            create_schema,
            update_schema,
            list_fields: resource.readable(false),
            view_fields: resource.readable(true),
            update_fields: writable_update,
            ignored_on_write,
            noun: singular(&resource.name),
            resource,
            paging,
        })
    }

    fn not_found(&self, id: &str) -> ApiError {
        ApiError::not_found(&self.noun, id).dev(format!(
            "No row in {} with {} = {id} within the caller's scope.",
            self.resource.table,
            self.resource.pk().column
        ))
    }

    /// The scope every statement on this resource carries: parent keys
    /// (each ancestor checked to exist, within its own scope) and, for
    /// private resources, the owner.
    async fn scope(&self, cx: &Ctx, op: Operation) -> Result<Scope, ApiError> {
        let mut scope = Scope::default();
        if let Some(link) = &self.resource.parent {
            let parent_id = parent_chain_id(cx, &self.resource, &self.ancestors).await?;
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
    async fn check_owner(&self, cx: &Ctx, id: i64, scope: &Scope) -> Result<(), ApiError> {
        let Some(owner) = &self.resource.owner else {
            return Ok(());
        };
        if owner.policy != OwnerPolicy::ReadAllWriteOwn {
            return Ok(());
        }
        let user = cx.require_user()?;
        let rec = cx
            .store
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

    /// Drops fields a client may send but not write; refuses non-objects.
    fn writable_body(&self, body: Value) -> Result<Map<String, Value>, ApiError> {
        match body {
            Value::Object(mut map) => {
                for name in &self.ignored_on_write {
                    map.remove(name);
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

/// Resolves the parent id of `r` from the path, checking every ancestor
/// exists within its own scope: a missing parent, or a child under the
/// wrong parent, is 404.
async fn parent_chain_id(
    cx: &Ctx,
    r: &Resource,
    ancestors: &[Arc<Resource>],
) -> Result<i64, ApiError> {
    // Walk from the top-most ancestor down to the direct parent.
    let mut links = Vec::with_capacity(ancestors.len());
    let mut child: &Resource = r;
    for parent in ancestors {
        let link = child
            .parent
            .as_ref()
            .expect("ancestor chain follows parent links");
        let name = &child.fields[link.field].name;
        let raw = cx.param(name).unwrap_or_default();
        links.push((parent.clone(), raw.to_string()));
        child = parent;
    }
    let mut id = 0;
    let mut above: Option<(Arc<Resource>, i64)> = None;
    for (parent, raw) in links.into_iter().rev() {
        let noun = singular(&parent.name);
        id = raw
            .parse::<i64>()
            .map_err(|_| ApiError::not_found(&noun, &raw))?;
        let mut scope = Scope::default();
        if let (Some(link), Some((_, above_id))) = (&parent.parent, &above) {
            scope = scope.and(link.field, Value::from(*above_id));
        }
        if let Some(owner) = &parent.owner {
            if owner.policy == OwnerPolicy::Private {
                scope = scope.and(owner.field, Value::from(cx.require_user()?));
            }
        }
        if !cx.store.exists(&parent, id, &scope).await? {
            return Err(ApiError::not_found(&noun, &raw));
        }
        above = Some((parent, id));
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
        vec![Find, Fetch, Create, Update, Patch, Delete]
    }

    fn resource(&self) -> Option<&Arc<Resource>> {
        Some(&self.resource)
    }

    async fn find(&self, cx: &Ctx) -> Result<Reply, ApiError> {
        let page = PageRequest::parse(&cx.query, self.paging)?;
        let scope = self.scope(cx, Operation::Find).await?;
        let q = ListQuery {
            fields: &self.list_fields,
            scope: &scope,
            sort: vec![SortKey {
                field: self.resource.primary_key,
                descending: false,
            }],
            limit: page.limit,
            offset: page.offset,
        };
        let (records, total) = tokio::try_join!(
            cx.store.list(&self.resource, &q),
            cx.store.count(&self.resource, &scope)
        )?;
        Ok(Reply::Collection {
            records,
            page: Page {
                total: Some(total),
                per_page: page.limit,
                offset: page.offset,
            },
        })
    }

    async fn fetch(&self, cx: &Ctx, id: &str) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Fetch).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        cx.store
            .fetch(&self.resource, &self.view_fields, n, &scope)
            .await?
            .map(Reply::Record)
            .ok_or_else(|| self.not_found(id))
    }

    async fn create(&self, cx: &Ctx, body: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Create).await?;
        let body = self.writable_body(body)?;
        let instance = Value::Object(body);
        self.create_schema.check(&instance)?;
        let Value::Object(body) = instance else {
            unreachable!("checked above")
        };
        let mut values = self.values(&body, &self.resource.writable(true), false);
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
        let record: Record = cx
            .store
            .insert(&self.resource, &values, &self.view_fields)
            .await
            .map_err(Self::conflict)?;
        let id = record
            .get(&self.resource.pk().name)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let location = format!("{}/{}", cx.path.trim_end_matches('/'), id);
        Ok(Reply::Created { record, location })
    }

    async fn update(&self, cx: &Ctx, id: &str, body: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Update).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        self.check_owner(cx, n, &scope).await?;
        let body = Value::Object(self.writable_body(body)?);
        self.update_schema.check(&body)?;
        let Value::Object(body) = body else {
            unreachable!("checked above")
        };
        let values = self.values(&body, &self.update_fields, true);
        cx.store
            .update(&self.resource, n, &scope, &values, &self.view_fields)
            .await
            .map_err(Self::conflict)?
            .map(Reply::Record)
            .ok_or_else(|| self.not_found(id))
    }

    async fn patch(&self, cx: &Ctx, id: &str, patch: Value) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Patch).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        self.check_owner(cx, n, &scope).await?;
        let patch = Value::Object(self.writable_body(patch)?);
        let current = cx
            .store
            .fetch(&self.resource, &self.update_fields, n, &scope)
            .await?
            .ok_or_else(|| self.not_found(id))?;
        // Nulls of optional fields are absent in the merged document, as a
        // merge patch would leave them.
        let mut merged = Value::Object(current.into_iter().filter(|(_, v)| !v.is_null()).collect());
        merge_patch(&mut merged, &patch);
        self.update_schema.check(&merged)?;
        let Value::Object(merged) = merged else {
            unreachable!("patched an object")
        };
        let values = self.values(&merged, &self.update_fields, true);
        cx.store
            .update(&self.resource, n, &scope, &values, &self.view_fields)
            .await
            .map_err(Self::conflict)?
            .map(Reply::Record)
            .ok_or_else(|| self.not_found(id))
    }

    async fn delete(&self, cx: &Ctx, id: &str) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Delete).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        self.check_owner(cx, n, &scope).await?;
        if cx.store.delete(&self.resource, n, &scope).await? {
            Ok(Reply::Empty)
        } else {
            Err(self.not_found(id))
        }
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
