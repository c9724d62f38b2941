//! §11, first part: the OpenAPI document is generated from the routes the
//! server serves, covers every one of them, and passes a standard OpenAPI
//! validator (openapi-spec-validator; not run — loudly, and a failure under
//! `CI=true` — only when Python lacks it; `.ci/run` installs it).

use restkit::registry::Registry;
use serde_json::Value;

use crate::helpers::{python, require_python, TestApp};

/// Every declared route and method is in the document, with its scope.
fn covers_every_route(t: &TestApp, doc: &Value) {
    for route in &t.app.state().routes {
        let item = doc["paths"]
            .get(&route.template)
            .unwrap_or_else(|| panic!("{} is not documented", route.template));
        for e in &route.endpoints {
            let op = &item[e.method.as_str().to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{} {} is not documented",
                e.method,
                route.template
            );
            if !e.scope.is_empty() {
                assert_eq!(op["security"][0]["oauth2"][0], e.scope.as_str());
            }
        }
    }
}

fn validate(doc: &Value) {
    if !require_python("openapi_spec_validator") {
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), doc.to_string()).unwrap();
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
            file.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_demo_is_documented_completely_and_validly() {
    let t = TestApp::demo().await;
    let res = t.get("/openapi.json").anonymous().send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), "application/json");
    let doc = res.json();
    assert_eq!(doc["openapi"], "3.1.0");
    covers_every_route(&t, &doc);
    for own in [
        "/health",
        "/v1/access_token",
        "/v1/authorize",
        "/.well-known/jwks.json",
    ] {
        assert!(doc["paths"].get(own).is_some(), "{own}");
    }
    let flows = &doc["components"]["securitySchemes"]["oauth2"]["flows"];
    assert!(flows["authorizationCode"]["tokenUrl"].is_string());
    assert!(
        flows["password"].is_object(),
        "the demo enables the password grant"
    );
    // The record schema comes from the readable fields: the hidden column
    // is not in it.
    let books = &doc["components"]["schemas"]["V1Books"]["properties"];
    assert!(
        books["title"].is_object() && books["isbn"].is_object(),
        "{books}"
    );
    assert!(books.get("internalNote").is_none());
    // The bulk PUT takes an array of records.
    // Bodies are components named for the resource and the operation, one
    // model however many media types carry it.
    let body = |path: &str, method: &str, media: &str| {
        doc["paths"][path][method]["requestBody"]["content"][media]["schema"]["$ref"].clone()
    };
    assert_eq!(
        body("/v1/books", "put", "application/json"),
        "#/components/schemas/V1BooksBulkReplace"
    );
    assert_eq!(
        doc["components"]["schemas"]["V1BooksBulkReplace"]["type"],
        "array"
    );
    assert_eq!(
        body("/v1/books", "post", "application/json"),
        "#/components/schemas/V1BooksCreate"
    );
    for media in ["application/json", "application/merge-patch+json"] {
        assert_eq!(
            body("/v1/books/{id}", "patch", media),
            "#/components/schemas/V1BooksPatch"
        );
    }
    assert_eq!(
        body(
            "/v1/books/{id}",
            "patch",
            "application/x-www-form-urlencoded"
        ),
        "#/components/schemas/V1BooksPatchForm"
    );
    // `filter` is a string generators keep, its JSON Schema beside it.
    let filter = doc["paths"]["/v1/books"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "filter")
        .unwrap();
    assert_eq!(filter["schema"]["type"], "string");
    assert_eq!(
        filter["schema"]["contentSchema"]["$ref"],
        "#/components/schemas/V1BooksFilter"
    );
    validate(&doc);
}

