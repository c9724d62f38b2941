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
        "csv_header",
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
            "csv",
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
    if res.status.as_u16() < 400 {
        return Ok(());
    }
    let keys = [
        "type",
        "title",
        "status",
        "detail",
        "errorCode",
        "userMessage",
        "requestId",
    ];
    let ctype = res
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    match ctype {
        // XML was negotiated: the same members, as elements.
        Some("application/problem+xml; charset=UTF-8") => {
            let text = String::from_utf8_lossy(&res.body).to_string();
            let doc = roxmltree::Document::parse(&text)
                .map_err(|e| TestCaseError::fail(format!("{what}: error body is not XML: {e}")))?;
            let child = |name: &str| {
                doc.root_element()
                    .children()
                    .find(|c| c.tag_name().name() == name)
                    .and_then(|c| c.text().map(str::to_string))
            };
            for key in keys {
                prop_assert!(child(key).is_some(), "{what}: no {key} in {text}");
            }
            prop_assert_eq!(
                child("status"),
                Some(res.status.as_u16().to_string()),
                "{}",
                what
            );
        }
        // HTML was negotiated: a page that shows the error's members.
        Some("text/html; charset=UTF-8") => {
            let text = String::from_utf8_lossy(&res.body).to_string();
            prop_assert!(text.starts_with("<!DOCTYPE html>"), "{}: not a page", what);
            let status = format!("HTTP {}", res.status.as_u16());
            prop_assert!(text.contains(&status), "{}: no status", what);
            for key in keys {
                let member = format!("&quot;{key}&quot;");
                prop_assert!(text.contains(&member), "{}: no {} in the page", what, key);
            }
        }
        _ => {
            prop_assert_eq!(ctype, Some("application/problem+json"), "{}", what);
            let b: Value = serde_json::from_slice(&res.body)
                .map_err(|e| TestCaseError::fail(format!("{what}: error body is not JSON: {e}")))?;
            for key in keys {
                prop_assert!(b.get(key).is_some(), "{what}: no {key} in {b}");
            }
            prop_assert_eq!(
                b["status"].as_u64(),
                Some(res.status.as_u16() as u64),
                "{}",
                what
            );
        }
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
        "/v1/books.xml",
        "/v1/books/3.csv",
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
            ("accept", "application/xml"),
            ("accept", "text/csv"),
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
    ids.sort();
    ids
}

/// A seeded book's searchable values, straight from the seed's formula.
enum Cell {
    Text(String),
    Int(i64),
}

fn seeded(n: u32, field: &str) -> Cell {
    let (title, author, year) = restkit::demo::book(n);
    match field {
        "title" => Cell::Text(title),
        "author" => Cell::Text(author),
        "isbn" => Cell::Text(format!("978-0-0000-{n:04}")),
        _ => Cell::Int(year),
    }
}

/// An integer as the API reads one from text (`7`, `7.0`, `1e3`).
fn integral(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| {
        let f: f64 = s.parse().ok()?;
        (f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0).then_some(f as i64)
    })
}

/// The seeded ids a filter selects, computed here from the seed, without
/// restkit's query or SQL code; `None` when the value does not fit the
/// field (the API answers 400).
fn oracle(field: &str, op: &str, value: &str, as_q: bool) -> Option<Vec<i64>> {
    let int_field = field == "year";
    let wildcard = as_q && value.contains('*');
    if int_field && (wildcard || (op != "like" && integral(value).is_none())) {
        return None;
    }
    let matches = |cell: &Cell| -> bool {
        let text = match cell {
            Cell::Text(t) => t.clone(),
            Cell::Int(i) => i.to_string(),
        };
        if wildcard {
            // `*` is any run of characters, case-insensitively, whole value.
            let parts: Vec<String> = value.split('*').map(str::to_ascii_lowercase).collect();
            let text = text.to_ascii_lowercase();
            let mut rest = text.as_str();
            for (i, p) in parts.iter().enumerate() {
                if i == 0 {
                    let Some(r) = rest.strip_prefix(p.as_str()) else {
                        return false;
                    };
                    rest = r;
                } else if i == parts.len() - 1 {
                    return rest.len() >= p.len() && rest.ends_with(p.as_str());
                } else {
                    match rest.find(p.as_str()) {
                        Some(at) => rest = &rest[at + p.len()..],
                        None => return false,
                    }
                }
            }
            return rest.is_empty();
        }
        let ord = match cell {
            Cell::Int(i) => integral(value).map(|v| i.cmp(&v)),
            Cell::Text(t) => Some(t.as_str().cmp(value)),
        };
        match op {
            "eq" | "in" => ord == Some(std::cmp::Ordering::Equal),
            "neq" => ord != Some(std::cmp::Ordering::Equal),
            "lt" => ord == Some(std::cmp::Ordering::Less),
            "gte" => matches!(
                ord,
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            ),
            "like" => text
                .to_ascii_lowercase()
                .contains(&value.to_ascii_lowercase()),
            _ => false,
        }
    };
    Some(
        (1..=1000u32)
            .filter(|n| matches(&seeded(*n, field)))
            .map(i64::from)
            .collect(),
    )
}

