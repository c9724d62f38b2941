//! §6.7 sync: `timestamp=`, `X-Sync-Timestamp`, tombstones, and no missed
//! change under concurrent writers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The sync mark of a read that sees the whole (here: empty) result.
async fn current_mark(t: &TestApp) -> String {
    let future = chrono::Utc::now() + chrono::Duration::days(1);
    t.get(&format!("/v1/books?timestamp={}", future.timestamp()))
        .send()
        .await
        .header("x-sync-timestamp")
        .to_string()
}

#[tokio::test]
async fn timestamp_returns_only_later_changes_and_tombstones() {
    let t = TestApp::demo().await;
    let mark = current_mark(&t).await;
    assert!(
        chrono::DateTime::parse_from_rfc3339(&mark).is_ok(),
        "{mark}"
    );

    t.patch("/v1/books/5")
        .json(json!({"title": "changed"}))
        .send()
        .await;
    t.delete("/v1/books/6").send().await;
    let res = t
        .get(&format!("/v1/books?timestamp={}&envelope=true", enc(&mark)))
        .send()
        .await;
    let b = res.json();
    assert_eq!(b["records"].as_array().unwrap().len(), 1);
    assert_eq!(b["records"][0]["id"], 5);
    assert_eq!(b["_meta"]["deleted"], json!([6]));
    assert_eq!(b["_meta"]["timestamp"], res.header("x-sync-timestamp"));
    assert!(res.header("x-sync-timestamp") > mark.as_str());

    let next = res.header("x-sync-timestamp").to_string();
    let again = t
        .get(&format!("/v1/books?timestamp={}&envelope=true", enc(&next)))
        .send()
        .await
        .json();
    assert_eq!(again["records"], json!([]));
    assert_eq!(again["_meta"]["deleted"], json!([]));
}

#[tokio::test]
async fn timestamp_accepts_seconds_milliseconds_and_rfc3339() {
    let t = TestApp::demo().await;
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    for ts in [
        past.timestamp().to_string(),
        past.timestamp_millis().to_string(),
        past.to_rfc3339(),
    ] {
        let res = t
            .get(&format!("/v1/books?timestamp={}&limit=1", enc(&ts)))
            .send()
            .await;
        assert_eq!(res.header("x-pagination-total-count"), "1000", "{ts}");
    }
    for ts in [
        future.timestamp().to_string(),
        future.timestamp_millis().to_string(),
        future.to_rfc3339(),
    ] {
        let res = t
            .get(&format!("/v1/books?timestamp={}&limit=1", enc(&ts)))
            .send()
            .await;
        assert_eq!(res.header("x-pagination-total-count"), "0", "{ts}");
    }
    assert_problem(
        &t.get("/v1/shelves?timestamp=1").by_user(1).send().await,
        400,
        "INVALID_QUERY",
    );
}

#[tokio::test]
async fn no_change_is_missed_under_concurrent_writers() {
    let t = Arc::new(TestApp::demo().await);
    let mut mark = current_mark(&t).await;
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let t = t.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25i64 {
                let id = 1 + (w * 25 + i) % 80;
                let res = t
                    .patch(&format!("/v1/books/{id}"))
                    .json(json!({"title": format!("w{w}-{i}")}))
                    .send()
                    .await;
                assert_eq!(res.status, 200);
                if i % 5 == 0 {
                    let gone = 900 + w * 5 + i / 5;
                    assert_eq!(
                        t.delete(&format!("/v1/books/{gone}")).send().await.status,
                        204
                    );
                }
            }
        }));
    }
    let mut last_seen: HashMap<i64, String> = HashMap::new();
    let mut deleted: HashSet<i64> = HashSet::new();
    let read = |b: &Value, last_seen: &mut HashMap<i64, String>, deleted: &mut HashSet<i64>| {
        for r in b["records"].as_array().unwrap() {
            last_seen.insert(
                r["id"].as_i64().unwrap(),
                r["title"].as_str().unwrap().to_string(),
            );
        }
        for d in b["_meta"]["deleted"].as_array().unwrap() {
            deleted.insert(d.as_i64().unwrap());
        }
    };
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let res = t
            .get(&format!(
                "/v1/books?timestamp={}&limit=100&fields=id,title&envelope=true",
                enc(&mark)
            ))
            .send()
            .await;
        let b = res.json();
        assert!(
            b["_meta"]["totalCount"].as_u64().unwrap() <= 100,
            "a page holds every change"
        );
        read(&b, &mut last_seen, &mut deleted);
        mark = res.header("x-sync-timestamp").to_string();
        if done {
            break;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    // One more read after the last write committed.
    let res = t
        .get(&format!(
            "/v1/books?timestamp={}&limit=100&fields=id,title&envelope=true",
            enc(&mark)
        ))
        .send()
        .await;
    read(&res.json(), &mut last_seen, &mut deleted);
    for id in 1..=80 {
        let now = t.get(&format!("/v1/books/{id}")).send().await.json();
        assert_eq!(
            last_seen.get(&id).map(String::as_str),
            now["title"].as_str(),
            "book {id}: latest change missed"
        );
    }
    let expected: HashSet<i64> = (0..4)
        .flat_map(|w| (0..5).map(move |k| 900 + w * 5 + k))
        .collect();
    assert_eq!(deleted, expected);
}

