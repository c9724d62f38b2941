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
