//! Baseline for `bench/run.sh`: what a careful developer would hand-write
//! with axum + sqlx for the benchmarked endpoints — one book, a page with
//! its count, an equality-filtered page, the search, and a create — over
//! the same SQLite file restkit serves (same pragmas, same pool size, a
//! single writer, same JSON and pagination headers). restkit's figures are
//! quoted as a ratio of these.
//!
//! Usage: bench_baseline ADDR DATABASE_FILE

use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
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

async fn one(State(pool): State<SqlitePool>, Path(id): Path<i64>) -> Response {
    let sql = format!("SELECT {COLUMNS} FROM books WHERE id = ?");
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

/// Hand-written `?q=(author:X)&fields=id,title&sort=-year&limit=N`.
async fn by_author(pool: SqlitePool, author: String, limit: i64, envelope: bool) -> Response {
    let rows = sqlx::query_as::<_, Title>(
        "SELECT id, title FROM books WHERE author_name = ? ORDER BY year DESC NULLS LAST, id LIMIT ?",
    )
    .bind(&author)
    .bind(limit)
    .fetch_all(&pool);
    let count = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM books WHERE author_name = ?")
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

async fn list(State(pool): State<SqlitePool>, Query(p): Query<Page>) -> Response {
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
            sqlx::query_as::<_, Book>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM books WHERE author_name = ? ORDER BY id LIMIT ? OFFSET ?"
            )))
            .bind(author.clone())
            .bind(limit)
            .bind(offset)
            .fetch_all(&pool),
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM books WHERE author_name = ?")
                .bind(author.clone())
                .fetch_one(&pool),
        ),
        None => (
            sqlx::query_as::<_, Book>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM books ORDER BY id LIMIT ? OFFSET ?"
            )))
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

#[derive(Deserialize)]
struct NewBook {
    title: String,
    author: String,
    year: Option<i64>,
}

#[derive(Clone)]
struct Pools {
    read: SqlitePool,
    write: SqlitePool,
}

/// A create as a careful developer writes it: check the two required
/// strings, insert in a transaction, return 201 with Location and the row.
async fn create(State(p): State<Pools>, headers: HeaderMap, Json(b): Json<NewBook>) -> Response {
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
    let sql = format!(
        "INSERT INTO books (title, author_name, year, created_at, update_time) \
         VALUES (?, ?, ?, ?, ?) RETURNING {COLUMNS}"
    );
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, db) = (&args[1], &args[2]);
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
    let app = Router::new()
        .route(
            "/v1/books",
            get(|State(p): State<Pools>, q| list(State(p.read), q)).post(create),
        )
        .route(
            "/v1/books/{id}",
            get(|State(p): State<Pools>, id| one(State(p.read), id)),
        )
        .with_state(Pools { read, write });
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
