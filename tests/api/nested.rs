//! §4.2 nesting and §8.6 row-level rules on the demo's reviews and shelves.

use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

/// Creates a rating-4 review of `book` by `user`; returns its id.
async fn review(t: &TestApp, book: i64, user: i64) -> serde_json::Value {
    t.post(&format!("/v1/books/{book}/reviews"))
        .by_user(user)
        .json(json!({"rating": 4}))
        .send()
        .await
        .json()["id"]
        .clone()
}

#[tokio::test]
async fn creating_under_a_parent_sets_the_parent_key_from_the_path() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books/3/reviews")
        .by_user(1)
        .json(json!({"rating": 5, "body": "Great", "bookId": 999, "userId": 2}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    let r = res.json();
    assert_eq!(r["bookId"], 3);
    assert_eq!(r["userId"], 1);
    assert_eq!(
        res.header("location"),
        format!("http://api.test/v1/books/3/reviews/{}", r["id"])
    );
}

#[tokio::test]
async fn listing_returns_only_the_parents_children() {
    let t = TestApp::demo().await;
    for book in [3, 3, 4] {
        t.post(&format!("/v1/books/{book}/reviews"))
            .by_user(1)
            .json(json!({"rating": 4}))
            .send()
            .await;
    }
    let res = t.get("/v1/books/3/reviews").send().await;
    assert_eq!(res.json().as_array().unwrap().len(), 2);
    assert_eq!(res.header("x-pagination-total-count"), "2");
    let res = t.get("/v1/books/5/reviews").send().await;
    assert_eq!(res.json(), json!([]));
}

#[tokio::test]
async fn a_child_under_the_wrong_parent_or_a_missing_parent_is_404() {
    let t = TestApp::demo().await;
    let id = review(&t, 3, 1).await;
    assert_eq!(
        t.get(&format!("/v1/books/3/reviews/{id}"))
            .send()
            .await
            .status,
        200
    );
    assert_problem(
        &t.get(&format!("/v1/books/4/reviews/{id}")).send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
    let b = assert_problem(
        &t.get("/v1/books/99999/reviews").send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
    assert_eq!(b["detail"], "No book with id 99999.");
    let res = t
        .post("/v1/books/99999/reviews")
        .by_user(1)
        .json(json!({"rating": 4}))
        .send()
        .await;
    assert_problem(&res, 404, "RESOURCE_NOT_FOUND");
    let res = t
        .delete(&format!("/v1/books/4/reviews/{id}"))
        .by_user(1)
        .send()
        .await;
    assert_problem(&res, 404, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn only_a_reviews_author_may_change_it() {
    let t = TestApp::demo().await;
    let id = review(&t, 3, 1).await;
    let uri = format!("/v1/books/3/reviews/{id}");
    assert_problem(
        &t.patch(&uri)
            .by_user(2)
            .json(json!({"rating": 1}))
            .send()
            .await,
        403,
        "FORBIDDEN",
    );
    assert_problem(&t.delete(&uri).by_user(2).send().await, 403, "FORBIDDEN");
    assert_eq!(t.get(&uri).by_user(2).send().await.json()["rating"], 4);
    assert_eq!(
        t.patch(&uri)
            .by_user(1)
            .json(json!({"rating": 2}))
            .send()
            .await
            .json()["rating"],
        2
    );
    assert_eq!(t.delete(&uri).by_user(1).send().await.status, 204);
}

#[tokio::test]
async fn reviews_need_a_user_and_a_valid_rating() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books/3/reviews")
        .anonymous()
        .json(json!({"rating": 4}))
        .send()
        .await;
    assert_problem(&res, 401, "UNAUTHORIZED");
    let res = t
        .post("/v1/books/3/reviews")
        .by_user(1)
        .json(json!({"rating": 6, "body": "x".repeat(2001)}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(
        res.error_fields(),
        [
            ("body".into(), "max_length".into()),
            ("rating".into(), "maximum".into())
        ]
    );
}

#[tokio::test]
async fn shelves_are_private_to_their_owner() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/shelves")
        .by_user(1)
        .json(json!({"name": "Stan's"}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.json()["userId"], 1);
    let id = res.json()["id"].clone();
    t.post("/v1/shelves")
        .by_user(2)
        .json(json!({"name": "Ana's"}))
        .send()
        .await;
    let uri = format!("/v1/shelves/{id}");
    assert_eq!(t.get(&uri).by_user(1).send().await.status, 200);
    assert_problem(
        &t.get(&uri).by_user(2).send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
    assert_problem(
        &t.put(&uri)
            .by_user(2)
            .json(json!({"name": "mine now"}))
            .send()
            .await,
        404,
        "RESOURCE_NOT_FOUND",
    );
    assert_problem(
        &t.delete(&uri).by_user(2).send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
    let list = t.get("/v1/shelves").by_user(2).send().await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "Ana's");
    assert_problem(
        &t.get("/v1/shelves").anonymous().send().await,
        401,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn deleting_a_book_deletes_its_reviews() {
    let t = TestApp::demo().await;
    t.post("/v1/books/6/reviews")
        .by_user(1)
        .json(json!({"rating": 3}))
        .send()
        .await;
    assert_eq!(t.delete("/v1/books/6").send().await.status, 204);
    assert_problem(
        &t.get("/v1/books/6/reviews").send().await,
        404,
        "RESOURCE_NOT_FOUND",
    );
}
