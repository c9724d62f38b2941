//! The pipeline's steps before the controller: negotiation (format and
//! extension), identity, authorization; errors in the negotiated format.

use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn a_json_extension_is_stripped_before_routing() {
    let t = TestApp::demo().await;
    let plain = t.get("/v1/books/3").send().await;
    let dotted = t.get("/v1/books/3.json").send().await;
    assert_eq!(dotted.status, 200);
    assert_eq!(dotted.body, plain.body);
    let list = t.get("/v1/books.json?limit=2").send().await;
    assert_eq!(list.json().as_array().unwrap().len(), 2);
    // Links point at the canonical path.
    assert!(list.link("next").unwrap().starts_with("/v1/books?"));
    // An extension restkit does not know is part of the path: 404.
    assert_problem(
        &t.get("/v1/books/3.yaml").send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
}

#[tokio::test]
async fn type_then_extension_then_accept_decide_the_format() {
    let t = TestApp::demo().await;
    let res = t
        .get("/v1/books/3?type=json")
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(res.status, 200, "type= wins over Accept");
    assert_eq!(res.header("content-type"), "application/json");
    assert!(res.header("vary").contains("accept"));
    let res = t.get("/v1/books/3?type=yaml").send().await;
    let b = assert_problem(&res, 400, "INVALID_QUERY");
    assert!(b["detail"].as_str().unwrap().contains("yaml"));
    let res = t
        .get("/v1/books/3")
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(res.header("content-type"), "text/html; charset=UTF-8");
    let res = t
        .get("/v1/books/3")
        .header("accept", "image/png, application/pdf")
        .send()
        .await;
    assert_problem(&res, 406, "NOT_ACCEPTABLE");
    for ok in [
        "application/json",
        "text/html, */*;q=0.1",
        "application/*",
        "application/vnd.restkit.v1.1+json",
    ] {
        let res = t.get("/v1/books/3").header("accept", ok).send().await;
        assert_eq!(res.status, 200, "{ok}");
    }
    // JSON refused, anything else welcome: the next format (XML).
    let res = t
        .get("/v1/books/3")
        .header("accept", "*/*, application/json;q=0")
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), "application/xml; charset=UTF-8");
    let res = t
        .get("/v1/books/3")
        .header("accept", "*/*;q=0")
        .send()
        .await;
    assert_problem(&res, 406, "NOT_ACCEPTABLE");
}

#[tokio::test]
async fn an_identified_caller_needs_the_routes_scope() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .with_scopes(&["basic"])
        .json(json!({"title": "t", "author": "a"}))
        .send()
        .await;
    assert_problem(&res, 403, "INSUFFICIENT_SCOPE");
    assert!(res
        .header("www-authenticate")
        .contains("insufficient_scope"));
    let res = t.get("/v1/books/1").with_scopes(&["basic"]).send().await;
    assert_eq!(res.status, 200);
    let res = t.get("/v1/books/1").with_scopes(&["write"]).send().await;
    assert_problem(&res, 403, "INSUFFICIENT_SCOPE");
    assert_eq!(
        t.get("/v1/books?limit=1")
            .send()
            .await
            .header("x-pagination-total-count"),
        "1000"
    );
}

#[tokio::test]
async fn wrong_credentials_still_get_an_options_answer_but_nothing_else() {
    let t = TestApp::demo().await;
    let bad = "Basic c3RhbjpXUk9ORw=="; // stan:WRONG
    let res = t
        .call(http::Method::OPTIONS, "/v1/books")
        .header("authorization", bad)
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert!(res.header("allow").contains("GET"));
    let res = t
        .get("/v1/books/1")
        .header("authorization", bad)
        .send()
        .await;
    assert_problem(&res, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn the_chosen_version_is_on_errors_and_descriptions_too() {
    let t = TestApp::demo().await;
    let res = t.get("/v1/books/99999").send().await;
    assert_eq!(res.status, 404);
    assert_eq!(res.header("api-version"), "1.1");
    let res = t.call(http::Method::OPTIONS, "/v2/books").send().await;
    assert_eq!(res.header("api-version"), "2.1");
}

#[tokio::test]
async fn size_is_checked_before_credentials() {
    let t = TestApp::demo().await;
    let long = format!("/v1/books?q={}", "x".repeat(9000));
    let res = t
        .get(&long)
        .header("authorization", "Basic c3RhbjpXUk9ORw==")
        .send()
        .await;
    assert_problem(&res, 414, "URI_TOO_LONG");
}

#[tokio::test]
async fn health_and_route_descriptions_answer_any_accept() {
    let t = TestApp::demo().await;
    let res = t.get("/health").header("accept", "text/plain").send().await;
    assert_eq!(res.status, 200);
    let res = t
        .call(http::Method::OPTIONS, "/v1/books")
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(res.status, 200);
    // Everything else still refuses an Accept it cannot meet.
    let res = t
        .get("/v1/books/1")
        .header("accept", "text/plain")
        .send()
        .await;
    assert_problem(&res, 406, "NOT_ACCEPTABLE");
}
