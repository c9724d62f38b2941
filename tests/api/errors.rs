//! §7: one error format for every failure.

use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn unknown_path_is_404_in_the_error_format() {
    let t = TestApp::demo().await;
    assert_problem(&t.get("/v1/nope").send().await, 404, "ROUTE_NOT_FOUND");
    assert_problem(&t.get("/v3/books").send().await, 404, "ROUTE_NOT_FOUND");
}

#[tokio::test]
async fn missing_row_is_404_naming_the_id() {
    let t = TestApp::demo().await;
    let b = assert_problem(
        &t.get("/v1/books/99999").send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
    assert_eq!(b["detail"], "No book with id 99999.");
    assert_eq!(b["title"], "Not Found");
    assert_problem(
        &t.get("/v1/books/abc").send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
}

#[tokio::test]
async fn unsupported_method_is_405_with_allow() {
    let t = TestApp::demo().await;
    let res = t.patch("/v1/books").send().await;
    assert_problem(&res, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(res.header("allow"), "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    let res = t.post("/v1/books/3").send().await;
    assert_problem(&res, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(
        res.header("allow"),
        "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"
    );
}

#[tokio::test]
async fn options_lists_methods_and_describes_the_route() {
    let t = TestApp::demo().await;
    let res = t.call(http::Method::OPTIONS, "/v1/books").send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("allow"), "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    let b = res.json();
    assert_eq!(b["path"], "/v1/books");
    let post = b["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["method"] == "POST")
        .unwrap();
    assert_eq!(post["input"]["required"], json!(["title", "author"]));
}

#[tokio::test]
async fn validation_reports_every_failed_constraint_at_once() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .json(json!({"title": "x".repeat(201), "year": 2101, "isbn": "nope", "bogus": true}))
        .send()
        .await;
    let b = assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(
        res.error_fields(),
        [
            ("author".into(), "required".into()),
            ("bogus".into(), "unknown_field".into()),
            ("isbn".into(), "pattern".into()),
            ("title".into(), "max_length".into()),
            ("year".into(), "maximum".into()),
        ]
    );
    assert!(b["errors"][0]["message"].as_str().unwrap().len() > 5);
    let res = t
        .post("/v1/books")
        .json(json!({"title": "", "author": "A", "year": "2000"}))
        .send()
        .await;
    assert_eq!(
        res.error_fields(),
        [
            ("title".into(), "min_length".into()),
            ("year".into(), "type".into())
        ]
    );
}

#[tokio::test]
async fn invalid_write_changes_nothing() {
    let t = TestApp::demo().await;
    let before = t.get("/v1/books/3").send().await.body;
    let res = t
        .put("/v1/books/3")
        .json(json!({"title": "ok", "author": "ok", "year": -5}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(t.get("/v1/books/3").send().await.body, before);
}

#[tokio::test]
async fn duplicate_unique_value_is_409_naming_the_field() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .json(json!({"title": "Dup", "author": "A", "isbn": "978-0-0000-0007"}))
        .send()
        .await;
    assert_problem(&res, 409, "DUPLICATE_VALUE");
    assert_eq!(res.error_fields(), [("isbn".into(), "unique".into())]);
    let res = t
        .patch("/v1/books/8")
        .json(json!({"isbn": "978-0-0000-0007"}))
        .send()
        .await;
    assert_problem(&res, 409, "DUPLICATE_VALUE");
}

#[tokio::test]
async fn malformed_json_is_400_and_wrong_type_is_415() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .raw("application/json", "{\"title\": ")
        .send()
        .await;
    let b = assert_problem(&res, 400, "MALFORMED_BODY");
    assert!(b["detail"].as_str().unwrap().contains("line 1"));
    let res = t
        .post("/v1/books")
        .raw("text/plain", "title=x")
        .send()
        .await;
    assert_problem(&res, 415, "UNSUPPORTED_MEDIA_TYPE");
    let res = t
        .post("/v1/books")
        .raw("application/json", "[1,2]")
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
}

#[tokio::test]
async fn oversized_body_is_413_and_writes_nothing() {
    let t = crate::helpers::TestApp::with(
        restkit::demo::DEMO_TOML,
        "",
        restkit::registry::Registry::builtin(),
    )
    .await;
    let big = json!({"title": "t", "author": "a".repeat(2 << 20)});
    let res = t.post("/v1/books").json(big).send().await;
    assert_problem(&res, 413, "PAYLOAD_TOO_LARGE");
    let res = t.get("/v1/books?limit=1").send().await;
    assert_eq!(res.header("x-pagination-total-count"), "1000");
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let t = TestApp::demo().await;
    let res = t
        .get("/v1/books/1")
        .header("x-request-id", "abc-123")
        .send()
        .await;
    assert_eq!(res.header("x-request-id"), "abc-123");
    let res = t
        .get("/v1/books/1")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await;
    assert_eq!(res.header("x-request-id").len(), 36);
}

#[tokio::test]
async fn wrong_basic_credentials_are_401_with_www_authenticate() {
    let t = TestApp::demo().await;
    // "stan:wrong"
    let res = t
        .get("/v1/shelves")
        .header("authorization", "Basic c3Rhbjp3cm9uZw==")
        .send()
        .await;
    assert_problem(&res, 401, "UNAUTHORIZED");
    assert!(res.header("www-authenticate").starts_with("Bearer"));
    let res = t
        .get("/v1/shelves")
        .header("authorization", "Basic !!!")
        .send()
        .await;
    assert_problem(&res, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn right_basic_credentials_identify_the_user() {
    let t = TestApp::demo().await;
    // "ana:pass"
    let res = t
        .get("/v1/users/me")
        .header("authorization", "Basic YW5hOnBhc3M=")
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["id"], 2);
    assert_eq!(res.json()["username"], "ana");
}

/// A resource whose table and columns are named unlike its API names: what
/// they are called in the database is an internal (§7).
const SECRET_NAMES: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "gadgets"
table = "tbl_secret_x"
[module.resource.fields]
id     = { type = "integer", primary_key = true, column = "col_secret_pk" }
serial = { type = "string", unique = true, column = "col_secret_serial" }
[[module.resource.nested]]
name = "parts"
table = "tbl_secret_parts"
parent_key = "gadgetId"
[module.resource.nested.fields]
id       = { type = "integer", primary_key = true, column = "col_secret_part_pk" }
gadgetId = { type = "integer", read_only = true, column = "col_secret_fk" }
label    = { type = "string", column = "col_secret_label" }
"#;

#[tokio::test]
async fn errors_name_resources_and_fields_never_tables_or_columns() {
    let t = TestApp::with(SECRET_NAMES, "", restkit::registry::Registry::builtin()).await;
    for serial in ["A-1", "B-2"] {
        let res = t
            .post("/api/gadgets")
            .json(json!({ "serial": serial }))
            .send()
            .await;
        assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    }
    let res = t
        .post("/api/gadgets/1/parts")
        .json(json!({"label": "x"}))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let not_found = [
        t.get("/api/gadgets/999").send().await,
        t.get("/api/gadgets/abc").send().await,
        t.patch("/api/gadgets/999")
            .json(json!({"serial": "C-3"}))
            .send()
            .await,
        t.delete("/api/gadgets/999").send().await,
        t.get("/api/gadgets/2/parts/1").send().await,
        t.get("/api/gadgets/999/parts/1").send().await,
    ];
    for res in &not_found {
        let b = assert_problem(res, 404, "RESOURCE_NOT_FOUND");
        let dev = b["devMessage"].as_str().unwrap();
        assert!(dev.contains(" id "), "speaks of the id field: {dev}");
    }
    let conflicts = [
        t.post("/api/gadgets")
            .json(json!({"serial": "A-1"}))
            .send()
            .await,
        t.patch("/api/gadgets/2")
            .json(json!({"serial": "A-1"}))
            .send()
            .await,
    ];
    for res in &conflicts {
        let b = assert_problem(res, 409, "DUPLICATE_VALUE");
        assert_eq!(res.error_fields(), [("serial".into(), "unique".into())]);
        assert!(b["detail"].as_str().unwrap().contains("serial"), "{b}");
    }
    let xml = t.get("/api/gadgets/999.xml").send().await;
    assert_eq!(xml.status, 404);
    for res in not_found.iter().chain(&conflicts).chain([&xml]) {
        let body = String::from_utf8_lossy(&res.body);
        assert!(
            !body.contains("secret") && !body.contains("tbl_") && !body.contains("col_"),
            "an internal name reached the wire: {body}"
        );
    }
}