/// Reads a feed as a client that never follows `Link`: it passes each
/// response's `X-Sync-Timestamp` back as the next `timestamp`, until a
/// page shows nothing. Returns every id it was shown, in order.
async fn follow_header(t: &TestApp, from: &str, limit: usize) -> Vec<i64> {
    let mut at = from.to_string();
    let mut seen = Vec::new();
    for _ in 0..200 {
        let res = t
            .get(&format!("/v1/books?timestamp={}&limit={limit}", enc(&at)))
            .send()
            .await;
        assert_eq!(res.status, 200, "{at}");
        let page = res.json();
        let page = page.as_array().unwrap();
        seen.extend(page.iter().map(|b| b["id"].as_i64().unwrap()));
        let next = res.header("x-sync-timestamp").to_string();
        if page.is_empty() {
            assert_eq!(next, at, "an empty page keeps the position");
            return seen;
        }
        at = next;
    }
    panic!("the header never reached the end: it does not advance");
}

#[tokio::test]
async fn a_client_passing_back_each_header_advances_page_by_page() {
    let t = TestApp::demo().await;
    let mark = current_mark(&t).await;
    // Six books changed in one transaction share one change time; three
    // more change after.
    let bulk: Vec<Value> = (1..=6)
        .map(|id| json!({"id": id, "title": format!("bulk {id}"), "author": "A"}))
        .collect();
    assert_eq!(
        t.put("/v1/books").json(json!(bulk)).send().await.status,
        200
    );
    for id in [9, 8, 7] {
        t.patch(&format!("/v1/books/{id}"))
            .json(json!({"year": 2001}))
            .send()
            .await;
    }
    // Pages of two split the tie: the position carries the key.
    assert_eq!(
        follow_header(&t, &mark, 2).await,
        vec![1, 2, 3, 4, 5, 6, 9, 8, 7],
        "each change exactly once, in change order"
    );
    // A position is also what the `next` link carries.
    let first = t
        .get(&format!("/v1/books?timestamp={}&limit=2", enc(&mark)))
        .send()
        .await;
    let position = first.header("x-sync-timestamp");
    assert!(position.ends_with("~2"), "{position}");
    let next = t.get(&first.link("next").unwrap()).send().await.json();
    let ids: Vec<i64> = next
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4]);
    // A position that is not <time>~<id> is a 400.
    for bad in ["2026-01-01T00:00:00Z~x", "~5", "x~1"] {
        assert_problem(
            &t.get(&format!("/v1/books?timestamp={}", enc(bad)))
                .send()
                .await,
            400,
            "INVALID_QUERY",
        );
    }
}

