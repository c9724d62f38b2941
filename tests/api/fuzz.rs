//! Property tests over whole requests: combinations of methods, paths,
//! query parameters, bodies and headers never produce a 5xx, every error
//! is in the §7 form, and a filtered DELETE removes exactly the rows a GET
//! with the same filter lists.

use http::Method;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::helpers::{TestApp, TestResponse};

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn param() -> impl Strategy<Value = (String, String)> {
    let names = prop::sample::select(vec![
        "q",
        "filter",
        "filter[year][gte]",
        "filter[title][like]",
        "filter[or][0][title][like]",
        "filter[not][author][in][]",
        "filter[author]",
        "fields",
        "sort",
        "expand",
        "cursor",
        "limit",
        "offset",
        "page",
        "per-page",
        "timestamp",
        "sync_mark",
        "envelope",
        "all",
        "type",
        "suppress_error_codes",
    ]);
    let values = prop_oneof![
        ".{0,40}",
        "[()\\[\\]{}:,*%_'\"\\\\ a-z0-9.-]{0,30}",
        prop::sample::select(vec![
            r#"[{"field":"year","operator":"in","value":[1,"x",null]}]"#,
            r#"{"not":{"or":[]}}"#,
            r#"[{"field":"title","operator":"like","value":"\u0000"}]"#,
            "18446744073709551615",
            "99999999999999999999999",
            "253402300800000",
            "-1",
            "1e3",
            "1999.0",
            "id,title,reviews.rating",
            "reviews",
            "-year,title",
            "(title:Book 1*)",
            "(author:Author 7,year:1957)",
            "true",
            "json",
            "xml",
            "",
            "%00",
        ])
        .prop_map(str::to_string),
    ];
    (names.prop_map(str::to_string), values)
}

fn body() -> impl Strategy<Value = Option<(&'static str, String)>> {
    let json_bodies = prop::sample::select(vec![
        r#"{"title":"t","author":"a","year":1999.0}"#,
        r#"{"title":"t","author":"a","year":1e19}"#,
        r#"{"title":null}"#,
        r#"{"year":"x","bogus":1}"#,
        r#"[{"id":1,"title":"a","author":"b"},{"id":1,"title":"c","author":"d"}]"#,
        r#"[{"id":2.0,"title":"a","author":"b","isbn":"978-0-0000-0003"}]"#,
        r#"{"title":"a\u0000b","author":"x"}"#,
        r#"{"rating":5.0,"body":"ok"}"#,
        r#"{"_links":{"self":{"href":"x"}},"title":"t","author":"a"}"#,
        "[]",
        "{",
        "null",
        "\"text\"",
    ]);
    prop_oneof![
        Just(None),
        json_bodies.prop_map(|b| Some(("application/json", b.to_string()))),
        "[a-z\\[\\]=&0-9.%]{0,40}".prop_map(|b| Some(("application/x-www-form-urlencoded", b))),
        ".{0,20}".prop_map(|b| Some(("text/plain", b))),
    ]
}

fn assert_problem_form(res: &TestResponse, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        res.status.as_u16() < 500,
        "{what} → {}: {}",
        res.status,
        String::from_utf8_lossy(&res.body)
    );
    if res.status.as_u16() >= 400 {
        let ctype = res
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        prop_assert_eq!(ctype, Some("application/problem+json"), "{}", what);
        let b: Value = serde_json::from_slice(&res.body)
            .map_err(|e| TestCaseError::fail(format!("{what}: error body is not JSON: {e}")))?;
        for key in [
            "type",
            "title",
            "status",
            "detail",
            "errorCode",
            "userMessage",
            "requestId",
        ] {
            prop_assert!(b.get(key).is_some(), "{what}: no {key} in {b}");
        }
        prop_assert_eq!(
            b["status"].as_u64(),
            Some(res.status.as_u16() as u64),
            "{}",
            what
        );
    }
    Ok(())
}

