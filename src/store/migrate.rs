//! Creating and upgrading tables from the model (`restkit migrate`, §13).
//!
//! Forward-only and idempotent: a missing table is created, a declared
//! column missing from an existing table is added, unique fields get a
//! unique index. Nothing is ever dropped or retyped: data is never lost by
//! a migration. Nested resources reference their parent's key with
//! `ON DELETE CASCADE`, so deleting a book deletes its reviews.
//!
//! restkit's own tables (users, …) are declared here too, as models, so the
//! same code creates them.

use sea_query::{Alias, ColumnDef, ForeignKey, ForeignKeyAction, Index, SqliteQueryBuilder, Table};

use super::sqlite::SqliteStore;
use super::StoreError;
use crate::model::{ApiModel, Field, FieldType, Module, Resource};

fn column_def(f: &Field) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(f.column.as_str()));
    match f.ty {
        FieldType::Integer => c.big_integer(),
        FieldType::Number => c.double(),
        FieldType::Boolean => c.boolean(),
        FieldType::String | FieldType::DateTime | FieldType::Json => c.text(),
    };
    if f.primary_key {
        // SQLite: INTEGER PRIMARY KEY AUTOINCREMENT, so ids are never reused
        // (a deleted id must stay deleted for sync clients).
        c.integer().not_null().primary_key().auto_increment();
    } else if f.required {
        // NOT NULL would break ALTER TABLE ADD COLUMN on non-empty tables;
        // required-ness is enforced by validation instead.
    }
    c
}

/// The statements that bring `r`'s table up to date, given its existing
/// columns (empty: create it).
fn plan(module: &Module, r: &Resource, existing: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if existing.is_empty() {
        let mut t = Table::create();
        t.table(Alias::new(r.table.as_str())).if_not_exists();
        for f in &r.fields {
            t.col(column_def(f));
        }
        if let Some(link) = &r.parent {
            if let Some(parent) = module.find_resource(&link.resource) {
                t.foreign_key(
                    ForeignKey::create()
                        .from(
                            Alias::new(r.table.as_str()),
                            Alias::new(r.fields[link.field].column.as_str()),
                        )
                        .to(
                            Alias::new(parent.table.as_str()),
                            Alias::new(parent.pk().column.as_str()),
                        )
                        .on_delete(ForeignKeyAction::Cascade),
                );
            }
        }
        out.push(t.build(SqliteQueryBuilder));
    } else {
        for f in &r.fields {
            if !existing.iter().any(|c| c.eq_ignore_ascii_case(&f.column)) {
                let mut t = Table::alter();
                t.table(Alias::new(r.table.as_str()))
                    .add_column(column_def(f));
                out.push(t.build(SqliteQueryBuilder));
            }
        }
    }
    for f in r.fields.iter().filter(|f| f.unique && !f.primary_key) {
        out.push(
            Index::create()
                .if_not_exists()
                .unique()
                .name(format!("ux_{}_{}", r.table, f.column))
                .table(Alias::new(r.table.as_str()))
                .col(Alias::new(f.column.as_str()))
                .build(SqliteQueryBuilder),
        );
    }
    for f in &r.fields {
        let sync_clock = r.sync && f.updated_at;
        if (f.indexed || sync_clock) && !f.unique && !f.primary_key {
            out.push(
                Index::create()
                    .if_not_exists()
                    .name(format!("ix_{}_{}", r.table, f.column))
                    .table(Alias::new(r.table.as_str()))
                    .col(Alias::new(f.column.as_str()))
                    .build(SqliteQueryBuilder),
            );
        }
    }
    if let Some(link) = &r.parent {
        let col = &r.fields[link.field].column;
        out.push(
            Index::create()
                .if_not_exists()
                .name(format!("ix_{}_{}", r.table, col))
                .table(Alias::new(r.table.as_str()))
                .col(Alias::new(col.as_str()))
                .build(SqliteQueryBuilder),
        );
    }
    out
}

/// restkit's own tables, declared like any resource.
pub fn own_model() -> ApiModel {
    use crate::model::builder::*;
    let tombstones = Resource::new("tombstones", super::sql::TOMBSTONES)
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(
            Field::new("tableName", FieldType::String)
                .required()
                .indexed(),
        )
        .field(Field::new("recordId", FieldType::Integer).required())
        .field(
            Field::new("deletedAt", FieldType::DateTime)
                .required()
                .indexed(),
        );
    let mut model = crate::auth::users::model();
    model
        .modules
        .push(Module::new("/_restkit_sync").resource(tombstones));
    model
}

pub async fn sqlite(store: &SqliteStore, model: &ApiModel) -> Result<(), StoreError> {
    let own = own_model();
    for module in own.modules.iter().chain(&model.modules) {
        // Parents first, so foreign keys point at existing tables.
        let mut ordered: Vec<&Resource> = module.resources.iter().map(|r| r.as_ref()).collect();
        ordered.sort_by_key(|r| module.ancestors(r).len());
        for r in ordered {
            if r.controller.is_some() {
                continue;
            }
            let existing = store.columns(&r.table).await?;
            for sql in plan(module, r, &existing) {
                store.execute_ddl(&sql).await?;
            }
        }
    }
    Ok(())
}
