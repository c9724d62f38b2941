//! §16 live changes: Server-Sent Events on collections and records,
//! in-process through the whole pipeline, and over a socket for shutdown.

use std::time::Duration;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use restkit::registry::Registry;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp, TestResponse};

/// A model of the user's own, not the demo: private notes, synced, with
/// creation and change times.
const NOTES: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "notes"
sync = true
bulk = true
owner = { field = "userId", policy = "private" }
[module.resource.fields]
id        = { type = "integer", primary_key = true }
text      = { type = "string" }
userId    = { type = "integer", read_only = true }
createdAt = { type = "datetime", read_only = true, created_at = true }
updatedAt = { type = "datetime", read_only = true, updated_at = true }
[[module.resource]]
name = "tags"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string" }
"#;

/// Fast heartbeats, so token ends and idle checks show within a test.
const QUICK: &str = "[live]\nheartbeat = \"200ms\"\npoll_interval = \"100ms\"\n";

#[derive(Debug, Clone, PartialEq)]
struct Event {
    kind: String,
    id: String,
    data: Value,
}

/// An open feed: its body read frame by frame.
struct Feed {
    body: Body,
    buf: String,
    /// The last `id:` seen (what `EventSource` would resume from).
    last_id: Option<String>,
}

impl Feed {
    /// The next event (comments and id-only frames are taken in passing),
    /// or `None` when none comes within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut kind, mut id, mut data) = (None, None, String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        kind = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if let Some(id) = &id {
                    self.last_id = Some(id.clone());
                }
                if let Some(kind) = kind {
                    return Some(Event {
                        kind,
                        id: id.unwrap_or_default(),
                        data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    });
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await;
            match frame {
                Ok(Some(Ok(f))) => {
                    if let Ok(bytes) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                Ok(_) => return None, // the stream ended
                Err(_) => return None,
            }
        }
    }

    async fn next(&mut self) -> Event {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("an event within 5 s")
    }

    /// Whether the stream has ended (within `wait`).
    async fn ended(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Ok(None) => return true,
                Ok(Some(Ok(f))) => {
                    if let Ok(bytes) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                Ok(Some(Err(_))) => return true,
                Err(_) => return false,
            }
        }
    }

    /// The next event, within `wait`, is `kind` saying `reason`, and the
    /// stream ends after it.
    async fn ends_with(&mut self, kind: &str, reason: &str, wait: Duration) {
        let last = self
            .next_within(wait)
            .await
            .unwrap_or_else(|| panic!("no {kind} event within {wait:?}"));
        assert_eq!(
            (last.kind.as_str(), &last.data["reason"]),
            (kind, &json!(reason))
        );
        assert!(self.ended(Duration::from_secs(2)).await);
    }
}

/// Opens `path` as a feed for `user` (1 stan, 2 ana), resuming after
/// `last_id` when given: the 200 feed, or the error response.
async fn open(
    t: &TestApp,
    path: &str,
    user: i64,
    last_id: Option<&str>,
) -> Result<Feed, TestResponse> {
    let mut req = Request::get(path)
        .header("accept", "text/event-stream")
        .header(
            "authorization",
            format!("Bearer {}", t.token_for(user, &["basic", "write"])),
        );
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    answer(t, req.body(Body::empty()).unwrap()).await
}

/// Sends a feed request: the 200 feed, or the error response.
async fn answer(t: &TestApp, req: Request<Body>) -> Result<Feed, TestResponse> {
    let res = t.app.call(req).await;
    if res.status() != 200 {
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        return Err(TestResponse {
            status,
            headers,
            body,
        });
    }
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert!(res.headers().get("content-encoding").is_none());
    Ok(Feed {
        body: res.into_body(),
        buf: String::new(),
        last_id: None,
    })
}

/// Another instance of the notes API over `t`'s database.
async fn second_instance(t: &TestApp) -> TestApp {
    let text = format!("{NOTES}\n{QUICK}");
    let other = restkit::open(
        restkit::model::toml::parse(&text).unwrap(),
        crate::helpers::settings(&text, &t.url),
        &Registry::builtin(),
    )
    .await
    .unwrap();
    TestApp::from_app(other)
}

