//! Creating and evolving tables from the model (`restkit migrate`, §13,
//! §15).
//!
//! A migration is planned and applied in one transaction: every change is
//! a [`Step`] — what it means, per resource and field, and its SQL — and
//! the [`Report`] lists them, whether they were applied (`migrate`, and
//! `serve` at start-up) or rolled back after planning (`migrate --plan`).
//! What would leave stored data contradicting the declaration is refused,
//! with the resource, the field, how many rows and what to do, and then
//! nothing at all is changed:
//! - a required field without a default, added to a table with rows;
//! - a field made required while rows have no value in it (a default
//!   fills them);
//! - a new `unique` over values that repeat;
//! - a new foreign key that stored rows would break;
//! - a column whose stored type no longer fits its field's declared type
//!   (restkit never reinterprets stored values: a text column read as an
//!   integer would serve `"AP"` as `0`).
//!
//! Renames are declared (`renamed_from`), never guessed. Required fields
//! are `NOT NULL` in SQL (where every declaration over the table requires
//! them). A column no declaration names any more is kept, and the report
//! says so, unless `--drop` asks. A default added to a field fills the
//! rows that have none (a required field's, always). Unique indexes of
//! fields no longer unique are dropped (nothing is lost by relaxing).
//!
//! Nested resources reference their parent's key with `ON DELETE CASCADE`,
//! so deleting a book deletes its reviews; `belongs_to` keys are foreign
//! keys with their `on_delete`. Every table that a sync resource serves
//! gets a trigger that writes a tombstone for each deleted row, whichever
//! route or cascade deleted it (§6.7), stamped with the deleting
//! transaction's change time from the clock row.
//!
//! Each migration that changes something, or first meets a declaration,
//! is recorded in `restkit_schema_history` (the declaration's storage
//! facts, their hash, the time, the steps): `migrate --status` compares,
//! and `serve` refuses a database migrated since to another declaration.
//!
//! restkit's own tables (users, tombstones, the history) are declared
//! here too, as models, so the same code creates them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sea_query::{
    Alias, ColumnDef, Expr, ExprTrait, ForeignKey, ForeignKeyAction, Index, Query, Table,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::own::HISTORY;
use super::sql::{CLOCK, TOMBSTONES};
use super::{Dialect, Scope, StoreError, WriteTx};
use crate::model::plan::{self, ForeignKeySpec};
use crate::model::{ApiModel, Field, FieldType, OnDelete, Resource};

/// What a migration may do beyond what it always does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Drop the columns no declaration names (kept otherwise).
    pub drop: bool,
    /// Refuse a database migrated, since this declaration was applied to
    /// it, to another one (`serve`: an old instance must not write to a
    /// newer schema).
    pub refuse_if_ahead: bool,
}

/// One change a migration makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The resource it concerns (`/v1/pets`), or restkit's own table.
    pub subject: String,
    /// In words: `add field 'vetId' (integer, column vet_id)`.
    pub what: String,
    /// The statements, as run (values a backfill binds shown inline).
    pub sql: Vec<String>,
}

/// A migration's plan, applied or not.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<Step>,
    /// What was left as it is and is worth knowing (a column kept).
    pub notes: Vec<String>,
    /// The hash of the declaration's storage facts.
    pub declaration: String,
    /// The last recorded migration: its declaration's hash and time.
    pub last: Option<(String, String)>,
}

impl Report {
    /// The database is the declaration's, as the last migration left it,
    /// and nothing is to change.
    pub fn is_current(&self) -> bool {
        self.steps.is_empty()
            && self
                .last
                .as_ref()
                .is_some_and(|(hash, _)| *hash == self.declaration)
    }

    /// The steps in words and SQL, then the notes; one line when there is
    /// nothing to do.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.steps.is_empty() {
            out.push_str("no changes: the database matches the declaration\n");
        }
        for (i, step) in self.steps.iter().enumerate() {
            out.push_str(&format!("{}. {}: {}\n", i + 1, step.subject, step.what));
            for sql in &step.sql {
                out.push_str(&format!("     {sql};\n"));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }
}

