//! Faults injected for real (§1, §7, §13), each bounded in time and
//! talking only to 127.0.0.1: a database locked by another process or
//! overwritten, a SIGTERM in the middle of a write load, a client that goes
//! away mid-body.
//! (A panicking handler: `controller::a_panic_is_a_500_…`.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{
    assert_problem, free_addr, http_get, http_request, signal_to, start_binary, TestApp,
};

/// How many books have this (URL-encoded) title.
async fn titled(t: &TestApp, title: &str) -> usize {
    t.get(&format!("/v1/books?q=(title:{title})"))
        .send()
        .await
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_is_503_and_recovers_without_restart() {
    if !crate::db::about_sqlite_files() {
        return;
    }
    let t = TestApp::demo().await;
    let db = t._dir.path().join("test.db");
    // Another process takes SQLite's write lock and keeps it.
    let mut holder = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(60)",
            db.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    tokio::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let book = json!({"title": "Locked out", "author": "A"});
    let started = Instant::now();
    let res = t.post("/v1/books").json(book.clone()).send().await;
    // After busy_timeout (5 s), a 503 in the §7 form — not a 500, not a hang.
    assert_problem(&res, 503, "DATABASE_UNAVAILABLE");
    assert_eq!(res.header("retry-after"), "1");
    // Only a hang must fail this (3 × busy_timeout: a loaded machine is
    // slow, not that slow).
    assert!(started.elapsed() < Duration::from_secs(15));
    // Readers are not blocked by a writer (WAL).
    assert_eq!(t.get("/v1/books/3").send().await.status, 200);
    // The other process goes away: the next write succeeds, no restart.
    holder.kill().await.unwrap();
    let res = t.post("/v1/books").json(book).send().await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(
        titled(&t, "Locked%20out").await,
        1,
        "the refused write left nothing behind"
    );
}

/// The database's files are overwritten (as a failing disk or a stray
/// `cp` would): `/health` and every data route answer 503 in the §7 form
/// and nothing half-happens; once the files are back, the same process
/// serves again. (Unreadable by permissions cannot be staged: the tests run
/// as root.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_database_is_503_on_health_and_routes_and_recovers() {
    if !crate::db::about_sqlite_files() {
        return;
    }
    let t = TestApp::demo().await;
    assert_eq!(t.get("/health").send().await.status, 200);
    let files: Vec<_> = ["test.db", "test.db-wal", "test.db-shm"]
        .iter()
        .map(|f| t._dir.path().join(f))
        .filter(|p| p.exists())
        .collect();
    let saved: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let overwrite = |contents: &mut dyn FnMut(usize) -> Vec<u8>| {
        for (i, p) in files.iter().enumerate() {
            use std::io::{Seek, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.write_all(&contents(i)).unwrap();
            f.sync_all().unwrap();
        }
    };
    overwrite(&mut |i| vec![0xff; saved[i].len()]);

    let health = t.get("/health").send().await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["database"], "unavailable");
    assert_problem(
        &t.get("/v1/books/3").send().await,
        503,
        "DATABASE_UNAVAILABLE",
    );
    assert_problem(
        &t.get("/v1/books").send().await,
        503,
        "DATABASE_UNAVAILABLE",
    );
    let book = json!({"title": "Written blind", "author": "A"});
    assert_problem(
        &t.post("/v1/books").json(book.clone()).send().await,
        503,
        "DATABASE_UNAVAILABLE",
    );

    overwrite(&mut |i| saved[i].clone());
    assert_eq!(t.get("/health").send().await.status, 200);
    assert_eq!(t.get("/v1/books/3").send().await.status, 200);
    assert_eq!(
        titled(&t, "Written%20blind").await,
        0,
        "the refused write left nothing behind"
    );
    let res = t.post("/v1/books").json(book).send().await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
}

/// Writers here make thousands of requests: no rate limits.
const UNLIMITED: [(&str, &str); 2] = [
    ("RESTKIT_RATE_LIMIT__AUTHENTICATED__REQUESTS", "0"),
    ("RESTKIT_RATE_LIMIT__ANONYMOUS__REQUESTS", "0"),
];

