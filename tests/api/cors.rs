//! CORS (§10): preflights told apart from descriptive OPTIONS, the route's
//! own methods, exposed headers on actual responses (errors too),
//! configured origins, never `*` with credentials.

use http::Method;
use restkit::registry::Registry;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_preflight_gets_the_routes_methods_and_the_allowed_headers() {
    let t = TestApp::demo().await;
    let res = t
        .call(Method::OPTIONS, "/v1/books/3")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .header("access-control-request-headers", "authorization, if-match")
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), "*");
    assert_eq!(
        res.header("access-control-allow-methods"),
        res.header("allow")
    );
    let methods = res.header("access-control-allow-methods");
    assert!(
        methods.contains("PATCH") && methods.contains("OPTIONS") && !methods.contains("POST"),
        "{methods}"
    );
    let headers = res.header("access-control-allow-headers");
    assert!(
        headers.contains("authorization") && headers.contains("if-match"),
        "{headers}"
    );
    assert_eq!(res.header("access-control-max-age"), "600");
    assert!(res.headers.get("access-control-expose-headers").is_none());
    // A collection route allows other methods.
    let res = t
        .call(Method::OPTIONS, "/v1/books")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await;
    assert!(res.header("access-control-allow-methods").contains("POST"));
    // An OPTIONS without the preflight headers is a description, not a preflight.
    let res = t
        .call(Method::OPTIONS, "/v1/books")
        .header("origin", "https://app.example")
        .send()
        .await;
    assert!(res.headers.get("access-control-allow-methods").is_none());
}

#[tokio::test]
async fn actual_responses_expose_their_headers_errors_included() {
    let t = TestApp::demo().await;
    for (path, status) in [("/v1/books?limit=2", 200), ("/v1/books/99999", 404)] {
        let res = t
            .get(path)
            .header("origin", "https://app.example")
            .send()
            .await;
        assert_eq!(res.status, status);
        assert_eq!(res.header("access-control-allow-origin"), "*");
        let exposed = res.header("access-control-expose-headers");
        for h in [
            "x-pagination-total-count",
            "etag",
            "link",
            "x-request-id",
            "ratelimit",
        ] {
            assert!(exposed.contains(h), "{h} in {exposed}");
        }
    }
    // No Origin, no CORS headers.
    let res = t.get("/v1/books/1").send().await;
    assert!(res.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn configured_origins_and_credentials() {
    let settings = "[cors]\norigins = [\"https://app.example\"]\ncredentials = true\n";
    let text =
        restkit::demo::DEMO_TOML.replace("[database]\n", &format!("{settings}\n[database]\n"));
    let t = TestApp::with(&text, "", Registry::builtin()).await;
    let res = t
        .get("/v1/books/1")
        .header("origin", "https://app.example")
        .send()
        .await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(res.header("access-control-allow-credentials"), "true");
    let vary: Vec<&str> = res
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(vary.contains(&"origin"), "{vary:?}");
    let res = t
        .get("/v1/books/1")
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert!(res.headers.get("access-control-allow-origin").is_none());
    assert!(res.headers.get("access-control-expose-headers").is_none());
    // "*" with credentials is never sent: the origin is echoed.
    let any = restkit::demo::DEMO_TOML
        .replace("[database]\n", "[cors]\ncredentials = true\n\n[database]\n");
    let t = TestApp::with(&any, "", Registry::builtin()).await;
    let res = t
        .get("/v1/books/1")
        .header("origin", "https://other.example")
        .send()
        .await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        "https://other.example"
    );
}
