//! Baseline for `bench/run.sh` (SQLite) and `bench/run_pg.sh`
//! (PostgreSQL): what a careful developer would hand-write with axum +
//! sqlx for the benchmarked endpoints — one book, a page with its count,
//! an equality-filtered page, the search, and a create — over the same
//! database restkit serves (SQLite: the same file, pragmas and pool sizes,
//! a single writer; PostgreSQL: one pool of restkit's size), with the same
//! JSON and pagination headers. restkit's figures are quoted as a ratio of
//! these. The handlers are written once and instantiated per database
//! (`handlers!`); only the pool type and the parameter style differ.
//!
//! Usage: bench_baseline ADDR (DATABASE_FILE | postgres://URL)

use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

#[derive(Serialize, sqlx::FromRow)]
struct Book {
    id: i64,
    title: String,
    #[serde(rename = "author")]
    author_name: String,
    year: Option<i64>,
    isbn: Option<String>,
    #[serde(rename = "createdAt")]
    created_at: Option<String>,
    #[serde(rename = "updatedAt")]
    update_time: Option<String>,
}

const COLUMNS: &str = "id, title, author_name, year, isbn, created_at, update_time";

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
    /// `filter[author]=NAME`: the equality filter.
    #[serde(rename = "filter[author]")]
    author: Option<String>,
    /// Only the benchmarked search: `(author:NAME)`, answered as
    /// `fields=id,title&sort=-year` would be.
    q: Option<String>,
    envelope: Option<bool>,
}

#[derive(Serialize, sqlx::FromRow)]
struct Title {
    id: i64,
    title: String,
}

#[derive(Deserialize)]
struct NewBook {
    title: String,
    author: String,
    year: Option<i64>,
}

#[derive(Clone)]
struct Pools<P> {
    read: P,
    write: P,
}

/// SQLite's `?` parameters, as written.
fn question_marks(sql: &str) -> String {
    sql.to_string()
}

