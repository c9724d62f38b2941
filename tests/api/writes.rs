//! Writes that must not do more than they say: bulk deletes that need a
//! real filter, cascades that would take other users' rows, writes that
//! change nothing, write-only callers, parents that vanish mid-request.

use std::sync::Arc;

use serde_json::json;

use restkit::registry::Registry;

use crate::helpers::{assert_problem, TestApp};

async fn total(t: &TestApp, path: &str) -> String {
    t.get(&format!("{path}?limit=1"))
        .send()
        .await
        .header("x-pagination-total-count")
        .to_string()
}

#[tokio::test]
async fn a_filter_that_matches_everything_does_not_pass_the_bulk_delete_guard() {
    let t = TestApp::demo().await;
    for query in [
        "filter[title][like]=",
        "filter%5Btitle%5D%5Blike%5D=",
        "q=(title:*)",
        "q=(title:***)",
        "filter=%7B%22field%22%3A%22title%22%2C%22operator%22%3A%22like%22%2C%22value%22%3A%22%22%7D",
        "filter[or][0][title][like]=&filter[or][1][year][eq]=2010",
        // Not vacuous by its spelling, but it matches every book.
        "filter[id][gt]=0",
        "filter[year][neq]=-1",
    ] {
        let res = t.delete(&format!("/v1/books?{query}")).send().await;
        assert_problem(&res, 400, "INVALID_QUERY");
        assert_eq!(total(&t, "/v1/books").await, "1000", "{query} deleted books");
    }
    // A real filter deletes what it matches; all=true deletes everything.
    let res = t.delete("/v1/books?filter[year][eq]=2010").send().await;
    assert_eq!(res.status, 200);
    let gone = res.json()["deleted"].as_u64().unwrap();
    assert!(gone > 0 && gone < 1000, "{gone}");
    let res = t
        .delete("/v1/books?filter[title][like]=&all=true")
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(total(&t, "/v1/books").await, "0");
}

/// POSTs `body` to `path` as `user`; the new record's id (201 asserted).
async fn created(t: &TestApp, path: &str, user: i64, body: serde_json::Value) -> i64 {
    let res = t.post(path).by_user(user).json(body).send().await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    res.json()["id"].as_i64().unwrap()
}

async fn review(t: &TestApp, book: i64, user: i64) -> i64 {
    let path = format!("/v1/books/{book}/reviews");
    created(t, &path, user, json!({"rating": 4})).await
}

#[tokio::test]
async fn deleting_a_parent_never_takes_other_users_rows_with_it() {
    let t = TestApp::demo().await;
    let stans = review(&t, 7, 1).await;
    // ana may not delete stan's review …
    let res = t
        .delete(&format!("/v1/books/7/reviews/{stans}"))
        .by_user(2)
        .send()
        .await;
    assert_eq!(res.status, 403);
    // … nor delete it by deleting its book, one or in bulk.
    let res = t.delete("/v1/books/7").by_user(2).send().await;
    let b = assert_problem(&res, 409, "REFERENCE_CONFLICT");
    assert!(b["detail"].as_str().unwrap().contains("1 review"), "{b}");
    let res = t
        .delete("/v1/books?filter[id][in][]=7&filter[id][in][]=8")
        .by_user(2)
        .send()
        .await;
    assert_problem(&res, 409, "REFERENCE_CONFLICT");
    assert_eq!(t.get("/v1/books/7").send().await.status, 200);
    assert_eq!(
        t.get(&format!("/v1/books/7/reviews/{stans}"))
            .send()
            .await
            .status,
        200
    );
    // A caller deletes a parent whose owned children are all theirs.
    let anas = review(&t, 8, 2).await;
    assert_eq!(t.delete("/v1/books/8").by_user(2).send().await.status, 204);
    assert_eq!(
        t.get(&format!("/v1/books/8/reviews/{anas}"))
            .send()
            .await
            .status,
        404
    );
    // A client (no user) deletes no one's rows.
    let client = t.client_token(&["basic", "write"]);
    let res = t
        .delete("/v1/books/7")
        .header("authorization", &format!("Bearer {client}"))
        .send()
        .await;
    assert_problem(&res, 409, "REFERENCE_CONFLICT");
    // The owner deletes their review; then anyone may delete the book.
    assert_eq!(
        t.delete(&format!("/v1/books/7/reviews/{stans}"))
            .send()
            .await
            .status,
        204
    );
    assert_eq!(t.delete("/v1/books/7").by_user(2).send().await.status, 204);
}

