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