/// Eight writers POST as fast as they can; SIGTERM arrives mid-load. Every
/// write acknowledged with 201 is in the database after a restart, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_write_load_loses_no_acknowledged_write() {
    acknowledged_writes_survive("TERM").await;
}

/// The same with SIGKILL: no shutdown at all, the process dies between
/// any two instructions — with writes committed in groups (SQLite), in
/// the middle of a group. A 201 is only ever sent after its group's
/// commit, so every acknowledged write is there after a restart, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_write_load_loses_no_acknowledged_write() {
    acknowledged_writes_survive("KILL").await;
}

async fn acknowledged_writes_survive(signal: &str) {
    // On the api_pg build, the binary serves PostgreSQL.
    let db = crate::db::TestDb::new().await;
    let env = [
        UNLIMITED[0],
        UNLIMITED[1],
        ("RESTKIT_DATABASE__URL", db.url.as_str()),
    ];
    let dir = &db.dir;
    let addr = free_addr();
    let mut child = start_binary(dir.path(), addr, &env, std::process::Stdio::null()).await;
    let basic = "Authorization: Basic c3RhbjpwYXNz\r\nContent-Type: application/json\r\n";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (stop, written) = (stop.clone(), written.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || i > 2000 {
                    break;
                }
                let title = format!("w{w}-{i}");
                let body = json!({"title": title, "author": "Load", "year": 2000 + w}).to_string();
                match http_request(addr, "POST", "/v1/books", basic, &body).await {
                    Ok((201, _, reply)) => {
                        let rec: serde_json::Value = serde_json::from_str(&reply).unwrap();
                        acknowledged.push((rec["id"].as_i64().unwrap(), title));
                        written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => break, // the server has gone
                }
            }
            acknowledged
        }));
    }
    // SIGTERM once the load is well under way: after 1.5 s and at least
    // 100 acknowledged writes (counted, not assumed from the time, which a
    // loaded machine stretches), with writers still sending.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..600 {
        if written.load(std::sync::atomic::Ordering::Relaxed) >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal_to(&child, signal);
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after the signal")
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if signal == "TERM" {
        assert!(exit.success(), "{exit:?}");
    }
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(
        acknowledged.len() > 50,
        "only {} writes",
        acknowledged.len()
    );

    let mut child = start_binary(dir.path(), addr, &env, std::process::Stdio::null()).await;
    for (id, title) in &acknowledged {
        let (status, _, body) = http_get(
            addr,
            &format!("/v1/books/{id}"),
            "Authorization: Basic c3RhbjpwYXNz\r\n",
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "acknowledged book {id} is missing");
        let rec: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(rec["title"], title.as_str());
        assert_eq!(rec["author"], "Load", "book {id} is half-written");
    }
    child.kill().await.unwrap();
}

/// A client sends half a body and disconnects: nothing is written, and the
/// server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_request_leaves_nothing_behind() {
    let t = TestApp::demo().await;
    let (addr, stop) = t.listen().await;
    let before = t.get("/v1/books?per-page=1").send().await;
    let total = before.header("x-pagination-total-count").to_string();
    for _ in 0..5 {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/books HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\
             Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"title\":\"Half",
            t.bearer()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = t.get("/v1/books?per-page=1").send().await;
    assert_eq!(after.header("x-pagination-total-count"), total);
    let (status, _, _) = http_get(addr, "/health", "").await.unwrap();
    assert_eq!(status, 200);
    let _ = stop.send(());
}

