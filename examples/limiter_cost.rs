//! What the in-process rate limiter costs (§9): `GET /v1/books/3` through
//! the whole pipeline on two apps over the same kind of database — one
//! with the tiers on (quotas no run reaches, so every request is counted
//! and passes), one with them off — interleaved call by call and timed by
//! the process's CPU clock. Anonymous requests (counted per client IP)
//! and a user's Bearer token (counted per user).
//!
//! Usage: cargo run --release --example limiter_cost [ROUNDS]

mod common;

use common::{cpu_now, median};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let (on_dir, off_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let limited = common::open(&common::public_demo(), on_dir.path()).await;
    let off = common::public_demo().replace(
        common::HIGH_LIMITS,
        "\n[rate_limit]\ntoken = { requests = 0 }\nanonymous = { requests = 0 }\nauthenticated = { requests = 0 }\n",
    );
    let unlimited = common::open(&off, off_dir.path()).await;
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
    let token = |app: &restkit::App| {
        let grant = restkit::auth::tokens::Grant {
            subject: restkit::auth::tokens::Subject::User {
                id: 1,
                username: "stan".into(),
            },
            client_id: "1".into(),
            scope: vec!["basic".into()],
            family: None,
        };
        app.state().tokens.access_token(&grant).unwrap().0
    };
    let (on_token, off_token) = (token(&limited), token(&unlimited));
    assert_eq!(
        call(&limited, get(None)).await,
        (http::StatusCode::OK, true)
    );
    assert_eq!(
        call(&unlimited, get(None)).await,
        (http::StatusCode::OK, false)
    );
    assert_eq!(
        call(&limited, get(Some(&on_token))).await,
        (http::StatusCode::OK, true)
    );

    let n = 3000;
    println!(
        "GET /v1/books/3 through app.call, CPU µs per request, medians of {rounds} rounds of {n}"
    );
    for (label, with_token) in [("anonymous (per IP)", false), ("Bearer (per user)", true)] {
        let (mut on, mut offs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (mut a, mut b) = (0.0, 0.0);
            for _ in 0..n {
                let t = cpu_now();
                call(&limited, get(with_token.then_some(on_token.as_str()))).await;
                a += cpu_now() - t;
                let t = cpu_now();
                call(&unlimited, get(with_token.then_some(off_token.as_str()))).await;
                b += cpu_now() - t;
            }
            on.push(a * 1e6 / f64::from(n));
            offs.push(b * 1e6 / f64::from(n));
        }
        let (on, offs) = (median(on), median(offs));
        println!(
            "{label:<20} limiter on {on:>7.1}   off {offs:>7.1}   on/off {:.3} ({:+.1}%)",
            on / offs,
            (on / offs - 1.0) * 100.0
        );
    }
}
