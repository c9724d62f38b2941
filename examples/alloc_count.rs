//! Heap allocations per request, in-process: `GET /v1/books/3` (and a
//! page of 20) through the whole `app.call` pipeline, counted by a global
//! allocator that counts calls and bytes. Sequential calls after a warm-up,
//! so start-up and first-use caches are not counted.
//!
//! Usage: cargo run --release --example alloc_count [N]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;

struct Counting;

static CALLS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = common::arg(1, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let app = common::open(&common::public_demo(), dir.path()).await;
    for (label, uri) in [
        ("GET /v1/books/3", "/v1/books/3"),
        (
            "GET /v1/books?limit=20&offset=100",
            "/v1/books?limit=20&offset=100",
        ),
    ] {
        let call = || async {
            let res = app
                .call(Request::get(uri).body(Body::empty()).unwrap())
                .await;
            assert_eq!(res.status(), 200);
            std::hint::black_box(res.into_body().collect().await.unwrap().to_bytes());
        };
        for _ in 0..200 {
            call().await;
        }
        let (calls, bytes) = (CALLS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
        for _ in 0..n {
            call().await;
        }
        let calls = CALLS.load(Ordering::Relaxed) - calls;
        let bytes = BYTES.load(Ordering::Relaxed) - bytes;
        println!(
            "{label:<40} {:>7.1} allocations/request {:>9.0} bytes/request",
            calls as f64 / n as f64,
            bytes as f64 / n as f64
        );
    }
}
