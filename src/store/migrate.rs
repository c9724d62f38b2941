//! Creating and upgrading tables from the model (`restkit migrate`, §13).
//!
//! Forward-only and idempotent:
//! - a missing table is created;
//! - a declared column missing from an existing table is added, with its
//!   declared default filled into the existing rows;
//! - unique fields get a unique index, and a unique index whose field is no
//!   longer unique is dropped (nothing is lost by relaxing a constraint);
//! - a column whose stored type no longer fits its field's declared type is
//!   refused with an error naming the resource and field: restkit never
//!   reinterprets stored values (a text column read as an integer would
//!   serve `"AP"` as `0`).
//!
//! Nested resources reference their parent's key with `ON DELETE CASCADE`,
//! so deleting a book deletes its reviews. Every table that a sync
//! resource serves gets a trigger that writes a tombstone for each deleted
//! row, whichever route or cascade deleted it (§6.7), stamped with the
//! deleting transaction's change time from the clock row.
//!
//! restkit's own tables (users, tombstones, the clock) are declared here
//! too, as models, so the same code creates them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sea_query::{Alias, ColumnDef, ForeignKey, ForeignKeyAction, Index, SqliteQueryBuilder, Table};
use serde_json::Value;

use super::sql::{CLOCK, TOMBSTONES};
use super::sqlite::{SqliteStore, SqliteWrite};
use super::{Dialect, StoreError};
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
    }
    // NOT NULL for required fields would break ALTER TABLE ADD COLUMN on
    // non-empty tables; required-ness is enforced by validation instead.
    if let Some(v) = f.default.as_ref().and_then(|d| default_value(f.ty, d)) {
        c.default(v);
    }
    c
}

/// A declared default as a DDL literal (values come from the model, which
/// start-up checked against the field's own schema).
fn default_value(ty: FieldType, d: &Value) -> Option<sea_query::Value> {
    match d {
        Value::Null => None,
        v => Some(super::to_sql_value(ty, v)),
    }
}

fn unique_index(r: &Resource, f: &Field) -> String {
    format!("ux_{}_{}", r.table, f.column)
}

