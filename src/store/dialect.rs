//! What differs between SQL backends, in one place (§13).
//!
//! Statements are built once, generically, in [`super::sql`]; where the
//! databases disagree, `sql` and the backend files ask the [`Dialect`]:
//!
//! | concern | SQLite | (PostgreSQL, the coming sibling) |
//! |---|---|---|
//! | case-insensitive match (`like`, `*` wildcards) | `LIKE` (ASCII case-insensitive) | `ILIKE` |
//! | text order in sorts and keyset comparisons | `BINARY` (byte order) is the default collation, so `ORDER BY` and `<`/`>` agree | must use `COLLATE "C"` for the same agreement |
//! | primary key column | `INTEGER PRIMARY KEY AUTOINCREMENT` (ids never reused) | `BIGINT GENERATED ALWAYS AS IDENTITY` |
//! | which column a unique violation names | parsed from the message `UNIQUE constraint failed: t.c` | the constraint name |
//! | does an existing column's type fit a field | type affinity of the declared type | the column's type |
//! | the stored text of a change time, in SQL | `strftime` + `printf` | `to_char` |
//!
//! Adding PostgreSQL adds a variant and its arms; nothing above the store
//! changes.

use sea_query::{Expr, ExprTrait, LikeExpr};

use crate::model::{FieldType, Resource};

/// The SQL dialect of a connected store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
}

impl Dialect {
    /// `column` matches `pattern` (a LIKE pattern escaped with `\`),
    /// ignoring case.
    pub fn like_ci(self, column: Expr, pattern: String) -> Expr {
        match self {
            // SQLite's LIKE ignores ASCII case by default.
            Dialect::Sqlite => column.like(LikeExpr::new(pattern).escape('\\')),
        }
    }

    /// The API field a unique violation names, when it can be told.
    pub fn unique_field(
        self,
        r: &Resource,
        message: &str,
        constraint: Option<&str>,
    ) -> Option<String> {
        match self {
            // "UNIQUE constraint failed: books.isbn" (or "t.a, t.b").
            Dialect::Sqlite => r
                .fields
                .iter()
                .find(|f| {
                    let qualified = format!("{}.{}", r.table, f.column);
                    message
                        .rsplit(": ")
                        .next()
                        .is_some_and(|cols| cols.split(", ").any(|c| c == qualified))
                        || constraint.is_some_and(|c| c.contains(&f.column))
                })
                .map(|f| f.name.clone()),
        }
    }

    /// SQL for the stored text form of a change time given in Unix
    /// microseconds by the SQL expression `micros`: exactly what
    /// `format_datetime` writes (`2026-01-02T03:04:05.123456Z`).
    pub fn stamp_sql(self, micros: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "strftime('%Y-%m-%dT%H:%M:%S', ({micros}) / 1000000, 'unixepoch') \
                 || printf('.%06dZ', ({micros}) % 1000000)"
            ),
        }
    }

    /// Can an existing column declared as `declared` hold the field's
    /// values as declared, without the database converting them on the way
    /// in or restkit on the way out?
    pub fn column_fits(self, ty: FieldType, declared: &str) -> bool {
        match self {
            Dialect::Sqlite => {
                let a = sqlite_affinity(declared);
                match ty {
                    FieldType::Integer | FieldType::Boolean => {
                        matches!(a, "INTEGER" | "NUMERIC" | "BLOB")
                    }
                    FieldType::Number => matches!(a, "REAL" | "NUMERIC" | "INTEGER" | "BLOB"),
                    FieldType::String | FieldType::Json => matches!(a, "TEXT" | "BLOB"),
                    FieldType::DateTime => matches!(a, "TEXT" | "BLOB" | "NUMERIC"),
                }
            }
        }
    }

    /// How the database classes a declared column type (for messages).
    pub fn column_class(self, declared: &str) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite_affinity(declared),
        }
    }
}

/// SQLite's type affinity of a declared column type (§3.1 of its datatype
/// documentation).
fn sqlite_affinity(declared: &str) -> &'static str {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        "INTEGER"
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        "TEXT"
    } else if t.contains("BLOB") || t.is_empty() {
        "BLOB"
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builder::*;

    #[test]
    fn sqlite_affinities_follow_its_rules() {
        assert_eq!(sqlite_affinity("bigint"), "INTEGER");
        assert_eq!(sqlite_affinity("VARCHAR(200)"), "TEXT");
        assert_eq!(sqlite_affinity("double"), "REAL");
        assert_eq!(sqlite_affinity("boolean"), "NUMERIC");
        assert_eq!(sqlite_affinity(""), "BLOB");
        let d = Dialect::Sqlite;
        assert!(!d.column_fits(FieldType::Integer, "TEXT"));
        assert!(d.column_fits(FieldType::String, "text"));
        assert!(!d.column_fits(FieldType::String, "INTEGER"));
    }

    #[test]
    fn unique_violations_name_their_field() {
        let r = Resource::new("books", "books")
            .field(Field::new("id", FieldType::Integer).primary_key())
            .field(Field::new("isbn", FieldType::String))
            .field(Field::new("isbn2", FieldType::String));
        let d = Dialect::Sqlite;
        let field = d.unique_field(&r, "UNIQUE constraint failed: books.isbn2", None);
        assert_eq!(field.as_deref(), Some("isbn2"));
        assert_eq!(d.unique_field(&r, "something else", None), None);
    }
}