async fn post_note(t: &TestApp, user: i64, text: &str) -> i64 {
    let res = t
        .post("/api/notes")
        .by_user(user)
        .json(json!({ "text": text }))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    res.json()["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_collection_feed_tells_created_updated_deleted_in_order_and_resumes_exactly() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let before = post_note(&t, 1, "before").await;
    // From now: what happened before is not replayed.
    let mut feed = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    let a = post_note(&t, 1, "a").await;
    let e1 = feed.next().await;
    assert_eq!((e1.kind.as_str(), &e1.data["id"]), ("created", &json!(a)));
    assert_eq!(e1.data["text"], "a");
    let res = t
        .patch(&format!("/api/notes/{a}"))
        .by_user(1)
        .json(json!({"text": "a2"}))
        .send()
        .await;
    assert_eq!(res.status, 200);
    let e2 = feed.next().await;
    assert_eq!(
        (e2.kind.as_str(), &e2.data["text"]),
        ("updated", &json!("a2"))
    );
    assert_eq!(
        t.delete(&format!("/api/notes/{before}"))
            .by_user(1)
            .send()
            .await
            .status,
        204
    );
    let e3 = feed.next().await;
    assert_eq!(e3.kind, "deleted");
    assert_eq!(e3.data, json!({ "id": before }));
    assert!(e1.id < e2.id && e2.id < e3.id, "{e1:?} {e2:?} {e3:?}");
    drop(feed);

    // Away: three more changes. Resuming after e2 gives e3 and those,
    // each once, in order.
    let b = post_note(&t, 1, "b").await;
    let c = post_note(&t, 1, "c").await;
    t.delete(&format!("/api/notes/{b}")).by_user(1).send().await;
    let mut again = open(&t, "/api/notes", 1, Some(&e2.id)).await.ok().unwrap();
    let mut got = Vec::new();
    while let Some(e) = again.next_within(Duration::from_millis(700)).await {
        got.push((e.kind, e.data["id"].as_i64().unwrap()));
    }
    // b was created and then deleted while away: its current state is
    // gone, so only the deletion is news (the sync feed's rule).
    assert_eq!(
        got,
        vec![
            ("deleted".to_string(), before),
            ("created".to_string(), c),
            ("deleted".to_string(), b),
        ]
    );
    // Live again after the replay, with no seam.
    let d = post_note(&t, 1, "d").await;
    let e = again.next().await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("created", Some(d))
    );
}

#[tokio::test]
async fn a_feed_shows_only_what_the_callers_list_shows() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let mut stan = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    let mut filtered = open(&t, "/api/notes?q=(text:keep*)&fields=id,text", 1, None)
        .await
        .ok()
        .unwrap();
    let anas = post_note(&t, 2, "ana's private").await;
    t.delete(&format!("/api/notes/{anas}"))
        .by_user(2)
        .send()
        .await;
    let mine = post_note(&t, 1, "keep this").await;
    post_note(&t, 1, "drop this").await;
    // Ana's note and its deletion never reach stan, not even the ids.
    let e = stan.next().await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("created", Some(mine))
    );
    let e = filtered.next().await;
    assert_eq!(e.data, json!({"id": mine, "text": "keep this"}));
    assert!(filtered
        .next_within(Duration::from_millis(500))
        .await
        .is_none());
    let e = stan.next().await;
    assert_eq!(e.data["text"], "drop this");
    assert!(stan.next_within(Duration::from_millis(500)).await.is_none());
}

