//! Limits that protect the server (§12): hostile Host headers, stalled
//! bodies, huge error lists, unbounded expansions, long writes, slow and
//! idle connections, password checks.

use std::time::Duration;

use axum::body::Body;
use futures_util::StreamExt;
use http::{Method, Request};
use http_body_util::BodyExt;
use restkit::registry::Registry;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_problem, TestApp};

/// The demo with extra `[server]` / `[database]` settings.
async fn demo_with(server: &str, database: &str) -> TestApp {
    let text = restkit::demo::DEMO_TOML
        .replace("[server]\n", &format!("[server]\n{server}\n"))
        .replace("[database]\n", &format!("[database]\n{database}\n"));
    TestApp::with(&text, "", Registry::builtin()).await
}

#[tokio::test]
async fn a_host_header_that_is_not_host_and_port_is_refused() {
    let t = TestApp::demo().await;
    let with_host = |host: &'static str| {
        let req = Request::get("/v1/books?limit=1")
            .header("host", host)
            .header("authorization", t.bearer())
            .body(Body::empty())
            .unwrap();
        t.app.call(req)
    };
    for host in ["evil.example\"><x", "a b", "host:99999", "x/y", "user@host"] {
        let res = with_host(host).await;
        assert_eq!(res.status(), 400, "{host}");
    }
    let res = with_host("[::1]:8080").await;
    assert_eq!(res.status(), 200);
    let link = res.headers()["link"].to_str().unwrap().to_string();
    assert!(link.contains("<http://[::1]:8080/v1/books?"), "{link}");
    // Two Host headers: which one names us? Neither (RFC 9112 §3.2).
    let res = t
        .get("/v1/books?limit=1")
        .header("host", "other.test")
        .send()
        .await;
    assert_problem(&res, 400, "INVALID_HOST");
}

#[tokio::test]
async fn public_url_wins_over_any_host() {
    let t = demo_with(r#"public_url = "https://api.example.com""#, "").await;
    let req = Request::get("/v1/books?limit=1")
        .header("host", "evil.example\"><x")
        .header("authorization", t.bearer())
        .body(Body::empty())
        .unwrap();
    let res = t.app.call(req).await;
    assert_eq!(res.status(), 200);
    let link = res.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("<https://api.example.com/v1/books?"),
        "{link}"
    );
}

#[tokio::test]
async fn a_stalled_body_is_408_not_503() {
    let t = demo_with(r#"body_timeout = "200ms""#, "").await;
    let stalled = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"title\":"))
    })
    .chain(futures_util::stream::pending());
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/books")
        .header("host", "api.test")
        .header("authorization", t.bearer())
        .header("content-type", "application/json")
        .body(Body::from_stream(stalled))
        .unwrap();
    let res = t.app.call(req).await;
    assert_eq!(res.status(), 408);
    let body: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["errorCode"], "BODY_TIMEOUT");
    let count = t.get("/v1/books?limit=1").send().await;
    assert_eq!(count.header("x-pagination-total-count"), "1000");
}

#[tokio::test]
async fn an_error_body_lists_at_most_100_field_errors() {
    let t = TestApp::demo().await;
    let form: Vec<String> = (0..5000).map(|i| format!("junk{i}=1")).collect();
    let res = t
        .post("/v1/books")
        .raw("application/x-www-form-urlencoded", &form.join("&"))
        .send()
        .await;
    let b = assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(b["errors"].as_array().unwrap().len(), 100);
    assert!(
        b["detail"].as_str().unwrap().contains("5002"),
        "{}",
        b["detail"]
    );
    assert!(res.body.len() < 20_000, "{} bytes", res.body.len());
}

