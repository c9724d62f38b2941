//! What encoding costs (§5.1, §5.6), in-process, in two parts.
//!
//! 1. The encoders alone, on the same 100-record page read from the demo
//!    database through `app.call` (JSON, XML, CSV, HTML): µs per page and
//!    the ratio of each to JSON.
//! 2. What ETag and compression add to a whole request: the full pipeline
//!    for `GET /v1/books?limit=20`, body collected (compression runs as the
//!    body is read), with `Accept-Encoding: identity`, `gzip` and `br`; and
//!    the ETag's hash alone against the identity request.
//!
//! Formats and variants alternate in rounds so machine noise hits all
//! alike; the figures are medians over rounds.
//!
//! The demo's books are public here (as in bench/run.sh): the figures are
//! encoding and compression, not authentication.
//!
//! Usage: cargo run --release --example encode_cost [ROUNDS]

use std::time::Instant;

mod common;

use common::{cpu_now, median};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use restkit::format::{self, Content, Format};
use serde_json::{Map, Value};

/// µs per call of `f`, over `n` calls.
fn time<F: FnMut()>(n: u32, mut f: F) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(coding) = std::env::var("ENCODE_COST_PROFILE") {
        profile_only(&coding).await;
        return;
    }
    let rounds: usize = common::arg(1, 7);
    let dir = tempfile::tempdir().unwrap();
    let app = common::open(&common::public_demo(), dir.path()).await;

    let call = |path: &str, coding: &str| {
        let req = Request::get(path)
            .header("host", "bench.test")
            .header("accept-encoding", coding)
            .body(Body::empty())
            .unwrap();
        let app = app.clone();
        async move {
            let res = app.call(req).await;
            res.into_body().collect().await.unwrap().to_bytes()
        }
    };

    // The page the encoders get: 100 demo books with their links (v2).
    let json = call("/v2/books?limit=100", "identity").await;
    let records: Vec<Map<String, Value>> = serde_json::from_slice(&json).unwrap();
    assert_eq!(records.len(), 100);
    let content = Content::Records(records);
    let formats = [
        ("JSON", Format::Json),
        ("XML", Format::Xml),
        ("CSV", Format::from_name("csv").unwrap()),
        ("HTML", Format::Html),
    ];
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); formats.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in formats.iter().enumerate() {
            per[i].push(time(300, || {
                std::hint::black_box(format::bytes_of(&content, *f));
            }));
        }
    }
    println!("1. encoding a 100-record page (/v2/books, with _links), medians of {rounds} rounds");
    println!(
        "{:<6} {:>10} {:>10} {:>8}",
        "format", "bytes", "µs/page", "× JSON"
    );
    let json_us = median(per[0].clone());
    for (i, (name, f)) in formats.iter().enumerate() {
        let bytes = format::bytes_of(&content, *f).unwrap().len();
        let us = median(per[i].clone());
        println!("{name:<6} {bytes:>10} {us:>10.1} {:>8.2}", us / json_us);
    }

    // 2. The whole request, with and without compression; the ETag hash.
    let path = "/v1/books?limit=20";
    let body = call(path, "identity").await;
    let n = 2000;
    let mut identity = Vec::new();
    let mut gzip = Vec::new();
    let mut br = Vec::new();
    let mut tag = Vec::new();
    for _ in 0..rounds {
        // Interleaved call by call: noise on this shared machine hits the
        // three variants alike.
        let mut spent = [0f64; 3];
        for _ in 0..n {
            for (i, coding) in ["identity", "gzip", "br"].into_iter().enumerate() {
                let t = cpu_now();
                std::hint::black_box(call(path, coding).await);
                spent[i] += cpu_now() - t;
            }
        }
        let per = |s: f64| s * 1e6 / f64::from(n);
        identity.push(per(spent[0]));
        gzip.push(per(spent[1]));
        br.push(per(spent[2]));
        tag.push(time(20_000, || {
            std::hint::black_box(format::etag(&body));
        }));
    }
    let (identity, gzip, br, tag) = (median(identity), median(gzip), median(br), median(tag));
    println!();
    println!(
        "2. GET {path} through app.call ({} bytes), CPU µs per request, medians of {rounds} rounds",
        body.len()
    );
    println!("identity            {identity:>8.1}");
    println!(
        "gzip                {gzip:>8.1}   compression adds {:+.1}%",
        (gzip / identity - 1.0) * 100.0
    );
    println!(
        "br                  {br:>8.1}   compression adds {:+.1}%",
        (br / identity - 1.0) * 100.0
    );
    println!(
        "ETag (SHA-256)      {tag:>8.2}   {:.1}% of the identity request",
        tag / identity * 100.0
    );
}

/// ENCODE_COST_PROFILE=gzip: only that request, in a loop (for perf).
async fn profile_only(coding: &str) {
    let dir = tempfile::tempdir().unwrap();
    let app = common::open(&common::public_demo(), dir.path()).await;
    for _ in 0..20_000 {
        let req = Request::get("/v1/books?limit=20")
            .header("host", "bench.test")
            .header("accept-encoding", coding)
            .body(Body::empty())
            .unwrap();
        let res = app.call(req).await;
        std::hint::black_box(res.into_body().collect().await.unwrap().to_bytes());
    }
}
