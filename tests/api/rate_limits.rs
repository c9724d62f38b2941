//! §9 rate limiting, in-process backend: the three tiers kept apart, the
//! exact 429 point, the headers, per-resource and per-action overrides,
//! and the client address (forwarding headers count only from trusted
//! proxies, over a real socket).

use restkit::registry::Registry;

use crate::helpers::{assert_problem, http_get, require_tool, TestApp};

/// `GET path` without credentials, as if from `ip`.
async fn anonymous_get(t: &TestApp, path: &str, ip: &str) -> crate::helpers::TestResponse {
    t.get(path).anonymous().sent_from(ip).send().await
}

#[tokio::test]
async fn the_anonymous_tier_counts_per_ip_and_refuses_at_the_limit() {
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 3, period = \"60s\" }\n").await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let res = anonymous_get(&t, "/v1/books/3", "203.0.113.5").await;
        // Without a token the route answers 401, and that still counts.
        assert_eq!(res.status, 401);
        assert_eq!(res.header("x-rate-limit-limit"), "3");
        remaining.push(res.header("x-rate-limit-remaining").to_string());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let res = anonymous_get(&t, "/v1/books/3", "203.0.113.5").await;
    let body = assert_problem(&res, 429, "RATE_LIMITED");
    assert!(body["detail"].as_str().unwrap().contains("anonymous"));
    // One request comes back every 20 s.
    let retry: u64 = res.header("retry-after").parse().unwrap();
    assert!((19..=20).contains(&retry), "{retry}");
    assert_eq!(res.header("x-rate-limit-remaining"), "0");
    assert_eq!(res.header("x-rate-limit-reset"), "60");
    assert_eq!(res.header("ratelimit-policy"), "\"anonymous\";q=3;w=60");
    assert_eq!(res.header("ratelimit"), "\"anonymous\";r=0;t=60");
    // Another address has its own allowance; OPTIONS counts too.
    let other = t
        .call(http::Method::OPTIONS, "/v1/books")
        .anonymous()
        .sent_from("203.0.113.6")
        .send()
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-rate-limit-remaining"), "2");
    // A valid token is the authenticated tier, not the address's.
    let res = t.get("/v1/books/3").sent_from("203.0.113.5").send().await;
    assert_eq!(res.status, 200);
}

/// An IPv6 subscriber holds a /64: its addresses share one allowance (a
/// fresh address per request would otherwise be a fresh allowance). An
/// IPv4 address seen through a dual-stack socket is that IPv4 address.
#[tokio::test]
async fn ipv6_callers_count_by_their_64_and_mapped_ipv4_as_ipv4() {
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 2, period = \"60s\" }\n").await;
    let status = |ip: &'static str| {
        let t = &t;
        async move { anonymous_get(t, "/v1/books/3", ip).await.status }
    };
    assert_eq!(status("2001:db8:1:2::1").await, 401);
    assert_eq!(status("2001:db8:1:2:ffff:ffff:ffff:fffe").await, 401);
    assert_eq!(status("2001:db8:1:2:abcd::9").await, 429);
    // The next /64 is another subscriber.
    assert_eq!(status("2001:db8:1:3::1").await, 401);
    assert_eq!(status("203.0.113.7").await, 401);
    assert_eq!(status("::ffff:203.0.113.7").await, 401);
    assert_eq!(status("203.0.113.7").await, 429);
    // Translated IPv4 clients (NAT64, 6to4, Teredo) are their IPv4
    // address, not one shared /64.
    assert_eq!(status("64:ff9b::198.51.100.1").await, 401);
    assert_eq!(status("64:ff9b::198.51.100.2").await, 401);
    assert_eq!(status("198.51.100.1").await, 401);
    assert_eq!(status("64:ff9b::198.51.100.1").await, 429);
    assert_eq!(status("2002:c633:6403::1").await, 401); // 6to4 of 198.51.100.3
    assert_eq!(status("198.51.100.3").await, 401);
    assert_eq!(status("2002:c633:6403:1::1").await, 429);
    // Teredo: the client's IPv4 address, inverted, in the last 32 bits.
    assert_eq!(status("2001:0:4136:e378:8000:63bf:39cc:9bfb").await, 401); // 198.51.100.4
    assert_eq!(status("198.51.100.4").await, 401);
    assert_eq!(status("2001:0:4136:e378::39cc:9bfb").await, 429);
}

