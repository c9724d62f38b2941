//! §4.3 custom actions of the demo.

use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn echo_merges_query_and_body_and_coerces_by_schema() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/health/echo?pagination%5Bpage%5D=2&a%5Bb%5D=1")
        .raw(
            "application/x-www-form-urlencoded",
            "pagination[size]=5&x=y",
        )
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(
        res.json(),
        json!({"pagination": {"page": 2, "size": 5}, "a": {"b": "1"}, "x": "y"})
    );
    let res = t
        .post("/v1/health/echo")
        .json(json!({"pagination": {"page": "3"}, "n": "4"}))
        .send()
        .await;
    assert_eq!(res.json(), json!({"pagination": {"page": 3}, "n": "4"}));
}

#[tokio::test]
async fn echo_rejects_what_the_schema_rejects() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/health/echo?pagination%5Bpage%5D=x&pagination%5Bsize%5D=101")
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(
        res.error_fields(),
        [
            ("pagination.page".into(), "type".into()),
            ("pagination.size".into(), "maximum".into())
        ]
    );
    let res = t
        .post("/v1/health/echo?pagination%5Bpage%5D=0")
        .send()
        .await;
    assert_eq!(
        res.error_fields(),
        [("pagination.page".into(), "minimum".into())]
    );
}

#[tokio::test]
async fn borrow_returns_the_book_the_borrower_and_a_due_date() {
    let t = TestApp::demo().await;
    let res = t.post("/v1/books/3/borrow").by_user(2).send().await;
    assert_eq!(res.status, 200);
    let b = res.json();
    assert_eq!(b["bookId"], 3);
    assert_eq!(b["borrowedBy"], 2);
    let due = chrono::NaiveDate::parse_from_str(b["due"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    assert_eq!(
        due,
        (chrono::Utc::now() + chrono::Duration::days(14)).date_naive()
    );
    assert_problem(
        &t.post("/v1/books/99999/borrow").by_user(2).send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
    assert_problem(
        &t.post("/v1/books/3/borrow").anonymous().send().await,
        401,
        "UNAUTHORIZED",
    );
    let res = t.get("/v1/books/3/borrow").send().await;
    assert_problem(&res, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(res.header("allow"), "POST, OPTIONS");
}

#[tokio::test]
async fn users_me_names_the_caller() {
    let t = TestApp::demo().await;
    let b = t.get("/v1/users/me").by_user(1).send().await.json();
    assert_eq!(b["id"], 1);
    assert_eq!(b["username"], "stan");
    assert_eq!(b["scopes"], json!(["basic", "write"]));
    assert_problem(
        &t.get("/v1/users/me").anonymous().send().await,
        401,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn health_reports_the_database() {
    let t = TestApp::demo().await;
    let res = t.get("/health").send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), json!({"status": "ok", "database": "ok"}));
}

/// What a typed action takes: validated by the schema derived from it.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Transfer {
    #[schemars(range(min = 1, max = 1000))]
    amount: u32,
    #[schemars(length(min = 3, max = 3))]
    currency: String,
    note: Option<String>,
}

/// What it answers.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Receipt {
    total: u64,
    currency: String,
}

/// A typed custom action (`Registry::handle_typed`): its input type's
/// schema validates the request (every failed constraint a 422 naming the
/// field), the handler gets the type, returns a type, and both schemas are
/// in the OpenAPI document.
#[tokio::test]
async fn a_typed_action_takes_and_returns_types_and_documents_both() {
    use restkit::model::builder::*;
    let model = ApiModel::builder()
        .module(
            Module::new("/bank").with_action(
                Action::new(
                    ActionLevel::Module,
                    Verb::Post,
                    "/transfer",
                    "bank::transfer",
                )
                .scope("")
                .summary("Move money."),
            ),
        )
        .build()
        .unwrap();
    let mut registry = restkit::registry::Registry::builtin();
    registry.handle_typed(
        "bank::transfer",
        |_cx: restkit::Ctx, t: Transfer| async move {
            Ok::<_, restkit::ApiError>(Receipt {
                total: u64::from(t.amount) + t.note.map_or(0, |n| n.len() as u64),
                currency: t.currency,
            })
        },
    );
    let db = crate::db::TestDb::new().await;
    let settings = crate::helpers::settings("", &db.url);
    let t = TestApp::from_model(model, settings, registry, db).await;
    let res = t
        .post("/bank/transfer")
        .anonymous()
        .json(json!({"amount": 40, "currency": "EUR", "note": "ab"}))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json(), json!({"total": 42, "currency": "EUR"}));
    // Forms too: the schema types the values.
    let res = t
        .post("/bank/transfer")
        .anonymous()
        .raw("application/x-www-form-urlencoded", "amount=7&currency=USD")
        .send()
        .await;
    assert_eq!(res.json(), json!({"total": 7, "currency": "USD"}));
    let res = t
        .post("/bank/transfer")
        .anonymous()
        .json(json!({"amount": 0, "currency": "EURO", "extra": 1}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    let mut fields: Vec<(String, String)> = res.error_fields();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("amount".into(), "minimum".into()),
            ("currency".into(), "max_length".into()),
            ("extra".into(), "unknown_field".into()),
        ]
    );
    let doc = t.get("/openapi.json").anonymous().send().await.json();
    let op = &doc["paths"]["/bank/transfer"]["post"];
    let input = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(input["properties"]["amount"]["maximum"], 1000);
    assert_eq!(input["required"], json!(["amount", "currency"]));
    let output = &op["responses"]["200"]["content"]["application/json"]["schema"];
    let output = if output["oneOf"].is_array() {
        &output["oneOf"][0]
    } else {
        output
    };
    assert_eq!(output["properties"]["total"]["type"], "integer", "{output}");
}

/// A recursive input type: its schema refers to itself.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Tree {
    name: String,
    #[serde(default)]
    children: Vec<Tree>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Count {
    nodes: usize,
}

/// The named nodes of `t`.
fn count(t: &Tree) -> usize {
    usize::from(!t.name.is_empty()) + t.children.iter().map(count).sum::<usize>()
}

/// A typed action over a recursive type: it validates and runs, and the
/// document's references all resolve (a schema's own `#` or `#/$defs/…`
/// references are lifted into components, not left pointing at the
/// document's root).
#[tokio::test]
async fn a_typed_action_over_a_recursive_type_is_documented_with_references_that_resolve() {
    use restkit::model::builder::*;
    let model = ApiModel::builder()
        .module(Module::new("/t").with_action(
            Action::new(ActionLevel::Module, Verb::Post, "/count", "t::count").scope(""),
        ))
        .build()
        .unwrap();
    let mut registry = restkit::registry::Registry::builtin();
    registry.handle_typed("t::count", |_cx: restkit::Ctx, t: Tree| async move {
        Ok::<_, restkit::ApiError>(Count { nodes: count(&t) })
    });
    let db = crate::db::TestDb::new().await;
    let settings = crate::helpers::settings("", &db.url);
    let t = TestApp::from_model(model, settings, registry, db).await;
    let res = t
        .post("/t/count")
        .anonymous()
        .json(json!({"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json(), json!({"nodes": 3}));
    let res = t
        .post("/t/count")
        .anonymous()
        .json(json!({"name": "a", "children": [{"children": []}]}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    let doc = t.get("/openapi.json").anonymous().send().await.json();
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_string());
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.iter().any(|r| r.contains("PostTCountInput")), "{all:?}");
    for r in &all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r}"));
        assert!(
            !pointer.is_empty() && doc.pointer(pointer).is_some(),
            "{r} does not resolve"
        );
    }
}
