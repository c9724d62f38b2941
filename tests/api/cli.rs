//! §1: the `restkit` command line, run as a program.

use std::process::Command;

fn restkit(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_restkit"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
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
    assert!(
        !dir.path().join("restkit-demo.db").exists(),
        "routes touches no database"
    );
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
