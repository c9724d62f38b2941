//! What a Bearer token costs (§8.2): `GET /v1/books/3` through the whole
//! pipeline without credentials and with an access token (RS256
//! verification, claims, revocation check), interleaved call by call and
//! timed by the process's CPU clock; and the token endpoint's cost per
//! grant (`client_credentials`, `refresh_token`, `password` — the last
//! bounded by Argon2 by design, and remembered for 60 s after a success).
//!
//! Usage: cargo run --release --example auth_cost [ROUNDS]

mod common;

use common::{cpu_now, median};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = common::arg(1, 7);
    let dir = tempfile::tempdir().unwrap();
    // Books public (scope ""), so the same request runs without
    // credentials; with a token, the identity step still verifies it.
    let toml = common::public_demo();
    let app = common::open(&toml, dir.path()).await;
    let call = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let res = app.call(req).await;
            let status = res.status();
            (status, res.into_body().collect().await.unwrap().to_bytes())
        }
    };
    let form = |body: String| {
        Request::post("/v1/access_token")
            .header("host", "bench.test")
            .header("authorization", "Basic MTpwYXNzMg==")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    let (_, issued) = call(form(
        "grant_type=password&username=stan&password=pass".into(),
    ))
    .await;
    let issued: Value = serde_json::from_slice(&issued).unwrap();
    let access = issued["access_token"].as_str().unwrap().to_string();
    let mut refresh = issued["refresh_token"].as_str().unwrap().to_string();
    let get = |token: Option<&str>| {
        let mut b = Request::get("/v1/books/3").header("host", "bench.test");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(call(get(Some(&access))).await.0, 200);
    assert_eq!(call(get(None)).await.0, 200, "books are public here");

    let n = 3000;
    let (mut plain, mut bearer) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (mut p, mut b) = (0.0, 0.0);
        for _ in 0..n {
            let t = cpu_now();
            std::hint::black_box(call(get(None)).await);
            p += cpu_now() - t;
            let t = cpu_now();
            std::hint::black_box(call(get(Some(&access))).await);
            b += cpu_now() - t;
        }
        plain.push(p * 1e6 / f64::from(n));
        bearer.push(b * 1e6 / f64::from(n));
    }
    let (plain, bearer) = (median(plain), median(bearer));
    println!("GET /v1/books/3 through app.call, CPU µs per request, medians of {rounds} rounds");
    println!("no credentials   {plain:>8.1}");
    println!(
        "Bearer JWT       {bearer:>8.1}   verification + revocation add {:+.1}%",
        (bearer / plain - 1.0) * 100.0
    );

    println!();
    println!("token endpoint, CPU µs per request (median of {rounds} rounds of 200)");
    let mut grants = vec![Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let mut spent = [0.0f64; 3];
        for _ in 0..200 {
            let t = cpu_now();
            let (s, _) = call(form("grant_type=client_credentials&scope=basic".into())).await;
            spent[0] += cpu_now() - t;
            assert_eq!(s, 200);
            let t = cpu_now();
            let (s, body) = call(form(format!(
                "grant_type=refresh_token&refresh_token={refresh}"
            )))
            .await;
            spent[1] += cpu_now() - t;
            assert_eq!(s, 200);
            let v: Value = serde_json::from_slice(&body).unwrap();
            refresh = v["refresh_token"].as_str().unwrap().to_string();
            let t = cpu_now();
            let (s, _) = call(form(
                "grant_type=password&username=stan&password=pass".into(),
            ))
            .await;
            spent[2] += cpu_now() - t;
            assert_eq!(s, 200);
        }
        for (i, s) in spent.iter().enumerate() {
            grants[i].push(s * 1e6 / 200.0);
        }
    }
    for (name, v) in [
        "client_credentials",
        "refresh_token",
        "password (remembered)",
    ]
    .iter()
    .zip(grants)
    {
        let us = median(v);
        println!("{name:<22} {us:>8.1}   ≈ {:.0} per CPU-second", 1e6 / us);
    }
}