#[tokio::test]
async fn a_header_following_client_misses_nothing_under_concurrent_writers() {
    let t = Arc::new(TestApp::demo().await);
    let mark = current_mark(&t).await;
    let mut writers = Vec::new();
    for w in 0..3i64 {
        let t = t.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..20i64 {
                let id = 1 + (w * 20 + i) % 40;
                let res = t
                    .patch(&format!("/v1/books/{id}"))
                    .json(json!({"title": format!("w{w}-{i}")}))
                    .send()
                    .await;
                assert_eq!(res.status, 200);
            }
        }));
    }
    let mut at = mark;
    let mut last_seen: HashMap<i64, String> = HashMap::new();
    let mut quiet = false;
    for _ in 0..2000 {
        let done = writers.iter().all(|w| w.is_finished());
        let res = t
            .get(&format!(
                "/v1/books?timestamp={}&limit=3&fields=id,title",
                enc(&at)
            ))
            .send()
            .await;
        let page = res.json();
        for r in page.as_array().unwrap() {
            last_seen.insert(
                r["id"].as_i64().unwrap(),
                r["title"].as_str().unwrap().to_string(),
            );
        }
        at = res.header("x-sync-timestamp").to_string();
        if done && page.as_array().unwrap().is_empty() {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "the feed never caught up");
    for w in writers {
        w.await.unwrap();
    }
    for id in 1..=40 {
        let now = t.get(&format!("/v1/books/{id}")).send().await.json();
        assert_eq!(
            last_seen.get(&id).map(String::as_str),
            now["title"].as_str(),
            "book {id}: latest change missed"
        );
    }
}

/// Positions and marks handed to a caller come from what that caller may
/// read: another user's private writes (and deletes) never move them, so
/// they cannot tell when someone else changed something.
#[tokio::test]
async fn sync_positions_reveal_nothing_of_other_owners_writes() {
    let t = TestApp::with(
        crate::integrity::PRIVATE_SYNC,
        "",
        restkit::registry::Registry::builtin(),
    )
    .await;
    let post = |user: i64, text: &'static str| {
        let t = &t;
        async move {
            let res = t
                .post("/api/notes")
                .by_user(user)
                .json(json!({ "text": text }))
                .send()
                .await;
            assert_eq!(res.status, 201);
            res.json()["id"].as_i64().unwrap()
        }
    };
    post(1, "stan's").await;
    post(1, "stan's too").await;
    let before = stans_positions(&t).await;
    let anas = post(2, "ana's").await;
    t.patch(&format!("/api/notes/{anas}"))
        .by_user(2)
        .json(json!({"text": "edited"}))
        .send()
        .await;
    let gone = post(2, "gone").await;
    assert_eq!(
        t.delete(&format!("/api/notes/{gone}"))
            .by_user(2)
            .send()
            .await
            .status,
        204
    );
    assert_eq!(
        stans_positions(&t).await,
        before,
        "ana's writes moved stan's positions"
    );
    // The demo's books: private shelves' writes do not move them either.
    let demo = TestApp::demo().await;
    let before = book_positions(&demo).await;
    let shelf = demo
        .post("/v1/shelves")
        .by_user(2)
        .json(json!({"name": "secret"}))
        .send()
        .await;
    assert_eq!(shelf.status, 201);
    assert_eq!(book_positions(&demo).await, before);
}

/// Stan's feed position and his plain listing's `next` link (which carries
/// the first page's mark).
async fn stans_positions(t: &TestApp) -> (String, String) {
    let future = chrono::Utc::now() + chrono::Duration::days(1);
    let feed = format!("/api/notes?timestamp={}", future.timestamp());
    let a = t.get(&feed).by_user(1).send().await;
    let b = t.get("/api/notes?limit=1").by_user(1).send().await;
    (
        a.header("x-sync-timestamp").to_string(),
        b.link("next").unwrap(),
    )
}

async fn book_positions(t: &TestApp) -> (String, String) {
    let res = t.get("/v1/books?limit=5").send().await;
    (current_mark(t).await, res.link("next").unwrap())
}

/// A change time stored by another program later than restkit's clock
/// (an import, a restored backup) does not pin the mark in the future:
/// changes restkit stamps afterwards are still seen.
#[tokio::test]
async fn a_time_from_the_future_does_not_hide_later_changes() {
    let t = TestApp::demo().await;
    t.fill("books", &["title", "author_name", "update_time"], 1, |_| {
        vec![
            "imported".into(),
            "someone".into(),
            "2999-01-01T00:00:00.000000Z".into(),
        ]
    })
    .await;
    let mark = current_mark(&t).await;
    assert!(mark.as_str() < "2999", "{mark}");
    t.patch("/v1/books/5")
        .json(json!({"title": "after the import"}))
        .send()
        .await;
    // (The imported row, stamped past every change, comes again on every
    // read from the mark: a repeat, never a miss.)
    let page = t
        .get(&format!("/v1/books?timestamp={}&fields=id", enc(&mark)))
        .send()
        .await
        .json();
    let ids: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&5), "{ids:?}");
}

