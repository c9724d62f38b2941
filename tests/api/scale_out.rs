//! §14: two `restkit serve` processes over one database and one Redis act
//! as one server. Requests alternate between them over real sockets.
//! On the `api_pg` build the database is PostgreSQL (the deployment §14
//! is about); on `api`, one SQLite file shared by both processes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::db::TestDb;
use crate::helpers::{free_addr, http_request, http_request_raw, start_binary};
use crate::rate_limits::Redis;

/// Two instances, A and B, and what they share.
struct Pair {
    a: SocketAddr,
    b: SocketAddr,
    a_child: Option<tokio::process::Child>,
    _b_child: tokio::process::Child,
    _db: TestDb,
    _redis: Redis,
}

/// Both started at once over an empty database: they migrate and seed
/// without tripping over each other.
async fn pair(anonymous_limit: &str) -> Option<Pair> {
    let redis = Redis::start()?;
    let db = TestDb::new().await;
    let (a, b) = (free_addr(), free_addr());
    let redis_url = redis.url();
    let env = [
        ("RESTKIT_DATABASE__URL", db.url.as_str()),
        ("RESTKIT_RATE_LIMIT__BACKEND", "redis"),
        ("RESTKIT_RATE_LIMIT__REDIS_URL", redis_url.as_str()),
        ("RESTKIT_RATE_LIMIT__ANONYMOUS__REQUESTS", anonymous_limit),
        ("RESTKIT_RATE_LIMIT__AUTHENTICATED__REQUESTS", "0"),
        ("RESTKIT_RATE_LIMIT__TOKEN__REQUESTS", "0"),
        // One issuer for both, as behind a balancer: left to derive it,
        // each would name its own address and refuse the other's tokens.
        ("RESTKIT_AUTH__ISSUER", "http://balancer.test"),
    ];
    let null = std::process::Stdio::null;
    let (a_child, b_child) = tokio::join!(
        start_binary(db.dir.path(), a, &env, null()),
        start_binary(db.dir.path(), b, &env, null())
    );
    Some(Pair {
        a,
        b,
        a_child: Some(a_child),
        _b_child: b_child,
        _db: db,
        _redis: redis,
    })
}

const FORM: &str = "Content-Type: application/x-www-form-urlencoded\r\n";

fn client_auth() -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode("1:pass2");
    format!("Authorization: Basic {basic}\r\n{FORM}")
}