#[tokio::test]
async fn a_write_that_changes_nothing_writes_nothing() {
    let t = TestApp::demo().await;
    let before = t.get("/v1/books/5").send().await.json();
    let same = json!({
        "title": before["title"],
        "author": before["author"],
        "year": before["year"],
        "isbn": before["isbn"],
    });
    for res in [
        t.patch("/v1/books/5").json(json!({})).send().await,
        t.patch("/v1/books/5")
            .json(json!({"title": before["title"]}))
            .send()
            .await,
        t.put("/v1/books/5").json(same).send().await,
    ] {
        assert_eq!(res.status, 200);
        assert_eq!(res.json(), before, "a no-op write changed the record");
    }
    let after = t.get("/v1/books/5").send().await.json();
    assert_eq!(after["updatedAt"], before["updatedAt"]);
    // In bulk too: the unchanged record keeps its time, the changed one
    // moves.
    let six = t.get("/v1/books/6").send().await.json();
    let bulk = json!([
        {"id": 5, "title": before["title"], "author": before["author"],
         "year": before["year"], "isbn": before["isbn"]},
        {"id": 6, "title": "retitled", "author": six["author"],
         "year": six["year"], "isbn": six["isbn"]},
    ]);
    let res = t.put("/v1/books").json(bulk).send().await;
    assert_eq!(res.status, 200);
    let out = res.json();
    assert_eq!(out[0]["updatedAt"], before["updatedAt"]);
    assert_ne!(out[1]["updatedAt"], six["updatedAt"]);
    // A real change still moves the change time.
    let changed = t
        .patch("/v1/books/5")
        .json(json!({"year": 1999}))
        .send()
        .await
        .json();
    assert_ne!(changed["updatedAt"], before["updatedAt"]);
}

