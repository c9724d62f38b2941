//! Regression tests for the data-integrity bugs of the review: values that
//! were silently lost, patterns cut short, patches that wrote what they did
//! not name, concurrent patches that lost each other, migrations that
//! reinterpreted data, and sync reads that could skip changes.

use std::collections::HashSet;
use std::sync::Arc;

use restkit::registry::Registry;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, settings, TestApp};

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn whole_number_floats_are_stored_as_integers() {
    let t = TestApp::demo().await;
    for (spelling, year) in [
        ("1999.0", 1999),
        ("1e2", 100),
        ("2.01e3", 2010),
        ("-0", 0),
        ("-0.0", 0),
    ] {
        let body = format!(r#"{{"title":"t","author":"x","year":{spelling}}}"#);
        let res = t
            .post("/v1/books")
            .raw("application/json", &body)
            .send()
            .await;
        assert_eq!(
            res.status,
            201,
            "{spelling}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert_eq!(res.json()["year"], json!(year), "{spelling}");
        let id = res.json()["id"].as_i64().unwrap();
        let stored = t.get(&format!("/v1/books/{id}")).send().await.json();
        assert_eq!(stored["year"], json!(year), "{spelling} as stored");
    }
    let res = t
        .patch("/v1/books/7")
        .raw("application/json", r#"{"year":1956.0}"#)
        .send()
        .await;
    assert_eq!(res.json()["year"], 1956);
    assert_eq!(t.get("/v1/books/7").send().await.json()["year"], 1956);
    let res = t
        .put("/v1/books/8")
        .raw(
            "application/json",
            r#"{"title":"t","author":"a","year":1.957e3}"#,
        )
        .send()
        .await;
    assert_eq!(res.json()["year"], 1957);
    // A fraction is not an integer: 422, and nothing changes.
    let res = t
        .patch("/v1/books/7")
        .raw("application/json", r#"{"year":1956.5}"#)
        .send()
        .await;
    assert_eq!(
        assert_problem(&res, 422, "VALIDATION_FAILED")["errors"][0]["field"],
        "year"
    );
    assert_eq!(t.get("/v1/books/7").send().await.json()["year"], 1956);
    // Too large for 64 bits, however spelled: 422, never NULL.
    for big in ["1e19", "9223372036854775808", "-1e19"] {
        let res = t
            .patch("/v1/books/7")
            .raw("application/json", &format!(r#"{{"year":{big}}}"#))
            .send()
            .await;
        assert_eq!(res.status, 422, "{big}");
    }
    assert_eq!(t.get("/v1/books/7").send().await.json()["year"], 1956);
}

#[tokio::test]
async fn a_required_integer_sent_as_a_float_is_kept_not_dropped() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books/3/reviews")
        .by_user(1)
        .raw("application/json", r#"{"rating":5.0}"#)
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["rating"], 5);
}

#[tokio::test]
async fn form_and_bulk_bodies_keep_whole_number_floats() {
    let t = TestApp::demo().await;
    let res = t
        .post("/v1/books")
        .raw(
            "application/x-www-form-urlencoded",
            "title=t&author=a&year=1999.0",
        )
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["year"], 1999);
    let res = t
        .put("/v1/books")
        .raw(
            "application/json",
            r#"[{"id":4.0,"title":"a","author":"b","year":2000.0}]"#,
        )
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()[0]["year"], 2000);
    assert_eq!(t.get("/v1/books/4").send().await.json()["year"], 2000);
}

async fn count(t: &TestApp, query: &str) -> u64 {
    t.get(&format!("/v1/books?{query}&limit=1"))
        .send()
        .await
        .header("x-pagination-total-count")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_nul_character_never_widens_a_match() {
    let t = TestApp::demo().await;
    for query in [
        "filter[author][eq]=Author%207&filter[title][like]=%00nomatch",
        "filter[title][like]=%00",
        "q=(title:%00*)",
        "q=(title:x%00)",
        "filter[title][eq]=a%00",
    ] {
        let res = t.delete(&format!("/v1/books?{query}")).send().await;
        assert_problem(&res, 400, "INVALID_QUERY");
        let res = t.get(&format!("/v1/books?{query}")).send().await;
        assert_problem(&res, 400, "INVALID_QUERY");
    }
    // The JSON filter decodes \u0000 itself.
    let json_filter = enc(r#"[{"field":"title","operator":"like","value":"\u0000x"}]"#);
    let res = t
        .delete(&format!("/v1/books?filter={json_filter}"))
        .send()
        .await;
    assert_problem(&res, 400, "INVALID_QUERY");
    assert_eq!(count(&t, "sort=id").await, 1000, "nothing was deleted");
    // Bodies may not store text that patterns would cut short either.
    let res = t
        .post("/v1/books")
        .json(json!({"title": "a\u{0}b", "author": "x"}))
        .send()
        .await;
    let b = assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(b["errors"][0]["code"], "invalid_character");
    // Other pattern characters are literal.
    assert_eq!(count(&t, "filter[title][like]=%25").await, 0);
    assert_eq!(count(&t, "filter[title][like]=_").await, 0);
    assert_eq!(count(&t, "filter[title][like]=%5C").await, 0);
}

#[tokio::test]
async fn sync_timestamps_past_year_9999_are_refused() {
    let t = TestApp::demo().await;
    // Year 10000 in milliseconds, and in seconds: 12 digits are seconds,
    // so 253402300800 is not read as milliseconds in 1978.
    for ts in [
        "253402300800000",
        "999999999999999",
        "253402300800",
        "999999999999",
    ] {
        let res = t.get(&format!("/v1/books?timestamp={ts}")).send().await;
        assert_problem(&res, 400, "INVALID_QUERY");
    }
    // The last representable millisecond and second are fine (and find
    // nothing).
    for ts in ["253402300799999", "253402300799"] {
        let res = t.get(&format!("/v1/books?timestamp={ts}")).send().await;
        assert_eq!(res.status, 200, "{ts}");
        assert_eq!(res.header("x-pagination-total-count"), "0");
    }
}

/// An integer is judged on the digits as written, in JSON and form bodies
/// alike: a fraction the float loses (`1999.00000000000001` parses to
/// 1999.0) is still a fraction, and a 422; a whole number passes in any
/// spelling.
#[tokio::test]
async fn a_fraction_too_small_for_a_float_is_still_refused_for_an_integer() {
    let t = TestApp::demo().await;
    let before = t.get("/v1/books/7").send().await.json()["year"].clone();
    for body in [
        r#"{"year":1999.00000000000001}"#,
        r#"{"year":1.99900000000000001e3}"#,
        r#"{"year":1e-400}"#,
    ] {
        let res = t
            .patch("/v1/books/7")
            .raw("application/json", body)
            .send()
            .await;
        let b = assert_problem(&res, 422, "VALIDATION_FAILED");
        assert_eq!(b["errors"][0]["field"], "year", "{body}");
    }
    let res = t
        .patch("/v1/books/7")
        .raw(
            "application/x-www-form-urlencoded",
            "year=1999.00000000000001",
        )
        .send()
        .await;
    assert_eq!(
        assert_problem(&res, 422, "VALIDATION_FAILED")["errors"][0]["field"],
        "year"
    );
    let res = t
        .put("/v1/books")
        .raw(
            "application/json",
            r#"[{"id":7,"title":"t","author":"a","year":1999.00000000000001}]"#,
        )
        .send()
        .await;
    assert_eq!(
        assert_problem(&res, 422, "VALIDATION_FAILED")["errors"][0]["field"],
        "[0].year"
    );
    let res = t
        .post("/v1/health/echo")
        .raw(
            "application/json",
            r#"{"pagination":{"page":2.00000000000000001}}"#,
        )
        .send()
        .await;
    assert_eq!(
        assert_problem(&res, 422, "VALIDATION_FAILED")["errors"][0]["field"],
        "pagination.page"
    );
    assert_eq!(t.get("/v1/books/7").send().await.json()["year"], before);
    // Whole numbers, however written.
    for (body, year) in [
        (r#"{"year":1999.0}"#, 1999),
        (r#"{"year":1.998e3}"#, 1998),
        (r#"{"year":1997.000000000000000000}"#, 1997),
    ] {
        let res = t
            .patch("/v1/books/7")
            .raw("application/json", body)
            .send()
            .await;
        assert_eq!(res.status, 200, "{body}");
        assert_eq!(res.json()["year"], year, "{body}");
    }
    let res = t
        .patch("/v1/books/7")
        .raw("application/x-www-form-urlencoded", "year=1996.0")
        .send()
        .await;
    assert_eq!(res.json()["year"], 1996);
}

#[tokio::test]
async fn bulk_put_with_one_id_twice_writes_nothing() {
    let t = TestApp::demo().await;
    let res = t
        .put("/v1/books")
        .json(json!([
            {"id": 10, "title": "first", "author": "a"},
            {"id": 11, "title": "other", "author": "a"},
            {"id": 10, "title": "second", "author": "a"},
        ]))
        .send()
        .await;
    let b = assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(b["errors"][0]["field"], "[2].id");
    assert_eq!(b["errors"][0]["code"], "duplicate");
    assert_eq!(
        t.get("/v1/books/10").send().await.json()["title"],
        "Book 10"
    );
    assert_eq!(
        t.get("/v1/books/11").send().await.json()["title"],
        "Book 11"
    );
}

const NOTES: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "notes"
table = "notes"
[module.resource.fields]
id     = { type = "integer", primary_key = true }
title  = { type = "string", required = true }
status = { type = "string", default = "draft" }
kind   = { type = "string", required = true, default = "memo" }
score  = { type = "integer", default = 3, minimum = 0 }
"#;

#[tokio::test]
async fn patch_changes_exactly_what_it_names() {
    let t = TestApp::with(NOTES, "", Registry::builtin()).await;
    // required + default: the default applies on create.
    let res = t
        .post("/api/notes")
        .json(json!({"title": "a"}))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let created = res.json();
    assert_eq!(created["kind"], "memo");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["score"], 3);
    let id = created["id"].as_i64().unwrap();
    // A defaulted field can be cleared with null …
    let res = t
        .patch(&format!("/api/notes/{id}"))
        .json(json!({"status": null, "score": null}))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["status"], Value::Null);
    assert_eq!(res.json()["score"], Value::Null);
    // … and a patch of another field does not write the defaults back.
    let res = t
        .patch(&format!("/api/notes/{id}"))
        .json(json!({"title": "b"}))
        .send()
        .await;
    let b = res.json();
    assert_eq!(b["title"], "b");
    assert_eq!(b["status"], Value::Null, "{b}");
    assert_eq!(b["score"], Value::Null, "{b}");
    let stored = t.get(&format!("/api/notes/{id}")).send().await.json();
    assert_eq!(stored["status"], Value::Null);
    // A required field still cannot be cleared.
    let res = t
        .patch(&format!("/api/notes/{id}"))
        .json(json!({"title": null}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_different_fields_both_stay() {
    let t = Arc::new(TestApp::demo().await);
    for round in 0..40 {
        let a = {
            let t = t.clone();
            tokio::spawn(async move {
                t.patch("/v1/books/9")
                    .json(json!({"title": format!("title {round}")}))
                    .send()
                    .await
                    .status
            })
        };
        let b = {
            let t = t.clone();
            tokio::spawn(async move {
                t.patch("/v1/books/9")
                    .json(json!({"year": 1000 + round}))
                    .send()
                    .await
                    .status
            })
        };
        assert_eq!(a.await.unwrap(), 200);
        assert_eq!(b.await.unwrap(), 200);
        let now = t.get("/v1/books/9").send().await.json();
        assert_eq!(
            now["title"],
            format!("title {round}"),
            "round {round}: {now}"
        );
        assert_eq!(now["year"], 1000 + round, "round {round}: {now}");
    }
}

/// Changes the title of each book in `ids`.
async fn retitle(t: &TestApp, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        let res = t
            .patch(&format!("/v1/books/{id}"))
            .json(json!({"title": format!("changed {id}")}))
            .send()
            .await;
        assert_eq!(res.status, 200);
    }
}

/// The sync mark of a read that sees the whole (here: empty) result.
async fn mark_of(t: &TestApp, collection: &str) -> String {
    let future = chrono::Utc::now() + chrono::Duration::days(1);
    t.get(&format!("{collection}?timestamp={}", future.timestamp()))
        .send()
        .await
        .header("x-sync-timestamp")
        .to_string()
}

async fn deleted_since(t: &TestApp, collection: &str, mark: &str) -> Vec<i64> {
    let b = t
        .get(&format!(
            "{collection}?timestamp={}&envelope=true",
            enc(mark)
        ))
        .send()
        .await
        .json();
    b["_meta"]["deleted"]
        .as_array()
        .unwrap_or_else(|| panic!("{b}"))
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_delete_by_any_route_leaves_a_tombstone() {
    let t = TestApp::demo().await;
    let mark = mark_of(&t, "/v1/books").await;
    // /v2 does not declare sync; the table does.
    assert_eq!(t.delete("/v2/books/5").send().await.status, 204);
    assert_eq!(deleted_since(&t, "/v1/books", &mark).await, vec![5]);
    assert_eq!(deleted_since(&t, "/v2/books", &mark).await, vec![5]);
}

const FAMILY: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "parents"
table = "parents"
sync = true
[module.resource.fields]
id        = { type = "integer", primary_key = true }
name      = { type = "string" }
updatedAt = { type = "datetime", read_only = true, updated_at = true }
[[module.resource.nested]]
name = "children"
table = "children"
parent_key = "parentId"
sync = true
[module.resource.nested.fields]
id        = { type = "integer", primary_key = true }
parentId  = { type = "integer", read_only = true }
name      = { type = "string" }
updatedAt = { type = "datetime", read_only = true, updated_at = true }
"#;

#[tokio::test]
async fn cascaded_deletes_leave_tombstones_too() {
    let t = TestApp::with(FAMILY, "", Registry::builtin()).await;
    let p = t
        .post("/api/parents")
        .json(json!({"name": "p"}))
        .send()
        .await
        .json();
    let pid = p["id"].as_i64().unwrap();
    let mut kids = Vec::new();
    for i in 0..3 {
        let c = t
            .post(&format!("/api/parents/{pid}/children"))
            .json(json!({"name": format!("c{i}")}))
            .send()
            .await
            .json();
        kids.push(c["id"].as_i64().unwrap());
    }
    let mark = mark_of(&t, &format!("/api/parents/{pid}/children")).await;
    assert_eq!(
        t.delete(&format!("/api/parents/{pid}")).send().await.status,
        204
    );
    // The parent's tombstone is served; its children's are recorded too
    // (by the trigger, cascade or not), each with the parent's key …
    assert_eq!(deleted_since(&t, "/api/parents", &mark).await, vec![pid]);
    let raw = crate::db::Raw::connect(&t.url).await;
    let mut recorded = raw
        .pairs("SELECT record_id, parent_id FROM restkit_tombstones WHERE table_name = 'children'")
        .await;
    raw.close().await;
    recorded.sort();
    let expected: Vec<(i64, Option<i64>)> = kids.iter().map(|k| (*k, Some(pid))).collect();
    assert_eq!(recorded, expected);
    // … so another parent's sync read does not list them.
    let q = t
        .post("/api/parents")
        .json(json!({"name": "q"}))
        .send()
        .await
        .json();
    let qid = q["id"].as_i64().unwrap();
    let mine = t
        .post(&format!("/api/parents/{qid}/children"))
        .json(json!({"name": "mine"}))
        .send()
        .await
        .json();
    let mine = mine["id"].as_i64().unwrap();
    t.delete(&format!("/api/parents/{qid}/children/{mine}"))
        .send()
        .await;
    let gone = deleted_since(&t, &format!("/api/parents/{qid}/children"), &mark).await;
    assert_eq!(gone, vec![mine]);
}

/// A private (per-owner) sync table.
pub const PRIVATE_SYNC: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "notes"
sync = true
owner = { field = "userId", policy = "private" }
[module.resource.fields]
id        = { type = "integer", primary_key = true }
text      = { type = "string" }
userId    = { type = "integer", read_only = true }
updatedAt = { type = "datetime", read_only = true, updated_at = true }
"#;

#[tokio::test]
async fn a_sync_read_reports_only_the_callers_deletions() {
    let t = TestApp::with(PRIVATE_SYNC, "", Registry::builtin()).await;
    let mark = mark_of(&t, "/api/notes").await;
    let note = t
        .post("/api/notes")
        .by_user(1)
        .json(json!({"text": "stan's"}))
        .send()
        .await
        .json();
    let id = note["id"].as_i64().unwrap();
    t.delete(&format!("/api/notes/{id}"))
        .by_user(1)
        .send()
        .await;
    let theirs = t
        .get(&format!(
            "/api/notes?timestamp={}&envelope=true",
            enc(&mark)
        ))
        .by_user(2)
        .send()
        .await
        .json();
    assert_eq!(theirs["_meta"]["deleted"], json!([]));
    let mine = t
        .get(&format!(
            "/api/notes?timestamp={}&envelope=true",
            enc(&mark)
        ))
        .by_user(1)
        .send()
        .await
        .json();
    assert_eq!(mine["_meta"]["deleted"], json!([id]));
}

const MANY: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "items"
table = "items"
sync = true
bulk = true
[module.resource.fields]
id        = { type = "integer", primary_key = true }
n         = { type = "integer" }
updatedAt = { type = "datetime", read_only = true, updated_at = true }
"#;

#[tokio::test]
async fn a_filtered_delete_of_20000_rows_reports_every_tombstone() {
    let t = TestApp::with(MANY, "", Registry::builtin()).await;
    t.fill("items", &["n", "updated_at"], 20_000, |n| {
        vec![n.into(), "2020-01-01T00:00:00.000000Z".into()]
    })
    .await;
    let mark = mark_of(&t, "/api/items").await;
    // The filter matches every row, so it needs all=true to say so.
    let res = t
        .delete("/api/items?filter[n][gte]=0&all=true")
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["deleted"], 20_000);
    // The list is cut (never silently capped): following X-Sync-Timestamp
    // reports every id exactly once.
    let mut ids = HashSet::new();
    let mut from = mark;
    for _ in 0..10 {
        let res = t
            .get(&format!(
                "/api/items?timestamp={}&envelope=true",
                enc(&from)
            ))
            .send()
            .await;
        let b = res.json();
        let page = b["_meta"]["deleted"].as_array().unwrap();
        assert!(page.len() <= 10_000);
        for v in page {
            assert!(ids.insert(v.as_i64().unwrap()), "reported twice: {v}");
        }
        from = res.header("x-sync-timestamp").to_string();
        if page.is_empty() {
            break;
        }
    }
    assert_eq!(ids.len(), 20_000);
}

#[tokio::test]
async fn the_next_timestamp_never_skips_unread_pages() {
    let t = TestApp::demo().await;
    let mark = mark_of(&t, "/v1/books").await;
    retitle(&t, 1..=30).await;
    // Three pages of changes. A client that follows X-Sync-Timestamp
    // after page 1 must not skip pages 2 and 3.
    let first = t
        .get(&format!("/v1/books?timestamp={}&limit=10", enc(&mark)))
        .send()
        .await;
    // A feed (no sort) continues from the last record it showed: book 10.
    let position = first.header("x-sync-timestamp").to_string();
    assert!(position.ends_with("~10"), "{position}");
    // Jumping to the last page is not a continuation: it must not hand out
    // a mark that would skip the pages in between.
    let jumped = t.get(&first.link("last").unwrap()).send().await;
    assert_eq!(jumped.header("x-sync-timestamp"), mark);
    assert!(!first.link("last").unwrap().contains("sync_mark"));
    let next = first.link("next").unwrap();
    assert!(
        !next.contains("sync_mark") && !next.contains("offset"),
        "{next}"
    );
    // Following the links to the end, the last page gives a mark no later
    // than the one taken before page 1, and later than every change read.
    let mut seen = Vec::new();
    let mut page = first;
    loop {
        for b in page.json().as_array().unwrap() {
            seen.push(b["id"].as_i64().unwrap());
        }
        match page.link("next") {
            Some(next) => page = t.get(&next).send().await,
            None => break,
        }
    }
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
    let last_mark = page.header("x-sync-timestamp").to_string();
    assert!(last_mark > mark);
    let after = t
        .get(&format!("/v1/books?timestamp={}", enc(&last_mark)))
        .send()
        .await;
    assert_eq!(after.header("x-pagination-total-count"), "0");
    // A forged sync_mark is a 400, not a 500.
    let res = t
        .get("/v1/books?timestamp=1&sync_mark=yesterday")
        .send()
        .await;
    assert_problem(&res, 400, "INVALID_QUERY");
}

/// Opens `model_toml` over the database `db`.
async fn open_at(db: &crate::db::TestDb, model_toml: &str) -> Result<restkit::App, String> {
    let model = restkit::model::toml::parse(model_toml).map_err(|e| e.to_string())?;
    restkit::open(model, settings(model_toml, &db.url), &Registry::builtin())
        .await
        .map_err(|e| e.to_string())
}

const V1: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "tags"
table = "tags"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
code = { type = "string", unique = true }
"#;

#[tokio::test]
async fn an_added_column_gets_its_default_in_existing_rows() {
    let dir = crate::db::TestDb::new().await;
    let app = open_at(&dir, V1).await.unwrap();
    let t = TestApp::from_app(app);
    t.post("/api/tags").json(json!({"code": "AP"})).send().await;
    drop(t);
    let v2 = format!("{V1}weight = {{ type = \"integer\", default = 7 }}\n");
    let t = TestApp::from_app(open_at(&dir, &v2).await.unwrap());
    assert_eq!(t.get("/api/tags/1").send().await.json()["weight"], 7);
}

#[tokio::test]
async fn a_changed_type_refuses_to_start_naming_resource_and_field() {
    let dir = crate::db::TestDb::new().await;
    let t = TestApp::from_app(open_at(&dir, V1).await.unwrap());
    t.post("/api/tags").json(json!({"code": "AP"})).send().await;
    drop(t);
    let retyped = V1.replace(
        r#"code = { type = "string", unique = true }"#,
        r#"code = { type = "integer", unique = true }"#,
    );
    let err = open_at(&dir, &retyped)
        .await
        .err()
        .expect("must refuse to start");
    assert!(err.contains("/api/tags") && err.contains("'code'"), "{err}");
}

#[tokio::test]
async fn a_removed_unique_constraint_is_dropped() {
    let dir = crate::db::TestDb::new().await;
    let t = TestApp::from_app(open_at(&dir, V1).await.unwrap());
    assert_eq!(
        t.post("/api/tags")
            .json(json!({"code": "AP"}))
            .send()
            .await
            .status,
        201
    );
    assert_eq!(
        t.post("/api/tags")
            .json(json!({"code": "AP"}))
            .send()
            .await
            .status,
        409
    );
    drop(t);
    let relaxed = V1.replace(", unique = true", "");
    let t = TestApp::from_app(open_at(&dir, &relaxed).await.unwrap());
    assert_eq!(
        t.post("/api/tags")
            .json(json!({"code": "AP"}))
            .send()
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn contradictory_constraints_and_bad_defaults_stop_start_up() {
    for (field, key) in [
        (
            r#"n = { type = "integer", minimum = 10, maximum = 1 }"#,
            "fields.n.minimum",
        ),
        (
            r#"n = { type = "integer", default = "x" }"#,
            "fields.n.default",
        ),
        (
            r#"n = { type = "integer", default = 5, maximum = 4 }"#,
            "fields.n.default",
        ),
        (
            r#"n = { type = "string", pattern = "^[a-z]+$", default = "ABC" }"#,
            "fields.n.default",
        ),
        (
            r#"n = { type = "string", min_length = 5, max_length = 2 }"#,
            "fields.n.min_length",
        ),
    ] {
        let toml = format!("{V1}{field}\n");
        let dir = crate::db::TestDb::new().await;
        let err = open_at(&dir, &toml)
            .await
            .err()
            .unwrap_or_else(|| panic!("{field} accepted"));
        assert!(err.contains(key), "{field}: {err}");
    }
}

#[tokio::test]
async fn a_row_shifted_under_an_offset_reader_is_not_skipped() {
    let t = TestApp::demo().await;
    let start = mark_of(&t, "/v1/books").await;
    retitle(&t, 1..=4).await;
    // Sorted (not a feed): pages by offset, in id order.
    let first = t
        .get(&format!(
            "/v1/books?timestamp={}&per-page=2&sort=id",
            enc(&start)
        ))
        .send()
        .await;
    let ids = |r: &crate::helpers::TestResponse| -> Vec<i64> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&first), vec![1, 2]);
    // Book 1 goes away between the pages: page 2 (offset 2) now starts at
    // book 4, and book 3 is never sent in this traversal …
    assert_eq!(t.delete("/v1/books/1").send().await.status, 204);
    let last = t.get(&first.link("next").unwrap()).send().await;
    assert_eq!(ids(&last), vec![4]);
    // … so the last page must not let the client move past it.
    let next = last.header("x-sync-timestamp").to_string();
    let again = t
        .get(&format!("/v1/books?timestamp={}&per-page=100", enc(&next)))
        .send()
        .await;
    assert!(ids(&again).contains(&3), "book 3 was skipped for good");
    // A page URL built by hand (no sync_mark) never advances either.
    let by_hand = t
        .get(&format!(
            "/v1/books?timestamp={}&per-page=2&page=2&sort=id",
            enc(&start)
        ))
        .send()
        .await;
    assert_eq!(by_hand.header("x-sync-timestamp"), start);
}

#[tokio::test]
async fn a_cursor_traversal_ends_with_the_first_pages_mark() {
    let t = TestApp::demo().await;
    let start = mark_of(&t, "/v1/books").await;
    retitle(&t, 1..=5).await;
    let mut page = t
        .get(&format!(
            "/v1/books?timestamp={}&limit=2&cursor=&sort=id",
            enc(&start)
        ))
        .send()
        .await;
    let mut seen = 0;
    loop {
        seen += page.json().as_array().unwrap().len();
        match page.link("next") {
            Some(next) => {
                // Changes during the traversal do not stop it from ending.
                t.patch("/v1/books/900")
                    .json(json!({"year": 1999}))
                    .send()
                    .await;
                page = t.get(&next).send().await;
            }
            None => break,
        }
    }
    // Books 1–5, and book 900 when its change landed before its page.
    assert!((5..=6).contains(&seen), "{seen}");
    let end = page.header("x-sync-timestamp").to_string();
    assert!(end > start);
    // Book 900 changed after the first page's mark: the next sync has it.
    let after = t
        .get(&format!("/v1/books?timestamp={}", enc(&end)))
        .send()
        .await
        .json();
    assert!(after.as_array().unwrap().iter().any(|b| b["id"] == 900));
}

#[tokio::test]
async fn a_delete_made_outside_restkit_is_still_reported() {
    let dir = crate::db::TestDb::new().await;
    let t = TestApp::from_app(open_at(&dir, MANY).await.unwrap());
    for n in 0..3 {
        t.post("/api/items").json(json!({"n": n})).send().await;
    }
    let mark = mark_of(&t, "/api/items").await;
    // Another program deletes a row straight in the database.
    let other = crate::db::Raw::connect(&dir.url).await;
    other.execute("DELETE FROM items WHERE id = 2").await;
    other.close().await;
    assert_eq!(deleted_since(&t, "/api/items", &mark).await, vec![2]);
}

#[tokio::test]
async fn a_unique_field_with_a_default_stops_start_up() {
    let toml = format!("{V1}slug = {{ type = \"string\", unique = true, default = \"x\" }}\n");
    let dir = crate::db::TestDb::new().await;
    let err = open_at(&dir, &toml).await.err().expect("refused");
    assert!(err.contains("fields.slug.default"), "{err}");
}

/// An integer field takes whole numbers however they are spelled, but a
/// float of 2^53 or more is refused (422) rather than stored as whatever
/// the float held — on PostgreSQL it was once stored as the float's bit
/// pattern. Digits alone are exact at any size a 64-bit integer holds.
#[tokio::test]
async fn an_integer_written_as_a_huge_float_is_refused_and_digits_are_exact() {
    let t = TestApp::with(MANY, "", Registry::builtin()).await;
    let post = |body: &'static str| {
        let t = &t;
        async move {
            t.post("/api/items")
                .raw("application/json", body)
                .send()
                .await
        }
    };
    for body in [
        r#"{"n": 1e16}"#,
        r#"{"n": 9007199254740993.0}"#,
        r#"{"n": -2e18}"#,
    ] {
        let res = post(body).await;
        let b = assert_problem(&res, 422, "VALIDATION_FAILED");
        assert_eq!(b["errors"][0]["field"], "n", "{body}: {b}");
    }
    for (body, stored) in [
        (r#"{"n": 10000000000000000}"#, 10_000_000_000_000_000i64),
        (r#"{"n": 9223372036854775807}"#, i64::MAX),
        (r#"{"n": 9007199254740991.0}"#, 9_007_199_254_740_991),
        (r#"{"n": 1e3}"#, 1000),
    ] {
        let res = post(body).await;
        assert_eq!(res.status, 201, "{body}");
        let id = res.json()["id"].as_i64().unwrap();
        let back = t.get(&format!("/api/items/{id}")).send().await.json();
        assert_eq!(back["n"], stored, "{body}");
    }
}