#[tokio::test]
async fn a_users_own_declaration_is_documented_too() {
    let toml = r#"
[info]
title = "Paint shop"
description = "Colors and their swatches."
version = "2.3.0"

[[module]]
prefix = "/api"
description = "The shop's catalogue."
[[module.resource]]
name = "colors"
bulk = true
description = "Paint colors."
sortable = ["name"]
filterable = ["name", "shade"]
[module.resource.fields]
id    = { type = "integer", primary_key = true }
name  = { type = "string", required = true, max_length = 20, description = "What the tin says." }
shade = { type = "integer", minimum = 0, maximum = 10 }
[[module.resource.nested]]
name = "swatches"
parent_key = "colorId"
[module.resource.nested.fields]
id      = { type = "integer", primary_key = true }
colorId = { type = "integer", read_only = true }
label   = { type = "string" }
"#;
    let t = TestApp::with(toml, "", Registry::builtin()).await;
    let doc = t.get("/openapi.json").anonymous().send().await.json();
    covers_every_route(&t, &doc);
    let create = &doc["components"]["schemas"]["ApiColorsCreate"];
    assert_eq!(create["properties"]["name"]["maxLength"], 20);
    // The declarations' descriptions and [info].
    assert_eq!(doc["info"]["title"], "Paint shop");
    assert_eq!(doc["info"]["version"], "2.3.0");
    assert_eq!(doc["tags"][0]["description"], "The shop's catalogue.");
    assert_eq!(
        doc["paths"]["/api/colors"]["get"]["description"],
        "Paint colors."
    );
    assert_eq!(
        create["properties"]["name"]["description"],
        "What the tin says."
    );
    // The read parameters are this resource's: sort only by name, q over
    // name and shade (typed), expand absent (no relations).
    let params = doc["paths"]["/api/colors"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |n: &str| params.iter().find(|p| p["name"] == n).cloned();
    assert_eq!(
        param("sort").unwrap()["schema"]["items"]["enum"],
        serde_json::json!(["-name", "name"])
    );
    let q = param("q").unwrap()["schema"]["pattern"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(q.contains("name:") && q.contains("shade:-?[0-9]"), "{q}");
    assert!(param("expand").is_none());
    let filter = &doc["components"]["schemas"]["ApiColorsFilterCondition"];
    assert!(
        filter.to_string().contains("\"const\":\"shade\""),
        "{filter}"
    );
    // OPTIONS: the bulk PUT takes an array of records, each with its id.
    let res = t
        .call(http::Method::OPTIONS, "/api/colors")
        .anonymous()
        .send()
        .await;
    let d = res.json();
    let put = d["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["method"] == "PUT")
        .unwrap()
        .clone();
    assert_eq!(put["input"]["type"], "array");
    assert_eq!(put["input"]["items"]["required"][0], "id");
    assert!(put["parameters"].is_array() && put["summary"].is_string());
    assert!(doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .any(|p| p.starts_with("/api/colors/{") && p.contains("swatches")));
    validate(&doc);
}

/// The demo's document is snapshotted (`tests/golden/openapi-demo.json`):
/// a change to it must be deliberate. `UPDATE_GOLDEN=1 cargo test` writes
/// the new one for review in the diff.
#[tokio::test]
async fn the_demo_document_matches_its_golden_file() {
    let t = TestApp::demo().await;
    let doc: Value = serde_json::from_slice(&t.app.state().openapi).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/openapi-demo.json"
    );
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &pretty).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(path).expect("the golden file exists");
    assert!(
        golden == pretty,
        "the OpenAPI document changed; if that is intended, run UPDATE_GOLDEN=1 cargo test and review the diff of {path}"
    );
}

#[tokio::test]
async fn options_describes_a_route_as_json_or_as_a_page() {
    let t = TestApp::demo().await;
    let res = t
        .call(http::Method::OPTIONS, "/v1/books")
        .anonymous()
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("allow"), "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    let d = res.json();
    assert!(d["methods"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["method"] == "POST" && m["input"].is_object()));
    let res = t
        .call(http::Method::OPTIONS, "/v1/books")
        .anonymous()
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), "text/html; charset=UTF-8");
    let html = String::from_utf8(res.body).unwrap();
    assert!(
        html.contains("&quot;methods&quot;"),
        "the description, as a page"
    );
}

#[tokio::test]
async fn docs_is_a_page_of_every_endpoint_with_only_its_own_script() {
    let t = TestApp::demo().await;
    let res = t.get("/docs").anonymous().send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), "text/html; charset=UTF-8");
    let csp = res.header("content-security-policy").to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    let html = String::from_utf8(res.body).unwrap();
    // One inline script (allowed by its hash): "Try it". Everything else
    // reads without it.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains("src=\"http"), "nothing from elsewhere");
    assert!(
        html.contains("<form class=\"try\" data-template=\"/v1/books/{id}\">"),
        "try it on a record's GET"
    );
    assert!(html.contains("<input name=\"id\" data-path required"));
    assert!(
        html.contains("href=\"/_restkit/sign-in?next=%2Fdocs\""),
        "sign in from the docs"
    );
    let doc: Value = serde_json::from_slice(&t.app.state().openapi).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let id = op["operationId"].as_str().unwrap();
            assert!(html.contains(&format!("id=\"{id}\"")), "{method} {path}");
        }
    }
    assert!(html.contains("curl -H &quot;Authorization: Bearer $TOKEN&quot;"));
    assert!(html.contains("Needs an access token with the scope <code>write</code>"));
}

