//! CORS proven in a real browser (§10): a page served from another
//! 127.0.0.1 port calls the API with fetch() — a GET with an Authorization
//! header (which forces a preflight), a POST with JSON, and reads of
//! X-Pagination-Total-Count and ETag from JavaScript — in headless
//! Chromium. Not run (loudly; a failure under `CI=true`) when no
//! Chromium is installed (`.ci/run` installs Debian's `chromium`). Also: the browsable HTML page renders
//! and runs only its own script.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{require_tool, TestApp};

/// The installed browser; `None` (the test does not run, and fails under
/// `CI=true`) when there is none.
pub(crate) fn browser() -> Option<&'static str> {
    let found = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    require_tool(
        "headless Chromium (/usr/bin/chromium)",
        found.is_some(),
        "apt-get install chromium",
    )
    .then_some(found)
    .flatten()
}

const PAGE: &str = r#"<!doctype html><html><body><pre id="out">pending</pre><script>
(async () => {
  const api = "__API__";
  const out = {};
  try {
    const r1 = await fetch(api + "/v1/books?limit=2", {
      headers: { "Authorization": "Basic " + btoa("stan:pass") } });
    out.getStatus = r1.status;
    out.total = r1.headers.get("X-Pagination-Total-Count");
    out.etag = r1.headers.get("ETag");
    const r2 = await fetch(api + "/v1/books", { method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Basic " + btoa("stan:pass") },
      body: JSON.stringify({ title: "From the browser", author: "Chromium" }) });
    out.postStatus = r2.status;
    out.location = r2.headers.get("Location");
    out.title = (await r2.json()).title;
  } catch (e) { out.error = String(e); }
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script></body></html>"#;

/// Serves `page` to every request on `listener` (the page's own origin).
async fn serve_page(listener: TcpListener, page: String) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let page = page.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            let res = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = s.write_all(res.as_bytes()).await;
        });
    }
}

/// Runs headless Chromium on `url` and returns the DOM it ended with.
async fn dump_dom(chrome: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(chrome)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser finished within 90 s")
        .expect("the browser ran");
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("<html"),
        "no page: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The browsable page (§5.1) in a browser: a record titled with markup
/// stays text, restkit's own script runs under the page's CSP (it enables
/// the form's button), and nothing else runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browsable_page_renders_escaped_and_its_script_runs() {
    let Some(chrome) = browser() else {
        return;
    };
    let t = TestApp::demo().await;
    let evil =
        "<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\">";
    let res = t
        .post("/v1/books")
        .json(serde_json::json!({"title": evil, "author": "x"}))
        .send()
        .await;
    let id = res.json()["id"].as_i64().unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = api.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(t.app.clone().serve(api, async move {
        let _ = stopped.await;
    }));
    // A browser cannot send a header from the address bar: the token
    // travels as ?access-token= (never shown on the page).
    let token = t.token_for(1, &["basic"]);
    for path in [
        format!("/v1/books/{id}?type=html&access-token={token}"),
        format!("/v1/books.html?filter[id]={id}&access-token={token}"),
    ] {
        let dom = dump_dom(chrome, &format!("http://{addr}{path}")).await;
        assert!(
            !dom.contains("<title>owned"),
            "{path}: injected markup ran: {dom}"
        );
        assert_eq!(dom.matches("<script").count(), 1, "{path}: {dom}");
        assert_eq!(dom.matches("<img").count(), 0, "{path}: {dom}");
        assert!(
            dom.contains("&lt;script&gt;"),
            "{path}: the title is shown as text"
        );
        assert!(
            dom.contains("<button type=\"submit\">Send</button>"),
            "{path}: restkit's script did not run (button still disabled): {dom}"
        );
    }
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_reads_the_api_with_fetch() {
    let Some(chrome) = browser() else {
        return;
    };
    let t = TestApp::demo().await;
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(t.app.clone().serve(api, async move {
        let _ = stopped.await;
    }));
    let page_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_addr = page_listener.local_addr().unwrap();
    let page = PAGE.replace("__API__", &format!("http://{api_addr}"));
    tokio::spawn(serve_page(page_listener, page));

    let dom = dump_dom(chrome, &format!("http://{page_addr}/")).await;
    let _ = stop.send(());
    let json = dom
        .split("<pre id=\"out\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no result in the page: {dom}"));
    let seen: serde_json::Value = serde_json::from_str(&json.replace("&quot;", "\""))
        .unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(seen["getStatus"], 200, "{seen}");
    assert_eq!(seen["total"], "1000", "{seen}");
    assert!(
        seen["etag"].as_str().is_some_and(|e| e.starts_with('"')),
        "{seen}"
    );
    assert_eq!(seen["postStatus"], 201, "{seen}");
    assert!(
        seen["location"]
            .as_str()
            .is_some_and(|l| l.contains("/v1/books/")),
        "{seen}"
    );
    assert_eq!(seen["title"], "From the browser", "{seen}");
}

/// A person signs in to the browsable API in a real browser, pages, creates
/// a record with the page's form, sees a 422, signs out
/// (`tests/clients/browser_signin.py`, Playwright driving the installed
/// Chromium). Screenshots of each step land in `target/screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_pages_creates_and_signs_out_in_a_real_browser() {
    let Some(chromium) = browser() else { return };
    if !crate::helpers::require_python("playwright") {
        return;
    }
    // The server's public address is where the browser finds it: the
    // sign-in's one redirect URI is on it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let db = crate::db::TestDb::new().await;
    let mut settings = crate::helpers::settings(restkit::demo::DEMO_TOML, &db.url);
    settings.server.public_url = format!("http://{addr}");
    let model = restkit::model::toml::parse(restkit::demo::DEMO_TOML).unwrap();
    let t = TestApp::from_model(model, settings, restkit::registry::Registry::builtin(), db).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(t.app.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    let _ = std::fs::remove_dir_all(shots);
    std::fs::create_dir_all(shots).unwrap();
    let base = format!("http://{addr}");
    crate::helpers::run_client_script("browser_signin.py", &[&base, shots, chromium], 120).await;
    let _ = stop.send(());
}