/// What a declaration asks of the database, table by table: the facts a
/// later migration compares against (a default that is new) and hashes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Declared {
    tables: BTreeMap<String, DeclaredTable>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct DeclaredTable {
    columns: BTreeMap<String, DeclaredColumn>,
    /// column → `target.column on_delete`
    keys: BTreeMap<String, String>,
    sync: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeclaredColumn {
    ty: String,
    /// Every declaration over the table has the column, requires it, and
    /// gives it a value on create (the client's, a default, a generated
    /// one, restkit's time or the path's or caller's key): the column can
    /// refuse null without a create through any route failing.
    required: bool,
    default: Option<Value>,
    unique: bool,
    indexed: bool,
}

impl Declared {
    fn of(model: &ApiModel) -> Result<Declared, StoreError> {
        let mut out = Declared::default();
        let keys = plan::foreign_keys(model).map_err(|e| StoreError::Schema(e.to_string()))?;
        let mut declarations: BTreeMap<&str, usize> = BTreeMap::new();
        let mut filled: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for r in tables_of(model) {
            *declarations.entry(r.table.as_str()).or_default() += 1;
            let create = r.writable(true);
            for (i, f) in r.fields.iter().enumerate() {
                let by_restkit = f.created_at
                    || f.updated_at
                    || f.generated
                    || r.owner.as_ref().is_some_and(|o| o.field == i)
                    || r.parent.as_ref().is_some_and(|p| p.field == i);
                let given = create.contains(&i) || by_restkit || f.default.is_some();
                if f.required && !f.primary_key && !f.hidden && given {
                    *filled
                        .entry((r.table.as_str(), f.column.as_str()))
                        .or_default() += 1;
                }
            }
        }
        for r in tables_of(model) {
            let t = out.tables.entry(r.table.clone()).or_default();
            t.sync |= r.sync;
            for f in &r.fields {
                let key = (r.table.as_str(), f.column.as_str());
                let required = filled.get(&key) == declarations.get(r.table.as_str());
                let c = t
                    .columns
                    .entry(f.column.clone())
                    .or_insert_with(|| DeclaredColumn {
                        ty: f.ty.describe(),
                        required,
                        default: None,
                        unique: false,
                        indexed: false,
                    });
                c.required &= required;
                c.unique |= f.unique && !f.primary_key;
                c.indexed |= f.indexed;
                if c.default.is_none() {
                    c.default = f.default.clone().filter(|v| !v.is_null());
                }
            }
        }
        for (table, specs) in keys {
            let t = out.tables.entry(table).or_default();
            for k in specs {
                t.keys.insert(
                    k.column,
                    format!(
                        "{}.{} {}",
                        k.target_table,
                        k.target_column,
                        k.on_delete.as_str()
                    ),
                );
            }
        }
        Ok(out)
    }

    fn hash(&self) -> String {
        use sha2::Digest;
        let text = serde_json::to_string(self).unwrap_or_default();
        sha2::Sha256::digest(text.as_bytes())
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn column(&self, table: &str, column: &str) -> Option<&DeclaredColumn> {
        self.tables.get(table)?.columns.get(column)
    }
}

/// The resources served from tables, in declaration order.
fn tables_of(model: &ApiModel) -> impl Iterator<Item = &Arc<Resource>> {
    model
        .modules
        .iter()
        .flat_map(|m| m.resources.iter())
        .filter(|r| r.controller.is_none())
}

fn column_def(d: Dialect, f: &Field, not_null: bool) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(f.column.as_str()));
    match f.ty {
        FieldType::Integer | FieldType::Decimal { .. } => c.big_integer(),
        FieldType::Number => c.double(),
        FieldType::Boolean => c.boolean(),
        FieldType::String
        | FieldType::DateTime
        | FieldType::Date
        | FieldType::Time
        | FieldType::Uuid
        | FieldType::Json => c.text(),
    };
    if d == Dialect::Postgres && (f.ty == FieldType::String || f.ty.is_canonical_text()) {
        // Code-point order, as SQLite's BINARY: sorts, keyset pages and
        // change-time comparisons agree on both databases.
        c.extra("COLLATE \"C\"");
    }
    // Ids are never reused (a deleted id must stay deleted for sync
    // clients).
    match (f.primary_key, d) {
        (false, _) => {}
        // INTEGER PRIMARY KEY AUTOINCREMENT.
        (true, Dialect::Sqlite) => {
            c.integer().not_null().primary_key().auto_increment();
        }
        // A 64-bit identity; BY DEFAULT so a seed may give explicit ids
        // (the sequence is then moved past them).
        (true, Dialect::Postgres) => {
            c.big_integer()
                .not_null()
                .primary_key()
                .extra("GENERATED BY DEFAULT AS IDENTITY");
        }
    }
    if not_null && !f.primary_key {
        c.not_null();
    }
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

fn unique_index(d: Dialect, r: &Resource, f: &Field) -> String {
    d.index_name(format!("ux_{}_{}", r.table, f.column))
}

/// The indexes `r`'s declaration asks of its table: (name, columns,
/// unique, the field a unique one is for).
fn wanted_indexes(d: Dialect, r: &Resource) -> Vec<(String, Vec<String>, Option<usize>)> {
    let mut out = Vec::new();
    for (i, f) in r.fields.iter().enumerate() {
        if f.unique && !f.primary_key {
            out.push((unique_index(d, r, f), vec![f.column.clone()], Some(i)));
        }
    }
    for f in &r.fields {
        let sync_clock = r.sync && f.updated_at;
        if (f.indexed || sync_clock) && !f.unique && !f.primary_key {
            out.push((
                d.index_name(format!("ix_{}_{}", r.table, f.column)),
                vec![f.column.clone()],
                None,
            ));
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
            out.push((
                d.index_name(format!("ix_{}_{}_{}", r.table, key, updated.column)),
                vec![key.clone(), updated.column.clone()],
                None,
            ));
        }
    }
    if let Some(link) = &r.parent {
        let col = &r.fields[link.field].column;
        out.push((
            d.index_name(format!("ix_{}_{}", r.table, col)),
            vec![col.clone()],
            None,
        ));
    }
    let mut seen = BTreeSet::new();
    out.retain(|ix| seen.insert(ix.0.clone()));
    out
}

fn index_sql(d: Dialect, table: &str, name: &str, columns: &[String], unique: bool) -> String {
    let mut ix = Index::create();
    ix.if_not_exists().name(name).table(Alias::new(table));
    if unique {
        ix.unique();
    }
    for c in columns {
        ix.col(Alias::new(c.as_str()));
    }
    d.schema(&ix)
}

/// `/v1/pets`, or restkit's own table by its name.
fn subject(r: &Resource) -> String {
    if r.module_prefix.starts_with("/_restkit") {
        format!("restkit's table {}", r.table)
    } else {
        format!("{}/{}", r.module_prefix, r.name)
    }
}

fn rows_word(n: i64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

/// A migration under way: the transaction, what it did, what it refused.
struct Migration<'a> {
    tx: &'a mut WriteTx,
    d: Dialect,
    options: Options,
    report: Report,
    refusals: Vec<String>,
    /// This declaration's storage facts, and the last migration's.
    declared: Declared,
    previous: Option<Declared>,
    /// Columns added by this migration, per table (their values are the
    /// database's defaults already).
    added: BTreeSet<(String, String)>,
    /// SQLite: columns whose null rule changes at the table's rebuild.
    not_null: BTreeMap<String, Vec<(String, bool)>>,
}

impl Migration<'_> {
    /// Runs `sql` and records it as a step.
    async fn step(
        &mut self,
        subject: String,
        what: String,
        sql: Vec<String>,
    ) -> Result<(), StoreError> {
        for s in &sql {
            self.tx.execute_ddl(s).await?;
        }
        self.report.steps.push(Step { subject, what, sql });
        Ok(())
    }

    async fn count(&mut self, stmt: sea_query::SelectStatement) -> Result<i64, StoreError> {
        Ok(self.tx.scalar(stmt).await?.unwrap_or(0))
    }

    /// How many rows of `table` have a value in `column` (`null`: have
    /// none).
    async fn count_values(
        &mut self,
        table: &str,
        column: &str,
        null: bool,
    ) -> Result<i64, StoreError> {
        let c = Expr::col(Alias::new(column));
        let stmt = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from(Alias::new(table))
            .and_where(if null { c.is_null() } else { c.is_not_null() })
            .to_owned();
        self.count(stmt).await
    }

    async fn has_rows(&mut self, table: &str) -> Result<bool, StoreError> {
        let stmt = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from_subquery(
                Query::select()
                    .expr(Expr::val(1))
                    .from(Alias::new(table))
                    .limit(1)
                    .to_owned(),
                Alias::new("any_row"),
            )
            .to_owned();
        Ok(self.count(stmt).await? > 0)
    }

    /// Renames the table of a resource declared `renamed_from` another,
    /// when the new one is not there and the old one is.
    async fn rename_table(&mut self, r: &Resource) -> Result<(), StoreError> {
        let Some(old) = &r.renamed_from else {
            return Ok(());
        };
        if old == &r.table || !self.tx.columns(&r.table).await?.is_empty() {
            return Ok(());
        }
        if self.tx.columns(old).await?.is_empty() {
            self.report.notes.push(format!(
                "{}: renamed_from = \"{old}\", but there is no table {old} (already renamed?); {} is created",
                subject(r),
                r.table
            ));
            return Ok(());
        }
        // The table takes its triggers with it: the old tombstone trigger
        // goes (the migration makes the new one), and the deletions
        // recorded under the old name move to the new one, so sync clients
        // still get them. (Both names were checked to be identifiers.)
        let new = &r.table;
        let mut sql = vec![format!("ALTER TABLE \"{old}\" RENAME TO \"{new}\"")];
        let trigger = trigger_name(old);
        match self.d {
            Dialect::Sqlite => sql.push(format!("DROP TRIGGER IF EXISTS \"{trigger}\"")),
            Dialect::Postgres => {
                sql.push(format!("DROP TRIGGER IF EXISTS \"{trigger}\" ON \"{new}\""));
                sql.push(format!("DROP FUNCTION IF EXISTS \"{trigger}\"()"));
            }
        }
        if !self.tx.columns(TOMBSTONES).await?.is_empty() {
            sql.push(format!(
                "UPDATE {TOMBSTONES} SET table_name = '{new}' WHERE table_name = '{old}'"
            ));
        }
        self.step(
            subject(r),
            format!("rename table {old} to {new} (renamed_from)"),
            sql,
        )
        .await
    }

    /// Creates `r`'s table, or brings its columns and indexes up to it.
    async fn table(
        &mut self,
        r: &Resource,
        keys: &[ForeignKeySpec],
        own: bool,
    ) -> Result<(), StoreError> {
        let d = self.d;
        let existing = self.tx.columns(&r.table).await?;
        let required = |m: &Migration<'_>, f: &Field| {
            !own && m
                .declared
                .column(&r.table, &f.column)
                .is_some_and(|c| c.required)
        };
        if existing.is_empty() {
            let mut t = Table::create();
            t.table(Alias::new(r.table.as_str())).if_not_exists();
            for f in &r.fields {
                t.col(column_def(d, f, required(self, f)));
            }
            // SQLite takes a key to a table not made yet and cannot add
            // one later without a rebuild: all of them now. PostgreSQL
            // needs the target to exist: the parent's key now (parents are
            // made first), the others once every table is there.
            for spec in keys {
                let parent = r
                    .parent
                    .as_ref()
                    .is_some_and(|l| r.fields[l.field].column == spec.column);
                if d == Dialect::Sqlite || parent {
                    t.foreign_key(
                        ForeignKey::create()
                            .from(
                                Alias::new(r.table.as_str()),
                                Alias::new(spec.column.as_str()),
                            )
                            .to(
                                Alias::new(spec.target_table.as_str()),
                                Alias::new(spec.target_column.as_str()),
                            )
                            .on_delete(match spec.on_delete {
                                OnDelete::Restrict => ForeignKeyAction::Restrict,
                                OnDelete::Cascade => ForeignKeyAction::Cascade,
                                OnDelete::SetNull => ForeignKeyAction::SetNull,
                            }),
                    );
                }
            }
            let mut sql = vec![d.schema(&t)];
            for (name, columns, unique) in wanted_indexes(d, r) {
                sql.push(index_sql(d, &r.table, &name, &columns, unique.is_some()));
            }
            let names: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
            return self
                .step(
                    subject(r),
                    format!("create table {} ({})", r.table, names.join(", ")),
                    sql,
                )
                .await;
        }
        let mut existing = existing;
        for f in &r.fields {
            let found = existing
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(&f.column))
                .cloned();
            match found {
                Some((_, declared)) => {
                    self.check_kept(r, f, &declared, &f.column).await?;
                }
                None => {
                    if let Some((old, declared)) = self.renamed_column(f, &existing) {
                        let sql = format!(
                            "ALTER TABLE \"{}\" RENAME COLUMN \"{old}\" TO \"{}\"",
                            r.table, f.column
                        );
                        self.step(
                            subject(r),
                            format!(
                                "rename field '{}' (column {old} to {}; renamed_from)",
                                f.name, f.column
                            ),
                            vec![sql],
                        )
                        .await?;
                        self.check_kept(r, f, &declared, &old).await?;
                        existing = self.tx.columns(&r.table).await?;
                        continue;
                    }
                    let needs_value = required(self, f);
                    let has_default = f.default.as_ref().is_some_and(|v| !v.is_null());
                    let rows = self.has_rows(&r.table).await?;
                    if needs_value && !has_default && rows {
                        let n = self.count_values(&r.table, &r.pk().column, false).await?;
                        self.refusals.push(format!(
                            "{} field '{}' is new and required, without a default, but table {} has {}: \
                             {} no value. Declare a default (it fills them), or make \
                             the field optional, then run migrate again",
                            subject(r),
                            f.name,
                            r.table,
                            rows_word(n),
                            if n == 1 { "it would have" } else { "they would have" }
                        ));
                        continue;
                    }
                    // SQLite cannot add a NOT NULL column without a
                    // default, even to an empty table: added nullable,
                    // made NOT NULL by the table's rebuild.
                    let not_null = needs_value && (has_default || d == Dialect::Postgres);
                    if needs_value && !not_null {
                        self.not_null
                            .entry(r.table.clone())
                            .or_default()
                            .push((f.column.clone(), true));
                    }
                    let mut t = Table::alter();
                    t.table(Alias::new(r.table.as_str()))
                        .add_column(column_def(d, f, not_null));
                    let what = format!(
                        "add field '{}' ({}{}{}, column {})",
                        f.name,
                        f.ty.as_str(),
                        if needs_value { ", required" } else { "" },
                        match &f.default {
                            Some(v) if !v.is_null() && rows =>
                                format!(", existing rows get the default {v}"),
                            _ => String::new(),
                        },
                        f.column
                    );
                    self.step(subject(r), what, vec![d.schema(&t)]).await?;
                    self.added.insert((r.table.clone(), f.column.clone()));
                    existing = self.tx.columns(&r.table).await?;
                }
            }
        }
        let indexes = self.tx.indexes(&r.table).await?;
        for (name, columns, unique) in wanted_indexes(d, r) {
            if indexes.iter().any(|ix| ix.eq_ignore_ascii_case(&name)) {
                continue;
            }
            if !existing
                .iter()
                .any(|(c, _)| columns.iter().any(|w| w.eq_ignore_ascii_case(c)))
            {
                continue; // its column was refused above
            }
            let what = match unique {
                Some(i) => {
                    let f = &r.fields[i];
                    let repeated = self.repeated_values(&r.table, &f.column).await?;
                    if repeated > 0 {
                        self.refusals.push(format!(
                            "{} field '{}' is now unique, but {} of table {} share a value with another \
                             row; make them distinct (SELECT {col}, COUNT(*) FROM {t} GROUP BY {col} \
                             HAVING COUNT(*) > 1), then run migrate again",
                            subject(r),
                            f.name,
                            rows_word(repeated),
                            r.table,
                            col = f.column,
                            t = r.table,
                        ));
                        continue;
                    }
                    format!("make field '{}' unique (index {name})", f.name)
                }
                None => format!("index {} (index {name})", columns.join(", ")),
            };
            let sql = index_sql(d, &r.table, &name, &columns, unique.is_some());
            self.step(subject(r), what, vec![sql]).await?;
        }
        Ok(())
    }

    /// The column a field declared `renamed_from` another had, when the
    /// table still has it and not the field's own.
    fn renamed_column(&self, f: &Field, existing: &[(String, String)]) -> Option<(String, String)> {
        let old = f.renamed_from.as_ref()?;
        [old.clone(), crate::model::snake_case(old)]
            .into_iter()
            .find_map(|c| {
                existing
                    .iter()
                    .find(|(e, _)| e.eq_ignore_ascii_case(&c))
                    .cloned()
            })
    }

    /// A column kept (or renamed from `previous`) for `f`: refused when
    /// its stored values would be read as something they are not — a
    /// type the last migration recorded as another (narrower, or
    /// another meaning), a column type that does not fit, or a decimal
    /// over values no migration recorded as decimals of its scale (`12`
    /// could be 12 or 0.12).
    async fn check_kept(
        &mut self,
        r: &Resource,
        f: &Field,
        declared: &str,
        previous: &str,
    ) -> Result<(), StoreError> {
        let d = self.d;
        let before = self
            .previous
            .as_ref()
            .and_then(|p| p.column(&r.table, previous))
            .map(|c| c.ty.clone());
        let now = f.ty.describe();
        if let Some(before) = before.clone().filter(|b| *b != now && !widens(b, &now)) {
            self.refusals.push(format!(
                "{} field '{}' was {before} and is declared {now}: its stored values would be \
                 read as something they are not (a narrower or another type). Declare a new \
                 field of the new type and copy the values into it, or keep the type",
                subject(r),
                f.name,
            ));
            return Ok(());
        }
        if !f.primary_key && !d.column_fits(f.ty, declared) {
            self.refusals.push(format!(
                "{} field '{}': declared {}, but column {}.{} has type {}{}; \
                 restkit will not reinterpret stored values — migrate the column's data \
                 or change the declaration",
                subject(r),
                f.name,
                f.ty.as_str(),
                r.table,
                previous,
                if declared.is_empty() {
                    "(none)"
                } else {
                    declared
                },
                d.column_class(declared)
            ));
            return Ok(());
        }
        if matches!(f.ty, FieldType::Decimal { .. }) && before.is_none() {
            let n = self.count_values(&r.table, &f.column, false).await?;
            if n > 0 {
                self.refusals.push(format!(
                    "{} field '{}' is declared {now} over column {}.{previous}, whose {} with a value \
                     no migration recorded as decimals of that scale (12 could mean 12 or 0.12); \
                     declare the decimal as a new field and copy the values into it (times 10^scale)",
                    subject(r),
                    f.name,
                    r.table,
                    rows_word(n)
                ));
            }
        }
        Ok(())
    }

    /// How many rows hold a value of `column` that another row holds too.
    async fn repeated_values(&mut self, table: &str, column: &str) -> Result<i64, StoreError> {
        let c = || Expr::col(Alias::new(column));
        let repeated = Query::select()
            .column(Alias::new(column))
            .from(Alias::new(table))
            .and_where(c().is_not_null())
            .group_by_col(Alias::new(column))
            .and_having(Expr::cust("COUNT(*) > 1"))
            .to_owned();
        let stmt = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from(Alias::new(table))
            .and_where(c().in_subquery(repeated))
            .to_owned();
        self.count(stmt).await
    }

    /// Fills the empty values of fields with a default that is new (or
    /// that a required field needs), makes required fields `NOT NULL`
    /// and others nullable, adds missing foreign keys, and keeps (or with
    /// `--drop` drops) the columns no declaration names; SQLite's
    /// constraint changes in one rebuild of the table.
    async fn constraints(
        &mut self,
        table: &str,
        over: &[&Resource],
        keys: &[ForeignKeySpec],
        own: bool,
    ) -> Result<(), StoreError> {
        let d = self.d;
        let Some(first) = over.first().copied() else {
            return Ok(());
        };
        let who = subject(first);
        let existing: Vec<String> = self
            .tx
            .columns(table)
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        if existing.is_empty() {
            return Ok(()); // a refused table
        }
        let mut changes: Vec<String> = Vec::new();
        let mut sql: Vec<String> = Vec::new();
        let mut not_null = self.not_null.remove(table).unwrap_or_default();
        for (column, _) in &not_null {
            changes.push(format!("column {column} refuses null (required)"));
        }
        if !own {
            let declared = self.declared.tables.get(table).cloned().unwrap_or_default();
            // Defaults that are new fill the rows without a value, moving
            // their change time (sync clients then fetch the filled
            // values) in every `updated_at` column over the table.
            let stamped: BTreeSet<&str> = over
                .iter()
                .filter_map(|r| r.updated_at())
                .map(|f| f.column.as_str())
                .collect();
            for (column, c) in &declared.columns {
                let Some(default) = &c.default else { continue };
                if !existing.iter().any(|e| e.eq_ignore_ascii_case(column))
                    || self.added.contains(&(table.to_string(), column.clone()))
                {
                    continue;
                }
                let before = self.previous.as_ref().and_then(|p| p.column(table, column));
                let new_default = before.is_some_and(|b| b.default.is_none());
                if !(c.required || new_default) {
                    continue;
                }
                let n = self.count_values(table, column, true).await?;
                if n == 0 {
                    continue;
                }
                let Some((r, f)) = over.iter().find_map(|r| {
                    r.fields
                        .iter()
                        .find(|f| &f.column == column)
                        .map(|f| (*r, f))
                }) else {
                    continue;
                };
                let mut stmt = Query::update()
                    .table(Alias::new(table))
                    .value(
                        Alias::new(column.as_str()),
                        super::to_sql_value(f.ty, default),
                    )
                    .and_where(Expr::col(Alias::new(column.as_str())).is_null())
                    .to_owned();
                if !stamped.is_empty() {
                    self.tx.take_change_time().await?;
                    for c in &stamped {
                        stmt.value(Alias::new(*c), self.tx.now().to_string());
                    }
                }
                let shown = match d {
                    Dialect::Sqlite => stmt.to_string(sea_query::SqliteQueryBuilder),
                    Dialect::Postgres => stmt.to_string(sea_query::PostgresQueryBuilder),
                };
                self.tx.execute_update(r, stmt).await?;
                self.report.steps.push(Step {
                    subject: subject(r),
                    what: format!(
                        "fill field '{}' with its default {default} in the {} without a value",
                        f.name,
                        rows_word(n)
                    ),
                    sql: vec![shown],
                });
            }
            // Required fields refuse null; the others (and columns no
            // declaration names) take it.
            let refusing: Vec<String> = self.tx.not_null_columns(table).await?;
            for (column, c) in &declared.columns {
                let present = existing.iter().any(|e| e.eq_ignore_ascii_case(column));
                let refuses = refusing.iter().any(|e| e.eq_ignore_ascii_case(column));
                if !present || refuses == c.required || not_null.iter().any(|(n, _)| n == column) {
                    continue;
                }
                let field = over
                    .iter()
                    .find_map(|r| r.fields.iter().find(|f| &f.column == column))
                    .map(|f| f.name.clone())
                    .unwrap_or_else(|| column.clone());
                if c.required {
                    let n = self.count_values(table, column, true).await?;
                    if n > 0 {
                        self.refusals.push(format!(
                            "{who} field '{field}' is required, but {} of table {table} have no value in it; \
                             declare a default (it fills them) or fill them, then run migrate again",
                            rows_word(n)
                        ));
                        continue;
                    }
                    changes.push(format!("field '{field}' refuses null (required)"));
                } else {
                    changes.push(format!("field '{field}' takes null (no longer required)"));
                }
                not_null.push((column.clone(), c.required));
            }
            for column in &refusing {
                let undeclared = !declared
                    .columns
                    .keys()
                    .any(|c| c.eq_ignore_ascii_case(column));
                if undeclared {
                    changes.push(format!("column {column}, no longer declared, takes null"));
                    not_null.push((column.clone(), false));
                }
            }
            if d == Dialect::Postgres {
                for (column, refuse) in &not_null {
                    sql.push(format!(
                        "ALTER TABLE \"{table}\" ALTER COLUMN \"{column}\" {} NOT NULL",
                        if *refuse { "SET" } else { "DROP" }
                    ));
                }
            }
        }
        // Foreign keys the table lacks.
        let present = self.tx.foreign_keys(table).await?;
        // (A key whose column was refused above is not there to check.)
        let missing: Vec<&ForeignKeySpec> = keys
            .iter()
            .filter(|k| existing.iter().any(|e| e.eq_ignore_ascii_case(&k.column)))
            .filter(|k| !present.iter().any(|e| e.satisfies(k)))
            .collect();
        for k in &missing {
            let column = || Expr::col(Alias::new(k.column.as_str()));
            let orphans = Query::select()
                .expr(Expr::cust("COUNT(*)"))
                .from(Alias::new(table))
                .and_where(column().is_not_null())
                .and_where(
                    column().not_in_subquery(
                        Query::select()
                            .column(Alias::new(k.target_column.as_str()))
                            .from(Alias::new(k.target_table.as_str()))
                            .to_owned(),
                    ),
                )
                .to_owned();
            let n = self.count(orphans).await?;
            if n > 0 {
                self.refusals.push(format!(
                    "{origin}: {rows} of {table} {have} a {field} naming no row of {target}, so the \
                     foreign key cannot be added; set {them} to an existing key or to null, or delete {them}, \
                     then run migrate again. They are: SELECT * FROM {table} WHERE {column} NOT IN \
                     (SELECT {target_column} FROM {target})",
                    origin = k.origin,
                    rows = rows_word(n),
                    have = if n == 1 { "has" } else { "have" },
                    them = if n == 1 { "it" } else { "them" },
                    field = k.field,
                    target = k.target_table,
                    column = k.column,
                    target_column = k.target_column,
                ));
                continue;
            }
            changes.push(format!(
                "foreign key {} → {}.{} on delete {} ({})",
                k.field,
                k.target_table,
                k.target_column,
                k.on_delete.as_str(),
                k.origin
            ));
            if d == Dialect::Postgres {
                for old in present
                    .iter()
                    .filter(|e| e.column.eq_ignore_ascii_case(&k.column))
                {
                    if let Some(name) = &old.name {
                        sql.push(format!(
                            "ALTER TABLE \"{table}\" DROP CONSTRAINT \"{}\"",
                            name.replace('"', "\"\"")
                        ));
                    }
                }
                sql.push(format!(
                    "ALTER TABLE \"{table}\" ADD CONSTRAINT \"{name}\" FOREIGN KEY (\"{column}\") \
                     REFERENCES \"{target}\" (\"{target_column}\") ON DELETE {action}",
                    name = d.index_name(format!("fk_{table}_{}", k.column)),
                    column = k.column,
                    target = k.target_table,
                    target_column = k.target_column,
                    action = k.on_delete.sql(),
                ));
            }
        }
        if !changes.is_empty() && self.refusals.is_empty() {
            match d {
                Dialect::Postgres => {
                    self.step(who.clone(), changes.join("; "), sql).await?;
                }
                Dialect::Sqlite => {
                    self.tx.rebuild(table, keys, &not_null).await?;
                    let broken: Vec<(String, i64)> = self
                        .tx
                        .foreign_key_violations()
                        .await?
                        .into_iter()
                        .filter(|(t, _)| t.eq_ignore_ascii_case(table))
                        .collect();
                    if let Some((_, n)) = broken.first() {
                        self.refusals.push(format!(
                            "table {table}: {} would break a foreign key",
                            rows_word(*n)
                        ));
                    }
                    self.report.steps.push(Step {
                        subject: who.clone(),
                        what: format!("{} (SQLite rebuilds the table, rows, ids, indexes and triggers kept)", changes.join("; ")),
                        sql: vec![format!("-- rebuild of {table}: CREATE TABLE restkit_rebuild_{table} (…); INSERT … SELECT; DROP TABLE {table}; ALTER TABLE … RENAME TO {table}")],
                    });
                }
            }
        }
        if own {
            return Ok(());
        }
        // Columns no declaration names: kept, unless --drop.
        let declared = self.declared.tables.get(table).cloned().unwrap_or_default();
        for column in &existing {
            if declared
                .columns
                .keys()
                .any(|c| c.eq_ignore_ascii_case(column))
            {
                continue;
            }
            let n = self.count_values(table, column, false).await?;
            if self.options.drop {
                let sql = format!("ALTER TABLE \"{table}\" DROP COLUMN \"{column}\"");
                self.step(
                    who.clone(),
                    format!(
                        "drop column {column}, no longer declared ({} with a value; --drop)",
                        rows_word(n)
                    ),
                    vec![sql],
                )
                .await?;
            } else {
                self.report.notes.push(format!(
                    "{who}: column {table}.{column} is no longer declared; kept ({} with a value). \
                     `restkit migrate --drop` drops it; a field named `renamed_from = \"{column}\"` takes it over",
                    rows_word(n)
                ));
            }
        }
        Ok(())
    }
}

