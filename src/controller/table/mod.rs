//! The controller behind every declared table (§4.1, §4.2, §4.4, §6, §8.6).
//!
//! Per request it only: resolves the scope (parent keys from the path,
//! owner from the identity), parses the collection query, validates bodies
//! against schemas compiled at start-up, and asks the store. Read-only
//! fields sent by a client are ignored (so a client can PUT back what it
//! GOT); unknown and hidden fields are 422 `unknown_field`.
//!
//! One file per concept: [`access`] (scope, parents, the owner rule),
//! [`read`] (records, pages, cursors, sync), [`expand`] (embedded
//! relations), [`write`] (create, replace, merge-patch, delete, bulk).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Controller, Ctx, Operation, Reply};
use crate::config::Settings;
use crate::error::ApiError;
use crate::model::plan::{owned_below, references_to, OwnedPath, Reference, ResourcePlan};
use crate::model::{schema, ApiModel, Module, Resource};
use crate::query::cursor::CursorKey;
use crate::query::{Limits, Paging, QueryPolicy};
use crate::validate::Schema;

mod access;
mod expand;
mod live;
mod read;
mod write;

pub use expand::{MAX_EMBEDDED, MAX_EMBEDDED_BYTES, MAX_EXPANDED};
pub use write::{merge_patch, MAX_BULK};

use expand::Link;

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
    /// `belongs_to` keys, anywhere in the model, that name rows of this
    /// table: what a delete here must refuse, clear or cascade to.
    references: Vec<Reference>,
    /// This declaration's fields that are foreign keys of the table (by
    /// any declaration's `belongs_to`), with the target a write's value
    /// must name, read as the strictest declaration over it says.
    keys: Vec<(usize, ResourcePlan)>,
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
        let links = expand::links_of(module, &resource, 1)?;
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
            references: references_to(model, &resource.table),
            keys: key_targets(model, &resource)?,
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
}

/// The fields of `resource` that hold a foreign key of its table other
/// than its parent's (the path checks that one), each with a declaration
/// over the key's target table to check a value against: the one whose
/// chain keeps rows private, if any, so a key never reaches a row some
/// declaration hides from the caller.
fn key_targets(
    model: &ApiModel,
    resource: &Resource,
) -> Result<Vec<(usize, ResourcePlan)>, String> {
    let specs = crate::model::plan::foreign_keys(model).map_err(|e| e.to_string())?;
    let parent_column = resource
        .parent
        .as_ref()
        .map(|p| resource.fields[p.field].column.as_str());
    let mut out = Vec::new();
    for spec in specs.get(&resource.table).into_iter().flatten() {
        if Some(spec.column.as_str()) == parent_column {
            continue;
        }
        let Some(field) = resource.fields.iter().position(|f| f.column == spec.column) else {
            continue;
        };
        let mut chosen: Option<ResourcePlan> = None;
        for module in &model.modules {
            for t in module
                .resources
                .iter()
                .filter(|t| t.table == spec.target_table && t.controller.is_none())
            {
                let plan = module.plan(t);
                let private = plan.private();
                if chosen.is_none() || private {
                    chosen = Some(plan);
                }
            }
        }
        if let Some(plan) = chosen {
            out.push((field, plan));
        }
    }
    Ok(out)
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

pub(super) fn parse_id(raw: &str) -> Option<i64> {
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

    fn live(&self) -> bool {
        self.resource.sync
    }

    async fn changes(
        &self,
        cx: &Ctx,
        id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<crate::controller::Changes, ApiError> {
        self.read_changes(cx, id, after, limit).await
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
        self.list(cx).await
    }

    async fn fetch(&self, cx: &Ctx, id: &str) -> Result<Reply, ApiError> {
        self.read_one(cx, id).await
    }

    async fn create(&self, cx: &Ctx, body: Value) -> Result<Reply, ApiError> {
        self.create_one(cx, body).await
    }

    async fn update(&self, cx: &Ctx, id: &str, body: Value) -> Result<Reply, ApiError> {
        self.replace(cx, id, body).await
    }

    async fn patch(&self, cx: &Ctx, id: &str, patch: Value) -> Result<Reply, ApiError> {
        self.merge(cx, id, patch).await
    }

    async fn delete(&self, cx: &Ctx, id: &str) -> Result<Reply, ApiError> {
        self.remove(cx, id).await
    }

    async fn bulk_update(&self, cx: &Ctx, body: Value) -> Result<Reply, ApiError> {
        self.replace_many(cx, body).await
    }

    async fn delete_all(&self, cx: &Ctx) -> Result<Reply, ApiError> {
        self.remove_many(cx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nouns_are_singular() {
        assert_eq!(singular("books"), "book");
        assert_eq!(singular("shelves"), "shelf");
        assert_eq!(singular("categories"), "category");
    }
}
