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
            "retry-after",
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

#[tokio::test]
async fn a_module_can_have_its_own_cors() {
    let toml = r#"
[[module]]
prefix = "/public"
[[module.resource]]
name = "colors"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string" }

[[module]]
prefix = "/admin"
[module.cors]
origins = ["https://admin.example"]
credentials = true
max_age = "1m"
[[module.resource]]
name = "shades"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string" }
"#;
    let t = TestApp::with(toml, "[cors]\nmax_age = \"10m\"\n", Registry::builtin()).await;
    let preflight = |path: &'static str, origin: &'static str| {
        t.call(http::Method::OPTIONS, path)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    // The public module keeps the global settings: any origin, 10 minutes.
    let res = preflight("/public/colors", "https://anyone.example").await;
    assert_eq!(res.header("access-control-allow-origin"), "*");
    assert_eq!(res.header("access-control-max-age"), "600");
    assert!(res
        .headers
        .get("access-control-allow-credentials")
        .is_none());
    // The admin module: its one origin, with credentials, for a minute.
    let res = preflight("/admin/shades", "https://admin.example").await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        "https://admin.example"
    );
    assert_eq!(res.header("access-control-allow-credentials"), "true");
    assert_eq!(res.header("access-control-max-age"), "60");
    let res = preflight("/admin/shades", "https://anyone.example").await;
    assert!(res.headers.get("access-control-allow-origin").is_none());
    // Errors of the module's routes follow the module too.
    let res = t
        .get("/admin/shades/999")
        .header("origin", "https://anyone.example")
        .send()
        .await;
    assert_eq!(res.status, 404);
    assert!(res.headers.get("access-control-allow-origin").is_none());
    // A bad duration is refused at start-up, naming the place.
    let bad = toml.replace("\"1m\"", "\"soon\"");
    let err = restkit::model::toml::parse(&bad).unwrap_err();
    assert!(err.to_string().contains("cors.max_age"), "{err}");
}