/// Whether values stored as a field of type `before` read as the same
/// values when the field is declared `now` (an integer as a number, a
/// date as text, a decimal with more digits but the same scale).
fn widens(before: &str, now: &str) -> bool {
    let decimal = |t: &str| -> Option<(u32, u32)> {
        let inner = t.strip_prefix("decimal(")?.strip_suffix(')')?;
        let (p, s) = inner.split_once(',')?;
        Some((p.parse().ok()?, s.parse().ok()?))
    };
    match (before, now) {
        ("integer", "number") => true,
        ("date" | "time" | "uuid" | "datetime", "string") => true,
        _ => match (decimal(before), decimal(now)) {
            (Some((p1, s1)), Some((p2, s2))) => s1 == s2 && p2 >= p1,
            _ => false,
        },
    }
}

/// Unique indexes restkit made for fields that are no longer unique: only
/// indexes named as restkit names them (`ux_{table}_{column}`) for a
/// declared field that no declaration over the table marks unique any
/// more. Indexes anyone else made are never touched.
fn relaxed_uniques(d: Dialect, tables: &[&Resource], indexes: &[String]) -> Vec<String> {
    let fields = || {
        tables
            .iter()
            .flat_map(|r| r.fields.iter().map(move |f| (*r, f)))
    };
    indexes
        .iter()
        .filter(|ix| {
            let ours = fields().any(|(r, f)| ix.eq_ignore_ascii_case(&unique_index(d, r, f)));
            let wanted = fields().any(|(r, f)| {
                f.unique && !f.primary_key && ix.eq_ignore_ascii_case(&unique_index(d, r, f))
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
fn tombstone_trigger(d: Dialect, table: &str, keys: &TableKeys) -> String {
    // Identifiers were checked at start-up to be letters, digits, '_' and
    // '-': they cannot close a quote.
    let old = |row: &str, c: &Option<String>| match c {
        Some(c) => format!("{row}.\"{c}\""),
        None => "NULL".to_string(),
    };
    let name = trigger_name(table);
    let pk = &keys.pk;
    match d {
        Dialect::Sqlite => format!(
            "CREATE TRIGGER \"{name}\" AFTER DELETE ON \"{table}\" BEGIN \
             UPDATE {CLOCK} SET micros = micros + 1, stamp = {stamp} WHERE id = 1; \
             INSERT INTO {TOMBSTONES} (table_name, record_id, deleted_at, owner_id, parent_id) \
             VALUES ('{table}', OLD.\"{pk}\", (SELECT stamp FROM {CLOCK} WHERE id = 1), {owner}, {parent}); END",
            stamp = d.stamp_sql("micros + 1"),
            owner = old("OLD", &keys.owner),
            parent = old("OLD", &keys.parent),
        ),
        // Once per statement, over its deleted rows: one call of the
        // clock for as many times as rows, so each tombstone has a time of
        // its own (and a delete made outside restkit is registered in
        // flight like any restkit write).
        Dialect::Postgres => format!(
            "CREATE OR REPLACE FUNCTION \"{name}\"() RETURNS trigger LANGUAGE plpgsql AS $restkit$ \
             DECLARE n bigint; base bigint; \
             BEGIN \
             SELECT count(*) INTO n FROM restkit_old; \
             IF n = 0 THEN RETURN NULL; END IF; \
             base := restkit_stamp((extract(epoch FROM clock_timestamp()) * 1000000)::bigint, n) - 1; \
             INSERT INTO {TOMBSTONES} (table_name, record_id, deleted_at, owner_id, parent_id) \
             SELECT '{table}', o.\"{pk}\", {row_stamp}, {owner}, {parent} FROM restkit_old o; \
             RETURN NULL; END $restkit$",
            row_stamp = d.stamp_sql(&format!("base + row_number() OVER (ORDER BY o.\"{pk}\")")),
            owner = old("o", &keys.owner),
            parent = old("o", &keys.parent),
        ),
    }
}

/// PostgreSQL: the trigger that calls [`tombstone_trigger`]'s function,
/// which holds everything that can change (the key columns): replacing
/// the function needs no lock on the table, so the trigger is created
/// once and left alone (dropping and re-creating it at every start would
/// take an exclusive lock on every sync table, queued behind any long
/// read, in the middle of a rolling deploy).
fn postgres_trigger(table: &str) -> String {
    let name = trigger_name(table);
    format!(
        "CREATE TRIGGER \"{name}\" AFTER DELETE ON \"{table}\" \
         REFERENCING OLD TABLE AS restkit_old FOR EACH STATEMENT EXECUTE FUNCTION \"{name}\"()"
    )
}

/// Drops a table's tombstone trigger, if any.
fn drop_trigger(d: Dialect, table: &str) -> String {
    let name = trigger_name(table);
    match d {
        Dialect::Sqlite => format!("DROP TRIGGER IF EXISTS \"{name}\""),
        Dialect::Postgres => format!("DROP TRIGGER IF EXISTS \"{name}\" ON \"{table}\""),
    }
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
fn own_ddl(d: Dialect) -> Vec<String> {
    let text = match d {
        Dialect::Sqlite => "TEXT",
        Dialect::Postgres => "TEXT COLLATE \"C\"",
    };
    let mut ddl = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {CLOCK} (id INTEGER PRIMARY KEY CHECK (id = 1), \
             micros BIGINT NOT NULL, stamp {text} NOT NULL)"
        ),
        // Start at the wall clock: later than every change time a database
        // from before the clock row can hold.
        {
            let now = chrono::Utc::now();
            format!(
                "INSERT INTO {CLOCK} (id, micros, stamp) VALUES (1, {micros}, '{stamp}') \
                 ON CONFLICT (id) DO NOTHING",
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
    ];
    if d == Dialect::Postgres {
        ddl.extend(postgres_clock());
    }
    ddl
}

/// Any number that names restkit's migration lock among PostgreSQL's
/// advisory locks.
const MIGRATION_LOCK: i64 = 0x0072_6573_746b_6974;

/// The advisory lock under which PostgreSQL change times are handed out
/// and the horizon is read (held for microseconds, never to commit).
const CLOCK_LOCK: i64 = 0x0072_6b63_6c6f_636b;

/// PostgreSQL's change clock, which does not serialize writers
/// (`restkit_clock` is not updated there):
///
/// - `restkit_stamp(wall, n)` hands out `n` change times, the first
///   `max(last + 1, wall)`, from a sequence (outside transactions), and
///   registers the transaction as in flight with a transaction-level
///   shared advisory lock keyed by its first time — released by
///   PostgreSQL itself at commit or rollback, after the commit is
///   visible. Both under [`CLOCK_LOCK`], a session lock held for as long
///   as that takes and released on every path, a cancelled statement
///   included (`OTHERS` does not catch `query_canceled`: it is named).
/// - `restkit_horizon()` is the latest time no transaction in flight can
///   still commit at or before: `min(last handed out, oldest in flight −
///   1)`, read under the same lock (shared: horizons do not wait for each
///   other, only for a time being handed out), so the two agree. A sync read takes
///   it before its snapshot: every change the snapshot does not show has
///   a later time (see `sql::select_list_with_mark`).
fn postgres_clock() -> Vec<String> {
    // restkit's in-flight marks: shared advisory locks on one bigint key
    // in this database whose key reads as a time between 2000 and 2100
    // in Unix microseconds (another application's small keys do not
    // count; one using such keys would only hold the horizon back).
    let in_flight = "l.locktype = 'advisory' AND l.mode = 'ShareLock' AND l.objsubid = 1 \
                     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                     AND (l.classid::text::bigint << 32 | l.objid::text::bigint) \
                     BETWEEN 946684800000000 AND 4102444800000000";
    vec![
        "CREATE SEQUENCE IF NOT EXISTS restkit_clock_seq".to_string(),
        // Never behind a time restkit_clock (or SQLite's era) handed out.
        format!(
            "SELECT setval('restkit_clock_seq', GREATEST((SELECT micros FROM {CLOCK} WHERE id = 1), \
             (SELECT last_value FROM restkit_clock_seq)))"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION restkit_stamp(wall bigint, n bigint) RETURNS bigint \
             LANGUAGE plpgsql AS $restkit$ \
             DECLARE m bigint; \
             BEGIN \
             PERFORM pg_advisory_lock({CLOCK_LOCK}); \
             m := GREATEST(nextval('restkit_clock_seq'), wall); \
             PERFORM setval('restkit_clock_seq', m + n - 1); \
             PERFORM pg_advisory_xact_lock_shared(m); \
             PERFORM pg_advisory_unlock({CLOCK_LOCK}); \
             RETURN m; \
             EXCEPTION WHEN OTHERS OR query_canceled THEN \
             PERFORM pg_advisory_unlock({CLOCK_LOCK}); \
             RAISE; \
             END $restkit$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION restkit_horizon() RETURNS bigint \
             LANGUAGE plpgsql AS $restkit$ \
             DECLARE issued bigint; oldest bigint; \
             BEGIN \
             PERFORM pg_advisory_lock_shared({CLOCK_LOCK}); \
             SELECT last_value INTO issued FROM restkit_clock_seq; \
             SELECT min((l.classid::text::bigint << 32) | l.objid::text::bigint) INTO oldest \
             FROM pg_locks l WHERE {in_flight}; \
             PERFORM pg_advisory_unlock_shared({CLOCK_LOCK}); \
             RETURN LEAST(issued, oldest - 1); \
             EXCEPTION WHEN OTHERS OR query_canceled THEN \
             PERFORM pg_advisory_unlock_shared({CLOCK_LOCK}); \
             RAISE; \
             END $restkit$"
        ),
    ]
}

/// Brings the database up to `model` in `tx`, a transaction begun for
/// it: every statement or none (a refused field leaves no earlier table
/// half-migrated), and no other writer runs between them. Instances
/// starting at once wait for each other (SQLite: the write lock;
/// PostgreSQL: an advisory lock), and the later finds nothing to do.
///
/// With `apply`, the migration is recorded and committed; without, it is
/// rolled back after planning (`migrate --plan`, `--status`): the report
/// is what applying it would do. Anything refused: `StoreError::Schema`
/// naming each refusal, and nothing changed.
pub async fn run(
    mut tx: WriteTx,
    model: &ApiModel,
    options: Options,
    apply: bool,
) -> Result<Report, StoreError> {
    let d = tx.dialect();
    if d == Dialect::Postgres {
        tx.execute_ddl(&format!(
            "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '10s'; \
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
        ))
        .await?;
    }
    let declared = Declared::of(model)?;
    let mut m = Migration {
        tx: &mut tx,
        d,
        options,
        report: Report {
            declaration: declared.hash(),
            ..Report::default()
        },
        refusals: Vec::new(),
        declared,
        previous: None,
        added: BTreeSet::new(),
        not_null: BTreeMap::new(),
    };
    m.history().await?;
    m.migrate(model).await?;
    if !m.refusals.is_empty() {
        return Err(StoreError::Schema(format!(
            "the migration is refused, and nothing was changed:\n- {}",
            m.refusals.join("\n- ")
        )));
    }
    if !m.report.is_current() {
        m.record().await?;
    }
    let report = m.report;
    if apply {
        tx.commit().await?;
    }
    Ok(report)
}

impl Migration<'_> {
    /// Reads the last recorded migration; refuses (`refuse_if_ahead`) a
    /// database migrated to another declaration after this one was.
    async fn history(&mut self) -> Result<(), StoreError> {
        if self.tx.columns(HISTORY).await?.is_empty() {
            return Ok(());
        }
        let r = super::own::schema_history();
        let last = Query::select()
            .expr(Expr::cust("MAX(id)"))
            .from(Alias::new(HISTORY))
            .to_owned();
        let Some(id) = self.tx.scalar(last).await? else {
            return Ok(());
        };
        let fields: Vec<usize> = (0..r.fields.len()).collect();
        let Some(row) = self.tx.fetch(r, &fields, id, &Scope::default()).await? else {
            return Ok(());
        };
        let text = |name: &str| {
            row.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let hash = text("declarationHash");
        self.previous = serde_json::from_str(&text("declaration")).ok();
        self.report.last = Some((hash.clone(), text("appliedAt")));
        if self.options.refuse_if_ahead && hash != self.report.declaration {
            let mine = Query::select()
                .expr(Expr::cust("COUNT(*)"))
                .from(Alias::new(HISTORY))
                .and_where(
                    Expr::col(Alias::new("declaration_hash")).eq(self.report.declaration.clone()),
                )
                .to_owned();
            if self.tx.scalar(mine).await?.unwrap_or(0) > 0 {
                return Err(StoreError::Schema(format!(
                    "the database was migrated to another declaration ({hash}, at {}) after this one \
                     ({}); this server would write to a schema it does not know. Run `restkit migrate` \
                     with this declaration to bring the database back to it, or serve the newer one",
                    text("appliedAt"),
                    self.report.declaration
                )));
            }
        }
        Ok(())
    }

    /// Records this migration in the history.
    async fn record(&mut self) -> Result<(), StoreError> {
        let r = super::own::schema_history();
        let values = [
            super::format_datetime(chrono::Utc::now()),
            self.report.declaration.clone(),
            serde_json::to_string(&self.declared).unwrap_or_default(),
            serde_json::to_string(&self.report.steps).unwrap_or_default(),
        ];
        let stmt = Query::insert()
            .into_table(Alias::new(HISTORY))
            .columns(r.fields[1..].iter().map(|f| Alias::new(f.column.as_str())))
            .values_panic(values.into_iter().map(Expr::val))
            .to_owned();
        self.tx.execute_insert(stmt).await
    }

    async fn migrate(&mut self, model: &ApiModel) -> Result<(), StoreError> {
        let d = self.d;
        let own = super::own::model();
        let schema = |e: crate::model::ModelError| StoreError::Schema(e.to_string());
        let mut foreign_keys = plan::foreign_keys(own).map_err(schema)?;
        foreign_keys.extend(plan::foreign_keys(model).map_err(schema)?);
        let no_keys = Vec::new();
        let mut sync_tables = BTreeSet::new();
        let mut all_tables: BTreeMap<String, TableKeys> = BTreeMap::new();
        for r in tables_of(model) {
            self.rename_table(r).await?;
        }
        let own_tables: BTreeSet<&str> = tables_of(own).map(|r| r.table.as_str()).collect();
        for module in own.modules.iter().chain(&model.modules) {
            // Parents first, so foreign keys point at existing tables.
            let mut ordered: Vec<&Arc<Resource>> = module.resources.iter().collect();
            ordered.sort_by_key(|r| module.plan(r).depth());
            for r in ordered {
                if r.controller.is_some() {
                    continue;
                }
                let keys = foreign_keys.get(&r.table).unwrap_or(&no_keys);
                self.table(r, keys, own_tables.contains(r.table.as_str()))
                    .await?;
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
        for sql in own_ddl(d) {
            self.tx.execute_ddl(&sql).await?;
        }
        // Every resource over a table, across modules, decides its
        // constraints and indexes.
        let resources: Vec<&Resource> = tables_of(own)
            .chain(tables_of(model))
            .map(|r| r.as_ref())
            .collect();
        for (table, keys) in &all_tables {
            let over: Vec<&Resource> = resources
                .iter()
                .copied()
                .filter(|r| &r.table == table)
                .collect();
            let specs = foreign_keys.get(table).unwrap_or(&no_keys);
            self.constraints(table, &over, specs, own_tables.contains(table.as_str()))
                .await?;
            if self.tx.columns(table).await?.is_empty() {
                continue; // refused
            }
            let relaxed = relaxed_uniques(d, &over, &self.tx.indexes(table).await?);
            if !relaxed.is_empty() {
                self.step(
                    subject(over[0]),
                    "drop the unique indexes of fields no longer unique".into(),
                    relaxed,
                )
                .await?;
            }
            let sync = sync_tables.contains(table);
            let exists = self.tx.has_trigger(table, &trigger_name(table)).await?;
            if sync && !exists {
                self.report.steps.push(Step {
                    subject: subject(over[0]),
                    what: format!("record deletions from {table} for sync clients (a trigger writes tombstones)"),
                    sql: vec![format!("CREATE TRIGGER \"{}\" AFTER DELETE ON \"{table}\" …", trigger_name(table))],
                });
            } else if !sync && exists {
                self.report.steps.push(Step {
                    subject: subject(over[0]),
                    what: format!("stop recording deletions from {table} (no longer synced)"),
                    sql: vec![drop_trigger(d, table)],
                });
            }
            match d {
                // Recreated every time (under the write lock, a moment), so a
                // changed key column is followed.
                Dialect::Sqlite => {
                    self.tx.execute_ddl(&drop_trigger(d, table)).await?;
                    if sync {
                        self.tx
                            .execute_ddl(&tombstone_trigger(d, table, keys))
                            .await?;
                    }
                }
                Dialect::Postgres => {
                    if sync {
                        self.tx
                            .execute_ddl(&tombstone_trigger(d, table, keys))
                            .await?;
                        if !exists {
                            self.tx.execute_ddl(&postgres_trigger(table)).await?;
                        }
                    } else if exists {
                        self.tx.execute_ddl(&drop_trigger(d, table)).await?;
                    }
                }
            }
        }
        Ok(())
    }
}
