//! What each resource's declaration implies, derived once at start-up.
//!
//! A [`ResourcePlan`] holds the facts that several places need — the
//! parent chain and the paths it makes, and which fields each action may
//! read, write, filter and sort — so they are computed in one place and
//! every consumer (routes, the table controller, migrations, queries)
//! reads the same answer. Scenarios (§2.1) are applied here: a field a
//! scenario leaves out is not readable through `fields=`, `sort`, `filter`
//! or `q` either.

use std::sync::Arc;

use super::{ApiModel, Module, OnDelete, RelationKind, Resource};

/// A way down from a table to rows that belong to users: each step is a
/// nested resource and its field holding the key of the step above; the
/// last step's table has an owner column (declared on any resource over
/// that table). Deleting a row of the table deletes the rows at the end of
/// the path too (`ON DELETE CASCADE`).
#[derive(Debug, Clone)]
pub struct OwnedPath {
    pub steps: Vec<(Arc<Resource>, usize)>,
    /// The owner column of the last step's table.
    pub owner_column: String,
    /// Whether some declaration keeps those rows private (then a refusal
    /// must not describe them).
    pub private: bool,
}

/// Every [`OwnedPath`] below `table`, through any module's nested
/// resources and `belongs_to … on_delete = "cascade"` relations (a
/// cascade follows tables, not modules): the rows a delete
/// would take with it that someone owns. Paths through one table are
/// listed once; a cycle (or a chain deeper than 8) ends the walk.
pub fn owned_below(model: &ApiModel, table: &str) -> Vec<OwnedPath> {
    // Who owns a table's rows, whichever declaration says it.
    let owner_of = |table: &str| {
        let mut found: Option<(String, bool)> = None;
        for r in model.modules.iter().flat_map(|m| &m.resources) {
            if r.table != table || r.controller.is_some() {
                continue;
            }
            if let Some(o) = &r.owner {
                let private = o.restricts(super::Access::Read);
                let column = r.fields[o.field].column.clone();
                found = Some(match found {
                    Some((c, p)) => (c, p || private),
                    None => (column, private),
                });
            }
        }
        found
    };
    fn walk(
        model: &ApiModel,
        table: &str,
        owner_of: &dyn Fn(&str) -> Option<(String, bool)>,
        path: &mut Vec<(Arc<Resource>, usize)>,
        out: &mut Vec<OwnedPath>,
        seen: &mut Vec<Vec<(String, String)>>,
    ) {
        if path.len() >= 8 {
            return;
        }
        for (child, field) in cascades_into(model, table) {
            if path.iter().any(|(r, _)| r.table == child.table) {
                continue;
            }
            path.push((child.clone(), field));
            let key: Vec<(String, String)> = path
                .iter()
                .map(|(r, f)| (r.table.clone(), r.fields[*f].column.clone()))
                .collect();
            if let Some((owner_column, private)) = owner_of(&child.table) {
                if !seen.contains(&key) {
                    seen.push(key);
                    out.push(OwnedPath {
                        steps: path.clone(),
                        owner_column,
                        private,
                    });
                }
            }
            walk(model, &child.table, owner_of, path, out, seen);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(
        model,
        table,
        &owner_of,
        &mut Vec::new(),
        &mut out,
        &mut Vec::new(),
    );
    out
}

/// The rows a delete from `table` deletes with it, one level down: each
/// nested resource's parent key (`ON DELETE CASCADE`) and each
/// `belongs_to` key declared `cascade`, as (resource, key field).
fn cascades_into(model: &ApiModel, table: &str) -> Vec<(Arc<Resource>, usize)> {
    let mut out = Vec::new();
    for module in &model.modules {
        let target_is = |name: &str| module.find_resource(name).is_some_and(|p| p.table == table);
        for child in module.resources.iter().filter(|r| r.controller.is_none()) {
            if let Some(link) = child.parent.as_ref().filter(|l| target_is(&l.resource)) {
                out.push((child.clone(), link.field));
            }
            for rel in &child.relations {
                if rel.kind == RelationKind::BelongsTo
                    && rel.on_delete == OnDelete::Cascade
                    && target_is(&rel.resource)
                {
                    if let Some(field) = child.field_index(&rel.foreign_key) {
                        out.push((child.clone(), field));
                    }
                }
            }
        }
    }
    out
}

/// A `belongs_to` key that refers to rows of some table: the resource
/// holding it (the first declaration over its table that names it), the
/// key field, and what a delete of the row referred to does.
#[derive(Debug, Clone)]
pub struct Reference {
    /// A declaration over the referring table: one that stamps an
    /// `updated_at` when any does (clearing a key stamps the rows).
    pub resource: Arc<Resource>,
    pub field: usize,
    pub relation: String,
    pub on_delete: OnDelete,
    /// Some declaration keeps the referring rows private (its own owner
    /// or one up its parent chain): a refusal must not count them.
    pub private: bool,
}

/// Every `belongs_to` key in the model referring to rows of `table`, once
/// per (table, column) however many modules declare it.
pub fn references_to(model: &ApiModel, table: &str) -> Vec<Reference> {
    let private = |child_table: &str| {
        model.modules.iter().any(|m| {
            m.resources
                .iter()
                .filter(|r| r.table == child_table && r.controller.is_none())
                .any(|r| m.plan(r).private())
        })
    };
    let stamping = |child: &Arc<Resource>| {
        model
            .modules
            .iter()
            .flat_map(|m| m.resources.iter())
            .find(|r| r.table == child.table && r.controller.is_none() && r.updated_at().is_some())
            .cloned()
    };
    let mut out: Vec<Reference> = Vec::new();
    for module in &model.modules {
        for r in module.resources.iter().filter(|r| r.controller.is_none()) {
            for rel in r
                .relations
                .iter()
                .filter(|l| l.kind == RelationKind::BelongsTo)
            {
                let Some(target) = module.find_resource(&rel.resource) else {
                    continue;
                };
                let Some(field) = r.field_index(&rel.foreign_key) else {
                    continue;
                };
                let column = &r.fields[field].column;
                let known = out.iter().any(|x| {
                    x.resource.table == r.table && &x.resource.fields[x.field].column == column
                });
                if target.table == table && target.controller.is_none() && !known {
                    // The declaration that stamps, if another does, with
                    // the key's index in it.
                    let (resource, field) = match stamping(r) {
                        Some(s) if r.updated_at().is_none() => {
                            match s.fields.iter().position(|f| f.column == *column) {
                                Some(i) => (s, i),
                                None => (r.clone(), field),
                            }
                        }
                        _ => (r.clone(), field),
                    };
                    out.push(Reference {
                        private: private(&r.table),
                        resource,
                        field,
                        relation: rel.name.clone(),
                        on_delete: rel.on_delete,
                    });
                }
            }
        }
    }
    out
}

/// A foreign key the model asks of a table: a nested resource's parent
/// key (cascading) or a `belongs_to` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeySpec {
    pub column: String,
    /// The key's API name, for messages.
    pub field: String,
    pub target_table: String,
    pub target_column: String,
    pub on_delete: OnDelete,
    /// Which declaration asks for it, for messages.
    pub origin: String,
}

/// Every table's foreign keys, from every declaration over it. Two
/// declarations asking different things of one column (another target,
/// another `on_delete`) are an error naming both.
pub fn foreign_keys(
    model: &ApiModel,
) -> Result<std::collections::BTreeMap<String, Vec<ForeignKeySpec>>, super::ModelError> {
    let mut out: std::collections::BTreeMap<String, Vec<ForeignKeySpec>> = Default::default();
    for module in &model.modules {
        for r in module.resources.iter().filter(|r| r.controller.is_none()) {
            let place = format!("{}/{}", module.prefix, r.name);
            let mut wanted = Vec::new();
            if let Some(link) = &r.parent {
                if let Some(p) = module.find_resource(&link.resource) {
                    wanted.push((
                        link.field,
                        p,
                        OnDelete::Cascade,
                        format!("{place} parent_key"),
                    ));
                }
            }
            for rel in r
                .relations
                .iter()
                .filter(|l| l.kind == RelationKind::BelongsTo)
            {
                if let (Some(field), Some(p)) = (
                    r.field_index(&rel.foreign_key),
                    module.find_resource(&rel.resource),
                ) {
                    wanted.push((
                        field,
                        p,
                        rel.on_delete,
                        format!("{place} relation '{}'", rel.name),
                    ));
                }
            }
            for (field, target, on_delete, origin) in wanted {
                if target.controller.is_some() {
                    continue;
                }
                let spec = ForeignKeySpec {
                    column: r.fields[field].column.clone(),
                    field: r.fields[field].name.clone(),
                    target_table: target.table.clone(),
                    target_column: target.pk().column.clone(),
                    on_delete,
                    origin,
                };
                let keys = out.entry(r.table.clone()).or_default();
                match keys.iter().find(|k| k.column == spec.column) {
                    Some(k)
                        if k.target_table != spec.target_table || k.on_delete != spec.on_delete =>
                    {
                        return Err(super::ModelError::new(
                            spec.origin.clone(),
                            format!(
                                "column {}.{} refers to {} with on_delete = \"{}\" here, but {} says {} with \"{}\"; one column has one foreign key",
                                r.table,
                                spec.column,
                                spec.target_table,
                                spec.on_delete.as_str(),
                                k.origin,
                                k.target_table,
                                k.on_delete.as_str()
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => keys.push(spec),
                }
            }
        }
    }
    Ok(out)
}

/// The derived facts of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePlan {
    pub resource: Arc<Resource>,
    /// The resource and its parents, top-most first (the order of the path).
    pub chain: Vec<Arc<Resource>>,
    /// `/v1/books/{bookId}/reviews`: the collection path, parents' keys as
    /// `{apiName}` segments.
    pub collection_path: String,
    /// API names of the parents' key parameters in the path, top-most first.
    pub parent_params: Vec<String>,
    /// Readable in lists (`GET` collection), in declaration order.
    pub list_fields: Vec<usize>,
    /// Readable in a single record's view.
    pub view_fields: Vec<usize>,
    /// Writable on create.
    pub create_fields: Vec<usize>,
    /// Writable on replace and patch.
    pub update_fields: Vec<usize>,
    /// Usable in `q` and `filter`: list-readable and, when declared, in the
    /// `filterable` allowlist.
    pub filterable: Vec<usize>,
    /// Usable in `sort`: list-readable and, when declared, in `sortable`.
    pub sortable: Vec<usize>,
}

impl ResourcePlan {
    /// Whether an owner somewhere up the chain keeps these rows private
    /// to read.
    pub fn private(&self) -> bool {
        self.chain
            .iter()
            .any(|c| c.owner_field(super::Access::Read).is_some())
    }

    /// Derives `r`'s plan within `module` (the model must be validated:
    /// parents exist and chains end).
    pub fn new(module: &Module, r: &Arc<Resource>) -> ResourcePlan {
        let mut chain = vec![r.clone()];
        while let Some(p) = chain.last().and_then(|c| c.parent.as_ref()) {
            match module.find_resource(&p.resource) {
                Some(parent) if !chain.iter().any(|c| c.name == parent.name) => {
                    chain.push(parent.clone())
                }
                _ => break,
            }
        }
        chain.reverse();
        let mut collection_path = module.prefix.clone();
        let mut parent_params = Vec::new();
        for (i, res) in chain.iter().enumerate() {
            collection_path.push('/');
            collection_path.push_str(&res.name);
            if let Some(link) = chain
                .get(i + 1)
                .and_then(|c| c.parent.as_ref().map(|l| (c, l)))
            {
                let name = &link.0.fields[link.1.field].name;
                collection_path.push_str(&format!("/{{{name}}}"));
                parent_params.push(name.clone());
            }
        }
        let list_fields = r.readable(false);
        let allowed = |declared: &Option<Vec<usize>>| -> Vec<usize> {
            list_fields
                .iter()
                .copied()
                .filter(|i| declared.as_ref().is_none_or(|d| d.contains(i)))
                .collect()
        };
        ResourcePlan {
            filterable: allowed(&r.filterable),
            sortable: allowed(&r.sortable),
            view_fields: r.readable(true),
            create_fields: r.writable(true),
            update_fields: r.writable(false),
            list_fields,
            chain,
            collection_path,
            parent_params,
            resource: r.clone(),
        }
    }

    /// The parents, nearest first.
    pub fn ancestors(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.chain.iter().rev().skip(1)
    }

    /// How deep the resource is nested (0 for a top-level resource).
    pub fn depth(&self) -> usize {
        self.chain.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builder::*;
    use crate::model::FieldType;

    #[test]
    fn scenarios_bound_what_queries_may_name() {
        let mut r = Resource::new("notes", "notes")
            .field(Field::new("id", FieldType::Integer).primary_key())
            .field(Field::new("title", FieldType::String))
            .field(Field::new("secret", FieldType::String));
        r.scenarios.list = Some(vec![0, 1]);
        r.sortable = Some(vec![1, 2]);
        let model = ApiModel::builder()
            .module(Module::new("/api").resource(r))
            .build()
            .unwrap();
        let module = &model.modules[0];
        let plan = ResourcePlan::new(module, &module.resources[0]);
        assert_eq!(plan.list_fields, vec![0, 1]);
        assert_eq!(plan.view_fields, vec![0, 1, 2]);
        assert_eq!(plan.filterable, vec![0, 1]);
        assert_eq!(
            plan.sortable,
            vec![1],
            "the list scenario wins over sortable"
        );
    }
}