/// PostgreSQL's `$1, $2, …` for the `?`s of `sql`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The handlers over one kind of pool, `$q` turning `?` into its
/// parameter style.
macro_rules! handlers {
    ($name:ident, $Pool:ty, $q:path) => {
        mod $name {
            use super::*;

        async fn one(State(pool): State<$Pool>, Path(id): Path<i64>) -> Response {
            let sql = $q(&format!("SELECT {COLUMNS} FROM books WHERE id = ?"));
            match sqlx::query_as::<_, Book>(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&pool)
                .await
            {
                Ok(Some(b)) => Json(b).into_response(),
                Ok(None) => StatusCode::NOT_FOUND.into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }



        /// Hand-written `?q=(author:X)&fields=id,title&sort=-year&limit=N`.
        async fn by_author(pool: $Pool, author: String, limit: i64, envelope: bool) -> Response {
            let rows = sqlx::query_as::<_, Title>(sqlx::AssertSqlSafe($q(
                "SELECT id, title FROM books WHERE author_name = ? ORDER BY year DESC NULLS LAST, id LIMIT ?",
            )))
            .bind(&author)
            .bind(limit)
            .fetch_all(&pool);
            let count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe($q(
                "SELECT COUNT(*) FROM books WHERE author_name = ?",
            )))
                .bind(&author)
                .fetch_one(&pool);
            let (rows, total) = match tokio::try_join!(rows, count) {
                Ok(x) => x,
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            };
            let mut h = HeaderMap::new();
            h.insert("x-pagination-total-count", HeaderValue::from(total));
            h.insert("x-record-count", HeaderValue::from(rows.len()));
            if envelope {
                let body = serde_json::json!({
                    "_meta": {"status": "SUCCESS", "count": rows.len(), "totalCount": total, "perPage": limit},
                    "records": rows,
                });
                return (h, Json(body)).into_response();
            }
            (h, Json(rows)).into_response()
        }

        async fn list(State(pool): State<$Pool>, Query(p): Query<Page>) -> Response {
            let limit = p.limit.unwrap_or(20).clamp(1, 100);
            if let Some(author) =
                p.q.as_deref()
                    .and_then(|q| q.strip_prefix("(author:"))
                    .and_then(|q| q.strip_suffix(')'))
            {
                return by_author(pool, author.to_string(), limit, p.envelope.unwrap_or(false)).await;
            }
            let offset = p.offset.unwrap_or(0).max(0);
            let (rows, count) = match &p.author {
                Some(author) => (
                    sqlx::query_as::<_, Book>(sqlx::AssertSqlSafe($q(&format!(
                        "SELECT {COLUMNS} FROM books WHERE author_name = ? ORDER BY id LIMIT ? OFFSET ?"
                    ))))
                    .bind(author.clone())
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&pool),
                    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe($q(
                "SELECT COUNT(*) FROM books WHERE author_name = ?",
            )))
                        .bind(author.clone())
                        .fetch_one(&pool),
                ),
                None => (
                    sqlx::query_as::<_, Book>(sqlx::AssertSqlSafe($q(&format!(
                        "SELECT {COLUMNS} FROM books ORDER BY id LIMIT ? OFFSET ?"
                    ))))
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&pool),
                    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM books").fetch_one(&pool),
                ),
            };
            let (rows, total) = match tokio::try_join!(rows, count) {
                Ok(x) => x,
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            };
            let mut h = HeaderMap::new();
            h.insert("x-pagination-total-count", HeaderValue::from(total));
            h.insert("x-pagination-per-page", HeaderValue::from(limit));
            h.insert(
                "x-pagination-current-page",
                HeaderValue::from(offset / limit + 1),
            );
            h.insert(
                "x-pagination-page-count",
                HeaderValue::from((total + limit - 1) / limit),
            );
            h.insert("x-record-count", HeaderValue::from(rows.len()));
            (h, Json(rows)).into_response()
        }



        /// A create as a careful developer writes it: check the two required
        /// strings, insert in a transaction, return 201 with Location and the row.
        async fn create(State(p): State<Pools<$Pool>>, headers: HeaderMap, Json(b): Json<NewBook>) -> Response {
            if b.title.is_empty() || b.title.len() > 200 || b.author.is_empty() || b.author.len() > 200 {
                return StatusCode::UNPROCESSABLE_ENTITY.into_response();
            }
            let now = chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            let mut tx = match p.write.begin().await {
                Ok(tx) => tx,
                Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            };
            let sql = $q(&format!(
                "INSERT INTO books (title, author_name, year, created_at, update_time) \
                 VALUES (?, ?, ?, ?, ?) RETURNING {COLUMNS}"
            ));
            let book = match sqlx::query_as::<_, Book>(sqlx::AssertSqlSafe(sql))
                .bind(&b.title)
                .bind(&b.author)
                .bind(b.year)
                .bind(&now)
                .bind(&now)
                .fetch_one(&mut *tx)
                .await
            {
                Ok(book) => book,
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            };
            if tx.commit().await.is_err() {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("http://{host}/v1/books/{}", book.id)) {
                h.insert("location", v);
            }
            (StatusCode::CREATED, h, Json(book)).into_response()
        }

            pub fn router(pools: Pools<$Pool>) -> Router {
                Router::new()
                    .route(
                        "/v1/books",
                        get(|State(p): State<Pools<$Pool>>, q| list(State(p.read), q)).post(create),
                    )
                    .route(
                        "/v1/books/{id}",
                        get(|State(p): State<Pools<$Pool>>, id| one(State(p.read), id)),
                    )
                    .with_state(pools)
            }
        }
    };
}

handlers!(sqlite, SqlitePool, question_marks);
handlers!(postgres, PgPool, numbered);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, db) = (&args[1], &args[2]);
    let app = if db.starts_with("postgres") {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(db)
            .await
            .unwrap();
        postgres::router(Pools {
            read: pool.clone(),
            write: pool,
        })
    } else {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{db}"))
            .unwrap()
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(opts.clone().read_only(true))
            .await
            .unwrap();
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .unwrap();
        sqlite::router(Pools { read, write })
    };
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