/// §13, bounded version of `examples/wal_growth` (which runs the SPEC's
/// full minute): eight writers and four readers for four seconds through
/// the pipeline; the `-wal` file never passes 64 MiB, because the single
/// writer's automatic checkpoints are not starved by the short reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_writers_and_concurrent_readers() {
    if !crate::db::about_sqlite_files() {
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let t = Arc::new(TestApp::demo().await);
    let wal = t._dir.path().join("test.db-wal");
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..12 {
        let (t, stop, writes) = (t.clone(), stop.clone(), writes.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if w < 8 {
                    let book = json!({"title": format!("wal {w}-{i}"), "author": "W"});
                    if t.post("/v1/books").json(book).send().await.status == 201 {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    let res = t
                        .get(&format!("/v1/books?limit=50&offset={}", i % 900))
                        .send()
                        .await;
                    assert_eq!(res.status, 200);
                }
                i += 1;
            }
        }));
    }
    let started = Instant::now();
    let mut largest = 0;
    while started.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(writes.load(Ordering::Relaxed) > 100, "the load ran");
    assert!(largest < 64 << 20, "the WAL reached {largest} bytes");
}

/// The app over a database of a private PostgreSQL cluster, which the
/// test may stop and start.
pub(crate) async fn on_private_cluster(
    connect: Duration,
    statement: Duration,
) -> (crate::db::Cluster, TestApp) {
    let cluster = crate::db::Cluster::private();
    let pg = crate::db::PgDatabase::create_in(&cluster).await;
    let text = restkit::demo::DEMO_TOML;
    let mut s = crate::helpers::settings(text, &pg.url);
    s.database.connect_timeout = connect;
    s.database.statement_timeout = statement;
    let model = restkit::model::toml::parse(text).unwrap();
    let app = restkit::open(model, s, &restkit::registry::Registry::builtin())
        .await
        .unwrap();
    let db = crate::db::TestDb::from_parts(tempfile::tempdir().unwrap(), pg.url.clone(), Some(pg));
    (cluster, TestApp::in_dir(app, db))
}

/// §12/§13 on PostgreSQL: the server stops under load. Every request is
/// answered within the connect timeout, 503 in the §7 form (never a 500,
/// never a hang), `/health` says the database is unavailable; once it is
/// back, the same process serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgres_is_503_under_load_and_recovers_without_restart() {
    if !crate::db::postgres() {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (cluster, t) = on_private_cluster(Duration::from_secs(1), Duration::from_secs(2)).await;
    let t = Arc::new(t);
    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(std::sync::Mutex::new(Vec::<(u16, Duration)>::new()));
    let mut load = Vec::new();
    for w in 0..4 {
        let (t, stop, statuses) = (t.clone(), stop.clone(), statuses.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let res = if w % 2 == 0 {
                    t.get("/v1/books?per-page=5").send().await
                } else {
                    t.post("/v1/books")
                        .json(json!({"title": format!("Load {w}-{i}"), "author": "PG"}))
                        .send()
                        .await
                };
                if res.status == 503 {
                    let code = res.json()["errorCode"].as_str().unwrap().to_string();
                    assert!(
                        matches!(code.as_str(), "DATABASE_UNAVAILABLE" | "QUERY_TIMEOUT"),
                        "{code}"
                    );
                    assert_problem(&res, 503, &code);
                }
                statuses
                    .lock()
                    .unwrap()
                    .push((res.status.as_u16(), started.elapsed()));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let health = t.get("/health").anonymous().send().await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["database"], "unavailable");
    let down = t.get("/v1/books/3").send().await;
    assert_problem(&down, 503, "DATABASE_UNAVAILABLE");
    cluster.start();
    let back = Instant::now();
    loop {
        if t.get("/v1/books/3").send().await.status == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(15), "did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(t.get("/health").anonymous().send().await.status, 200);
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let statuses = statuses.lock().unwrap();
    assert!(statuses.iter().any(|(s, _)| *s == 503), "the stop was seen");
    // Once the pool has found the server unreachable, refusals come at
    // once (one request a second probes) instead of each waiting the
    // connect timeout: most 503s take well under it.
    let refusals: Vec<Duration> = statuses
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, took)| *took)
        .collect();
    let quick = refusals
        .iter()
        .filter(|took| **took < Duration::from_millis(200))
        .count();
    assert!(
        quick * 2 > refusals.len(),
        "{quick} of {} refusals were quick",
        refusals.len()
    );
    for (status, took) in statuses.iter() {
        assert!(
            matches!(status, 200 | 201 | 503),
            "{status}: only answers or 503 while the database goes and comes"
        );
        assert!(
            *took < Duration::from_secs(5),
            "a request hung for {took:?}"
        );
    }
}

