//! Versions without repetition (§15): a resource of a later module
//! `extends` one of an earlier module — same table — and declares only
//! what changes; each version serves, validates and documents its own
//! shape.

use restkit::model::builder::*;
use restkit::model::FieldType;
use restkit::registry::Registry;
use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

const TWO_VERSIONS: &str = r#"
[[module]]
prefix = "/v1"

[[module.resource]]
name = "books"
table = "books"
[module.resource.fields]
id     = { type = "integer", primary_key = true }
title  = { type = "string", required = true, max_length = 200 }
author = { type = "string", required = true }
year   = { type = "integer", minimum = 0 }
isbn   = { type = "string" }

[[module]]
prefix = "/v2"

[[module.resource]]
name = "books"
extends = "/v1/books"
hidden = ["isbn"]
[module.resource.fields]
authorName = { from = "author" }
published  = { from = "year", maximum = 2100 }
title      = { max_length = 50 }
subtitle   = { type = "string" }
"#;

#[tokio::test]
async fn a_later_version_declares_only_what_changes() {
    let t = TestApp::with(TWO_VERSIONS, "", Registry::builtin()).await;
    let res = t
        .post("/v2/books")
        .json(json!({"title": "Dune", "authorName": "Herbert", "published": 1965, "subtitle": "I"}))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(
        res.json(),
        json!({"id": 1, "title": "Dune", "authorName": "Herbert", "published": 1965, "subtitle": "I"})
    );
    // The same row, in v1's shape.
    let v1 = t.get("/v1/books/1").send().await.json();
    assert_eq!(
        v1,
        json!({"id": 1, "title": "Dune", "author": "Herbert", "year": 1965, "isbn": null})
    );
    // v2's own constraints, v1's where v2 changed none.
    let long = "x".repeat(60);
    let res = t
        .post("/v2/books")
        .json(json!({"title": long, "authorName": "A", "published": 2200}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(
        res.error_fields(),
        [
            ("published".into(), "maximum".into()),
            ("title".into(), "max_length".into())
        ]
    );
    let res = t
        .post("/v2/books")
        .json(json!({"title": "T", "authorName": "A", "published": -1}))
        .send()
        .await;
    assert_eq!(res.error_fields(), [("published".into(), "minimum".into())]);
    assert_eq!(
        t.post("/v1/books")
            .json(json!({"title": long, "author": "A"}))
            .send()
            .await
            .status,
        201
    );
    // A field v2 hides is unknown there.
    let res = t
        .post("/v2/books")
        .json(json!({"title": "T", "authorName": "A", "isbn": "1"}))
        .send()
        .await;
    assert_eq!(
        res.error_fields(),
        [("isbn".into(), "unknown_field".into())]
    );
    // Each version documents its own shape.
    let doc = t.get("/openapi.json").send().await.json();
    let text = doc.to_string();
    assert!(text.contains("\"authorName\"") && text.contains("\"author\""));
    let options = t
        .call(http::Method::OPTIONS, "/v2/books")
        .send()
        .await
        .json()
        .to_string();
    assert!(
        options.contains("authorName") && !options.contains("\"isbn\""),
        "{options}"
    );
}

#[tokio::test]
async fn extends_names_an_earlier_modules_resource() {
    for (bad, expected) in [
        (
            TWO_VERSIONS.replace("extends = \"/v1/books\"", "extends = \"/v3/books\""),
            "/v3/books",
        ),
        (
            TWO_VERSIONS.replace("{ from = \"author\" }", "{ from = \"writer\" }"),
            "writer",
        ),
        (
            TWO_VERSIONS.replace(
                "subtitle   = { type = \"string\" }",
                "subtitle   = { max_length = 3 }",
            ),
            "type is required",
        ),
    ] {
        let e = restkit::model::toml::parse(&bad)
            .map(|_| ())
            .expect_err(expected)
            .to_string();
        assert!(e.contains(expected), "{e}");
    }
}

#[tokio::test]
async fn the_builder_extends_a_resource_too() {
    let v1 = Resource::new("books", "books")
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(Field::new("author", FieldType::String).required());
    let v2 = Resource::extending(&v1, "books").rename_field("author", "authorName");
    let model = ApiModel::builder()
        .module(Module::new("/v1").resource(v1))
        .module(Module::new("/v2").resource(v2))
        .build()
        .unwrap();
    let db = crate::db::TestDb::new().await;
    let settings = crate::helpers::settings("", &db.url);
    let t = TestApp::from_model(model, settings, Registry::builtin(), db).await;
    let res = t
        .post("/v2/books")
        .json(json!({"authorName": "Le Guin"}))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(
        t.get("/v1/books/1").send().await.json()["author"],
        "Le Guin"
    );
}

#[tokio::test]
async fn a_field_one_version_requires_stays_nullable_for_the_version_without_it() {
    let model = TWO_VERSIONS.replace(
        "subtitle   = { type = \"string\" }",
        "subtitle   = { type = \"string\", required = true }",
    );
    let t = TestApp::with(&model, "", Registry::builtin()).await;
    // v1 knows nothing of the subtitle: its creates must still work.
    let res = t
        .post("/v1/books")
        .json(json!({"title": "Dune", "author": "Herbert"}))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    // v2 still requires it, from its own schema.
    let res = t
        .post("/v2/books")
        .json(json!({"title": "Dune", "authorName": "Herbert"}))
        .send()
        .await;
    assert_eq!(res.error_fields(), [("subtitle".into(), "required".into())]);
}
