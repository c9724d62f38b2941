//! §8.1: the OAuth2 server as a standard client library sees it. Runs
//! `tests/clients/authlib_flows.py` (Authlib, Python) against the demo on
//! a real socket, under the default rate limits. Not run (loudly; a failure under
//! `CI=true`) when Python has no Authlib (`.ci/run` installs it).

use crate::helpers::{require_python, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_oauth2_client_library_runs_every_flow() {
    if !require_python("authlib, requests") {
        return;
    }
    // Under the default rate limits: a standard client's flows fit the
    // token tier's burst, and the 429 past it is one Authlib reads.
    let t = TestApp::demo_with("[rate_limit]\n").await;
    let (addr, stop) = t.listen().await;
    crate::helpers::run_client_script("authlib_flows.py", &[&format!("http://{addr}")], 120).await;
    let _ = stop.send(());
}
