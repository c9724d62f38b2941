//! Soak benchmark (§12), not part of the test run: the release binary under
//! a mixed load for a fixed number of requests — reads of one record
//! (70%), filtered pages (15%), creates (10%) and token requests (5%), all
//! authenticated — over keep-alive connections from this process. Reports
//! throughput, latency percentiles, answers by status, and the server's
//! resident memory at start, peak and end (sampled from /proc every
//! 200 ms): memory must not grow without bound.
//!
//! Usage: cargo build --release && cargo run --release --example soak [REQUESTS] [CONNECTIONS] [reads|writes]
//!
//! `reads` leaves out the creates and token requests: the table does not
//! grow, so what memory does under a steady state shows alone. `writes`
//! leaves out only the token requests (no password hashing: each Argon2
//! slot that runs keeps its 19 MiB of working memory).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};

const CLIENT_BASIC: &str = "Basic MTpwYXNzMg=="; // client 1 : pass2

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Conn { sender }
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Option<(u16, Bytes)> {
        self.sender.ready().await.ok()?;
        let res = self.sender.send_request(req).await.ok()?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    }
}

fn request(
    method: Method,
    uri: &str,
    auth: &str,
    body: Option<(&str, String)>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1")
        .header(header::AUTHORIZATION, auth);
    let body = match body {
        Some((ctype, text)) => {
            b = b.header(header::CONTENT_TYPE, ctype);
            Bytes::from(text)
        }
        None => Bytes::new(),
    };
    b.body(Full::new(body)).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let connections: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(32);
    let mode = args.next();
    let reads_only = mode.as_deref() == Some("reads");
    let no_tokens = mode.as_deref() == Some("writes");
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/restkit");
    assert!(bin.exists(), "build it first: cargo build --release");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("soak.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[rate_limit]\ntoken = {{ requests = 1000000000, period = \"1s\" }}\n\
             authenticated = {{ requests = 1000000000, period = \"1s\" }}\n",
            restkit::demo::DEMO_TOML
        ),
    )
    .unwrap();
    let addr: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--bind",
            &addr.to_string(),
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut probe = loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break Conn::open(addr).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, body) = probe
        .send(request(
            Method::POST,
            "/v1/access_token",
            CLIENT_BASIC,
            Some((
                "application/x-www-form-urlencoded",
                "grant_type=password&username=stan&password=pass&scope=basic%20write".into(),
            )),
        ))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = Arc::new(format!(
        "Bearer {}",
        token["access_token"].as_str().unwrap()
    ));

    let rss_start = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(rss_start));
    let done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    // RSS at each tenth of the run: the curve tells growth that levels off
    // (caches filling) from growth that does not.
    let sampler = {
        let (peak, done, next) = (peak.clone(), done.clone(), next.clone());
        tokio::spawn(async move {
            let mut curve = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let rss = rss_kib(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                let tenth = next.load(Ordering::Relaxed).min(total) * 10 / total;
                if tenth as usize > curve.len() {
                    curve.push(rss);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            curve
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, bearer) = (next.clone(), bearer.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let kind = if reads_only {
                    i % 17
                } else if no_tokens {
                    i % 19
                } else {
                    i % 20
                };
                let req = match kind {
                    0..=13 => request(
                        Method::GET,
                        &format!("/v1/books/{}", 1 + i % 1000),
                        &bearer,
                        None,
                    ),
                    14..=16 => request(
                        Method::GET,
                        &format!(
                            "/v1/books?filter%5Byear%5D%5Bgte%5D={}&limit=20",
                            1950 + i % 60
                        ),
                        &bearer,
                        None,
                    ),
                    17 | 18 => request(
                        Method::POST,
                        "/v1/books",
                        &bearer,
                        Some((
                            "application/json",
                            format!(r#"{{"title":"Soak {i}","author":"Soak","year":2001}}"#),
                        )),
                    ),
                    _ => request(
                        Method::POST,
                        "/v1/access_token",
                        CLIENT_BASIC,
                        Some((
                            "application/x-www-form-urlencoded",
                            "grant_type=client_credentials&scope=basic".into(),
                        )),
                    ),
                };
                let t = Instant::now();
                let status = match conn.send(req).await {
                    Some((s, _)) => s,
                    None => {
                        conn = Conn::open(addr).await;
                        0
                    }
                };
                latencies.push(t.elapsed().as_micros() as u32);
                *statuses.entry(status).or_default() += 1;
            }
            (latencies, statuses)
        }));
    }
    let mut latencies = Vec::with_capacity(total as usize);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for t in tasks {
        let (l, s) = t.await.unwrap();
        latencies.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let curve = sampler.await.unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_end = rss_kib(pid);
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)] as f64 / 1000.0
    };
    println!(
        "{total} requests over {connections} keep-alive connections in {secs:.1} s: {:.0} r/s",
        total as f64 / secs
    );
    println!(
        "latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!("answers by status (0 = connection error): {statuses:?}");
    println!(
        "server RSS MiB: start {:.1}  peak {:.1}  end {:.1}",
        rss_start as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        rss_end as f64 / 1024.0
    );
    let curve: Vec<String> = curve
        .iter()
        .map(|k| format!("{:.0}", *k as f64 / 1024.0))
        .collect();
    println!("server RSS MiB at each tenth: {}", curve.join(" "));
    let _ = child.kill().await;
}
