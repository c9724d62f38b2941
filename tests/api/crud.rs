//! §3 seed values and §4.1 CRUD over the demo's books.

use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn seeded_book_three_is_exactly_as_specified() {
    let t = TestApp::demo().await;
    let res = t.get("/v1/books/3").send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), "application/json");
    let b = res.json();
    assert_eq!(b["id"], 3);
    assert_eq!(b["title"], "OAuth2 with Phalcon");
    assert_eq!(b["author"], "Stanimir Stoyanov");
    assert_eq!(b["year"], 2016);
    assert_eq!(b["isbn"], "978-0-0000-0003");
    let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "title",
            "author",
            "year",
            "isbn",
            "createdAt",
            "updatedAt"
        ]
    );
}

#[tokio::test]
async fn generated_books_follow_the_formula() {
    let t = TestApp::demo().await;
    let b = t.get("/v1/books/777").send().await.json();
    assert_eq!(b["title"], "Book 777");
    assert_eq!(b["author"], format!("Author {}", 777 % 50));
    assert_eq!(b["year"], 1950 + 777 % 70);
    assert_eq!(b["isbn"], "978-0-0000-0777");
    let last = t.get("/v1/books?limit=1&offset=999").send().await;
    assert_eq!(last.json()[0]["id"], 1000);
    assert_eq!(last.header("x-pagination-total-count"), "1000");
}