#[tokio::test]
async fn a_record_feed_follows_that_record_only() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let a = post_note(&t, 1, "a").await;
    let b = post_note(&t, 1, "b").await;
    let mut feed = open(&t, &format!("/api/notes/{a}"), 1, None)
        .await
        .ok()
        .unwrap();
    for (id, text) in [(b, "b2"), (a, "a2")] {
        let r = t
            .patch(&format!("/api/notes/{id}"))
            .by_user(1)
            .json(json!({ "text": text }))
            .send()
            .await;
        assert_eq!(r.status, 200);
    }
    let e = feed.next().await;
    assert_eq!(
        (e.kind.as_str(), &e.data["text"]),
        ("updated", &json!("a2")),
        "{e:?}"
    );
    t.delete(&format!("/api/notes/{b}")).by_user(1).send().await;
    t.delete(&format!("/api/notes/{a}")).by_user(1).send().await;
    let e = feed.next().await;
    assert_eq!((e.kind.as_str(), &e.data), ("deleted", &json!({ "id": a })));
    assert!(feed.next_within(Duration::from_millis(500)).await.is_none());
    // Someone else's record, or none: 404 as a GET would answer.
    let mine = post_note(&t, 1, "mine").await;
    let refused = open(&t, &format!("/api/notes/{mine}"), 2, None).await;
    assert_problem(&refused.err().unwrap(), 404, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn what_a_feed_refuses_is_an_ordinary_error() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let r = open(&t, "/api/notes?sort=-id", 1, None)
        .await
        .err()
        .unwrap();
    assert_problem(&r, 400, "INVALID_QUERY");
    let r = open(&t, "/api/notes?filter[nope][eq]=1", 1, None)
        .await
        .err()
        .unwrap();
    assert_eq!(r.status, 400);
    let r = open(&t, "/api/notes", 1, Some("yesterday"))
        .await
        .err()
        .unwrap();
    assert_eq!(r.status, 400);
    // Not a sync resource: nothing to follow.
    let r = open(&t, "/api/tags", 1, None).await.err().unwrap();
    assert_problem(&r, 406, "NOT_ACCEPTABLE");
    // `type=events` and `.events` ask for the same thing without a header.
    for path in ["/api/notes?type=events", "/api/notes.events"] {
        let req = Request::get(path)
            .header(
                "authorization",
                format!("Bearer {}", t.token_for(1, &["basic"])),
            )
            .body(Body::empty())
            .unwrap();
        let res = t.app.call(req).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
    }
    // No credentials on a private resource: 401, before any stream.
    let req = Request::get("/api/notes")
        .header("accept", "text/event-stream")
        .body(Body::empty())
        .unwrap();
    assert_eq!(t.app.call(req).await.status(), 401);
}

#[tokio::test]
async fn streams_are_capped_per_caller_and_per_instance() {
    let t = TestApp::with(
        NOTES,
        "[live]\nmax_streams = 3\nmax_streams_per_caller = 2\n",
        Registry::builtin(),
    )
    .await;
    let a = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    let _b = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    let over = open(&t, "/api/notes", 1, None).await.err().unwrap();
    assert_problem(&over, 429, "TOO_MANY_STREAMS");
    let _c = open(&t, "/api/notes", 2, None).await.ok().unwrap();
    let full = open(&t, "/api/notes", 2, None).await.err().unwrap();
    assert_problem(&full, 503, "TOO_MANY_STREAMS");
    // A closed stream gives its place back.
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(open(&t, "/api/notes", 1, None).await.is_ok());
}

