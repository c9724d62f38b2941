//! What rate limiting (§9) and metrics (§12) cost: `GET /v1/books/3`
//! through the whole pipeline on three apps over the same kind of
//! database — bare (tiers and metrics off), with the in-process limiter on
//! (quotas no run reaches, so every request is counted and passes), and
//! with metrics on — interleaved call by call and timed by the process's
//! CPU clock, for anonymous requests (counted per client IP) and a user's
//! Bearer token (counted per user). Ratios are to the bare app.
//!
//! Usage: cargo run --release --example limiter_cost [ROUNDS]

mod common;

use common::{cpu_now, median};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;

const OFF: &str = "\n[rate_limit]\ntoken = { requests = 0 }\nanonymous = { requests = 0 }\npublic = { requests = 0 }\n\
                   authenticated = { requests = 0 }\n";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = common::arg(1, 7);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let public = common::public_demo();
    let bare = public.replace(common::HIGH_LIMITS, OFF) + "\n[metrics]\nenabled = false\n";
    let limited = public.clone() + "\n[metrics]\nenabled = false\n";
    let metered = public.replace(common::HIGH_LIMITS, OFF);
    let apps = [
        common::open(&bare, dirs[0].path()).await,
        common::open(&limited, dirs[1].path()).await,
        common::open(&metered, dirs[2].path()).await,
    ];
    let get = |token: Option<&str>| {
        let mut b = Request::get("/v1/books/3")
            .header("host", "bench.test")
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [203, 0, 113, 7],
                40000,
            ))));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::empty()).unwrap()
    };
    let call = |app: &restkit::App, req: Request<Body>| {
        let app = app.clone();
        async move {
            let res = app.call(req).await;
            let limited = res.headers().contains_key("x-rate-limit-limit");
            let status = res.status();
            std::hint::black_box(res.into_body().collect().await.unwrap().to_bytes());
            (status, limited)
        }
    };
    let tokens: Vec<String> = apps.iter().map(common::stan_token).collect();
    let ok = http::StatusCode::OK;
    assert_eq!(call(&apps[0], get(None)).await, (ok, false));
    assert_eq!(call(&apps[1], get(Some(&tokens[1]))).await, (ok, true));
    assert_eq!(call(&apps[2], get(None)).await, (ok, false));

    let n = 3000;
    println!(
        "GET /v1/books/3 through app.call, CPU µs per request, medians of {rounds} rounds of {n}"
    );
    for (label, with_token) in [("anonymous (per IP)", false), ("Bearer (per user)", true)] {
        let mut spent: [Vec<f64>; 3] = Default::default();
        for _ in 0..rounds {
            let mut round = [0.0; 3];
            for _ in 0..n {
                for (k, app) in apps.iter().enumerate() {
                    let t = cpu_now();
                    call(app, get(with_token.then_some(tokens[k].as_str()))).await;
                    round[k] += cpu_now() - t;
                }
            }
            for k in 0..3 {
                spent[k].push(round[k] * 1e6 / f64::from(n));
            }
        }
        let [bare, limiter, metrics] = spent.map(median);
        println!(
            "{label:<20} bare {bare:>6.1}   limiter {limiter:>6.1} ({:+.1}%)   metrics {metrics:>6.1} ({:+.1}%)",
            (limiter / bare - 1.0) * 100.0,
            (metrics / bare - 1.0) * 100.0
        );
    }
}