#[tokio::test]
async fn hidden_column_is_never_readable() {
    let t = TestApp::demo().await;
    for uri in ["/v1/books/7", "/v1/books?limit=100", "/v2/books/7"] {
        let res = t.get(uri).send().await;
        let text = String::from_utf8_lossy(&res.body).to_string();
        assert!(
            !text.contains("internal") && !text.contains("Internal"),
            "{uri}: {text}"
        );
    }
    let res = t
        .post("/v1/books")
        .json(json!({"title": "t", "author": "a", "internalNote": "x"}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(
        res.error_fields(),
        [("internalNote".into(), "unknown_field".into())]
    );
}

#[tokio::test]
async fn list_pages_with_headers_and_absolute_links() {
    let t = TestApp::demo().await;
    let res = t.get("/v1/books?limit=20&offset=100").send().await;
    assert_eq!(res.status, 200);
    let ids: Vec<i64> = res
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (101..=120).collect::<Vec<_>>());
    assert_eq!(res.header("x-pagination-total-count"), "1000");
    assert_eq!(res.header("x-pagination-page-count"), "50");
    assert_eq!(res.header("x-pagination-current-page"), "6");
    assert_eq!(res.header("x-pagination-per-page"), "20");
    assert_eq!(res.header("x-record-count"), "20");
    let link = res.header("link");
    assert!(
        link.contains("<http://api.test/v1/books?limit=20&offset=120&sync_mark="),
        "{link}"
    );
    assert!(
        link.contains("<http://api.test/v1/books?limit=20&offset=80>; rel=\"prev\""),
        "{link}"
    );
    assert!(
        link.contains("<http://api.test/v1/books?limit=20&offset=980>; rel=\"last\""),
        "{link}"
    );

    let res = t.get("/v1/books?page=2&per-page=500").send().await;
    assert_eq!(res.header("x-pagination-per-page"), "100");
    assert_eq!(res.json()[0]["id"], 101);
    let res = t.get("/v1/books").send().await;
    assert_eq!(res.json().as_array().unwrap().len(), 20);
    assert!(!res.header("link").contains("rel=\"prev\""));
}

#[tokio::test]
async fn paging_nonsense_is_400() {
    let t = TestApp::demo().await;
    for q in ["limit=-1", "offset=abc", "page=0", "per-page=x"] {
        let res = t.get(&format!("/v1/books?{q}")).send().await;
        assert_problem(&res, 400, "INVALID_QUERY");
    }
}

#[tokio::test]
async fn create_returns_201_with_absolute_location_and_the_record() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .json(json!({"title": "New", "author": "Me", "year": 2020, "isbn": "978-1-2345-0001"}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    let b = res.json();
    assert_eq!(b["id"], 1001);
    assert_eq!(res.header("location"), "http://api.test/v1/books/1001");
    assert!(b["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(b["createdAt"], b["updatedAt"]);
    let again = t.get("/v1/books/1001").send().await.json();
    assert_eq!(again, b);
}

#[tokio::test]
async fn read_only_fields_sent_by_clients_are_ignored() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .json(json!({"id": 5, "title": "T", "author": "A", "createdAt": "1999-01-01T00:00:00Z"}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.json()["id"], 1001);
    assert_ne!(res.json()["createdAt"], "1999-01-01T00:00:00Z");
    // A record read back can be PUT back as-is.
    let book = t.get("/v1/books/9").send().await.json();
    let res = t.put("/v1/books/9").json(book.clone()).send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["title"], book["title"]);
}

#[tokio::test]
async fn put_replaces_and_omitted_optional_fields_become_null() {
    let t = TestApp::demo().await;
    let res = t
        .put("/v1/books/5")
        .json(json!({"title": "Replaced", "author": "X"}))
        .send()
        .await;
    assert_eq!(res.status, 200);
    let b = res.json();
    assert_eq!(b["title"], "Replaced");
    assert_eq!(b["year"], serde_json::Value::Null);
    assert_eq!(b["isbn"], serde_json::Value::Null);
    assert_ne!(b["updatedAt"], b["createdAt"]);
    let res = t
        .put("/v1/books/5")
        .json(json!({"title": "No author"}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(res.error_fields(), [("author".into(), "required".into())]);
}

#[tokio::test]
async fn patch_is_a_json_merge_patch() {
    let t = TestApp::demo().await;
    let res = t
        .patch("/v1/books/4")
        .raw(
            "application/merge-patch+json",
            r#"{"year": null, "title": "Patched"}"#,
        )
        .send()
        .await;
    assert_eq!(res.status, 200);
    let b = res.json();
    assert_eq!(b["title"], "Patched");
    assert_eq!(b["year"], serde_json::Value::Null);
    assert_eq!(b["author"], "Author 4");
    assert_eq!(b["isbn"], "978-0-0000-0004");
    // Removing a required field fails and writes nothing.
    let res = t
        .patch("/v1/books/4")
        .json(json!({"author": null}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(
        t.get("/v1/books/4").send().await.json()["author"],
        "Author 4"
    );
}

#[tokio::test]
async fn delete_is_204_then_404() {
    let t = TestApp::demo().await;
    let res = t.delete("/v1/books/10").send().await;
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty());
    assert_problem(
        &t.get("/v1/books/10").send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
    assert_problem(
        &t.delete("/v1/books/10").send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
}

#[tokio::test]
async fn head_has_get_headers_and_no_body() {
    let t = TestApp::demo().await;
    let get = t.get("/v1/books?limit=3").send().await;
    let head = t.call(http::Method::HEAD, "/v1/books?limit=3").send().await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), get.body.len().to_string());
    assert_eq!(head.header("x-pagination-total-count"), "1000");
    assert_eq!(head.header("link"), get.header("link"));
}

#[tokio::test]
async fn prefer_return_minimal_drops_the_body() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .header("prefer", "return=minimal")
        .json(json!({"title": "M", "author": "A"}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    assert!(res.body.is_empty());
    assert_eq!(res.header("location"), "http://api.test/v1/books/1001");
    assert_eq!(res.header("preference-applied"), "return=minimal");
    let res = t
        .patch("/v1/books/1001")
        .header("prefer", "return=minimal")
        .json(json!({"title": "N"}))
        .send()
        .await;
    assert_eq!(res.status, 204);
}

#[tokio::test]
async fn form_bodies_are_typed_by_the_declaration() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .raw(
            "application/x-www-form-urlencoded",
            "title=Form+book&author=F&year=1999",
        )
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["year"], 1999);
    let res = t
        .post("/v1/books")
        .raw(
            "application/x-www-form-urlencoded",
            "title=T&author=F&year=soon",
        )
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(res.error_fields(), [("year".into(), "type".into())]);
}

#[tokio::test]
async fn version_two_renames_fields_over_the_same_table() {
    let t = TestApp::demo().await;
    let b = t.get("/v2/books/3").send().await.json();
    assert_eq!(b["authorName"], "Stanimir Stoyanov");
    assert_eq!(b["published"], 2016);
    assert!(b.get("author").is_none() && b.get("year").is_none());
    t.patch("/v2/books/3")
        .json(json!({"published": 2017}))
        .send()
        .await;
    assert_eq!(t.get("/v1/books/3").send().await.json()["year"], 2017);
}

#[tokio::test]
async fn concurrent_creates_lose_nothing() {
    let t = std::sync::Arc::new(TestApp::demo().await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            t.post("/v1/books")
                .json(json!({"title": format!("C{i}"), "author": "A"}))
                .send()
                .await
                .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 201);
    }
    let res = t.get("/v1/books?limit=1").send().await;
    assert_eq!(res.header("x-pagination-total-count"), "1040");
}

#[tokio::test]
async fn version_two_records_carry_self_links() {
    let t = TestApp::demo().await;
    let b = t.get("/v2/books/3").send().await.json();
    assert_eq!(b["_links"]["self"]["href"], "http://api.test/v2/books/3");
    let list = t.get("/v2/books?limit=2&fields=title").send().await.json();
    assert_eq!(
        list[1],
        json!({"title": "Book of books", "_links": {"self": {"href": "http://api.test/v2/books/2"}}})
    );
    assert!(t
        .get("/v1/books/3")
        .send()
        .await
        .json()
        .get("_links")
        .is_none());
}

#[tokio::test]
async fn minor_versions_are_negotiated_and_unknown_ones_are_406() {
    let t = TestApp::demo().await;
    let res = t.get("/v1/books/3").send().await;
    assert_eq!(res.header("api-version"), "1.1");
    let res = t
        .get("/v1/books/3")
        .header("accept", "application/json; version=1.0")
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("api-version"), "1.0");
    let res = t
        .get("/v2/books/3")
        .header("accept", "application/vnd.restkit.v2.0+json")
        .send()
        .await;
    assert_eq!(res.header("api-version"), "2.0");
    let res = t
        .get("/v1/books/3")
        .header("accept", "application/vnd.restkit.v2.1+json")
        .send()
        .await;
    assert_problem(&res, 406, "NOT_ACCEPTABLE");
    let res = t
        .get("/v1/books/3")
        .header("accept", "application/json; version=1.7")
        .send()
        .await;
    let b = assert_problem(&res, 406, "NOT_ACCEPTABLE");
    assert!(b["detail"].as_str().unwrap().contains("1.0, 1.1"));
}