#[test]
fn combined_requests_never_fail_on_our_side_and_errors_keep_their_form() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(TestApp::demo());
    let methods = prop::sample::select(vec![
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ]);
    let paths = prop::sample::select(vec![
        "/v1/books",
        "/v1/books/3",
        "/v1/books/3.json",
        "/v1/books/999999",
        "/v1/books/3/reviews",
        "/v1/books/3/borrow",
        "/v1/shelves",
        "/v2/books/5",
        "/v1/health/echo",
        "/nope",
    ]);
    let headers = prop::sample::subsequence(
        vec![
            ("accept", "text/html"),
            ("accept", "application/json;q=0.5, */*;q=0.1"),
            ("accept", "application/vnd.restkit.v9+json"),
            ("prefer", "return=minimal, count=none"),
            ("prefer", "count=estimated"),
            ("authorization", "Basic c3RhbjpXUk9ORw=="),
            ("x-request-id", "a b"),
        ],
        0..3,
    );
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                methods,
                paths,
                prop::collection::vec(param(), 0..4),
                body(),
                headers,
                any::<bool>(),
            ),
            |(method, path, params, body, headers, anonymous)| {
                let query: Vec<String> = params
                    .iter()
                    .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                    .collect();
                let uri = format!("{path}?{}", query.join("&"));
                let what = format!("{method} {uri} {body:?} {headers:?}");
                let mut call = t.call(method.clone(), &uri);
                if anonymous {
                    call = call.anonymous();
                }
                for (k, v) in &headers {
                    call = call.header(k, v);
                }
                if let Some((ctype, text)) = &body {
                    call = call.raw(ctype, text);
                }
                let res = rt.block_on(call.send());
                if method == Method::HEAD {
                    prop_assert!(res.body.is_empty(), "{what}: HEAD with a body");
                    prop_assert!(res.status.as_u16() < 500, "{what} → {}", res.status);
                    return Ok(());
                }
                assert_problem_form(&res, &what)
            },
        )
        .unwrap();
}

/// Every id a GET with `filter` lists, across pages.
async fn ids_matching(t: &TestApp, filter: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut next = Some(format!("/v1/books?{filter}&fields=id&per-page=100"));
    while let Some(uri) = next {
        let res = t.get(&uri).send().await;
        assert_eq!(
            res.status,
            200,
            "{uri}: {}",
            String::from_utf8_lossy(&res.body)
        );
        ids.extend(
            res.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_i64().unwrap()),
        );
        next = res.link("next");
    }
    ids
}

#[test]
fn a_filtered_delete_removes_exactly_what_the_same_get_lists() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(TestApp::demo());
    let filters = (
        prop::sample::select(vec!["title", "author", "year", "isbn"]),
        prop::sample::select(vec!["eq", "neq", "lt", "gte", "like", "in"]),
        prop_oneof![
            (1950..2030i64).prop_map(|y| y.to_string()),
            (0..60u32).prop_map(|k| format!("Author {k}")),
            (1..1000u32).prop_map(|n| format!("Book {n}")),
            "[a-zA-Z0-9 %_*-]{0,6}",
            (1..1000u32).prop_map(|n| format!("978-0-0000-{n:04}")),
        ],
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&filters, |(field, op, value, as_q)| {
            let filter = if as_q && op == "eq" {
                format!(
                    "q=({field}:{})",
                    enc(&value.replace(['(', ')', ',', ':', '\\'], ""))
                )
            } else if op == "in" {
                format!("filter[{field}][in][]={}", enc(&value))
            } else {
                format!("filter[{field}][{op}]={}", enc(&value))
            };
            rt.block_on(async {
                let probe = t.get(&format!("/v1/books?{filter}&limit=1")).send().await;
                if probe.status != 200 {
                    // A value of the wrong type is a 400 for GET and DELETE alike.
                    prop_assert_eq!(probe.status.as_u16(), 400);
                    let res = t.delete(&format!("/v1/books?{filter}")).send().await;
                    prop_assert_eq!(res.status.as_u16(), 400, "{}", filter);
                    return Ok(());
                }
                let total_before: u64 = t
                    .get("/v1/books?limit=1")
                    .send()
                    .await
                    .header("x-pagination-total-count")
                    .parse()
                    .unwrap();
                let listed = ids_matching(&t, &filter).await;
                let res = t.delete(&format!("/v1/books?{filter}")).send().await;
                prop_assert_eq!(res.status.as_u16(), 200, "{}", filter);
                prop_assert_eq!(
                    res.json()["deleted"].as_u64(),
                    Some(listed.len() as u64),
                    "{}",
                    filter
                );
                let total_after: u64 = t
                    .get("/v1/books?limit=1")
                    .send()
                    .await
                    .header("x-pagination-total-count")
                    .parse()
                    .unwrap();
                prop_assert_eq!(
                    total_after,
                    total_before - listed.len() as u64,
                    "{}",
                    filter
                );
                prop_assert!(ids_matching(&t, &filter).await.is_empty(), "{}", filter);
                for id in listed.iter().take(5) {
                    let gone = t.get(&format!("/v1/books/{id}")).send().await;
                    prop_assert_eq!(gone.status.as_u16(), 404);
                }
                Ok(())
            })
        })
        .unwrap();
}
