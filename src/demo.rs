//! The demo API of §3: its declaration (examples/library/restkit.toml,
//! compiled in so `restkit serve` works from any directory) and its
//! deterministic seed.

use sea_query::{Alias, Query};
use serde_json::Value;

use crate::error::ApiError;
use crate::model::ApiModel;
use crate::store::{to_sql_value, Store};

/// The demo's declaration and settings.
pub const DEMO_TOML: &str = include_str!("../examples/library/restkit.toml");

/// Title, author and year of book `n` (1-based), as §3 specifies.
pub fn book(n: u32) -> (String, String, i64) {
    match n {
        1 => ("Greatest book".into(), "John Doe".into(), 2010),
        2 => ("Book of books".into(), "John Doe".into(), 2010),
        3 => (
            "OAuth2 with Phalcon".into(),
            "Stanimir Stoyanov".into(),
            2016,
        ),
        n => (
            format!("Book {n}"),
            format!("Author {}", n % 50),
            1950 + i64::from(n % 70),
        ),
    }
}

/// Seeds an empty database with the named seed; does nothing when the
/// data is already there, so restarts keep what clients changed.
///
/// Instances starting at once over one empty database may both decide
/// to seed: each part is written in a transaction of its own, the first
/// to commit wins, and the other's is refused as a duplicate (409), which
/// here means "already seeded by another instance", not a failure.
pub async fn seed(store: &Store, model: &ApiModel) -> Result<(), ApiError> {
    let seeded = match model.seed.as_deref() {
        None => Ok(()),
        Some("library") => seed_library(store, model).await,
        Some(other) => Err(ApiError::internal(format!("unknown seed '{other}'"))),
    };
    match seeded {
        Err(e) if e.status == http::StatusCode::CONFLICT => {
            tracing::info!("another instance seeded the demo first");
            Ok(())
        }
        other => other,
    }
}

async fn seed_library(store: &Store, model: &ApiModel) -> Result<(), ApiError> {
    if store.table_is_empty("restkit_users").await? {
        // Ids 1 and 2, in this order.
        crate::auth::users::add(store, "stan", "pass").await?;
        crate::auth::users::add(store, "ana", "pass").await?;
    }
    if store.table_is_empty("restkit_clients").await? {
        use crate::auth::clients::{add, NewClient};
        let list = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        add(
            store,
            &NewClient {
                client_id: "1".into(),
                secret: Some("pass2".into()),
                grants: list(
                    "password client_credentials refresh_token authorization_code implicit",
                ),
                scopes: list("basic write"),
                redirect_uris: list("http://127.0.0.1:9999/callback"),
            },
        )
        .await?;
        add(
            store,
            &NewClient {
                client_id: "spa".into(),
                secret: None,
                grants: list("authorization_code refresh_token"),
                scopes: list("basic write"),
                redirect_uris: list("http://127.0.0.1:9999/callback"),
            },
        )
        .await?;
    }
    let books = model
        .modules
        .iter()
        .flat_map(|m| m.resources.iter())
        .find(|r| r.table == "books")
        .ok_or_else(|| ApiError::internal("the library seed needs a books resource"))?;
    if !store.table_is_empty(&books.table).await? {
        return Ok(());
    }
    let col = |api: &str| {
        books
            .find_field(api)
            .map(|f| (Alias::new(f.column.as_str()), f.ty))
            .ok_or_else(|| ApiError::internal(format!("books has no field {api}")))
    };
    let cols = [
        col("id")?,
        col("title")?,
        col("author")?,
        col("year")?,
        col("isbn")?,
        col("internalNote")?,
        col("createdAt")?,
        col("updatedAt")?,
    ];
    let mut tx = store.begin_write().await?;
    // Seeded rows carry the seeding transaction's change time, so a sync
    // mark taken after seeding is not earlier than them.
    let now = Value::String(tx.now().to_string());
    for chunk in (1..=1000u32).collect::<Vec<_>>().chunks(100) {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new(books.table.as_str()))
            .columns(cols.iter().map(|(c, _)| c.clone()));
        for &n in chunk {
            let (title, author, year) = book(n);
            let row = [
                Value::from(n),
                Value::from(title),
                Value::from(author),
                Value::from(year),
                Value::from(format!("978-0-0000-{n:04}")),
                Value::from(format!("Internal note {n}: shelf {}", n % 7)),
                now.clone(),
                now.clone(),
            ];
            insert.values_panic(
                cols.iter()
                    .zip(row.iter())
                    .map(|((_, ty), v)| sea_query::Expr::val(to_sql_value(*ty, v))),
            );
        }
        tx.execute_insert(insert).await?;
    }
    tx.commit().await?;
    tracing::info!("seeded the library demo: 2 users, 1000 books");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_books_follow_the_spec() {
        assert_eq!(book(3).0, "OAuth2 with Phalcon");
        assert_eq!(book(7), ("Book 7".into(), "Author 7".into(), 1957));
        assert_eq!(
            book(1000),
            ("Book 1000".into(), "Author 0".into(), 1950 + 20)
        );
    }
}
