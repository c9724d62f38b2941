//! Over a real socket on 127.0.0.1: graceful shutdown of the library's
//! server and of the `restkit` binary (§1).

use std::time::Duration;

use restkit::controller::{ActionInput, Ctx, Reply};
use restkit::model::builder::*;
use restkit::registry::Registry;

use crate::helpers::{free_addr, http_request, sigterm, start_binary};

/// Minimal HTTP/1.1 GET; returns (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    get_as(addr, path, "").await
}

/// As [`get`], with extra header lines (each ending in CRLF).
async fn get_as(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
) -> std::io::Result<(u16, String)> {
    crate::helpers::http_get(addr, path, headers)
        .await
        .map(|(status, _, body)| (status, body))
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_accepting() {
    let mut module = Module::new("/t").action(Verb::Get, "/slow", "slow");
    // Public: an empty scope needs no credentials.
    module.actions[0].scope = Some(String::new());
    let model = ApiModel::builder().module(module).build().unwrap();
    let mut registry = Registry::builtin();
    // The handler says when it has started, so the shutdown below comes
    // while the request is in flight however slowly the machine runs.
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = started.clone();
    registry.handle_fn("slow", move |_cx: Ctx, _in: ActionInput| {
        let signal = signal.clone();
        async move {
            signal.notify_one();
            tokio::time::sleep(Duration::from_millis(400)).await;
            Reply::json(&serde_json::json!({"done": true}))
        }
    });
    let settings = crate::helpers::settings("", "sqlite::memory:");
    let app = restkit::open(model, settings, &registry).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let in_flight = tokio::spawn(async move { get(addr, "/t/slow").await });
    started.notified().await;
    stop.send(()).unwrap();
    let (status, body) = in_flight.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"done\":true"), "{body}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    assert!(get(addr, "/health").await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn binary_serves_the_demo_from_any_directory_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut child = start_binary(dir.path(), addr, &[], std::process::Stdio::inherit()).await;
    // The demo accepts a user's password over HTTP Basic (stan:pass).
    let (status, body) = get_as(addr, "/v1/books/1", "Authorization: Basic c3RhbjpwYXNz\r\n")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("Greatest book"), "{body}");
    assert!(dir.path().join("restkit-demo.db").exists());
    // Bound elsewhere than the default 127.0.0.1:8080, and without
    // `auth.issuer` or `server.public_url`, it advertises where it is:
    // the issuer, every OAuth2 URL, the JWKS and OpenAPI's `servers`.
    let here = format!("http://{addr}");
    let (_, meta) = get(addr, "/.well-known/oauth-authorization-server")
        .await
        .unwrap();
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["issuer"], here.as_str());
    assert_eq!(meta["token_endpoint"], format!("{here}/v1/access_token"));
    assert_eq!(meta["jwks_uri"], format!("{here}/.well-known/jwks.json"));
    let (_, doc) = get(addr, "/openapi.json").await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["servers"][0]["url"], here.as_str());
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_caller_but_no_credential() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let env = [("RUST_LOG", "info"), ("RESTKIT_LOG__FORMAT", "json")];
    let mut child = start_binary(dir.path(), addr, &env, std::process::Stdio::piped()).await;
    let basic = "Authorization: Basic c3RhbjpwYXNz\r\n";
    let (status, _) = get_as(
        addr,
        "/v1/books/1",
        &format!("{basic}X-Request-Id: trace-42\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, body) = get_as(
        addr,
        "/v1/books/1?access-token=secret-in-url",
        "X-Request-Id: trace-43\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("\"requestId\":\"trace-43\""), "{body}");
    // A failed sign-in, and a path no route matches, are traced to the
    // client's address.
    let (status, _) = http_request(
        addr,
        "POST",
        "/v1/access_token",
        "X-Request-Id: trace-44\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        "grant_type=client_credentials&client_id=1&client_secret=s3cr3t-guess",
    )
    .await
    .map(|(s, _, b)| (s, b))
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = get_as(addr, "/no/such/page", "X-Request-Id: trace-45\r\n")
        .await
        .unwrap();
    assert_eq!(status, 404);
    sigterm(&child);
    let mut out = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    child.wait().await.unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let request = |id: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id}:\n{out}"))
            .clone()
    };
    let ok = request("trace-42");
    assert_eq!(ok["fields"]["route"], "/v1/books/{id}");
    assert_eq!(ok["fields"]["status"], 200);
    assert_eq!(ok["fields"]["caller"], "u:1");
    assert!(ok["fields"]["latency_us"].is_u64());
    let refused = request("trace-43");
    assert_eq!(refused["fields"]["status"], 401);
    for id in ["trace-44", "trace-45"] {
        assert_eq!(request(id)["fields"]["caller"], "ip:127.0.0.1", "{id}");
    }
    // Lines logged while a request ran carry its id in their span.
    for l in lines.iter().filter(|l| l.get("span").is_some()) {
        assert!(l["span"]["request_id"].is_string(), "{l}");
    }
    assert!(
        !out.contains("c3RhbjpwYXNz")
            && !out.contains("secret-in-url")
            && !out.contains("s3cr3t-guess")
    );
}

/// A request with a body refused before the body was read ends its
/// connection, and says so (`Connection: close`): a keep-alive client
/// then opens a new connection for its next request instead of writing
/// into one the server is closing.
#[tokio::test]
async fn an_early_refusal_of_a_request_with_a_body_closes_its_connection_openly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = crate::helpers::TestApp::demo().await;
    let (addr, _stop) = t.listen().await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"title":"x"}"#;
    s.write_all(
        format!(
            "POST /v1/nope HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The server closes the connection after the answer: reading to the
    // end finishes (a keep-alive connection would wait out the timeout).
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the connection was kept open")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 404"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
}