/// A request with a bearer token and a JSON body (when not empty).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    extra: &str,
    body: &str,
) -> (u16, String, Value) {
    let mut headers = format!("Authorization: Bearer {token}\r\n{extra}");
    if !body.is_empty() {
        headers.push_str("Content-Type: application/json\r\n");
    }
    let (status, head, body) = http_request_raw(addr, method, path, &headers, body)
        .await
        .unwrap_or((0, String::new(), String::new()));
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

async fn password_grant(addr: SocketAddr) -> Value {
    let (status, _, body) = http_request(
        addr,
        "POST",
        "/v1/access_token",
        &client_auth(),
        "grant_type=password&username=stan&password=pass&scope=basic%20write",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A header's value (`name` in lower case), as sent.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_revocations_and_rate_limits_hold_across_two_instances() {
    let Some(p) = pair("6").await else { return };
    // A token issued by A works on B.
    let issued = password_grant(p.a).await;
    let access = issued["access_token"].as_str().unwrap().to_string();
    let (status, _, _) = call(p.b, "GET", "/v1/books/3", &access, "", "").await;
    assert_eq!(status, 200);
    // B rotates A's refresh token; the old one is then dead on A.
    let refresh = issued["refresh_token"].as_str().unwrap();
    let body = format!("grant_type=refresh_token&refresh_token={refresh}");
    let (status, _, rotated) = http_request(p.b, "POST", "/v1/access_token", &client_auth(), &body)
        .await
        .unwrap();
    assert_eq!(status, 200, "{rotated}");
    let (status, _, _) = http_request(p.a, "POST", "/v1/access_token", &client_auth(), &body)
        .await
        .unwrap();
    assert_eq!(
        status, 400,
        "a used refresh token is refused by the other instance"
    );
    // A revocation made on A is refused on B within a second.
    let fresh = password_grant(p.a).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(call(p.b, "GET", "/v1/books/3", &fresh, "", "").await.0, 200);
    let (status, _, _) = http_request(
        p.a,
        "POST",
        "/v1/revoke",
        &client_auth(),
        &format!("token={fresh}"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let revoked = Instant::now();
    loop {
        let status = call(p.b, "GET", "/v1/books/3", &fresh, "", "").await.0;
        if status == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_millis(1500),
            "B still accepts a token revoked on A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The anonymous tier (6 a minute) is one budget across both: of 12
    // anonymous requests alternating instances, at most 6 pass (fewer:
    // the refused revoked token above spent some), and both instances
    // refuse. Apart, each would pass 6.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let addr = if i % 2 == 0 { p.a } else { p.b };
        let (status, _, _) = http_request(addr, "GET", "/v1/books/3", "", "")
            .await
            .unwrap();
        statuses.push(status);
    }
    let passed = statuses.iter().filter(|s| **s != 429).count();
    assert!((1..=6).contains(&passed), "{statuses:?}");
    assert!(statuses[10] == 429 && statuses[11] == 429, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_two_instances_lose_nothing() {
    let Some(p) = pair("0").await else { return };
    let token = Arc::new(
        password_grant(p.a).await["access_token"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let count = |addr: SocketAddr, token: Arc<String>| async move {
        let (_, head, _) = call(addr, "GET", "/v1/books?per-page=1", &token, "", "").await;
        header(&head, "x-pagination-total-count")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = count(p.a, token.clone()).await;
    // 1,000 creates, 16 at a time, alternating instances.
    let created = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let addr = if i % 2 == 0 { p.a } else { p.b };
        let (token, created, sem) = (token.clone(), created.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let body = json!({"title": format!("Scale {i}"), "author": "Two"}).to_string();
            let (status, _, _) = call(addr, "POST", "/v1/books", &token, "", &body).await;
            assert_eq!(status, 201);
            created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count(p.b, token.clone()).await, before + 1000);
    // 60 records, each patched at once through both: A sets the title, B
    // the year. Neither change is lost.
    let mut tasks = Vec::new();
    for id in 1..=60 {
        for (addr, body) in [
            (p.a, json!({"title": format!("Patched {id}")})),
            (p.b, json!({"year": 1900 + id})),
        ] {
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let path = format!("/v1/books/{id}");
                let (status, _, _) =
                    call(addr, "PATCH", &path, &token, "", &body.to_string()).await;
                assert_eq!(status, 200);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for id in 1..=60 {
        let (_, _, book) = call(p.b, "GET", &format!("/v1/books/{id}"), &token, "", "").await;
        assert_eq!(book["title"], format!("Patched {id}"));
        assert_eq!(book["year"], 1900 + id);
    }
    // If-Match races across instances: exactly one of the writers holding
    // the same version wins, the rest get 412.
    let (_, head, _) = call(p.a, "GET", "/v1/books/100", &token, "", "").await;
    let etag = header(&head, "etag").unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let addr = if i % 2 == 0 { p.a } else { p.b };
        let (token, etag) = (token.clone(), etag.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"title": format!("Winner {i}")}).to_string();
            let extra = format!("If-Match: {etag}\r\n");
            call(addr, "PATCH", "/v1/books/100", &token, &extra, &body)
                .await
                .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        9,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_client_and_cursors_see_one_server() {
    let Some(p) = pair("0").await else { return };
    let token = password_grant(p.a).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Cursors issued by A are accepted by B; a tampered one by neither.
    let (_, head, _) = call(p.a, "GET", "/v1/books?per-page=5&cursor=", &token, "", "").await;
    let link = header(&head, "link").unwrap_or_default().to_string();
    let next = link
        .split(',')
        .find(|l| l.contains("rel=\"next\""))
        .and_then(|l| l.split(['<', '>']).nth(1))
        .expect("a next link")
        .to_string();
    let path = next.trim_start_matches(|c| c != '/').to_string();
    let path = path
        .find("/v1/")
        .map(|i| path[i..].to_string())
        .unwrap_or(path);
    let (status, _, page) = call(p.b, "GET", &path, &token, "", "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page[0]["id"], 6);
    let cursor = path
        .split("cursor=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    // A character in the middle (the last may be padding a decoder
    // rejects before the signature is ever checked).
    let mut tampered = cursor.to_string().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for addr in [p.a, p.b] {
        let (status, _, _) = call(
            addr,
            "GET",
            &format!("/v1/books?per-page=5&cursor={tampered}"),
            &token,
            "",
            "",
        )
        .await;
        assert_eq!(status, 400);
    }
    // A sync client alternating instances while both take writes sees
    // every change and every deletion.
    let future = (chrono::Utc::now() + chrono::Duration::days(1)).timestamp();
    let (_, head, _) = call(
        p.a,
        "GET",
        &format!("/v1/books?timestamp={future}"),
        &token,
        "",
        "",
    )
    .await;
    let mut mark = header(&head, "x-sync-timestamp").unwrap().to_string();
    let writers: Vec<_> = [(p.a, 200), (p.b, 300)]
        .into_iter()
        .map(|(addr, base)| {
            let token = token.clone();
            tokio::spawn(async move {
                for k in 0..30i64 {
                    let id = base + k;
                    let (status, _, _) = if k % 3 == 0 {
                        call(addr, "DELETE", &format!("/v1/books/{id}"), &token, "", "").await
                    } else {
                        let body = json!({"title": format!("Synced {id}")}).to_string();
                        call(addr, "PATCH", &format!("/v1/books/{id}"), &token, "", &body).await
                    };
                    assert!(status == 200 || status == 204, "{status}");
                }
            })
        })
        .collect();
    let (mut changed, mut deleted) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    let mut reads = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        // Until a read after the writers finished comes back empty.
        loop {
            let addr = if reads % 2 == 0 { p.a } else { p.b };
            reads += 1;
            let enc: String = form_urlencoded::byte_serialize(mark.as_bytes()).collect();
            let (status, head, body) = call(
                addr,
                "GET",
                &format!("/v1/books?timestamp={enc}&envelope=true&per-page=100"),
                &token,
                "",
                "",
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let records = body["records"].as_array().unwrap();
            let gone = body["_meta"]["deleted"].as_array().unwrap();
            changed.extend(records.iter().map(|r| r["id"].as_i64().unwrap()));
            deleted.extend(gone.iter().map(|d| d.as_i64().unwrap()));
            mark = header(&head, "x-sync-timestamp").unwrap().to_string();
            if records.len() < 100 {
                break;
            }
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    for base in [200, 300] {
        for k in 0..30i64 {
            let id = base + k;
            if k % 3 == 0 {
                assert!(deleted.contains(&id), "the deletion of {id} was missed");
            } else {
                assert!(changed.contains(&id), "the change of {id} was missed");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_instance_mid_burst_loses_no_answered_write() {
    let Some(mut p) = pair("0").await else { return };
    let token = Arc::new(
        password_grant(p.b).await["access_token"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let answered = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (writer, answered) = (token.clone(), answered.clone());
        let a = p.a;
        tasks.push(tokio::spawn(async move {
            let body = json!({"title": format!("Burst {i}"), "author": "Kill"}).to_string();
            let (status, _, rec) = call(a, "POST", "/v1/books", &writer, "", &body).await;
            if status == 201 {
                answered.lock().unwrap().push(rec["id"].as_i64().unwrap());
            }
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        if i == 60 {
            let child = p.a_child.take().unwrap();
            let pid = child.id().unwrap();
            std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            drop(child);
        }
        // B keeps serving throughout.
        if i % 40 == 0 {
            let (status, _, _) = call(p.b, "GET", "/v1/books/3", &token, "", "").await;
            assert_eq!(status, 200);
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        !answered.is_empty(),
        "some writes were answered before the kill"
    );
    for id in answered {
        let (status, _, _) = call(p.b, "GET", &format!("/v1/books/{id}"), &token, "", "").await;
        assert_eq!(status, 200, "book {id} was answered 201 and is gone");
    }
}
