//! What a flood of forged Bearer tokens from one address costs (§8.2, §9):
//! `GET /v1/books/3` through the whole pipeline, one call after another,
//! timed by the process's CPU clock and the wall clock, with the default
//! anonymous tier (10 requests a minute per IP):
//!
//! - `forged, new each time`: well-formed JWTs with the server's `kid` and
//!   a wrong signature, a different one every request, from one IP — the
//!   refused-token memory cannot help; the limiter must;
//! - `forged, the same one`: one such token over and over;
//! - `forged, limiter off`: new forged tokens with the anonymous tier off,
//!   so each costs an RSA verification (what every forged token cost
//!   before the limiter could refuse it first);
//! - `valid token`: a user's valid token (verified once, then remembered),
//!   from another IP — the rate of real work.
//!
//! For each: requests/s, CPU µs per request, the answers (401 refused by
//! verification, 429 refused by the limiter) and how many RSA
//! verifications ran.
//!
//! Usage: cargo run --release --example forged_flood [REQUESTS]

mod common;

use common::cpu_now;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;

const DEFAULT_TIERS: &str = "
[rate_limit]
token = { requests = 1000000000, period = \"1s\" }
anonymous = { requests = 10, period = \"60s\" }
public = { requests = 10, period = \"60s\" }
authenticated = { requests = 1000000000, period = \"1s\" }
";

const ANONYMOUS_OFF: &str = "
[rate_limit]
token = { requests = 1000000000, period = \"1s\" }
anonymous = { requests = 0 }
public = { requests = 0 }
authenticated = { requests = 1000000000, period = \"1s\" }
";

/// `token` with its signature's first characters replaced by `n` in
/// base64url: a distinct well-formed token with a wrong signature.
fn forged(token: &str, n: usize) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    let mut v = n + 1;
    for b in sig.iter_mut().take(4) {
        *b = B64[v % 64];
        v /= 64;
    }
    format!("{head}.{}", String::from_utf8(sig).unwrap())
}

/// `token` with its claims replaced by a new `jti` of the attacker's
/// making (no tag of this server's): the forgery anyone can make, which
/// the tag check refuses before RSA.
fn forged_claims(token: &str, n: usize) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (head, body, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(body).unwrap()).unwrap();
    claims["jti"] = serde_json::json!(format!("forged-{n}.AAAAAAAAAAAAAAAAAAAAAA"));
    format!("{head}.{}.{sig}", b64.encode(claims.to_string()))
}

struct Run {
    label: &'static str,
    per_second: f64,
    cpu_us: f64,
    unauthorized: usize,
    limited: usize,
    ok: usize,
    verifications: u64,
}

async fn flood(
    label: &'static str,
    app: &restkit::App,
    ip: [u8; 4],
    tokens: impl Iterator<Item = String>,
) -> Run {
    let before = app.state().tokens.refusals.verifications();
    let (mut unauthorized, mut limited, mut ok, mut n) = (0, 0, 0, 0);
    let wall = std::time::Instant::now();
    let cpu = cpu_now();
    for token in tokens {
        let req = Request::get("/v1/books/3")
            .header("host", "bench.test")
            .header("authorization", format!("Bearer {token}"))
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 40000,
            ))))
            .body(Body::empty())
            .unwrap();
        let res = app.call(req).await;
        match res.status().as_u16() {
            401 => unauthorized += 1,
            429 => limited += 1,
            200 => ok += 1,
            s => panic!("{label}: unexpected {s}"),
        }
        std::hint::black_box(res.into_body().collect().await.unwrap().to_bytes());
        n += 1;
    }
    let cpu = cpu_now() - cpu;
    let wall = wall.elapsed().as_secs_f64();
    Run {
        label,
        per_second: n as f64 / wall,
        cpu_us: cpu * 1e6 / n as f64,
        unauthorized,
        limited,
        ok,
        verifications: app.state().tokens.refusals.verifications() - before,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = common::arg(1, 2000);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let public = common::public_demo();
    let limited = public.replace(common::HIGH_LIMITS, DEFAULT_TIERS);
    let open = public.replace(common::HIGH_LIMITS, ANONYMOUS_OFF);
    let app = common::open(&limited, dirs[0].path()).await;
    let unlimited = common::open(&open, dirs[1].path()).await;
    let valid = common::stan_token(&app);
    let valid_elsewhere = common::stan_token(&unlimited);

    // The limiter-off run costs an RSA verification per request: fewer.
    let slow = (n / 10).max(50);
    let runs = [
        flood(
            "forged, new each time",
            &app,
            [203, 0, 113, 9],
            (0..n).map(|i| forged(&valid, i)),
        )
        .await,
        flood(
            "forged, the same one",
            &app,
            [203, 0, 113, 10],
            // One not sent before (the first run sent 0..n).
            (0..n).map(|_| forged(&valid, n)),
        )
        .await,
        flood(
            "forged, limiter off",
            &unlimited,
            [203, 0, 113, 11],
            (0..slow).map(|i| forged(&valid_elsewhere, i)),
        )
        .await,
        flood(
            "valid token",
            &app,
            [198, 51, 100, 1],
            (0..n).map(|_| valid.clone()),
        )
        .await,
        flood(
            "claims forged, limiter off",
            &unlimited,
            [203, 0, 113, 12],
            (0..n).map(|i| forged_claims(&valid_elsewhere, i)),
        )
        .await,
    ];
    println!(
        "GET /v1/books/3 through app.call, one IP each, anonymous tier 10/min (except 'limiter off')"
    );
    println!(
        "{:<28} {:>9} {:>10} {:>6} {:>6} {:>6} {:>8}",
        "", "req/s", "CPU µs/req", "401", "429", "200", "RSA"
    );
    for r in &runs {
        println!(
            "{:<28} {:>9.0} {:>10.1} {:>6} {:>6} {:>6} {:>8}",
            r.label, r.per_second, r.cpu_us, r.unauthorized, r.limited, r.ok, r.verifications
        );
    }
    let valid_cpu = runs[3].cpu_us;
    println!(
        "CPU per refusal ÷ per valid request: new forged {:.2}, same forged {:.2}, limiter off {:.2}, claims forged (no tag, limiter off) {:.2}",
        runs[0].cpu_us / valid_cpu,
        runs[1].cpu_us / valid_cpu,
        runs[2].cpu_us / valid_cpu,
        runs[4].cpu_us / valid_cpu
    );
}
