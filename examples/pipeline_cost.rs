//! Per-request cost of each layer, in-process (no socket, no load tool):
//! raw sqlx query → restkit store fetch → full `app.call` pipeline, on the
//! demo database, sequential calls; then a page of 20 with its count. Prints microseconds per call and ratios
//! to the raw query, run in the same process so machine noise hits all.
//!
//! Usage: cargo run --release --example pipeline_cost [N] [one|page]

mod common;

use std::time::Instant;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use restkit::config::{Overrides, Settings};
use restkit::registry::Registry;
use restkit::store::Scope;

/// A book row as the raw query returns it.
type BookRow = (
    i64,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u32 = common::arg(1, 20_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cost.db");
    let url = format!("sqlite://{}", db.display());
    // Books public and rate limits on with quotas no run reaches (the
    // demo itself needs a token).
    let toml = common::public_demo();
    let settings = Settings::load(
        &toml,
        &Overrides {
            bind: None,
            database: Some(url.clone()),
        },
    )
    .unwrap();
    let model = restkit::model::toml::parse(&toml).unwrap();
    let app = restkit::open(model, settings, &Registry::builtin())
        .await
        .unwrap();
    let books = app.state().model.modules[0].resources[0].clone();
    let fields = books.readable(true);
    let store = app.state().store.clone();
    let raw = sqlx::sqlite::SqlitePool::connect(&url).await.unwrap();

    let one = |i: u32| format!("/v1/books/{}", 1 + i % 1000);
    // A page of 20 with its count, as bench/run.sh's second workload.
    let page = |i: u32| format!("/v1/books?limit=20&offset={}", 100 + i % 100);
    // `one` or `page` as the second argument: only that part, many times
    // (to profile it alone).
    match std::env::args().nth(2).as_deref() {
        Some("one") => return println!("one: {:.1} us per call", per_call(&app, n, one).await),
        Some("page") => return println!("page: {:.1} us per call", per_call(&app, n, page).await),
        Some(other) => panic!("unknown part {other}: one or page"),
        None => {}
    }
    for round in 0..3 {
        let t = Instant::now();
        for i in 0..n {
            let id = 1 + i64::from(i % 1000);
            let row: Option<BookRow> =
                sqlx::query_as("SELECT id, title, author_name, year, isbn, created_at, update_time FROM books WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&raw)
                    .await
                    .unwrap();
            let body = serde_json::to_vec(&row).unwrap();
            std::hint::black_box(body);
        }
        let raw_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);

        let t = Instant::now();
        for i in 0..n {
            let id = 1 + i64::from(i % 1000);
            let rec = store
                .fetch(&books, &fields, id, &Scope::default())
                .await
                .unwrap();
            std::hint::black_box(serde_json::to_vec(&rec).unwrap());
        }
        let store_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);

        let app_us = per_call(&app, n, one).await;
        let page_us = per_call(&app, (n / 10).max(1), page).await;
        println!(
            "round {round}: raw sqlx {raw_us:.1} us | store.fetch {store_us:.1} us ({:.2}x) | app.call {app_us:.1} us ({:.2}x) | page of 20 {page_us:.1} us",
            store_us / raw_us,
            app_us / raw_us
        );
    }
}

/// Microseconds per `app.call` of `n` GETs, the i-th of `uri(i)`, one
/// after the other, each body read whole.
async fn per_call(app: &restkit::App, n: u32, uri: impl Fn(u32) -> String) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        let res = app
            .call(Request::get(uri(i)).body(Body::empty()).unwrap())
            .await;
        std::hint::black_box(res.into_body().collect().await.unwrap().to_bytes());
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}
