//! What the in-process cost examples share: the demo opened over a fresh
//! database, medians, and the process CPU clock. Not every example uses
//! every part.
#![allow(dead_code)]

use restkit::config::{Overrides, Settings};
use restkit::registry::Registry;

/// The app of `toml` (the demo's, or a variant of it) over a new SQLite
/// file in `dir`, seeded.
pub async fn open(toml: &str, dir: &std::path::Path) -> restkit::App {
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let settings = Settings::load(
        toml,
        &Overrides {
            bind: None,
            database: Some(url),
        },
    )
    .unwrap();
    let model = restkit::model::toml::parse(toml).unwrap();
    restkit::open(model, settings, &Registry::builtin())
        .await
        .unwrap()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// This process's CPU time so far, in seconds: work other processes do on
/// this shared machine does not count.
pub fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The demo with its books public (scope ""): the same request runs with
/// and without credentials (the demo itself requires a token).
pub fn public_demo() -> String {
    restkit::demo::DEMO_TOML.replace(
        "name = \"books\"\n",
        "name = \"books\"\nscopes = { read = \"\", write = \"\" }\n",
    ) + HIGH_LIMITS
}

/// Rate limits (§9) on, as in production, with quotas no measurement
/// reaches: what is measured includes the limiter's work.
pub const HIGH_LIMITS: &str = "
[rate_limit]
token = { requests = 1000000000, period = \"1s\" }
anonymous = { requests = 1000000000, period = \"1s\" }
public = { requests = 1000000000, period = \"1s\" }
authenticated = { requests = 1000000000, period = \"1s\" }
";

/// The `n`th command-line argument (1 = the first) parsed as `T`, or
/// `default` when it is missing or does not parse.
pub fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// An access token of `app` for stan (user 1) with scope `basic`, as the
/// token endpoint would issue it.
pub fn stan_token(app: &restkit::App) -> String {
    let grant = restkit::auth::tokens::Grant {
        subject: restkit::auth::tokens::Subject::User {
            id: 1,
            username: "stan".into(),
        },
        client_id: "1".into(),
        scope: vec!["basic".into()],
        family: None,
    };
    app.state().tokens.access_token(&grant).unwrap().0
}
