//! Deep pages and count modes on a generated 1,000,000-row table (§5.2,
//! §6.8), in-process through the full pipeline (`app.call`).
//!
//! Prints the median latency of: page 1 and page 40,000 by offset and by
//! cursor, and a list with `count=exact`, `estimated` and `none`.
//!
//! Usage: cargo run --release --example large_table [ROWS]

mod common;

use std::time::Instant;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use restkit::config::{Overrides, Settings};
use restkit::registry::Registry;
use sea_query::{Alias, Expr, Query};

const MODEL: &str = r#"
[[module]]
prefix = "/v1"
[[module.resource]]
name = "items"
[module.resource.fields]
id       = { type = "integer", primary_key = true }
name     = { type = "string", required = true }
category = { type = "integer", index = true }
score    = { type = "number" }
"#;

async fn get(
    app: &restkit::App,
    uri: &str,
    prefer: Option<&str>,
) -> (u16, http::HeaderMap, bytes::Bytes) {
    let mut req = Request::get(uri).header("host", "bench");
    if let Some(p) = prefer {
        req = req.header("prefer", p);
    }
    let res = app.call(req.body(Body::empty()).unwrap()).await;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (
        status,
        headers,
        res.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn median_ms(app: &restkit::App, uri: &str, prefer: Option<&str>, runs: usize) -> f64 {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let (status, _, _) = get(app, uri, prefer).await;
        assert_eq!(status, 200, "{uri}");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times[runs / 2]
}

fn next_link(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    let next = link.split(", ").find(|l| l.ends_with("rel=\"next\""))?;
    Some(next[1..next.find('>')?].replace("http://bench", ""))
}

#[tokio::main]
async fn main() {
    let rows: i64 = common::arg(1, 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("large.db").display());
    // Rate limits on, with quotas no run reaches.
    let toml = format!("{MODEL}{}", common::HIGH_LIMITS);
    let settings = Settings::load(
        &toml,
        &Overrides {
            bind: None,
            database: Some(url),
        },
    )
    .unwrap();
    let model = restkit::model::toml::parse(&toml).unwrap();
    let app = restkit::open(model, settings, &Registry::builtin())
        .await
        .unwrap();

    let t = Instant::now();
    let mut batch = Vec::new();
    for chunk_start in (1..=rows).step_by(500) {
        let mut insert = Query::insert();
        insert.into_table(Alias::new("items")).columns([
            Alias::new("id"),
            Alias::new("name"),
            Alias::new("category"),
            Alias::new("score"),
        ]);
        for id in chunk_start..(chunk_start + 500).min(rows + 1) {
            insert.values_panic([
                Expr::val(id),
                Expr::val(format!("item {id}")),
                Expr::val(id % 100),
                Expr::val((id % 997) as f64 / 10.0),
            ]);
        }
        batch.push(insert);
    }
    app.state().store.execute_batch(batch).await.unwrap();
    println!(
        "generated {rows} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let deep_page = (rows / 20 * 4 / 5).min(40_000);
    println!(
        "\nmedian of 15 calls, ms          (page {deep_page} = offset {})",
        (deep_page - 1) * 20
    );
    let p1 = median_ms(&app, "/v1/items?limit=20", Some("count=none"), 15).await;
    let pdeep = median_ms(
        &app,
        &format!("/v1/items?page={deep_page}&per-page=20"),
        Some("count=none"),
        15,
    )
    .await;
    println!(
        "offset  page 1: {p1:8.3}   page {deep_page}: {pdeep:8.3}   ratio {:.1}x",
        pdeep / p1
    );

    // Walk the cursor to the deep page (each step is a keyset page).
    let t = Instant::now();
    let mut uri = "/v1/items?limit=20&cursor=".to_string();
    for _ in 1..deep_page {
        let (_, headers, _) = get(&app, &uri, Some("count=none")).await;
        uri = next_link(&headers).expect("a next page");
    }
    let walked = t.elapsed().as_secs_f64();
    let c1 = median_ms(&app, "/v1/items?limit=20&cursor=", Some("count=none"), 15).await;
    let cdeep = median_ms(&app, &uri, Some("count=none"), 15).await;
    println!("cursor  page 1: {c1:8.3}   page {deep_page}: {cdeep:8.3}   ratio {:.1}x   (walked {deep_page} pages in {walked:.1} s)", cdeep / c1);

    println!();
    for mode in ["exact", "estimated", "none"] {
        let pref = format!("count={mode}");
        let all = median_ms(&app, "/v1/items?limit=20", Some(&pref), 15).await;
        let filtered = median_ms(
            &app,
            "/v1/items?limit=20&filter%5Bcategory%5D=7",
            Some(&pref),
            15,
        )
        .await;
        let (_, h, _) = get(&app, "/v1/items?limit=20", Some(&pref)).await;
        let total = h
            .get("x-pagination-total-count")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or("-".into());
        println!("count={mode:9}  list: {all:8.3}   filtered (category=7): {filtered:8.3}   total header: {total}");
    }
}