/// Each record embeds at most 20 related records per relation (the first
/// by id); one with more names the whole collection in
/// `_links.<relation>`, where the rest is.
#[tokio::test]
async fn has_many_expansion_is_bounded_per_record_and_links_to_the_rest() {
    let t = TestApp::demo().await;
    // 25 reviews of book 1, 2 of book 2, none of book 3.
    t.fill("reviews", &["book_id", "user_id", "rating"], 27, |n| {
        vec![
            (if n < 25 { 1 } else { 2 }).into(),
            1.into(),
            (1 + n % 5).into(),
        ]
    })
    .await;
    let res = t.get("/v1/books?expand=reviews&limit=3").send().await;
    assert_eq!(res.status, 200);
    let books = res.json();
    let reviews = |i: usize| books[i]["reviews"].as_array().unwrap().clone();
    assert_eq!(reviews(0).len(), 20, "bounded at 20 per record");
    assert!(reviews(0).iter().all(|r| r["bookId"] == 1));
    let ids: Vec<i64> = reviews(0)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "first by id");
    let rest = books[0]["_links"]["reviews"]["href"].as_str().unwrap();
    assert!(rest.ends_with("/v1/books/1/reviews"), "{rest}");
    assert_eq!(reviews(1).len(), 2);
    assert!(reviews(1).iter().all(|r| r["bookId"] == 2));
    assert!(
        books[1]["_links"].get("reviews").is_none(),
        "nothing was cut"
    );
    assert!(reviews(2).is_empty());
    // The link leads to all of them.
    let path = &rest[rest.find("/v1/").unwrap()..];
    let all = t.get(&format!("{path}?limit=100")).send().await;
    assert_eq!(all.json().as_array().unwrap().len(), 25);
    // One record alone is bounded the same way.
    let one = t.get("/v1/books/1?expand=reviews").send().await.json();
    assert_eq!(one["reviews"].as_array().unwrap().len(), 20);
    assert!(one["_links"]["reviews"]["href"].is_string());
}

/// One response embeds at most 1,000 related records in all: a page that
/// would embed more is refused with a 400 that says to lower `limit`
/// (100 books × 100 reviews of 1 KB made a 32 MB page).
#[tokio::test]
async fn a_page_embedding_more_than_a_thousand_records_is_refused() {
    let t = TestApp::demo().await;
    // 30 reviews for each of books 1..=100: 20 embedded per book.
    t.fill("reviews", &["book_id", "user_id", "rating"], 3000, |n| {
        vec![(1 + n % 100).into(), 1.into(), 5.into()]
    })
    .await;
    let res = t.get("/v1/books?expand=reviews&limit=50").send().await;
    assert_eq!(res.status, 200, "exactly 1,000 is allowed");
    let embedded: usize = res
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["reviews"].as_array().unwrap().len())
        .sum();
    assert_eq!(embedded, 1000);
    for limit in [51, 100] {
        let res = t
            .get(&format!("/v1/books?expand=reviews&limit={limit}"))
            .send()
            .await;
        let b = assert_problem(&res, 400, "INVALID_QUERY");
        let detail = b["detail"].as_str().unwrap();
        assert!(
            detail.contains("1000") && detail.contains("limit"),
            "{detail}"
        );
    }
    // HTML is bounded by the same rule.
    let res = t
        .get("/v1/books.html?expand=reviews&limit=100")
        .send()
        .await;
    assert_eq!(res.status, 400);
}

/// Long text is bounded by size, not only by count: 20 reviews of
/// 2,000 characters for each of 50 books is 2 MB of stored text (tens of
/// megabytes as an HTML page), and is refused; choosing the reviews'
/// fields makes the same page small enough.
#[tokio::test]
async fn a_page_embedding_more_than_a_mebibyte_is_refused() {
    let t = TestApp::demo().await;
    let body = "\"".repeat(2000);
    t.fill(
        "reviews",
        &["book_id", "user_id", "rating", "body"],
        1000,
        |n| vec![(1 + n % 50).into(), 1.into(), 5.into(), body.clone().into()],
    )
    .await;
    let res = t.get("/v1/books?expand=reviews&limit=50").send().await;
    let b = assert_problem(&res, 400, "INVALID_QUERY");
    assert!(b["detail"].as_str().unwrap().contains("1 MiB"), "{b}");
    let page = t.get("/v1/books.html?expand=reviews&limit=50").send().await;
    assert_eq!(page.status, 400);
    assert!(page.body.len() < 100_000, "{} bytes", page.body.len());
    let res = t
        .get("/v1/books?expand=reviews&fields=id,reviews.id,reviews.rating&limit=50")
        .send()
        .await;
    assert_eq!(res.status, 200);
    // A few long reviews still come whole.
    let res = t.get("/v1/books?expand=reviews&limit=5").send().await;
    assert_eq!(res.status, 200);
}

const MANY: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "items"
table = "items"
bulk = true
[module.resource.fields]
id = { type = "integer", primary_key = true }
n  = { type = "integer" }
s  = { type = "string" }
"#;