#[tokio::test]
async fn a_write_only_token_gets_no_record_back() {
    let t = TestApp::demo().await;
    let res = t
        .patch("/v1/books/5")
        .with_scopes(&["write"])
        .json(json!({}))
        .send()
        .await;
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty());
    let res = t
        .patch("/v1/books/5.csv")
        .with_scopes(&["write"])
        .json(json!({"year": 2001}))
        .send()
        .await;
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty());
    let res = t
        .post("/v1/books")
        .with_scopes(&["write"])
        .json(json!({"title": "W", "author": "O"}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    assert!(res.header("location").contains("/v1/books/"));
    assert!(res.body.is_empty());
    assert_eq!(res.headers.get("preference-applied"), None);
    // The write happened; a reader sees it.
    assert_eq!(t.get("/v1/books/5").send().await.json()["year"], 2001);
}

/// A review posted while its book is being deleted is either created
/// before the delete (and goes with the book) or refused as 404: the
/// parent is checked inside the transaction that inserts, never answered
/// with a constraint error.
#[tokio::test]
async fn a_child_created_while_its_parent_is_deleted_is_201_or_404() {
    let t = Arc::new(TestApp::demo().await);
    for book in 20..30 {
        let mut tasks = Vec::new();
        for i in 0..12 {
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                if i == 6 {
                    let res = t.delete(&format!("/v1/books/{book}")).send().await;
                    assert_eq!(res.status, 204);
                    return None;
                }
                let res = t
                    .post(&format!("/v1/books/{book}/reviews"))
                    .json(json!({"rating": 3}))
                    .send()
                    .await;
                Some((res.status.as_u16(), res.body))
            }));
        }
        for task in tasks {
            if let Some((status, body)) = task.await.unwrap() {
                assert!(
                    status == 201 || status == 404,
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        assert_eq!(
            t.get(&format!("/v1/books/{book}/reviews"))
                .send()
                .await
                .status,
            404
        );
    }
}

/// A client that refuses every content coding gets a 406 in the error
/// format before anything runs: its PATCH is not written and then
/// reported refused.
#[tokio::test]
async fn a_refused_content_coding_is_406_and_writes_nothing() {
    let t = TestApp::demo().await;
    for refusal in ["identity;q=0", "*;q=0", "zstd, identity;q=0"] {
        let res = t
            .patch("/v1/books/5")
            .header("accept-encoding", refusal)
            .json(json!({"title": "never written"}))
            .send()
            .await;
        assert_problem(&res, 406, "NOT_ACCEPTABLE");
    }
    assert_ne!(
        t.get("/v1/books/5").send().await.json()["title"],
        "never written"
    );
    // A coding it accepts is fine.
    let res = t
        .get("/v1/books/5")
        .header("accept-encoding", "identity;q=0, gzip")
        .send()
        .await;
    assert_eq!(res.status, 200);
}

const PRIVATE_CHILDREN: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "boards"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string" }
[[module.resource.nested]]
name = "notes"
parent_key = "boardId"
owner = { field = "userId", policy = "private" }
[module.resource.nested.fields]
id      = { type = "integer", primary_key = true }
boardId = { type = "integer", read_only = true }
userId  = { type = "integer", read_only = true }
text    = { type = "string" }
"#;

/// Others' private rows do not exist for the caller (§8.6): a delete they
/// would block says so without naming them or counting them.
#[tokio::test]
async fn a_cascade_into_private_rows_is_refused_without_describing_them() {
    let t = TestApp::with(PRIVATE_CHILDREN, "", restkit::registry::Registry::builtin()).await;
    created(&t, "/api/boards", 1, json!({"name": "b"})).await;
    created(
        &t,
        "/api/boards/1/notes",
        2,
        json!({"text": "ana's secret"}),
    )
    .await;
    let res = t.delete("/api/boards/1").by_user(1).send().await;
    let b = assert_problem(&res, 409, "REFERENCE_CONFLICT");
    let text = b.to_string();
    assert!(!text.contains("note"), "{text}");
    assert_eq!(
        t.get("/api/boards/1/notes/1")
            .by_user(2)
            .send()
            .await
            .status,
        200
    );
}

/// The nested declaration names no owner, but another declaration over the
/// same table does: the rows are still someone's, and a cascade that would
/// take them is refused.
#[tokio::test]
async fn ownership_declared_on_another_resource_over_the_table_still_counts() {
    let toml = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "boards"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string" }
[[module.resource.nested]]
name = "cards"
table = "cards"
parent_key = "boardId"
[module.resource.nested.fields]
id      = { type = "integer", primary_key = true }
boardId = { type = "integer", read_only = true }
text    = { type = "string" }
[[module.resource]]
name = "mycards"
table = "cards"
owner = { field = "userId", policy = "read_all" }
[module.resource.fields]
id      = { type = "integer", primary_key = true }
boardId = { type = "integer" }
userId  = { type = "integer", read_only = true }
text    = { type = "string" }
"#;
    let t = TestApp::with(toml, "", restkit::registry::Registry::builtin()).await;
    created(&t, "/api/boards", 1, json!({"name": "b"})).await;
    created(
        &t,
        "/api/mycards",
        2,
        json!({"boardId": 1, "text": "ana's"}),
    )
    .await;
    let res = t.delete("/api/boards/1").by_user(1).send().await;
    assert_problem(&res, 409, "REFERENCE_CONFLICT");
    assert_eq!(
        t.delete("/api/boards/1").by_user(2).send().await.status,
        204
    );
}

async fn post_serial(t: &TestApp, serial: &str) -> crate::helpers::TestResponse {
    t.post("/api/items")
        .json(json!({ "serial": serial }))
        .send()
        .await
}

/// Long table and column names (PostgreSQL keeps 63 bytes of a name):
/// a duplicate still names its field, and a field that stops being
/// unique loses its index.
#[tokio::test]
async fn a_duplicate_in_a_long_named_column_names_its_field() {
    let table = "a_rather_long_table_name_for_inventory_items";
    let column = "a_rather_long_column_name_for_serials";
    let toml = |unique: bool| {
        format!(
            "[[module]]\nprefix = \"/api\"\n[[module.resource]]\nname = \"items\"\ntable = \"{table}\"\n\
             scopes = {{ read = \"\", write = \"\" }}\n[module.resource.fields]\n\
             id = {{ type = \"integer\", primary_key = true }}\n\
             serial = {{ type = \"string\", column = \"{column}\", unique = {unique} }}\n"
        )
    };
    let t = TestApp::with(&toml(true), "", Registry::builtin()).await;
    assert_eq!(post_serial(&t, "SN-1").await.status, 201);
    let dup = post_serial(&t, "SN-1").await;
    let b = assert_problem(&dup, 409, "DUPLICATE_VALUE");
    assert_eq!(b["errors"][0]["field"], "serial", "{b}");
    // Relaxed: reopened with the field no longer unique, the index goes.
    let db = t.into_dir();
    let text = toml(false);
    let settings = crate::helpers::settings(&text, &db.url);
    let app = restkit::open(
        restkit::model::toml::parse(&text).unwrap(),
        settings,
        &Registry::builtin(),
    )
    .await
    .unwrap();
    let t = TestApp::in_dir(app, db);
    assert_eq!(post_serial(&t, "SN-1").await.status, 201);
}

/// Fifty creates at once, one of them naming an ISBN another book has:
/// the 49 others are written and answered 201, the one alone is a 409 —
/// whether the writes committed one by one (PostgreSQL) or in groups
/// (SQLite, where /metrics shows fewer commits than writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_write_among_fifty_concurrent_ones_fails_alone() {
    let t = Arc::new(TestApp::demo().await);
    let taken = t.get("/v1/books/1").send().await.json()["isbn"].clone();
    assert!(taken.is_string(), "the demo's books have ISBNs");
    let metric = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    let scrape = || async {
        let res = t.get("/metrics").anonymous().send().await;
        assert_eq!(res.status, 200);
        String::from_utf8(res.body).unwrap()
    };
    let before = scrape().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let t = t.clone();
        let isbn = if i == 25 {
            taken.clone()
        } else {
            json!(format!("979-0-{i:08}"))
        };
        tasks.push(tokio::spawn(async move {
            let book = json!({"title": format!("Group {i}"), "author": "G", "isbn": isbn});
            let res = t.post("/v1/books").json(book).send().await;
            (i, res)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let (i, res) = task.await.unwrap();
        if i == 25 {
            assert_problem(&res, 409, "DUPLICATE_VALUE");
        } else {
            assert_eq!(
                res.status,
                201,
                "{i}: {}",
                String::from_utf8_lossy(&res.body)
            );
            ids.push(res.json()["id"].as_i64().unwrap());
        }
    }
    for id in ids {
        let res = t.get(&format!("/v1/books/{id}")).send().await;
        assert_eq!(res.status, 200, "book {id} was acknowledged but is missing");
    }
    let res = t.get("/v1/books?q=(title:Group*)&limit=1").send().await;
    assert_eq!(res.header("x-pagination-total-count"), "49");
    let after = scrape().await;
    if t.url.starts_with("sqlite") {
        let read = |text: &str, name: &str| metric(text, name).expect(name);
        let commits = read(&after, "restkit_db_write_commits_total")
            - read(&before, "restkit_db_write_commits_total");
        let writes = read(&after, "restkit_db_committed_writes_total")
            - read(&before, "restkit_db_committed_writes_total");
        assert!(writes >= 49, "{writes} writes committed");
        assert!(
            commits >= 1 && commits <= writes,
            "{commits} commits, {writes} writes"
        );
    }
}

/// An owner or parent field with a declared default still gets the
/// caller and the path's parent on create: the scope wins over the
/// default (before, both were inserted and the default could win).
#[tokio::test]
async fn the_owner_and_parent_win_over_their_declared_defaults() {
    // PRIVATE_CHILDREN, with defaults for the parent and owner fields.
    let toml = PRIVATE_CHILDREN
        .replace(
            r#"boardId = { type = "integer", read_only = true }"#,
            r#"boardId = { type = "integer", default = 7 }"#,
        )
        .replace(
            r#"userId  = { type = "integer", read_only = true }"#,
            r#"userId  = { type = "integer", default = 0 }"#,
        );
    assert!(toml.contains("default = 7") && toml.contains("default = 0"));
    let t = TestApp::with(&toml, "", restkit::registry::Registry::builtin()).await;
    created(&t, "/api/boards", 1, json!({"name": "b"})).await;
    let res = t
        .post("/api/boards/1/notes")
        .by_user(2)
        .json(json!({"text": "mine"}))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let note = res.json();
    assert_eq!(note["userId"], 2);
    assert_eq!(note["boardId"], 1);
    let id = note["id"].as_i64().unwrap();
    let path = format!("/api/boards/1/notes/{id}");
    assert_eq!(t.get(&path).by_user(2).send().await.status, 200);
    assert_eq!(t.get(&path).by_user(1).send().await.status, 404);
}
