//! §11 contract: a property-based fuzzer (schemathesis) drives the demo on
//! a real socket from its own `/openapi.json`, and every response must
//! conform to the document — no server error, documented statuses, content
//! types, headers and bodies; valid requests accepted, invalid ones
//! refused. Bounded: a few examples per operation and a fixed seed, so a
//! CI run is reproducible (run it by hand with more: see README).
//! `tests/contract/` holds the run's configuration and hooks, each
//! exception there explained. Not run (loudly; a failure under `CI=true`)
//! when Python lacks schemathesis (`.ci/run` installs it).

use std::time::Duration;

use crate::helpers::{python, require_python, TestApp};

/// Examples per operation and phase in the default run;
/// `RESTKIT_FUZZ_EXAMPLES` raises it.
const EXAMPLES: &str = "4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_conforms_to_its_own_document_under_a_fuzzer() {
    if !require_python("schemathesis") {
        return;
    }
    let t = TestApp::demo().await;
    let (addr, stop) = t.listen().await;
    let base = format!("http://{addr}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract");
    let examples = std::env::var("RESTKIT_FUZZ_EXAMPLES").unwrap_or(EXAMPLES.into());
    let seed = std::env::var("RESTKIT_FUZZ_SEED").unwrap_or("20261126".into());
    let run = tokio::process::Command::new(python())
        .current_dir(dir)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .args([
            "-m",
            "schemathesis.cli",
            "--config-file",
            "schemathesis.toml",
            "run",
        ])
        .arg(format!("{base}/openapi.json"))
        .args(["--url", &base])
        .args(["-H", &format!("Authorization: {}", t.bearer())])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--no-color", "--request-timeout", "10"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the fuzzer finished within 10 minutes")
        .expect("python ran");
    let _ = stop.send(());
    let report = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("generated") || l.starts_with("====="))
        .collect();
    eprintln!("{}", summary.join("\n"));
    assert!(
        out.status.success(),
        "the server does not conform to its document:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