#[tokio::test]
async fn a_revoked_token_ends_its_stream_saying_why() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let token = t.token_for(1, &["basic", "write"]);
    let mut feed = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    // Revoked as the revocation endpoint does (§8.3).
    let tokens = &t.app.state().tokens;
    let claims = tokens
        .verify(&token, &t.app.state().store)
        .await
        .unwrap()
        .claims
        .clone();
    tokens
        .revoke_jti(
            &t.app.state().store,
            claims["jti"].as_str().unwrap(),
            claims["exp"].as_i64().unwrap(),
        )
        .await
        .unwrap();
    feed.ends_with("end", "unauthorized", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn shutdown_ends_every_stream_with_an_end_event() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let mut feed = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    t.app.state().live.close_all();
    feed.ends_with("end", "shutdown", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn a_change_committed_elsewhere_reaches_the_feed_by_polling() {
    // Another process on the same database (here: a second app over the
    // same file or PostgreSQL database) writes; this app's feed hears of
    // it through the horizon poll, within the poll interval.
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let other = second_instance(&t).await;
    let mut feed = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    let started = std::time::Instant::now();
    let id = post_note(&other, 1, "from elsewhere").await;
    let e = feed.next().await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("created", Some(id))
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn many_changes_at_one_time_come_in_reads_of_a_batch_each_once() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let mut ids = Vec::new();
    for i in 0..230 {
        ids.push(post_note(&t, 1, &format!("n{i}")).await);
    }
    post_note(&t, 2, "ana's stays").await;
    let mut feed = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    // One request deletes all 230 of stan's: one change time, 230
    // tombstones, more than one read's batch.
    let res = t.delete("/api/notes?all=true").by_user(1).send().await;
    assert_eq!(res.json(), json!({"deleted": 230}));
    let mut got = Vec::new();
    let mut at_60 = None;
    for n in 0..230 {
        let e = feed.next().await;
        assert_eq!(e.kind, "deleted");
        got.push(e.data["id"].as_i64().unwrap());
        if n == 59 {
            at_60 = Some(e.id.clone());
        }
    }
    assert_eq!(got, ids, "every deletion once, in key order");
    assert!(feed.next_within(Duration::from_millis(400)).await.is_none());
    // Resuming in the middle of one change time's deletions: the rest.
    let mut again = open(&t, "/api/notes", 1, at_60.as_deref())
        .await
        .ok()
        .unwrap();
    let mut rest = Vec::new();
    while let Some(e) = again.next_within(Duration::from_millis(700)).await {
        rest.push(e.data["id"].as_i64().unwrap());
    }
    assert_eq!(rest, ids[60..].to_vec());
}

#[tokio::test]
async fn the_document_describes_the_feed_where_there_is_one() {
    let t = TestApp::with(NOTES, "", Registry::builtin()).await;
    let doc = t.get("/openapi.json").send().await.json();
    for path in ["/api/notes", "/api/notes/{id}"] {
        let ok = &doc["paths"][path]["get"]["responses"]["200"]["content"];
        assert_eq!(
            ok["text/event-stream"]["x-event"]["$ref"], "#/components/schemas/ApiNotesEvent",
            "{path}"
        );
        assert!(ok["text/event-stream"]["schema"]["description"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID"));
    }
    let event = &doc["components"]["schemas"]["ApiNotesEvent"];
    assert_eq!(
        event["properties"]["event"]["enum"],
        json!(["created", "updated", "deleted", "end", "resync"])
    );
    // Not a sync resource: no feed, none described.
    let tags = &doc["paths"]["/api/tags"]["get"]["responses"]["200"]["content"];
    assert!(tags.get("text/event-stream").is_none());
    let docs = String::from_utf8(t.get("/docs").send().await.body).unwrap();
    assert!(docs.contains("Follow live (Server-Sent Events)"));
    assert!(
        docs.contains("curl -N -H &#39;Accept: text/event-stream&#39;")
            || docs.contains("curl -N -H 'Accept: text/event-stream'")
    );
    // Turned off: none anywhere.
    let off = TestApp::with(NOTES, "[live]\nenabled = false\n", Registry::builtin()).await;
    let doc = off.get("/openapi.json").send().await.json();
    assert!(!doc.to_string().contains("text/event-stream"));
}

#[tokio::test]
async fn followers_of_one_feed_share_a_reader_and_each_gets_its_own_rest() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let live = t.app.state().live.clone();
    let mut a = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    let mut b = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    assert_eq!(live.readers(), 1, "one reader for one feed and caller");
    let ids = [
        post_note(&t, 1, "one").await,
        post_note(&t, 1, "two").await,
        post_note(&t, 1, "three").await,
    ];
    let mut first_id = None;
    for feed in [&mut a, &mut b] {
        for id in ids {
            let e = feed.next().await;
            assert_eq!(e.data["id"].as_i64(), Some(id));
            first_id.get_or_insert(e.id);
        }
    }
    // A late follower resuming after the first event: the other two from
    // its own read, then the group's, no seam.
    let mut c = open(&t, "/api/notes", 1, first_id.as_deref())
        .await
        .ok()
        .unwrap();
    for id in &ids[1..] {
        assert_eq!(c.next().await.data["id"].as_i64(), Some(*id));
    }
    assert_eq!(live.readers(), 1);
    let four = post_note(&t, 1, "four").await;
    for feed in [&mut a, &mut b, &mut c] {
        assert_eq!(feed.next().await.data["id"].as_i64(), Some(four));
        assert!(feed.next_within(Duration::from_millis(300)).await.is_none());
    }
    // Another caller sees other things: a reader of its own.
    let _ana = open(&t, "/api/notes", 2, None).await.ok().unwrap();
    assert_eq!(live.readers(), 2);
    // The last follower gone, its reader stops.
    drop((a, b, c));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(live.readers(), 1);
}

#[tokio::test]
async fn a_follower_that_falls_behind_its_group_reads_what_it_missed_once() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    // `slow` is not read while 100 changes happen — more batches than the
    // group keeps for it; `quick` keeps up.
    let mut slow = open(&t, "/api/notes?fields=id", 1, None)
        .await
        .ok()
        .unwrap();
    let mut quick = open(&t, "/api/notes?fields=id", 1, None)
        .await
        .ok()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(post_note(&t, 1, &format!("n{i}")).await);
        let e = quick.next().await;
        assert_eq!(e.data["id"].as_i64(), Some(ids[i]));
    }
    let mut got = Vec::new();
    while let Some(e) = slow.next_within(Duration::from_millis(700)).await {
        assert_eq!(e.kind, "created");
        got.push(e.data["id"].as_i64().unwrap());
    }
    assert_eq!(got, ids, "every change once, in order, from the database");
}

/// Public notes for the browser: no sign-in needed to follow them.
const PUBLIC_NOTES: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "notes"
sync = true
scopes = { read = "", write = "" }
[module.resource.fields]
id        = { type = "integer", primary_key = true }
text      = { type = "string" }
createdAt = { type = "datetime", read_only = true, created_at = true }
updatedAt = { type = "datetime", read_only = true, updated_at = true }
"#;

/// Chromium follows a collection from its browsable page; the server is
/// stopped, changes are made through a second instance meanwhile, the
/// server comes back, and the browser's own reconnect (EventSource, with
/// Last-Event-ID) gets exactly those (`tests/clients/browser_live.py`).
/// Screenshots land in `target/screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_follows_live_and_resumes_after_a_restart() {
    let Some(chromium) = crate::browser::browser() else {
        return;
    };
    if !crate::helpers::require_python("playwright") {
        return;
    }
    let db = crate::db::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("live.toml");
    std::fs::write(
        &config,
        format!(
            "{PUBLIC_NOTES}\n[database]\nurl = \"{}\"\n[live]\nheartbeat = \"1s\"\n\
             [server]\nshutdown_timeout = \"2s\"\n[auth]\nprivate_key = '''{}'''\n",
            db.url,
            crate::helpers::TEST_KEY
        ),
    )
    .unwrap();
    let (a, b) = (crate::helpers::free_addr(), crate::helpers::free_addr());
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    std::fs::create_dir_all(shots).unwrap();
    crate::helpers::run_client_script(
        "browser_live.py",
        &[
            env!("CARGO_BIN_EXE_restkit"),
            config.to_str().unwrap(),
            &a.to_string(),
            &b.to_string(),
            shots,
            chromium,
        ],
        180,
    )
    .await;
}

