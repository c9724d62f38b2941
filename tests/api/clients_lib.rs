//! §8.1: the OAuth2 server as a standard client library sees it. Runs
//! `tests/clients/authlib_flows.py` (Authlib, Python) against the demo on
//! a real socket, under the default rate limits. Not run (loudly; a failure under
//! `CI=true`) when Python has no Authlib (`.ci/run` installs it).

use std::time::Duration;

use crate::helpers::{python, require_python, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_oauth2_client_library_runs_every_flow() {
    if !require_python("authlib, requests") {
        return;
    }
    // Under the default rate limits: a standard client's flows fit the
    // token tier's burst, and the 429 past it is one Authlib reads.
    let t = TestApp::demo_with("[rate_limit]\n").await;
    let (addr, stop) = t.listen().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/authlib_flows.py"
    );
    let run = tokio::process::Command::new(python())
        .args([script, &format!("http://{addr}")])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the client finished within 120 s")
        .expect("python3 ran");
    let _ = stop.send(());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
