//! `TestApp`: the demo (or any model) over a fresh database, called
//! in-process.

use axum::body::Body;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use restkit::config::{Overrides, Settings};
use restkit::model::ApiModel;
use restkit::registry::Registry;
use restkit::{App, Identity};
use serde_json::Value;

pub struct TestApp {
    pub app: App,
    pub _dir: tempfile::TempDir,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// The path and query of the `Link` target with this `rel`.
    pub fn link(&self, rel: &str) -> Option<String> {
        let link = self.headers.get("link")?.to_str().ok()?;
        let entry = link
            .split(", ")
            .find(|l| l.ends_with(&format!("rel=\"{rel}\"")))?;
        let url = &entry[1..entry.find('>')?];
        Some(url.replace("http://api.test", ""))
    }

    /// The `cursor` parameter of the next page's link.
    pub fn next_cursor(&self) -> Option<String> {
        let next = self.link("next")?;
        let token = next.split("cursor=").nth(1)?.split('&').next()?;
        Some(token.to_string())
    }

    /// Field names of a 422/409 body's `errors`, sorted.
    pub fn error_fields(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.json()["errors"]
            .as_array()
            .expect("errors array")
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_string(),
                    e["code"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

/// The test suite's token signing key (tests/fixtures; test-only).
pub const TEST_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt-private.pem"
);

/// Settings from `toml` with the database at `url`; tokens are signed
/// with [`TEST_KEY`] unless `toml` names a key.
pub fn settings(toml: &str, url: &str) -> Settings {
    let mut s = Settings::load(
        toml,
        &Overrides {
            bind: None,
            database: Some(url.to_string()),
        },
    )
    .unwrap();
    if s.auth.private_key.is_empty() {
        s.auth.private_key = TEST_KEY.to_string();
    }
    s
}

/// A request under construction.
pub struct Call<'a> {
    app: &'a TestApp,
    req: http::request::Builder,
    body: Body,
}

impl<'a> Call<'a> {
    /// Adds a header. Sending credentials drops the default identity, so
    /// the request is authenticated by what it sends.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        if k.eq_ignore_ascii_case("authorization") {
            self = self.anonymous();
        }
        self.req = self.req.header(k, v);
        self
    }

    /// Sends no identity (requests act as stan, user 1, by default).
    pub fn anonymous(mut self) -> Self {
        if let Some(ext) = self.req.extensions_mut() {
            ext.remove::<Identity>();
        }
        self
    }

    /// Acts as a caller holding only `scopes`.
    pub fn with_scopes(mut self, scopes: &[&str]) -> Self {
        self.req = self.req.extension(Identity::user(1, "stan", scopes));
        self
    }

    /// Acts as this user (identity supplied by the caller, §2.2).
    pub fn by_user(mut self, id: i64) -> Self {
        let name = if id == 1 { "stan" } else { "ana" };
        self.req = self
            .req
            .extension(Identity::user(id, name, &["basic", "write"]));
        self
    }

    pub fn json(mut self, v: Value) -> Self {
        self.req = self.req.header(header::CONTENT_TYPE, "application/json");
        self.body = Body::from(v.to_string());
        self
    }

    pub fn raw(mut self, content_type: &str, body: &str) -> Self {
        self.req = self.req.header(header::CONTENT_TYPE, content_type);
        self.body = Body::from(body.to_string());
        self
    }

    pub async fn send(self) -> TestResponse {
        let req = self.req.body(self.body).unwrap();
        let res = self.app.app.call(req).await;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

impl TestApp {
    /// The demo API, seeded.
    pub async fn demo() -> TestApp {
        TestApp::with(restkit::demo::DEMO_TOML, "", Registry::builtin()).await
    }

    /// A model from TOML (plus extra settings TOML) and a registry.
    pub async fn with(model_toml: &str, settings_toml: &str, registry: Registry) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let text = format!("{model_toml}\n{settings_toml}");
        let settings = settings(&text, &url);
        let model = restkit::model::toml::parse(&text).unwrap();
        TestApp::from_model(model, settings, registry, dir).await
    }

    pub async fn from_model(
        model: ApiModel,
        settings: Settings,
        registry: Registry,
        dir: tempfile::TempDir,
    ) -> TestApp {
        let app = restkit::open(model, settings, &registry).await.unwrap();
        TestApp { app, _dir: dir }
    }

    /// An app opened elsewhere (its database lives where its caller says).
    pub fn from_app(app: App) -> TestApp {
        TestApp {
            app,
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A request acting as stan (user 1, scopes `basic write`): tests are
    /// identified callers unless they ask for `.anonymous()`.
    pub fn call(&self, method: Method, uri: &str) -> Call<'_> {
        Call {
            app: self,
            req: Request::builder()
                .method(method)
                .uri(uri)
                .header(header::HOST, "api.test")
                .extension(Identity::user(1, "stan", &["basic", "write"])),
            body: Body::empty(),
        }
    }

    pub fn get(&self, uri: &str) -> Call<'_> {
        self.call(Method::GET, uri)
    }
    pub fn post(&self, uri: &str) -> Call<'_> {
        self.call(Method::POST, uri)
    }
    pub fn put(&self, uri: &str) -> Call<'_> {
        self.call(Method::PUT, uri)
    }
    pub fn patch(&self, uri: &str) -> Call<'_> {
        self.call(Method::PATCH, uri)
    }
    pub fn delete(&self, uri: &str) -> Call<'_> {
        self.call(Method::DELETE, uri)
    }
}

/// Asserts the §7 error shape and returns the body.
pub fn assert_problem(res: &TestResponse, status: u16, code: &str) -> Value {
    assert_eq!(
        res.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&res.body)
    );
    assert_eq!(res.header("content-type"), "application/problem+json");
    let b = res.json();
    assert_eq!(b["status"], status);
    assert_eq!(b["error"], status);
    assert_eq!(b["errorCode"], code);
    assert_eq!(b["type"], "about:blank");
    for key in [
        "title",
        "detail",
        "userMessage",
        "devMessage",
        "more",
        "requestId",
    ] {
        assert!(b[key].is_string(), "missing {key} in {b}");
    }
    assert_eq!(b["requestId"], res.header("x-request-id"));
    b
}

impl TestApp {
    /// Inserts `count` rows into `table` straight through the store (no
    /// API, no validation), `row(n)` giving the values of `columns` for
    /// n = 0..count, in transactions of 1,000 rows.
    pub async fn fill<F>(&self, table: &str, columns: &[&str], count: i64, row: F)
    where
        F: Fn(i64) -> Vec<sea_query::Value>,
    {
        for start in (0..count).step_by(1000) {
            let mut insert = sea_query::Query::insert();
            insert
                .into_table(sea_query::Alias::new(table))
                .columns(columns.iter().map(|c| sea_query::Alias::new(*c)));
            for n in start..(start + 1000).min(count) {
                insert.values_panic(row(n).into_iter().map(sea_query::Expr::val));
            }
            self.app
                .state()
                .store
                .execute_batch(vec![insert])
                .await
                .unwrap();
        }
    }
}
