//! §1: the `restkit` command line, run as a program.

use std::process::Command;

use serde_json::json;

fn restkit(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_restkit"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn routes_prints_method_path_handler_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    let out = restkit(&["routes"], dir.path(), &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec![
            "POST",
            "/v1/books/{id}/borrow",
            "library::borrow",
            "write"
        ]),
        "{text}"
    );
    assert!(
        rows.contains(&vec![
            "GET",
            "/v1/books/{bookId}/reviews",
            "reviews::Find",
            "basic"
        ]),
        "{text}"
    );
    assert!(
        rows.contains(&vec!["DELETE", "/v1/books", "books::DeleteAll", "write"]),
        "{text}"
    );
    // restkit's own routes are listed too.
    for (method, path) in [
        ("POST", "/v1/access_token"),
        ("GET", "/v1/authorize"),
        ("POST", "/v1/revoke"),
        ("POST", "/v1/introspect"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/health"),
        ("GET", "/metrics"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r.len() >= 2 && r[0] == method && r[1] == path),
            "{method} {path}: {text}"
        );
    }
    assert!(
        !dir.path().join("restkit-demo.db").exists(),
        "routes touches no database"
    );
}

/// `restkit openapi | head` and `restkit routes | head`: a reader that
/// stops early ends the command quietly, not with a panic.
#[test]
fn a_closed_pipe_ends_printing_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    for command in ["openapi", "routes"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_restkit"))
            .arg(command)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is closed here, with most of the output unread.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{command}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{command}: {stderr}");
    }
}

#[test]
fn migrate_creates_the_declared_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = restkit(
        &["migrate", "--database", "sqlite://lib.db"],
        dir.path(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("lib.db").exists());
    // Idempotent: a second run changes nothing and succeeds.
    assert!(restkit(
        &["migrate", "--database", "sqlite://lib.db"],
        dir.path(),
        &[]
    )
    .status
    .success());
}