#[tokio::test]
async fn a_write_past_the_statement_timeout_is_stopped_and_rolled_back() {
    // Seeded under the default statement timeout (a 1,000-row batch can
    // itself pass 1 ms on a loaded machine), then reopened with 1 ms.
    let seeded = TestApp::with(MANY, "", Registry::builtin()).await;
    seeded
        .fill("items", &["n", "s"], 100_000, |n| {
            vec![n.into(), format!("some longer text {n} to scan").into()]
        })
        .await;
    let dir = seeded.into_dir();
    let url = dir.url.clone();
    // (PostgreSQL counts every statement's whole time, start-up's too: a
    // limit that still lets the app open, far below the delete's.)
    let limit = if crate::db::postgres() { "50ms" } else { "1ms" };
    let settings = crate::helpers::settings(
        &format!("{MANY}\n[database]\nstatement_timeout = \"{limit}\"\n"),
        &url,
    );
    let model = restkit::model::toml::parse(MANY).unwrap();
    let app = restkit::open(model, settings, &Registry::builtin())
        .await
        .unwrap();
    let t = TestApp::in_dir(app, dir);
    let res = t
        .delete("/api/items?filter[s][like]=longer%20text")
        .send()
        .await;
    assert_problem(&res, 503, "QUERY_TIMEOUT");
    // Rolled back: the rows are all still there (reads are bounded by the
    // same 1 ms, so look them up by key rather than count them: the
    // watchdog cannot interrupt a statement of fewer than 20,000 VM
    // instructions, however loaded the machine).
    for id in [1, 50_000, 100_000] {
        let res = t.get(&format!("/api/items/{id}")).send().await;
        assert_eq!(res.status, 200, "item {id}");
    }
    // The writer is free again, and its transactions really commit: an
    // abandoned transaction (a 404 PATCH) after the interrupted one must
    // not leave later writes inside a transaction that never ends.
    let res = t
        .patch("/api/items/999999")
        .json(json!({"n": 2}))
        .send()
        .await;
    assert_eq!(res.status, 404);
    for n in 0..3 {
        let res = t.post("/api/items").json(json!({"n": n})).send().await;
        assert_eq!(res.status, 201);
        let id = res.json()["id"].as_i64().unwrap();
        let seen = t.get(&format!("/api/items/{id}")).send().await;
        assert_eq!(seen.status, 200, "a reader sees the committed row {id}");
    }
}

#[tokio::test]
async fn a_changed_password_takes_effect_at_once() {
    let t = TestApp::demo().await;
    let basic = |pw: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("stan:{pw}"))
        )
    };
    let me = |pw: String| t.get("/v1/users/me").header("authorization", &pw).send();
    assert_eq!(me(basic("pass")).await.status, 200);
    assert_eq!(me(basic("pass")).await.status, 200, "remembered");
    let store = &t.app.state().store;
    assert!(restkit::auth::users::set_password(
        store,
        "stan",
        "new",
        std::time::Duration::from_secs(3600)
    )
    .await
    .unwrap());
    assert_eq!(me(basic("pass")).await.status, 401);
    assert_eq!(me(basic("new")).await.status, 200);
}

#[tokio::test]
async fn many_concurrent_wrong_passwords_all_get_401() {
    let t = std::sync::Arc::new(TestApp::demo().await);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            use base64::Engine;
            let auth = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("stan:wrong{i}"))
            );
            t.get("/v1/users/me")
                .header("authorization", &auth)
                .send()
                .await
                .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 401);
    }
}

/// Serves the demo on 127.0.0.1 with extra `[server]` settings.
async fn serve(
    server: &str,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    TestApp,
) {
    let t = demo_with(server, "").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(t.app.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop, t)
}

/// Reads until the server closes the connection (or `limit` passes).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let (addr, _stop, _t) = serve(r#"header_timeout = "300ms""#).await;
    // Slow headers: half a request line, then nothing.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
    // Idle keep-alive: one request answered, then silence.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn connections_past_the_cap_wait_instead_of_failing() {
    let (addr, _stop, _t) = serve("max_connections = 2\nheader_timeout = \"400ms\"").await;
    // Two silent clients hold both slots …
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    // … a third is served once they are timed out.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .expect("served within the header timeout of the others")
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut a, Duration::from_secs(5)).await);
    assert!(closed_within(&mut b, Duration::from_secs(5)).await);
}