/// The statements that bring `r`'s table up to date, given its existing
/// columns (empty: create it). A column whose type no longer
/// fits is an error naming the resource and field.
fn plan(
    module: &Module,
    r: &Resource,
    existing: &[(String, String)],
) -> Result<Vec<String>, StoreError> {
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
            match existing
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(&f.column))
            {
                Some((_, declared)) => {
                    let d = Dialect::Sqlite;
                    if !f.primary_key && !d.column_fits(f.ty, declared) {
                        return Err(StoreError::Schema(format!(
                            "{}{} field '{}': declared {}, but column {}.{} has type {} ({} affinity); \
                             restkit will not reinterpret stored values — migrate the column's data \
                             or change the declaration",
                            r.module_prefix,
                            if r.module_prefix.is_empty() { r.name.clone() } else { format!("/{}", r.name) },
                            f.name,
                            f.ty.as_str(),
                            r.table,
                            f.column,
                            if declared.is_empty() { "(none)" } else { declared },
                            d.column_class(declared)
                        )));
                    }
                }
                None => {
                    let mut t = Table::alter();
                    t.table(Alias::new(r.table.as_str()))
                        .add_column(column_def(f));
                    out.push(t.build(SqliteQueryBuilder));
                }
            }
        }
    }
    for f in r.fields.iter().filter(|f| f.unique && !f.primary_key) {
        out.push(
            Index::create()
                .if_not_exists()
                .unique()
                .name(unique_index(r, f))
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
    // A sync read's mark is the latest change within the caller's owner
    // or parent (see `sql::select_list_with_mark`): an index answers it.
    if let (true, Some(updated)) = (r.sync, r.updated_at()) {
        let keys = [
            r.owner.as_ref().map(|o| o.field),
            r.parent.as_ref().map(|p| p.field),
        ];
        for key in keys.into_iter().flatten() {
            let key = &r.fields[key].column;
            out.push(
                Index::create()
                    .if_not_exists()
                    .name(format!("ix_{}_{}_{}", r.table, key, updated.column))
                    .table(Alias::new(r.table.as_str()))
                    .col(Alias::new(key.as_str()))
                    .col(Alias::new(updated.column.as_str()))
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
    Ok(out)
}

/// Unique indexes restkit made for fields that are no longer unique: only
/// indexes named as restkit names them (`ux_{table}_{column}`) for a
/// declared field that no declaration over the table marks unique any
/// more. Indexes anyone else made are never touched.
fn relaxed_uniques(tables: &[&Resource], indexes: &[String]) -> Vec<String> {
    let fields = || {
        tables
            .iter()
            .flat_map(|r| r.fields.iter().map(move |f| (*r, f)))
    };
    indexes
        .iter()
        .filter(|ix| {
            let ours = fields().any(|(r, f)| ix.eq_ignore_ascii_case(&unique_index(r, f)));
            let wanted = fields().any(|(r, f)| {
                f.unique && !f.primary_key && ix.eq_ignore_ascii_case(&unique_index(r, f))
            });
            ours && !wanted
        })
        .map(|ix| format!("DROP INDEX IF EXISTS \"{ix}\""))
        .collect()
}

/// The tombstone trigger of a sync table (§6.7): fires for every deleted
/// row, by any statement or cascade.
///
/// Each deleted row advances the clock by one microsecond, so every
/// tombstone has a time of its own (a long list can be cut anywhere), and
/// a delete made outside restkit — which never ran restkit's clock — is
/// still later than every mark a client was given.
///
/// The row's owner and parent keys are copied too (`owner_id`,
/// `parent_id`), so reads can report only the caller's deletions.
fn tombstone_trigger(table: &str, keys: &TableKeys) -> String {
    // Identifiers were checked at start-up to be letters, digits, '_' and
    // '-': they cannot close a quote.
    let old = |c: &Option<String>| match c {
        Some(c) => format!("OLD.\"{c}\""),
        None => "NULL".to_string(),
    };
    format!(
        "CREATE TRIGGER \"{name}\" AFTER DELETE ON \"{table}\" BEGIN \
         UPDATE {CLOCK} SET micros = micros + 1, stamp = {stamp} WHERE id = 1; \
         INSERT INTO {TOMBSTONES} (table_name, record_id, deleted_at, owner_id, parent_id) \
         VALUES ('{table}', OLD.\"{pk}\", (SELECT stamp FROM {CLOCK} WHERE id = 1), {owner}, {parent}); END",
        name = trigger_name(table),
        stamp = Dialect::Sqlite.stamp_sql("micros + 1"),
        pk = keys.pk,
        owner = old(&keys.owner),
        parent = old(&keys.parent),
    )
}

/// The key columns a table's tombstones copy.
#[derive(Debug, Default)]
struct TableKeys {
    pk: String,
    owner: Option<String>,
    parent: Option<String>,
}

fn trigger_name(table: &str) -> String {
    format!("restkit_tombstone_{table}")
}

/// The clock row and the tombstone lookup index: restkit's own DDL.
fn own_ddl() -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {CLOCK} (id INTEGER PRIMARY KEY CHECK (id = 1), \
             micros INTEGER NOT NULL, stamp TEXT NOT NULL)"
        ),
        // Start at the wall clock: later than every change time a database
        // from before the clock row can hold.
        {
            let now = chrono::Utc::now();
            format!(
                "INSERT OR IGNORE INTO {CLOCK} (id, micros, stamp) VALUES (1, {micros}, '{stamp}')",
                micros = now.timestamp_micros(),
                stamp = super::format_datetime(now),
            )
        },
        format!(
            "CREATE INDEX IF NOT EXISTS ix_{TOMBSTONES}_table_time \
             ON {TOMBSTONES} (table_name, deleted_at)"
        ),
        // The latest deletion within one owner or parent (a sync mark).
        format!(
            "CREATE INDEX IF NOT EXISTS ix_{TOMBSTONES}_owner_time \
             ON {TOMBSTONES} (table_name, owner_id, deleted_at)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS ix_{TOMBSTONES}_parent_time \
             ON {TOMBSTONES} (table_name, parent_id, deleted_at)"
        ),
    ]
}

/// Brings the database up to `model` in one transaction: every statement
/// or none (a refused field leaves no earlier table half-migrated), and
/// no other writer runs between them.
pub async fn sqlite(store: &SqliteStore, model: &ApiModel) -> Result<(), StoreError> {
    store.bound_writes(false);
    let done = async {
        let mut tx = store.begin_ddl().await?;
        run(&mut tx, model).await?;
        tx.commit().await
    }
    .await;
    store.bound_writes(true);
    done
}

async fn run(store: &mut SqliteWrite, model: &ApiModel) -> Result<(), StoreError> {
    let own = super::own::model();
    let mut sync_tables = BTreeSet::new();
    let mut all_tables: BTreeMap<String, TableKeys> = BTreeMap::new();
    for module in own.modules.iter().chain(&model.modules) {
        // Parents first, so foreign keys point at existing tables.
        let mut ordered: Vec<&Arc<Resource>> = module.resources.iter().collect();
        ordered.sort_by_key(|r| module.plan(r).depth());
        for r in ordered {
            if r.controller.is_some() {
                continue;
            }
            let existing = store.columns(&r.table).await?;
            for sql in plan(module, r, &existing)? {
                store.execute_ddl(&sql).await?;
            }
            let keys = all_tables
                .entry(r.table.clone())
                .or_insert_with(|| TableKeys {
                    pk: r.pk().column.clone(),
                    ..TableKeys::default()
                });
            if let Some(o) = &r.owner {
                keys.owner
                    .get_or_insert_with(|| r.fields[o.field].column.clone());
            }
            if let Some(p) = &r.parent {
                keys.parent
                    .get_or_insert_with(|| r.fields[p.field].column.clone());
            }
            if r.sync {
                sync_tables.insert(r.table.clone());
            }
        }
    }
    for sql in own_ddl() {
        store.execute_ddl(&sql).await?;
    }
    // Every resource over a table, across modules, decides its indexes.
    let resources: Vec<&Resource> = own
        .modules
        .iter()
        .chain(&model.modules)
        .flat_map(|m| m.resources.iter().map(|r| r.as_ref()))
        .filter(|r| r.controller.is_none())
        .collect();
    for (table, keys) in &all_tables {
        let over: Vec<&Resource> = resources
            .iter()
            .copied()
            .filter(|r| &r.table == table)
            .collect();
        for sql in relaxed_uniques(&over, &store.indexes(table).await?) {
            tracing::info!(table = %table, "{sql}: the field is no longer unique");
            store.execute_ddl(&sql).await?;
        }
        // Recreated every time, so a changed key column is followed.
        store
            .execute_ddl(&format!(
                "DROP TRIGGER IF EXISTS \"{}\"",
                trigger_name(table)
            ))
            .await?;
        if sync_tables.contains(table) {
            store.execute_ddl(&tombstone_trigger(table, keys)).await?;
        }
    }
    Ok(())
}