/// A sync read of books after `since` (plus `query`): the next
/// timestamp it hands out and the titles of its page.
async fn feed(t: &TestApp, since: &str, query: &str) -> (String, Vec<String>) {
    let res = t
        .get(&format!("/v1/books?timestamp={}{query}", enc(since)))
        .send()
        .await;
    assert_eq!(res.status, 200);
    let titles = res
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["title"].as_str().unwrap().to_string())
        .collect();
    (res.header("x-sync-timestamp").to_string(), titles)
}

/// A book inserted straight through `tx`, stamped with its time.
async fn insert_in(tx: &mut restkit::store::WriteTx, title: &str) {
    use sea_query::{Alias, Expr, Query};
    let now = tx.now().to_string();
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new("books"))
        .columns(["title", "author_name", "created_at", "update_time"].map(Alias::new))
        .values_panic([title, "Tx", now.as_str(), now.as_str()].map(|v| Expr::val(v.to_string())));
    tx.execute_insert(insert).await.unwrap();
}

/// PostgreSQL: writers do not wait for each other (no clock row to queue
/// on), yet a sync read never marks past a writer still in flight — its
/// change, committed later with an earlier time, is seen by the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_run_at_once_and_no_mark_passes_one_in_flight() {
    if !crate::db::postgres() {
        // SQLite serializes its writers by design: the second would wait.
        return;
    }
    let t = TestApp::demo().await;
    let store = &t.app.state().store;
    let start = current_mark(&t).await;
    let mut first = store.begin_write().await.unwrap();
    let mut second = tokio::time::timeout(std::time::Duration::from_secs(2), store.begin_write())
        .await
        .expect("the second writer waited for the first")
        .unwrap();
    assert!(second.now() > first.now());
    insert_in(&mut second, "Second writer").await;
    second.commit().await.unwrap();
    // The second's book, later than the first's time, waits until the
    // first has ended; the mark stays before the first's time.
    let (mark, titles) = feed(&t, &start, "").await;
    assert_eq!(titles, Vec::<String>::new());
    assert!(
        mark.as_str() < first.now(),
        "the mark {mark} passed the time {} of a writer in flight",
        first.now()
    );
    insert_in(&mut first, "First writer").await;
    first.commit().await.unwrap();
    let (_, titles) = feed(&t, &mark, "").await;
    assert_eq!(titles, ["First writer", "Second writer"]);
}

/// PostgreSQL: a feed read never hands out a position past a writer
/// still in flight. Three books are committed after a slow writer took
/// its (earlier) time; a client paging two at a time and following the
/// positions it is given sees the slow writer's book too, once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_position_never_passes_a_writer_in_flight() {
    if !crate::db::postgres() {
        // SQLite's writers commit in the order of their times.
        return;
    }
    let t = TestApp::demo().await;
    let store = &t.app.state().store;
    let mut position = current_mark(&t).await;
    let mut slow = store.begin_write().await.unwrap();
    for n in 0..3 {
        let res = t
            .post("/v1/books")
            .json(json!({"title": format!("Fast {n}"), "author": "Feed"}))
            .send()
            .await;
        assert_eq!(res.status, 201);
    }
    let mut seen = Vec::new();
    // While the slow writer is open, the client follows the positions it
    // is given until a page comes back empty.
    loop {
        let (next, titles) = feed(&t, &position, "&per-page=2").await;
        assert!(next.as_str() < slow.now(), "{next} passed {}", slow.now());
        position = next;
        if titles.is_empty() {
            break;
        }
        seen.extend(titles);
    }
    insert_in(&mut slow, "Slow writer").await;
    slow.commit().await.unwrap();
    for _ in 0..10 {
        let (next, titles) = feed(&t, &position, "&per-page=2").await;
        position = next;
        if titles.is_empty() {
            break;
        }
        seen.extend(titles);
    }
    for title in ["Fast 0", "Fast 1", "Fast 2", "Slow writer"] {
        assert!(
            seen.iter().any(|s| s == title),
            "{title} was missed: {seen:?}"
        );
    }
}
