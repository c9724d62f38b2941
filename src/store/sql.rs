//! Typed requests → sea-query statements, for any backend.
//!
//! Identifiers come only from the model (table and column names checked at
//! start-up, quoted by sea-query); every value is a bound parameter. No
//! function here takes a string that a request produced and puts it into
//! SQL text.

use sea_query::{
    Alias, DeleteStatement, Expr, ExprTrait, InsertStatement, Order, Query, SelectStatement,
    UpdateStatement,
};
use serde_json::Value;

use super::{to_sql_value, ListQuery, Scope};
use crate::model::Resource;

/// A write whose `RETURNING` clause yields the record.
pub enum Write {
    Insert(InsertStatement),
    Update(UpdateStatement),
}

fn col(r: &Resource, field: usize) -> Alias {
    Alias::new(r.fields[field].column.as_str())
}

fn table(r: &Resource) -> Alias {
    Alias::new(r.table.as_str())
}

fn apply_scope_select(stmt: &mut SelectStatement, r: &Resource, scope: &Scope) {
    for (f, v) in &scope.equal {
        stmt.and_where(Expr::col(col(r, *f)).eq(to_sql_value(r.fields[*f].ty, v)));
    }
}

pub fn select_list(r: &Resource, q: &ListQuery<'_>) -> SelectStatement {
    let mut stmt = Query::select();
    stmt.from(table(r));
    for f in q.fields {
        stmt.column(col(r, *f));
    }
    apply_scope_select(&mut stmt, r, q.scope);
    let mut pk_sorted = false;
    for key in &q.sort {
        pk_sorted |= key.field == r.primary_key;
        stmt.order_by(
            col(r, key.field),
            if key.descending {
                Order::Desc
            } else {
                Order::Asc
            },
        );
    }
    // The primary key breaks ties so pages never overlap or skip (§6.5).
    if !pk_sorted {
        stmt.order_by(col(r, r.primary_key), Order::Asc);
    }
    stmt.limit(q.limit).offset(q.offset);
    stmt
}

pub fn select_count(r: &Resource, scope: &Scope) -> SelectStatement {
    let mut stmt = Query::select();
    stmt.from(table(r))
        .expr(Expr::col(col(r, r.primary_key)).count());
    apply_scope_select(&mut stmt, r, scope);
    stmt
}

pub fn select_one(r: &Resource, fields: &[usize], id: i64, scope: &Scope) -> SelectStatement {
    let mut stmt = Query::select();
    stmt.from(table(r));
    for f in fields {
        stmt.column(col(r, *f));
    }
    stmt.and_where(Expr::col(col(r, r.primary_key)).eq(id));
    apply_scope_select(&mut stmt, r, scope);
    // No `LIMIT 1`: the primary key already bounds the result, and SQLite's
    // planner reads a bound LIMIT, so binding one expires the cached
    // statement and re-parses the SQL on every request.
    stmt
}

pub fn insert(
    r: &Resource,
    values: &[(usize, Value)],
    fields: &[usize],
    now: &str,
) -> InsertStatement {
    let mut stmt = Query::insert();
    stmt.into_table(table(r));
    let mut cols = Vec::with_capacity(values.len() + 2);
    let mut vals: Vec<Expr> = Vec::with_capacity(values.len() + 2);
    for (f, v) in values {
        cols.push(col(r, *f));
        vals.push(Expr::val(to_sql_value(r.fields[*f].ty, v)));
    }
    for (i, f) in r.fields.iter().enumerate() {
        if (f.created_at || f.updated_at) && !values.iter().any(|(j, _)| *j == i) {
            cols.push(col(r, i));
            vals.push(Expr::val(now.to_string()));
        }
    }
    stmt.columns(cols);
    if vals.is_empty() {
        stmt.or_default_values();
    } else {
        // Column and value counts match by construction.
        stmt.values_panic(vals);
    }
    stmt.returning(Query::returning().columns(fields.iter().map(|f| col(r, *f))));
    stmt
}

pub fn update(
    r: &Resource,
    id: i64,
    scope: &Scope,
    values: &[(usize, Value)],
    fields: &[usize],
    now: &str,
) -> UpdateStatement {
    let mut stmt = Query::update();
    stmt.table(table(r));
    for (f, v) in values {
        stmt.value(col(r, *f), to_sql_value(r.fields[*f].ty, v));
    }
    for (i, f) in r.fields.iter().enumerate() {
        if f.updated_at {
            stmt.value(col(r, i), now.to_string());
        }
    }
    if values.is_empty() && r.updated_at().is_none() {
        // A no-op update still has to touch the row to return it.
        stmt.value(col(r, r.primary_key), Expr::col(col(r, r.primary_key)));
    }
    stmt.and_where(Expr::col(col(r, r.primary_key)).eq(id));
    for (f, v) in &scope.equal {
        stmt.and_where(Expr::col(col(r, *f)).eq(to_sql_value(r.fields[*f].ty, v)));
    }
    stmt.returning(Query::returning().columns(fields.iter().map(|f| col(r, *f))));
    stmt
}

pub fn delete(r: &Resource, id: i64, scope: &Scope) -> DeleteStatement {
    let mut stmt = Query::delete();
    stmt.from_table(table(r))
        .and_where(Expr::col(col(r, r.primary_key)).eq(id));
    for (f, v) in &scope.equal {
        stmt.and_where(Expr::col(col(r, *f)).eq(to_sql_value(r.fields[*f].ty, v)));
    }
    stmt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builder::*;
    use crate::model::FieldType;
    use crate::store::SortKey;
    use sea_query::SqliteQueryBuilder;

    fn books() -> Resource {
        Resource::new("books", "books")
            .field(Field::new("id", FieldType::Integer).primary_key())
            .field(Field::new("title", FieldType::String))
            .field(Field::new("author", FieldType::String).column("author_name"))
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let r = books();
        let scope = Scope::default().and(2, Value::String("x'); DROP TABLE books;--".into()));
        let q = ListQuery {
            fields: &[0, 1],
            scope: &scope,
            sort: vec![SortKey {
                field: 1,
                descending: true,
            }],
            limit: 20,
            offset: 40,
        };
        let (sql, values) = select_list(&r, &q).build(SqliteQueryBuilder);
        assert_eq!(
            sql,
            r#"SELECT "id", "title" FROM "books" WHERE "author_name" = ? ORDER BY "title" DESC, "id" ASC LIMIT ? OFFSET ?"#
        );
        assert!(!sql.contains("DROP"));
        assert_eq!(values.0.len(), 3);
    }

    #[test]
    fn primary_key_sort_is_not_repeated() {
        let r = books();
        let scope = Scope::default();
        let q = ListQuery {
            fields: &[0],
            scope: &scope,
            sort: vec![SortKey {
                field: 0,
                descending: true,
            }],
            limit: 1,
            offset: 0,
        };
        let (sql, _) = select_list(&r, &q).build(SqliteQueryBuilder);
        assert!(sql.contains(r#"ORDER BY "id" DESC LIMIT"#), "{sql}");
    }
}