#[test]
fn a_filtered_delete_removes_exactly_the_rows_the_seed_says_match() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let filters = (
        prop::sample::select(vec!["title", "author", "year", "isbn"]),
        prop::sample::select(vec!["eq", "neq", "lt", "gte", "like", "in"]),
        prop_oneof![
            (1950..2030i64).prop_map(|y| y.to_string()),
            (0..60u32).prop_map(|k| format!("Author {k}")),
            (1..1000u32).prop_map(|n| format!("Book {n}")),
            "[a-zA-Z0-9 %_*-]{0,6}",
            (1..1000u32).prop_map(|n| format!("978-0-0000-{n:04}")),
            Just("book 1*".to_string()),
        ],
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 30,
        failure_persistence: None,
        ..Config::default()
    });
    let deleted_something = std::cell::Cell::new(0);
    runner
        .run(&filters, |(field, op, value, as_q)| {
            let as_q = as_q && op == "eq";
            let value = if as_q {
                value.replace(['(', ')', ',', ':', '\\'], "")
            } else {
                value
            };
            let filter = if as_q {
                format!("q=({field}:{})", enc(&value))
            } else if op == "in" {
                format!("filter[{field}][in][]={}", enc(&value))
            } else {
                format!("filter[{field}][{op}]={}", enc(&value))
            };
            let expected = oracle(field, op, &value, as_q);
            // A fresh, seeded database per case: every case can delete.
            let t = rt.block_on(TestApp::demo());
            rt.block_on(async {
                let Some(expected) = expected else {
                    let res = t.get(&format!("/v1/books?{filter}")).send().await;
                    prop_assert_eq!(res.status.as_u16(), 400, "{}", filter);
                    let res = t.delete(&format!("/v1/books?{filter}")).send().await;
                    prop_assert_eq!(res.status.as_u16(), 400, "{}", filter);
                    return Ok(());
                };
                prop_assert_eq!(
                    &ids_matching(&t, &filter).await,
                    &expected,
                    "GET {}",
                    filter
                );
                let mut res = t.delete(&format!("/v1/books?{filter}")).send().await;
                if expected.len() == 1000 {
                    // A filter that matches every book deletes them only
                    // with all=true.
                    prop_assert_eq!(res.status.as_u16(), 400, "{}", filter);
                    res = t
                        .delete(&format!("/v1/books?{filter}&all=true"))
                        .send()
                        .await;
                }
                prop_assert_eq!(res.status.as_u16(), 200, "{}", filter);
                prop_assert_eq!(
                    res.json()["deleted"].as_u64(),
                    Some(expected.len() as u64),
                    "{}",
                    filter
                );
                let left: u64 = t
                    .get("/v1/books?limit=1")
                    .send()
                    .await
                    .header("x-pagination-total-count")
                    .parse()
                    .unwrap();
                prop_assert_eq!(left, 1000 - expected.len() as u64, "{}", filter);
                for id in expected.iter().take(3) {
                    let gone = t.get(&format!("/v1/books/{id}")).send().await;
                    prop_assert_eq!(gone.status.as_u16(), 404);
                }
                if !expected.is_empty() {
                    deleted_something.set(deleted_something.get() + 1);
                }
                Ok(())
            })
        })
        .unwrap();
    assert!(
        deleted_something.get() >= 5,
        "only {} of 30 cases deleted anything: the property is too weak",
        deleted_something.get()
    );
}