#[tokio::test]
async fn the_authenticated_tier_keeps_users_and_clients_apart() {
    let t = TestApp::demo_with("[rate_limit]\nauthenticated = { requests = 2, period = \"1h\" }\n")
        .await;
    for left in ["1", "0"] {
        let res = t.get("/v1/books/3").by_user(1).send().await;
        assert_eq!(res.status, 200);
        assert_eq!(res.header("x-rate-limit-remaining"), left);
        assert_eq!(
            res.header("ratelimit-policy"),
            "\"authenticated\";q=2;w=3600"
        );
    }
    assert_problem(
        &t.get("/v1/books/3").by_user(1).send().await,
        429,
        "RATE_LIMITED",
    );
    // Stan from another address is still stan.
    assert_eq!(
        t.get("/v1/books/3")
            .by_user(1)
            .sent_from("198.51.100.1")
            .send()
            .await
            .status,
        429
    );
    // User 2, and client 1 (not user 1), have their own allowances.
    assert_eq!(t.get("/v1/books/3").by_user(2).send().await.status, 200);
    let client = t
        .get("/v1/books/3/reviews")
        .header(
            "authorization",
            &format!("Bearer {}", t.client_token(&["basic"])),
        )
        .send()
        .await;
    assert_eq!(client.header("x-rate-limit-remaining"), "1");
}

#[tokio::test]
async fn the_token_tier_guards_the_oauth2_endpoints_per_ip() {
    let t = TestApp::demo_with("[rate_limit]\ntoken = { requests = 2, period = \"10s\" }\n").await;
    let grant = "grant_type=password&username=stan&password=wrong&client_id=spa";
    for _ in 0..2 {
        let res = t
            .post("/v1/access_token")
            .anonymous()
            .sent_from("192.0.2.1")
            .raw("application/x-www-form-urlencoded", grant)
            .send()
            .await;
        assert_ne!(res.status, 429);
        assert!(!res.header("x-rate-limit-remaining").is_empty());
    }
    let res = t
        .post("/v1/access_token")
        .anonymous()
        .sent_from("192.0.2.1")
        .raw("application/x-www-form-urlencoded", grant)
        .send()
        .await;
    assert_problem(&res, 429, "RATE_LIMITED");
    let retry: u64 = res.header("retry-after").parse().unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    assert_eq!(res.header("ratelimit-policy"), "\"token\";q=2;w=10");
    // The authorization page is the same tier; another address is not.
    let page = anonymous_get(
        &t,
        "/v1/authorize?response_type=code&client_id=spa",
        "192.0.2.1",
    )
    .await;
    assert_eq!(page.status, 429);
    // A browser's preflight carries no credentials: it is answered (even
    // with the sign-ins spent) from the anonymous tier, and spends no
    // sign-in.
    let preflight = t
        .call(http::Method::OPTIONS, "/v1/access_token")
        .anonymous()
        .sent_from("192.0.2.1")
        .header("origin", "http://spa.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        "POST, OPTIONS"
    );
    assert_eq!(preflight.header("access-control-allow-origin"), "*");
    assert!(preflight
        .header("ratelimit-policy")
        .starts_with("\"anonymous\""));
    let other = t
        .post("/v1/access_token")
        .anonymous()
        .sent_from("192.0.2.2")
        .raw("application/x-www-form-urlencoded", grant)
        .send()
        .await;
    assert_ne!(other.status, 429);
    // A method the endpoint does not serve (405) is counted too: a stream
    // of them is refused like a stream of sign-ins.
    for expected in [405, 405, 429] {
        let res = anonymous_get(&t, "/v1/access_token", "192.0.2.3").await;
        assert_eq!(res.status, expected);
        assert_eq!(res.header("ratelimit-policy"), "\"token\";q=2;w=10");
    }
    // Documents served from memory and the health probe are not limited.
    for path in ["/health", "/openapi.json", "/.well-known/jwks.json"] {
        let res = anonymous_get(&t, path, "192.0.2.1").await;
        assert_eq!(res.status, 200, "{path}");
    }
}