/// An ordinary SSE client (httpx-sse) on two instances over one database
/// (`tests/clients/sse_client.py`): owner rules per event, a write through
/// one instance reaching a follower on the other within a second, and a
/// resume with Last-Event-ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_sees_only_its_own_changes_across_two_instances() {
    if !crate::helpers::require_python("httpx_sse") {
        return;
    }
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let other = second_instance(&t).await;
    let (a, _stop_a) = t.listen().await;
    let (b, _stop_b) = other.listen().await;
    crate::helpers::run_client_script(
        "sse_client.py",
        &[
            &format!("http://{a}"),
            &format!("http://{b}"),
            &t.token_for(1, &["basic", "write"]),
            &t.token_for(2, &["basic", "write"]),
        ],
        90,
    )
    .await;
}

/// PostgreSQL stops and starts again under an open feed: the feed stays
/// open (its reads wait, their position kept) and delivers what is
/// written once the database is back — nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_outlives_a_postgres_restart_and_loses_nothing() {
    if !crate::db::postgres() {
        return;
    }
    let (cluster, t) =
        crate::faults::on_private_cluster(Duration::from_secs(1), Duration::from_secs(2)).await;
    let mut feed = open(&t, "/v1/books?fields=id,title", 1, None)
        .await
        .ok()
        .unwrap();
    let post = |title: &'static str| {
        let t = &t;
        async move {
            let res = t
                .post("/v1/books")
                .json(json!({"title": title, "author": "PG"}))
                .send()
                .await;
            (res.status.as_u16(), res.json()["id"].as_i64())
        }
    };
    let (_, before) = post("before").await;
    assert_eq!(feed.next().await.data["id"].as_i64(), before);
    cluster.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(post("while down").await.0, 503);
    cluster.start();
    let back = std::time::Instant::now();
    let after = loop {
        match post("after").await {
            (201, id) => break id,
            _ => {
                assert!(back.elapsed() < Duration::from_secs(15), "did not recover");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let e = feed.next().await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("created", after),
        "{e:?}"
    );
    assert!(feed.next_within(Duration::from_millis(700)).await.is_none());
}

#[tokio::test]
async fn an_expired_token_ends_its_stream_saying_why() {
    let t = TestApp::with(
        NOTES,
        &format!("{QUICK}[auth]\naccess_token_ttl = \"1s\"\n"),
        Registry::builtin(),
    )
    .await;
    let mut feed = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    // Past its lifetime and the verifier's leeway (5 s), at the next
    // heartbeat.
    feed.ends_with("end", "unauthorized", Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn a_follower_from_the_future_or_the_past_leaves_its_group_reading_the_present() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let old = post_note(&t, 1, "old").await;
    // The first follower of the feed gives a position far in the future,
    // the second one from the start of time.
    let mut future = open(&t, "/api/notes", 1, Some("2100-01-01T00:00:00Z"))
        .await
        .ok()
        .unwrap();
    let mut past = open(&t, "/api/notes", 1, Some("0")).await.ok().unwrap();
    let mut now = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    assert_eq!(past.next().await.data["id"].as_i64(), Some(old));
    // Every follower waiting on its group before the next change.
    for feed in [&mut future, &mut past, &mut now] {
        assert!(feed.next_within(Duration::from_millis(300)).await.is_none());
    }
    let new = post_note(&t, 1, "new").await;
    for feed in [&mut past, &mut now] {
        assert_eq!(feed.next().await.data["id"].as_i64(), Some(new));
    }
    // Nothing is later than where the first one said it stands.
    assert!(future
        .next_within(Duration::from_millis(500))
        .await
        .is_none());
    assert_eq!(t.app.state().live.readers(), 1);
}

#[tokio::test]
async fn a_record_deleted_while_its_follower_was_away_is_told_on_resume() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let a = post_note(&t, 1, "a").await;
    let path = format!("/api/notes/{a}");
    let mut feed = open(&t, &path, 1, None).await.ok().unwrap();
    t.patch(&path)
        .by_user(1)
        .json(json!({"text": "a2"}))
        .send()
        .await;
    let seen = feed.next().await;
    drop(feed);
    t.delete(&path).by_user(1).send().await;
    let mut again = open(&t, &path, 1, Some(&seen.id)).await.ok().unwrap();
    let e = again.next().await;
    assert_eq!((e.kind.as_str(), &e.data), ("deleted", &json!({ "id": a })));
    // Without a position, a record that is gone is a 404, as its GET.
    assert_problem(
        &open(&t, &path, 1, None).await.err().unwrap(),
        404,
        "RESOURCE_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_follower_ahead_of_its_group_never_gets_created_twice() {
    let t = TestApp::with(NOTES, QUICK, Registry::builtin()).await;
    let mut first = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    assert!(first
        .next_within(Duration::from_millis(300))
        .await
        .is_none());
    // Made while the group has not read yet; the second follower reads it
    // for itself (as created), joins a group standing before it, and the
    // group's next batch tells of X's update.
    let x = post_note(&t, 1, "x").await;
    let mut second = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    let e = first.next().await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("created", Some(x))
    );
    t.patch(&format!("/api/notes/{x}"))
        .by_user(1)
        .json(json!({"text": "x2"}))
        .send()
        .await;
    let e = second.next().await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("updated", Some(x)),
        "{e:?}"
    );
    let e = first.next().await;
    assert_eq!(e.kind, "updated");
}

