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
    // `Origin: null` (a sandboxed frame, a local file: any site can make
    // one) is never trusted with credentials, even when listed.
    let with_null = settings.replace(
        "\"https://app.example\"",
        "\"https://app.example\", \"null\"",
    );
    let text =
        restkit::demo::DEMO_TOML.replace("[database]\n", &format!("{with_null}\n[database]\n"));
    let t = TestApp::with(&text, "", Registry::builtin()).await;
    for method in [http::Method::GET, http::Method::OPTIONS] {
        let res = t
            .call(method.clone(), "/v1/books/1")
            .header("origin", "null")
            .header("access-control-request-method", "GET")
            .send()
            .await;
        assert!(
            res.headers.get("access-control-allow-origin").is_none(),
            "{method}"
        );
        assert!(res
            .headers
            .get("access-control-allow-credentials")
            .is_none());
    }
}

/// `origins = ["*"]` with `credentials = true` would let any site read a
/// signed-in user's rows: refused at start-up, naming the keys, whether
/// the two come from `[cors]`, a module's `[module.cors]`, or one each.
#[tokio::test]
async fn any_origin_with_credentials_is_refused_at_start_up() {
    let load =
        |toml: &str| restkit::config::Settings::load(toml, &restkit::config::Overrides::default());
    let err = load("[cors]\ncredentials = true\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cors.origins") && err.contains("cors.credentials"),
        "{err}"
    );
    let err = load("[cors]\norigins = [\"https://a.example\", \"*\"]\ncredentials = true\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cors.origins"), "{err}");
    // Without credentials "*" stays allowed.
    assert!(load("[cors]\norigins = [\"*\"]\n").is_ok());

    let module = |cors: &str| {
        format!(
            "[[module]]\nprefix = \"/admin\"\n{cors}\n[[module.resource]]\nname = \"shades\"\n\
             [module.resource.fields]\nid = {{ type = \"integer\", primary_key = true }}\n"
        )
    };
    for (module_cors, global, keys) in [
        (
            "[module.cors]\ncredentials = true\n",
            "",
            ["cors.origins", "module[0] (prefix /admin).cors.credentials"],
        ),
        (
            "[module.cors]\norigins = [\"*\"]\n",
            "[cors]\norigins = [\"https://a.example\"]\ncredentials = true\n",
            ["module[0] (prefix /admin).cors.origins", "cors.credentials"],
        ),
    ] {
        let text = format!("{}\n{global}", module(module_cors));
        let db = crate::db::TestDb::new().await;
        let settings = crate::helpers::settings(&text, &db.url);
        let model = restkit::model::toml::parse(&text).unwrap();
        let err = match restkit::open(model, settings, &Registry::builtin()).await {
            Ok(_) => panic!("started with {module_cors} {global}"),
            Err(e) => e.to_string(),
        };
        for key in keys {
            assert!(err.contains(key), "{key} not in {err}");
        }
    }
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