#[tokio::test]
async fn resources_and_actions_override_the_tiers() {
    let toml = r#"
[rate_limit]
authenticated = { requests = 100, period = "1m" }

[[module]]
prefix = "/api"
[[module.resource]]
name = "notes"
rate_limit = { authenticated = { requests = 2, period = "1m" } }
[module.resource.fields]
id   = { type = "integer", primary_key = true }
text = { type = "string" }
[[module.resource.action]]
path = "ping"
method = "GET"
on = "collection"
handler = "echo"
rate_limit = { authenticated = { requests = 1, period = "30s" } }
[[module.resource]]
name = "tags"
rate_limit = { authenticated = { requests = 0, period = "1m" } }
[module.resource.fields]
id = { type = "integer", primary_key = true }
"#;
    let t = TestApp::with(toml, "", Registry::builtin()).await;
    // The resource's allowance is one for all its routes.
    let first = t.get("/api/notes").send().await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("ratelimit-policy"),
        "\"authenticated.api.notes\";q=2;w=60"
    );
    assert_eq!(t.get("/api/notes/1").send().await.status, 404);
    assert_eq!(t.get("/api/notes").send().await.status, 429);
    // The action has its own.
    let ping = t.get("/api/notes/ping").send().await;
    assert_eq!(ping.status, 200, "{}", String::from_utf8_lossy(&ping.body));
    assert_eq!(
        ping.header("ratelimit-policy"),
        "\"authenticated.api.notes.ping\";q=1;w=30"
    );
    assert_eq!(t.get("/api/notes/ping").send().await.status, 429);
    // requests = 0 turns the tier off there.
    for _ in 0..3 {
        let res = t.get("/api/tags").send().await;
        assert_eq!(res.status, 200);
        assert!(res.headers.get("x-rate-limit-limit").is_none());
    }
    // A zero period is a declaration error naming the key, not "off".
    let zero = toml.replace(
        r#"requests = 1, period = "30s""#,
        r#"requests = 1, period = "0s""#,
    );
    let e = restkit::model::toml::parse(&zero).unwrap_err().to_string();
    assert!(e.contains("rate_limit.authenticated.period"), "{e}");
}

/// Over a real socket every request comes from 127.0.0.1: a client's own
/// `X-Forwarded-For` must not buy it a fresh allowance, unless 127.0.0.1
/// is a trusted proxy, whose forwarded address then counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let limited = "[rate_limit]\nanonymous = { requests = 2, period = \"60s\" }\n";
    let t = TestApp::demo_with(limited).await;
    let (addr, stop) = t.listen().await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let spoof = format!("X-Forwarded-For: 10.0.0.{i}\r\nForwarded: for=10.1.0.{i}\r\n");
        statuses.push(http_get(addr, "/v1/books/3", &spoof).await.unwrap().0);
    }
    assert_eq!(statuses, [401, 401, 429], "spoofed headers were believed");
    let _ = stop.send(());

    let t = TestApp::demo_with(&format!(
        "{limited}trusted_proxies = [\"127.0.0.1\", \"10.9.0.0/16\"]\nforwarded_header = \"x-forwarded-for\"\n"
    ))
    .await;
    let (addr, stop) = t.listen().await;
    // Through the proxy: each forwarded client has its own allowance, and
    // the right-most untrusted hop is the client (not what it claims).
    for i in 0..3 {
        let via = format!("X-Forwarded-For: 6.6.6.6, 198.51.100.{i}, 10.9.0.1\r\n");
        let (status, head, _) = http_get(addr, "/v1/books/3", &via).await.unwrap();
        assert_eq!(status, 401);
        assert!(head.contains("x-rate-limit-remaining: 1"), "{head}");
    }
    let same = "X-Forwarded-For: 7.7.7.7, 198.51.100.0\r\n";
    let (status, _, _) = http_get(addr, "/v1/books/3", same).await.unwrap();
    assert_eq!(status, 401);
    let (status, _, _) = http_get(addr, "/v1/books/3", same).await.unwrap();
    assert_eq!(status, 429, "198.51.100.0 used its two requests");
    let _ = stop.send(());
}

/// A private `redis-server` on a free 127.0.0.1 port, stopped on drop.
/// `.ci/run` installs Debian's redis-server; without it the Redis tests do
/// not run, say so loudly, and fail under `CI=true`.
pub struct Redis {
    port: u16,
    child: Option<std::process::Child>,
}

impl Redis {
    pub fn start() -> Option<Redis> {
        let started = Redis::launch();
        let ok = require_tool(
            "redis-server (one that starts and answers PING)",
            started.is_some(),
            "apt-get install redis-server",
        );
        started.filter(|_| ok)
    }