/// Deletions are remembered for `database.keep_deletions`: older
/// tombstones are pruned, and a sync read or feed from a position before
/// what is kept is told to read again (410; a feed: a `resync` event),
/// while nothing is refused before anything was pruned, and positions
/// after the pruning go on as before.
#[tokio::test]
async fn a_position_from_before_the_deletions_kept_is_told_to_resync() {
    let keep = "[database]\nkeep_deletions = \"1s\"\n";
    let t = TestApp::with(NOTES, &format!("{QUICK}{keep}"), Registry::builtin()).await;
    let enc = |p: &str| -> String { form_urlencoded::byte_serialize(p.as_bytes()).collect() };
    // Ana's notes stay quiet from here on: her last change comes before
    // every deletion that will be pruned.
    post_note(&t, 2, "quiet").await;
    let a = post_note(&t, 1, "a").await;
    let b = post_note(&t, 1, "b").await;
    let mark = |res: &TestResponse| res.header("x-sync-timestamp").to_string();
    let before = mark(&t.get("/api/notes").by_user(1).send().await);
    for id in [a, b] {
        let res = t
            .delete(&format!("/api/notes/{id}"))
            .by_user(1)
            .send()
            .await;
        assert_eq!(res.status, 204);
    }
    // Older than `keep_deletions`, but not yet pruned: still told, even
    // from the epoch.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let res = t
        .get("/api/notes?timestamp=0&envelope=true")
        .by_user(1)
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["_meta"]["deleted"], json!([a, b]));
    let c = post_note(&t, 1, "c").await;
    let state = t.app.state();
    let tables = state.model.sync_tables();
    let pruned = state
        .store
        .prune_deletions(&tables, chrono::Utc::now(), 1)
        .await
        .unwrap();
    assert_eq!(
        pruned, 2,
        "one transaction per batch of one, until none is left"
    );
    // From before the pruned deletions: 410, saying what to do.
    for from in [before.as_str(), "0"] {
        let res = t
            .get(&format!("/api/notes?timestamp={}", enc(from)))
            .by_user(1)
            .send()
            .await;
        let p = assert_problem(&res, 410, "SYNC_TOO_OLD");
        assert!(
            p["detail"].as_str().unwrap().contains("without timestamp"),
            "{p}"
        );
    }
    // A feed resuming from there: a `resync` event, and the stream ends.
    let mut feed = open(&t, "/api/notes", 1, Some(&before)).await.ok().unwrap();
    feed.ends_with("resync", "resync", Duration::from_secs(5))
        .await;
    // Ana's position from a fresh read of her quiet notes is not before
    // the pruning (or she would be told to read again for ever).
    let hers = mark(&t.get("/api/notes").by_user(2).send().await);
    let res = t
        .get(&format!("/api/notes?timestamp={}", enc(&hers)))
        .by_user(2)
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let mut quiet = open(&t, "/api/notes", 2, Some(&hers)).await.ok().unwrap();
    assert!(quiet
        .next_within(Duration::from_millis(600))
        .await
        .is_none());
    // Read again from scratch: its position, and later ones, work.
    let fresh = t.get("/api/notes").by_user(1).send().await;
    assert_eq!(fresh.status, 200);
    let now = mark(&fresh);
    let res = t
        .get(&format!("/api/notes?timestamp={}", enc(&now)))
        .by_user(1)
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let mut feed = open(&t, "/api/notes", 1, Some(&now)).await.ok().unwrap();
    let res = t.delete(&format!("/api/notes/{c}")).by_user(1).send().await;
    assert_eq!(res.status, 204);
    let e = feed.next().await;
    assert_eq!((e.kind.as_str(), &e.data), ("deleted", &json!({ "id": c })));
}