/// restkit's own routes are declared once: each one an app serves is
/// answered (never 404 or 405), documented in OpenAPI and listed by
/// `restkit routes` — including `/authenticate`, which only apps taking
/// API keys serve.
#[tokio::test]
async fn every_own_route_is_served_documented_and_listed() {
    // A module taking API keys: /authenticate is served.
    let t = TestApp::with(crate::oauth::TWO_MODULES, "", Registry::builtin()).await;
    let state = t.app.state();
    let doc: Value = serde_json::from_slice(&state.openapi).unwrap();
    let listed = restkit::http::routes::table_text(&state.routes, &state.own);
    let mut seen = Vec::new();
    for (route, path) in state.own.iter() {
        seen.push(route);
        for method in route.methods() {
            let verb = method.as_str().to_lowercase();
            assert!(
                doc["paths"][path][&verb].is_object(),
                "{method} {path} is not documented"
            );
            assert!(
                listed.lines().any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 2 && cols[0] == method.as_str() && cols[1] == path
                }),
                "{method} {path} is not listed:\n{listed}"
            );
            let res = t.call(method.clone(), path).anonymous().send().await;
            assert!(
                res.status != 404 && res.status != 405,
                "{method} {path}: {}",
                res.status
            );
        }
    }
    // Any other method is a §7 405 naming the allowed ones, which OPTIONS
    // lists too.
    for (_, path) in state.own.iter() {
        let res = t.call(http::Method::DELETE, path).anonymous().send().await;
        crate::helpers::assert_problem(&res, 405, "METHOD_NOT_ALLOWED");
        let allow = res.header("allow").to_string();
        assert!(allow.ends_with("OPTIONS"), "{path}: {allow}");
        let res = t.call(http::Method::OPTIONS, path).anonymous().send().await;
        assert_eq!(res.status, 204, "{path}");
        assert_eq!(res.header("allow"), allow, "{path}");
    }
    // The well-known namespace answers any Accept in JSON, an unknown
    // name included (its ending is a name, not a format).
    let res = t
        .get("/.well-known/unknown.txt")
        .anonymous()
        .header("accept", "text/plain")
        .send()
        .await;
    crate::helpers::assert_problem(&res, 404, "ROUTE_NOT_FOUND");
    assert_eq!(res.header("content-type"), "application/problem+json");
    use restkit::http::own::OwnRoute;
    assert!(seen.contains(&OwnRoute::Authenticate));
    assert!(seen.contains(&OwnRoute::Health));
    // Without API keys, no /authenticate — served or documented.
    let demo = TestApp::demo().await;
    assert!(demo.app.state().own.at("/v1/authenticate").is_none());
    let doc: Value = serde_json::from_slice(&demo.app.state().openapi).unwrap();
    assert!(doc["paths"]["/v1/authenticate"].is_null());
    let res = demo.post("/v1/authenticate").anonymous().send().await;
    assert_eq!(res.status, 404);
}

/// The README's embedded program is `examples/embedded.rs` (which the
/// test build compiles), word for word.
#[test]
fn the_readme_embedding_example_is_the_compiled_one() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{dir}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{dir}/examples/embedded.rs")).unwrap();
    let program = &example[example.find("use restkit::config").unwrap()..];
    assert!(
        readme.contains(program),
        "README.md's embedding section differs from examples/embedded.rs"
    );
}

/// `GET /` and `GET /v1`: the API's front doors, public, in every format,
/// with absolute links a client or a person can follow.
#[tokio::test]
async fn the_api_root_and_each_module_list_where_to_go() {
    let t = TestApp::demo().await;
    let root = t.get("/").anonymous().send().await;
    assert_eq!(root.status, 200);
    let rows = root.json();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/v1", "/v2", "docs", "openapi"]);
    assert_eq!(rows[0]["href"], "http://api.test/v1");
    let v1 = t.get("/v1").anonymous().send().await.json();
    let v1: Vec<(&str, &str)> = v1
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["href"].as_str().unwrap()))
        .collect();
    // Top-level resources only: a nested one needs its parent's id.
    assert!(
        v1.contains(&("books", "http://api.test/v1/books")),
        "{v1:?}"
    );
    assert!(v1.iter().all(|(n, _)| *n != "reviews"), "{v1:?}");
    // Every format; a browser gets links to follow.
    let page = t
        .get("/v1")
        .anonymous()
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("<a href=\"http://api.test/v1/books\">"),
        "{html}"
    );
    for (accept, needle) in [
        ("application/xml", "<name>books</name>"),
        ("text/csv", "books,"),
    ] {
        let res = t
            .get("/v1")
            .anonymous()
            .header("accept", accept)
            .send()
            .await;
        assert_eq!(res.status, 200, "{accept}");
        assert!(
            String::from_utf8_lossy(&res.body).contains(needle),
            "{accept}"
        );
    }
}