#[test]
fn migrate_plans_applies_and_reports_status() {
    let dir = tempfile::tempdir().unwrap();
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let db = ["--database", "sqlite://lib.db"];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = ["migrate"]
            .iter()
            .chain(&db)
            .chain(extra)
            .copied()
            .collect();
        restkit(&args, dir.path(), &[])
    };
    let plan = run(&["--plan"]);
    assert!(plan.status.success(), "{}", text(&plan));
    let planned = text(&plan);
    assert!(
        planned.contains("nothing is changed")
            && planned.contains("/v1/books: create table books")
            && planned.contains("CREATE TABLE"),
        "{planned}"
    );
    let status = run(&["--status"]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    assert!(text(&status).contains("pending"), "{}", text(&status));
    let applied = run(&[]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(
        text(&applied).contains("/v1/books: create table books")
            && text(&applied).contains("migrated"),
        "{}",
        text(&applied)
    );
    let status = run(&["--status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("up to date"), "{}", text(&status));
    let again = run(&[]);
    assert!(text(&again).contains("no changes"), "{}", text(&again));
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = restkit(
        &["serve"],
        dir.path(),
        &[("RESTKIT_SERVER__BIND", "not an address")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("server.bind"), "{err}");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[database]\nmax_connectons = 3\n",
    )
    .unwrap();
    let out = restkit(&["serve", "--config", "bad.toml"], dir.path(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_connectons"));
    let out = restkit(&["serve", "--help"], dir.path(), &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--database"));
}

#[test]
fn keys_generate_writes_a_pair_the_server_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let res = restkit(
        &["keys", "generate", "--out", out.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let private = std::fs::read_to_string(out.join("private.pem")).unwrap();
    let public = std::fs::read_to_string(out.join("public.pem")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("private.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is its owner's only");
    }
    let set = restkit::auth::keys::KeySet::from_pem(&private, &[public]).unwrap();
    assert!(String::from_utf8_lossy(&res.stdout).contains(&set.kid));
    // A second run never overwrites.
    let again = restkit(
        &["keys", "generate", "--out", out.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("private.pem")).unwrap(),
        private
    );
}

/// Runs `restkit` with `stdin` piped in.
fn restkit_with_input(args: &[&str], dir: &std::path::Path, stdin: &str) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_restkit"));
    cmd.args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL");
    crate::helpers::run_with_input(cmd, stdin)
}

#[tokio::test]
async fn users_and_clients_are_managed_from_the_command_line() {
    // On the api_pg build, the commands run against PostgreSQL.
    let test_db = crate::db::TestDb::new().await;
    let (dir, url) = (&test_db.dir, test_db.url.clone());
    let db = ["--database", url.as_str()];
    let run = |args: &[&str], stdin: &str| {
        let all: Vec<&str> = args.iter().chain(db.iter()).copied().collect();
        let out = restkit_with_input(&all, dir.path(), stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // The password comes from stdin, never from the arguments.
    run(&["users", "add", "alice"], "first secret\n");
    let out = run(
        &[
            "clients",
            "add",
            "app",
            "--grants",
            "password,refresh_token",
            "--scopes",
            "basic,write",
        ],
        "",
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("the secret is shown once")
        .to_string();
    run(
        &[
            "clients",
            "add",
            "web",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1:9/cb",
        ],
        "",
    );
    assert!(run(&["users", "list"], "").contains("alice"));
    let clients = run(&["clients", "list"], "");
    assert!(
        clients.contains("app\tconfidential\tgrants=password,refresh_token"),
        "{clients}"
    );
    assert!(clients.contains("web\tpublic"), "{clients}");
    assert!(
        !clients.contains(&secret),
        "the secret is never shown again"
    );
    // What the commands made works at the token endpoint.
    // The password grant is off unless configured (RFC 9700).
    let settings =
        crate::helpers::settings("[auth]\ngrants = [\"password\", \"refresh_token\"]\n", &url);
    let model = restkit::model::toml::parse("").unwrap();
    let app = restkit::open(model, settings, &restkit::registry::Registry::builtin())
        .await
        .unwrap();
    let t = crate::helpers::TestApp::from_app(app);
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("app:{secret}"))
    };
    let grant = |password: &'static str| {
        t.post("/v1/access_token")
            .header("authorization", &format!("Basic {basic}"))
            .raw(
                "application/x-www-form-urlencoded",
                &format!(
                    "grant_type=password&username=alice&password={}",
                    password.replace(' ', "+")
                ),
            )
            .send()
    };
    let before = grant("first secret").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let active = |token: String| {
        let t = &t;
        let basic = basic.clone();
        async move {
            t.post("/v1/introspect")
                .header("authorization", &format!("Basic {basic}"))
                .raw(
                    "application/x-www-form-urlencoded",
                    &format!("token={token}"),
                )
                .send()
                .await
                .json()["active"]
                .clone()
        }
    };
    assert_eq!(active(before.clone()).await, json!(true));
    run(&["users", "passwd", "alice"], "second secret\n");
    // The new password cuts off what the old one got (other processes —
    // this one included — learn of it within about a second). Polled, not
    // slept: how soon is the revocation sync's business; that it happens
    // is this test's (a minute covers any loaded machine).
    let mut cut_off = false;
    for _ in 0..300 {
        if active(before.clone()).await == json!(false) {
            cut_off = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(cut_off, "the old password's token stayed active");
    assert_eq!(grant("first secret").await.status, 400);
    assert_eq!(grant("second secret").await.status, 200);
    run(&["users", "remove", "alice"], "");
    assert_eq!(grant("second secret").await.status, 400);
    run(&["clients", "remove", "app"], "");
    assert_eq!(
        grant("second secret").await.status,
        401,
        "the client is gone"
    );
    // An empty password and a missing redirect URI are refused.
    let out = restkit_with_input(
        &["users", "add", "bob", "--database", &url],
        dir.path(),
        "\n",
    );
    assert!(!out.status.success());
    let out = restkit_with_input(
        &[
            "clients",
            "add",
            "x",
            "--grants",
            "authorization_code",
            "--database",
            &url,
        ],
        dir.path(),
        "",
    );
    assert!(!out.status.success());
}
