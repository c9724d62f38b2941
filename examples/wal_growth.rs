//! §13: the SQLite write-ahead log stays bounded under sustained writes
//! with concurrent readers. Eight writers POST as fast as they can and four
//! readers list pages, through the whole pipeline (`app.call`), for
//! SECONDS (default 60, the SPEC's minute); the `-wal` file's size is
//! sampled every 100 ms. Prints writes/s, reads/s and the largest WAL seen
//! (the SPEC's bound: 64 MiB).
//!
//! Usage: cargo run --release --example wal_growth [SECONDS]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = common::arg(1, 60);
    let dir = tempfile::tempdir().unwrap();
    let app = common::open(&common::public_demo(), dir.path()).await;
    let wal = dir.path().join("bench.db-wal");
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let (app, stop, writes) = (app.clone(), stop.clone(), writes.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body =
                    format!(r#"{{"title":"WAL {w}-{i}","author":"Writer {w}","year":2001}}"#);
                let req = Request::post("/v1/books")
                    .header("host", "bench.test")
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap();
                let res = app.call(req).await;
                if res.status() == 201 {
                    writes.fetch_add(1, Ordering::Relaxed);
                }
                let _ = res.into_body().collect().await;
                i += 1;
            }
        }));
    }
    for r in 0..4u64 {
        let (app, stop, reads) = (app.clone(), stop.clone(), reads.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let uri = format!("/v1/books?limit=50&offset={}", (i * 7 + r * 13) % 1000);
                let req = Request::get(uri)
                    .header("host", "bench.test")
                    .body(Body::empty())
                    .unwrap();
                let res = app.call(req).await;
                if res.status() == 200 {
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                let _ = res.into_body().collect().await;
                i += 1;
            }
        }));
    }
    let started = Instant::now();
    let mut largest = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{seconds} s, 8 writers + 4 readers: {:.0} writes/s, {:.0} reads/s, largest WAL {:.1} MiB (bound 64 MiB)",
        writes.load(Ordering::Relaxed) as f64 / secs,
        reads.load(Ordering::Relaxed) as f64 / secs,
        largest as f64 / (1024.0 * 1024.0)
    );
}
