//! The hot pieces of a read, each alone, in-process (issue 18's "measure
//! it"): the query string parsed into restkit's typed collection query,
//! a single-record read's SQL found by shape and bound (a hit, what every
//! GET of a record pays) against building it with sea-query, and a page's
//! list and count statements built. CPU time of this process per call,
//! medians of rounds. The encoders and the ETag are `encode_cost`, the
//! token check `auth_cost`, the whole pipeline `pipeline_cost`.
//!
//! Usage: cargo run --release --example parts_cost [CALLS]

mod common;

use restkit::query::CollectionQuery;
use restkit::store::sql::{self, OneTexts};
use restkit::store::{Dialect, ListQuery, Scope};
use sea_query::SqliteQueryBuilder;

/// CPU microseconds per call of `f`, the median of 7 rounds of `n` calls.
fn per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let rounds = (0..7)
        .map(|_| {
            let start = common::cpu_now();
            for i in 0..n {
                f(i);
            }
            (common::cpu_now() - start) * 1e6 / f64::from(n)
        })
        .collect();
    common::median(rounds)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u32 = common::arg(1, 100_000);
    let dir = tempfile::tempdir().unwrap();
    let app = common::open(&common::public_demo(), dir.path()).await;
    let books = app.state().model.modules[0].resources[0].clone();
    let shape = app
        .state()
        .routes
        .iter()
        .find(|r| r.template == "/v1/books")
        .and_then(|r| r.endpoints.first())
        .and_then(|e| match &e.target {
            restkit::http::routes::Target::Operation { controller, .. } => controller.query_shape(),
            _ => None,
        })
        .expect("the demo serves /v1/books");
    let pairs = |q: &str| -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    };
    let queries = [
        ("page", "limit=20&offset=100"),
        ("filter", "filter%5Bauthor%5D=Author%207&limit=20"),
        (
            "search",
            "q=(author:Author%207)&fields=id,title&sort=-year&limit=20",
        ),
    ];
    println!("CPU µs per call, median of 7 rounds of {n}");
    for (name, raw) in queries {
        let us = per_call(n, |_| {
            let q = pairs(raw);
            std::hint::black_box(CollectionQuery::parse(&q, &books, &shape.list, None).unwrap());
        });
        println!("query string → CollectionQuery ({name:>6})      {us:>7.2}");
    }
    let fields = books.readable(true);
    let scope = Scope::default();
    let texts = OneTexts::default();
    let hit = per_call(n, |i| {
        std::hint::black_box(texts.get(&books, &fields, i64::from(i), &scope, |s| {
            s.build(SqliteQueryBuilder)
        }));
    });
    let built = per_call(n, |i| {
        std::hint::black_box(
            sql::select_one(&books, &fields, i64::from(i), &scope).build(SqliteQueryBuilder),
        );
    });
    println!("one record's SQL: found by shape + bound            {hit:>7.2}");
    println!("one record's SQL: built by sea-query                {built:>7.2}");
    for (name, raw) in queries {
        let q = CollectionQuery::parse(&pairs(raw), &books, &shape.list, None).unwrap();
        let fields = q.fields.clone().unwrap_or_else(|| books.readable(false));
        let us = per_call(n, |_| {
            let selection = sql::Selection {
                scope: &scope,
                filter: q.filter.as_ref(),
                since: None,
            };
            let list = ListQuery {
                fields: &fields,
                selection,
                sort: q.sort.clone(),
                after: None,
                limit: 20,
                offset: 100,
            };
            std::hint::black_box(
                sql::select_list(Dialect::Sqlite, &books, &list).build(SqliteQueryBuilder),
            );
            std::hint::black_box(
                sql::select_count(Dialect::Sqlite, &books, &selection).build(SqliteQueryBuilder),
            );
        });
        println!("a page's list + count SQL built ({name:>6})     {us:>7.2}");
    }
}