    fn launch() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut r = Redis { port, child: None };
        r.resume().then_some(r)
    }

    /// (Re)starts the server on its port; true once it answers PING.
    pub(crate) fn resume(&mut self) -> bool {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return false;
        };
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ping(&self) -> bool {
        self.connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
            .is_some()
    }

    fn connection(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url()).ok()?.get_connection().ok()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Calls of one command so far (`INFO commandstats`).
    fn calls(&self, command: &str) -> u64 {
        let mut c = self.connection().expect("redis answers");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut c)
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_settings(r: &Redis, extra: &str) -> String {
    format!(
        "[rate_limit]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"200ms\"\n\
         authenticated = {{ requests = 3, period = \"60s\" }}\n{extra}",
        r.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_enforce_one_limit_in_one_round_trip_each() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let settings = redis_settings(&redis, "");
    let a = TestApp::demo_with(&settings).await;
    let b = TestApp::demo_with(&settings).await;
    // Warm up the script cache (the first call may load the script).
    let _ = a.get("/v1/books/3").by_user(2).send().await;
    let before = redis.calls("evalsha");
    let mut seen = Vec::new();
    for app in [&a, &b, &a, &b] {
        let res = app.get("/v1/books/3").by_user(1).send().await;
        seen.push((
            res.status.as_u16(),
            res.header("x-rate-limit-remaining").to_string(),
        ));
    }
    assert_eq!(
        seen,
        [
            (200, "2".to_string()),
            (200, "1".to_string()),
            (200, "0".to_string()),
            (429, "0".to_string())
        ]
    );
    let res = b.get("/v1/books/3").by_user(1).send().await;
    let retry: u64 = res.header("retry-after").parse().unwrap();
    assert!((19..=20).contains(&retry), "{retry}");
    // One script call per decision, and nothing else.
    assert_eq!(redis.calls("evalsha") - before, 5);
    assert_eq!(redis.calls("eval"), 0, "the script ran by its digest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_stops_the_limiter_follows_on_backend_error_and_recovers() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let allow = TestApp::demo_with(&redis_settings(&redis, "on_backend_error = \"allow\"\n")).await;
    let deny = TestApp::demo_with(&redis_settings(&redis, "on_backend_error = \"deny\"\n")).await;
    assert_eq!(
        allow
            .get("/v1/books/3")
            .send()
            .await
            .header("x-rate-limit-remaining"),
        "2"
    );
    let health = allow.get("/health").anonymous().send().await.json();
    assert_eq!(health["redis"], "ok");
    redis.stop();
    // Redis alone down is reported, not a 503, when the limiter lets
    // requests through; under "deny" the instance refuses everything, and
    // /health says so to the load balancer.
    let res = allow.get("/health").anonymous().send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["redis"], "unavailable");
    let res = deny.get("/health").anonymous().send().await;
    assert_eq!(res.status, 503);
    assert_eq!(res.json()["redis"], "unavailable");
    for _ in 0..3 {
        // Redis is stopped, so connections are refused at once; this bound
        // only catches a hang (a wait on redis_timeout, 200 ms, is within
        // it), and is wide so that a loaded machine does not trip it.
        let started = std::time::Instant::now();
        let res = allow.get("/v1/books/3").send().await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "a request hung on the limiter"
        );
        assert_eq!(res.status, 200, "allow lets requests through");
        assert!(res.headers.get("x-rate-limit-limit").is_none());
        let res = deny.get("/v1/books/3").send().await;
        assert_problem(&res, 503, "RATE_LIMIT_UNAVAILABLE");
        assert_eq!(res.header("retry-after"), "1");
    }
    assert!(
        allow
            .app
            .state()
            .limiter
            .backend_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    // Redis comes back (empty): limiting resumes by itself, within seconds.
    assert!(redis.resume(), "redis restarts");
    let mut resumed = false;
    for _ in 0..50 {
        let res = deny.get("/v1/books/3").by_user(2).send().await;
        if res.status == 200 && res.headers.get("x-rate-limit-remaining").is_some() {
            resumed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(resumed, "limiting did not resume after Redis came back");
    assert_eq!(deny.get("/health").anonymous().send().await.status, 200);
}

/// A Redis that accepts connections and never answers (hung, or a black
/// hole in the network): the first few decisions wait `redis_timeout` (one
/// slow call alone does not open the breaker), and then the breaker
/// answers at once — no request waits on a Redis known to be down — while
/// a probe in the background tries again.
///
/// Asserted by what the hung Redis was asked, not by how long requests
/// took (on a loaded machine any wall-clock bound is a guess): a request
/// that waited on Redis sent it a decision for its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_a_few_timeouts_not_one_per_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = Heard::default();
    let held = tokio::spawn(heard.clone().listen(listener));
    let t = TestApp::demo_with(&format!(
        "[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}\"\n\
         redis_timeout = \"1s\"\non_backend_error = \"allow\"\n\
         authenticated = {{ requests = 100, period = \"60s\" }}\n"
    ))
    .await;
    let errors = || {
        t.app
            .state()
            .limiter
            .backend_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for i in 1..=restkit::limit::redis::TRIP_AFTER {
        let res = t.get("/v1/books/3").send().await;
        assert_eq!(res.status, 200, "allow lets requests through");
        assert_eq!(errors(), u64::from(i));
        // This request asked Redis (and was let through when it did not
        // answer): the breaker stayed closed until the TRIP_AFTERth.
        heard.wait_for_decisions(i as usize).await;
    }
    for i in 1..=10 {
        let res = t.get("/v1/books/3").send().await;
        assert_eq!(res.status, 200, "allow lets requests through");
        assert_eq!(
            errors(),
            u64::from(restkit::limit::redis::TRIP_AFTER) + i,
            "each still counts as a backend error"
        );
    }
    assert_eq!(
        heard.decisions(),
        restkit::limit::redis::TRIP_AFTER as usize,
        "a request asked a Redis known to be down (and waited for it)"
    );
    // /health does not wait either. Asking the hung Redis would take the
    // whole redis_timeout (1 s) before answering "unavailable", so an
    // answer inside it did not wait: the bound is the timeout itself, not
    // a guess at this machine's speed.
    let started = std::time::Instant::now();
    assert_eq!(
        t.get("/health").anonymous().send().await.json()["redis"],
        "unavailable"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    held.abort();
}

/// A Redis that completes the client's handshake (`CLIENT SETINFO`: `+OK`)
/// and never answers a script: the commands it was sent.
#[derive(Clone, Default)]
struct Heard(std::sync::Arc<std::sync::Mutex<Vec<Vec<Vec<u8>>>>>);

impl Heard {
    /// Serves `listener`: reads every command, answers all but scripts.
    async fn listen(self, listener: tokio::net::TcpListener) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let heard = self.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    pending.extend_from_slice(&buf[..n]);
                    for command in take_commands(&mut pending) {
                        let name = command.first().map(|c| c.to_ascii_uppercase());
                        let script = matches!(name.as_deref(), Some(b"EVALSHA" | b"EVAL"));
                        heard.0.lock().unwrap().push(command);
                        if !script && s.write_all(b"+OK\r\n").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }

    /// Scripts run for requests' keys (`restkit:rl:<policy>…`), not for
    /// the breaker's probe (`restkit:rl:probe`).
    fn decisions(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.len() > 3 && c[0].eq_ignore_ascii_case(b"EVALSHA"))
            .filter(|c| c[3].starts_with(b"restkit:rl:") && c[3] != b"restkit:rl:probe")
            .count()
    }

    /// Waits (up to a minute) until `n` decisions have arrived: bytes sent
    /// before the request gave up may still be on their way.
    async fn wait_for_decisions(&self, n: usize) {
        for _ in 0..600 {
            if self.decisions() >= n {
                assert_eq!(self.decisions(), n);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("Redis was asked {} decisions, not {n}", self.decisions());
    }
}

/// The complete RESP commands (arrays of bulk strings) at the front of
/// `buf`, removed from it; a partial one stays for the next read.
fn take_commands(buf: &mut Vec<u8>) -> Vec<Vec<Vec<u8>>> {
    fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    let mut commands = Vec::new();
    let mut used = 0;
    'next: while buf.get(used) == Some(&b'*') {
        let Some((args, mut at)) = line(buf, used) else {
            break;
        };
        let mut command = Vec::with_capacity(args);
        for _ in 0..args {
            let Some((len, start)) = line(buf, at).filter(|_| buf[at] == b'$') else {
                break 'next;
            };
            if buf.len() < start + len + 2 {
                break 'next;
            }
            command.push(buf[start..start + len].to_vec());
            at = start + len + 2;
        }
        commands.push(command);
        used = at;
    }
    buf.drain(..used);
    commands
}

/// HTTP Basic: a password that must be hashed is charged to the client
/// IP's anonymous allowance before Argon2 runs, so guessing is refused
/// before it costs the server a hash; one remembered from a recent success
/// costs nothing.
#[tokio::test]
async fn password_checks_are_charged_to_the_ip_before_hashing() {
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 2, period = \"60s\" }\n").await;
    let attempt = |user_pass: &'static str, ip: &'static str| {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(user_pass);
        t.get("/v1/books/3")
            .header("authorization", &format!("Basic {basic}"))
            .sent_from(ip)
            .send()
    };
    assert_eq!(attempt("stan:wrong", "198.51.100.20").await.status, 401);
    // The attempt and the request each took one: this IP has none left,
    // so even the right password is not hashed here.
    let right = attempt("stan:pass", "198.51.100.20").await;
    assert_problem(&right, 429, "RATE_LIMITED");
    // From elsewhere the right password works, and is remembered…
    assert_eq!(attempt("stan:pass", "198.51.100.21").await.status, 200);
    // …so it no longer costs the first address anything.
    let remembered = attempt("stan:pass", "198.51.100.20").await;
    assert_eq!(remembered.status, 200);
}

/// Guessing at paths no route serves is counted per IP in the anonymous
/// tier, credentials or not: past the allowance it is a 429 (and is
/// summarised in the log), not an unlimited stream of 404 lines.
#[tokio::test]
async fn unknown_paths_count_against_the_anonymous_tier() {
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 3, period = \"60s\" }\n").await;
    for i in 0..3 {
        let res = anonymous_get(&t, &format!("/v1/nope{i}"), "203.0.113.9").await;
        assert_problem(&res, 404, "ROUTE_NOT_FOUND");
        assert_eq!(res.header("x-rate-limit-limit"), "3");
    }
    let res = anonymous_get(&t, "/zzz", "203.0.113.9").await;
    assert_problem(&res, 429, "RATE_LIMITED");
    assert!(!res.header("retry-after").is_empty());
    // A token does not buy more guesses at unknown paths.
    let res = t
        .get("/.well-known/nope")
        .sent_from("203.0.113.9")
        .send()
        .await;
    assert_eq!(res.status, 429);
    // Another address has its own allowance.
    let res = anonymous_get(&t, "/v1/nope", "203.0.113.10").await;
    assert_eq!(res.status, 404);
}

/// Two wrong HTTP Basic passwords from `ip` are refused as wrong (401);
/// the third is refused before it is checked (429).
async fn two_wrong_passwords_then_refused(t: &TestApp, path: &str, ip: &str) {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("stan:wrong");
    for expected in [401, 401, 429] {
        let res = t
            .get(path)
            .header("authorization", &format!("Basic {basic}"))
            .sent_from(ip)
            .send()
            .await;
        assert_eq!(
            res.status,
            expected,
            "{}",
            String::from_utf8_lossy(&res.body)
        );
    }
}

/// A catalogue anyone may read: one resource with empty scopes, one
/// that needs a token, one public resource with its own anonymous tier.
const CATALOGUE: &str = r#"
[[module]]
prefix = "/v1"

[[module.resource]]
name = "products"
table = "products"
scopes = { read = "", write = "" }
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string", required = true }

[[module.resource]]
name = "orders"
table = "orders"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
item = { type = "string" }

[[module.resource]]
name = "prices"
table = "prices"
scopes = { read = "" }
rate_limit = { anonymous = { requests = 2, period = "1m" } }
[module.resource.fields]
id    = { type = "integer", primary_key = true }
price = { type = "integer" }
"#;

/// Routes that need no scope are counted in the `public` tier (300 a
/// minute by default), not `anonymous` (10): a public catalogue stays
/// usable without a token. A resource's own `anonymous` limit still wins,
/// and a password tried on a public route is still charged to the
/// stricter tier.
#[tokio::test]
async fn public_routes_have_a_roomier_tier_of_their_own() {
    let t = TestApp::with(
        CATALOGUE,
        "[rate_limit]\nanonymous = { requests = 2, period = \"60s\" }\n",
        Registry::builtin(),
    )
    .await;
    for _ in 0..20 {
        let res = anonymous_get(&t, "/v1/products", "203.0.113.40").await;
        assert_eq!(res.status, 200);
        assert_eq!(res.header("ratelimit-policy"), "\"public\";q=300;w=60");
    }
    assert_eq!(
        anonymous_get(&t, "/v1/products", "203.0.113.40")
            .await
            .header("x-rate-limit-remaining"),
        "279"
    );
    // Writing is public too here; routes that need a scope are not.
    let res = t
        .post("/v1/products")
        .anonymous()
        .sent_from("203.0.113.40")
        .json(serde_json::json!({"name": "pen"}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    for expected in [401, 401, 429] {
        let res = anonymous_get(&t, "/v1/orders", "203.0.113.40").await;
        assert_eq!(res.status, expected);
        assert!(res.header("ratelimit-policy").starts_with("\"anonymous\""));
    }
    // A resource that set its own anonymous tier keeps it.
    for expected in [200, 200, 429] {
        let res = anonymous_get(&t, "/v1/prices", "203.0.113.41").await;
        assert_eq!(res.status, expected);
        assert!(res
            .header("ratelimit-policy")
            .starts_with("\"anonymous.v1.prices\""));
    }
    // Passwords tried on a public route are charged to `anonymous`.
    two_wrong_passwords_then_refused(&t, "/v1/products", "203.0.113.42").await;
    // Browsing from that address is not locked out by them.
    assert_eq!(
        anonymous_get(&t, "/v1/products", "203.0.113.42")
            .await
            .status,
        200
    );
    // With the public tier off, public routes are unlimited, but guessing
    // passwords there still is not.
    let t = TestApp::with(
        CATALOGUE,
        "[rate_limit]\nanonymous = { requests = 2, period = \"60s\" }\npublic = { requests = 0 }\n",
        Registry::builtin(),
    )
    .await;
    two_wrong_passwords_then_refused(&t, "/v1/products", "203.0.113.43").await;
}

/// The default token tier is one sign-in per 5 s sustained with bursts of
/// 10, so a standard client's flow (authorize, exchange, refresh, a
/// client_credentials call) passes at once; the refusal past the burst is
/// also an RFC 6749 error that OAuth2 clients report.
#[tokio::test]
async fn the_token_tier_absorbs_a_clients_burst_and_refuses_in_a_form_oauth2_clients_read() {
    let t = TestApp::demo_with("[rate_limit]\n").await;
    let grant = "grant_type=client_credentials&client_id=1&client_secret=pass2&scope=basic";
    for i in 0..10 {
        let res = t
            .post("/v1/access_token")
            .anonymous()
            .sent_from("192.0.2.50")
            .raw("application/x-www-form-urlencoded", grant)
            .send()
            .await;
        assert_eq!(res.status, 200, "request {i}");
        assert_eq!(res.header("x-rate-limit-limit"), "10");
        assert_eq!(res.header("ratelimit-policy"), "\"token\";q=10;w=50");
    }
    let res = t
        .post("/v1/access_token")
        .anonymous()
        .sent_from("192.0.2.50")
        .raw("application/x-www-form-urlencoded", grant)
        .send()
        .await;
    let body = assert_problem(&res, 429, "RATE_LIMITED");
    assert_eq!(body["error"], "temporarily_unavailable");
    let why = body["error_description"].as_str().unwrap();
    assert!(
        why.contains("1 request per 5 s") && why.contains("bursts of up to 10"),
        "{why}"
    );
    let retry: u64 = res.header("retry-after").parse().unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    // The browsable pages' sign-in shares the tier; a browser refused there
    // gets an error page, not JSON.
    let page = t
        .get("/_restkit/sign-in?next=/")
        .anonymous()
        .sent_from("192.0.2.50")
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(page.status, 429);
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{:?}",
        page.headers
    );
    // Elsewhere, a 429 keeps §7's numeric `error`.
    let t =
        TestApp::demo_with("[rate_limit]\nanonymous = { requests = 1, period = \"60s\" }\n").await;
    anonymous_get(&t, "/v1/books", "192.0.2.51").await;
    let res = anonymous_get(&t, "/v1/books", "192.0.2.51").await;
    let body = assert_problem(&res, 429, "RATE_LIMITED");
    assert_eq!(body["error"], 429);
    assert!(body.get("error_description").is_none());
}