/// `live.batch_interval`: a lone change after a quiet spell goes out at
/// once; changes committed closer together than the interval reach each
/// follower in one write.
#[tokio::test]
async fn changes_close_together_reach_a_follower_in_one_write() {
    let settings = format!("{QUICK}batch_interval = \"2s\"\n");
    let t = TestApp::with(NOTES, &settings, Registry::builtin()).await;
    let mut feed = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    // The next write the connection gets, skipping heartbeats and ids.
    async fn write(feed: &mut Feed) -> String {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), feed.body.frame())
                .await
                .expect("a write within 5 s")
                .expect("the stream goes on")
                .unwrap();
            let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
            if text.contains("event:") {
                return text;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let sent = std::time::Instant::now();
    let a = post_note(&t, 1, "a").await;
    let first = write(&mut feed).await;
    assert!(
        sent.elapsed() < Duration::from_millis(1500),
        "a lone change waited {:?}",
        sent.elapsed()
    );
    assert!(first.contains(&format!("\"id\":{a}")), "{first}");
    let b = post_note(&t, 1, "b").await;
    let c = post_note(&t, 1, "c").await;
    let both = write(&mut feed).await;
    assert_eq!(both.matches("event: created").count(), 2, "{both}");
    assert!(
        both.find(&format!("\"id\":{b}")) < both.find(&format!("\"id\":{c}")),
        "{both}"
    );
}