/// A connection dropped in the middle of a write transaction rolls it
/// back: nothing half-written, and the next write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_transaction_rolls_back() {
    if !crate::db::postgres() {
        return;
    }
    let t = TestApp::demo().await;
    let raw = crate::db::Raw::connect(&t.url).await;
    let before = titled(&t, "Dropped").await;
    // Every insert into books waits, inside its transaction, until the
    // test ends its connection.
    raw.execute(
        "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$; \
         CREATE TRIGGER stall AFTER INSERT ON books FOR EACH ROW EXECUTE FUNCTION stall()",
    )
    .await;
    let t = std::sync::Arc::new(t);
    let writer = {
        let t = t.clone();
        tokio::spawn(async move {
            t.post("/v1/books")
                .json(json!({"title": "Dropped", "author": "Mid"}))
                .send()
                .await
        })
    };
    let started = Instant::now();
    loop {
        let stalled = raw
            .scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()",
            )
            .await;
        if stalled == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    raw.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()",
    )
    .await;
    let res = writer.await.unwrap();
    assert_problem(&res, 503, "DATABASE_UNAVAILABLE");
    raw.execute("DROP TRIGGER stall ON books; DROP FUNCTION stall()")
        .await;
    assert_eq!(titled(&t, "Dropped").await, before, "nothing half-written");
    let res = t
        .post("/v1/books")
        .json(json!({"title": "Dropped", "author": "After"}))
        .send()
        .await;
    assert_eq!(res.status, 201, "the clock row is free again");
    assert_eq!(titled(&t, "Dropped").await, before + 1);
}

/// Every pooled connection ended by the server (a failover, an
/// administrator's `pg_terminate_backend`): the requests that meet a dead
/// connection are 503, the pool replaces it, and service goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_ended_by_the_server_are_replaced() {
    if !crate::db::postgres() {
        return;
    }
    let t = TestApp::demo().await;
    for _ in 0..20 {
        assert_eq!(t.get("/v1/books/3").send().await.status, 200);
    }
    let raw = crate::db::Raw::connect(&t.url).await;
    raw.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(t.get("/v1/books/3").send().await.status.as_u16());
    }
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 503)),
        "{statuses:?}"
    );
    assert!(statuses[20..].iter().all(|s| *s == 200), "{statuses:?}");
}

/// `sslmode=require` in the URL: every connection restkit opens is
/// encrypted. Against a server without TLS it stops start-up with a
/// clear error instead of talking in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_when_the_url_requires_it() {
    if !crate::db::postgres() {
        return;
    }
    let cluster = crate::db::Cluster::private_tls();
    let pg = crate::db::PgDatabase::create_in(&cluster).await;
    let url = format!("{}?sslmode=require", pg.url);
    let text = restkit::demo::DEMO_TOML;
    let app = restkit::open(
        restkit::model::toml::parse(text).unwrap(),
        crate::helpers::settings(text, &url),
        &restkit::registry::Registry::builtin(),
    )
    .await
    .unwrap();
    let t = TestApp::from_app(app);
    assert_eq!(t.get("/v1/books/3").send().await.status, 200);
    let raw = crate::db::Raw::connect(&pg.url).await;
    let count = |ssl: bool| {
        format!(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'restkit' AND s.ssl = {ssl}"
        )
    };
    assert!(raw.scalar(&count(true)).await >= 1);
    assert_eq!(
        raw.scalar(&count(false)).await,
        0,
        "a connection in the clear"
    );
    // The shared test cluster serves no TLS: required, it is refused.
    let plain = crate::db::PgDatabase::create().await;
    let refused = restkit::open(
        restkit::model::toml::parse(text).unwrap(),
        crate::helpers::settings(text, &format!("{}?sslmode=require", plain.url)),
        &restkit::registry::Registry::builtin(),
    )
    .await;
    let err = refused.err().expect("no TLS, no start").to_string();
    assert!(
        err.to_lowercase().contains("tls") || err.contains("SSL"),
        "{err}"
    );
}