/// A feed opened with an API key ends when the key no longer holds
/// (checked at each heartbeat): here, when it expires.
#[tokio::test]
async fn an_api_key_that_expires_ends_its_stream_saying_why() {
    let model = NOTES.replace(
        "prefix = \"/api\"",
        "prefix = \"/api\"\ncredentials = [\"api_key\"]",
    );
    let t = TestApp::with(&model, QUICK, Registry::builtin()).await;
    let store = &t.app.state().store;
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    // Keys live in whole seconds: this one for about two.
    let key = restkit::auth::api_keys::issue(store, 1, "stan", ip, 2)
        .await
        .unwrap();
    let req = Request::get("/api/notes")
        .header("accept", "text/event-stream")
        .header("x-api-key", &key)
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::new(
            ip, 40000,
        )))
        .body(Body::empty())
        .unwrap();
    let mut feed = answer(&t, req).await.ok().unwrap();
    // Still live while the key holds.
    let res = t
        .post("/api/notes")
        .anonymous()
        .sent_from("127.0.0.1")
        .header("x-api-key", &key)
        .json(json!({ "text": "a" }))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let a = res.json()["id"].as_i64().unwrap();
    let e = feed.next().await;
    assert_eq!((e.kind.as_str(), &e.data["id"]), ("created", &json!(a)));
    feed.ends_with("end", "unauthorized", Duration::from_secs(6))
        .await;
}

/// A client that takes nothing is cut off after `server.write_timeout`,
/// over a real socket, with nothing buffered for it meanwhile: its
/// stream's place is given back (here the caller's one allowed feed opens
/// again), and it would resume from the last id it got.
#[tokio::test]
async fn a_client_that_reads_nothing_is_cut_off_and_its_place_freed() {
    use tokio::io::AsyncWriteExt;
    let settings = format!("{QUICK}max_streams_per_caller = 1\n[server]\nwrite_timeout = \"1s\"\n");
    let t = TestApp::with(NOTES, &settings, Registry::builtin()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(t.app.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    let token = t.token_for(1, &["basic", "write"]);
    let head = format!(
        "GET /api/notes HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    // The answer's head, then nothing more is read.
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::io::AsyncReadExt::read(&mut stalled, &mut byte)
            .await
            .unwrap();
        assert!(n == 1, "closed early: {}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // Open: the caller's only place is taken.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match open(&t, "/api/notes", 1, None).await {
            Err(res) if res.status == 429 => break,
            Err(res) => panic!("{}", res.status),
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the stalled feed never opened"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Far more than the socket's buffers hold, for a client that reads
    // nothing.
    let big = "x".repeat(60_000);
    for _ in 0..120 {
        post_note(&t, 1, &big).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match open(&t, "/api/notes", 1, None).await {
            Ok(_) => break,
            Err(res) if res.status == 429 => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the stalled client still holds its place"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(res) => panic!("{}", res.status),
        }
    }
    drop(stalled);
}

/// Redis (the instances' shared rate limiter) goes away and comes back
/// under an open feed: feeds wake on the database's horizon, not on
/// Redis, so nothing is lost or told twice, and resuming afterwards gives
/// exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_goes_on_while_redis_is_away_and_when_it_is_back() {
    let Some(mut redis) = crate::rate_limits::Redis::start() else {
        return;
    };
    let settings = format!(
        "{QUICK}[rate_limit]\nbackend = \"redis\"\nredis_url = \"{}\"\n\
         redis_timeout = \"200ms\"\non_backend_error = \"allow\"\n",
        redis.url()
    );
    let t = TestApp::with(NOTES, &settings, Registry::builtin()).await;
    let mut feed = open(&t, "/api/notes", 1, None).await.ok().unwrap();
    let mut told = Vec::new();
    let a = post_note(&t, 1, "a").await;
    told.push(feed.next().await);
    redis.stop();
    let b = post_note(&t, 1, "b").await;
    told.push(feed.next().await);
    assert!(redis.resume(), "redis restarts");
    let c = post_note(&t, 1, "c").await;
    told.push(feed.next().await);
    let ids: Vec<(String, i64)> = told
        .iter()
        .map(|e| (e.kind.clone(), e.data["id"].as_i64().unwrap()))
        .collect();
    let created = |id| ("created".to_string(), id);
    assert_eq!(ids, vec![created(a), created(b), created(c)]);
    assert!(feed.next_within(Duration::from_millis(500)).await.is_none());
    // Resuming after b: c, once.
    let mut again = open(&t, "/api/notes", 1, Some(&told[1].id))
        .await
        .ok()
        .unwrap();
    let e = again.next().await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("created", Some(c))
    );
    assert!(again
        .next_within(Duration::from_millis(500))
        .await
        .is_none());
}
