//! §6 querying, §5.2–§5.4 pagination, envelope, suppressed codes, §4.4 bulk,
//! against the demo's 1000 seeded books.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect()
}

/// The demo's formula, to compute expected result sets independently.
fn author(n: i64) -> String {
    match n {
        1 | 2 => "John Doe".into(),
        3 => "Stanimir Stoyanov".into(),
        n => format!("Author {}", n % 50),
    }
}
fn year(n: i64) -> i64 {
    match n {
        1 | 2 => 2010,
        3 => 2016,
        n => 1950 + n % 70,
    }
}

#[tokio::test]
async fn search_is_exact_equality_anded() {
    let t = TestApp::demo().await;
    let res = t
        .get(&format!(
            "/v1/books?q={}&limit=100",
            enc("(author:Author 7,year:1957)")
        ))
        .send()
        .await;
    let expected: Vec<i64> = (4..=1000)
        .filter(|n| author(*n) == "Author 7" && year(*n) == 1957)
        .collect();
    assert_eq!(ids(&res.json()), expected);
    assert_eq!(
        res.header("x-pagination-total-count"),
        expected.len().to_string()
    );
    // Equality is case-sensitive.
    let res = t
        .get(&format!("/v1/books?q={}", enc("(author:author 7)")))
        .send()
        .await;
    assert_eq!(res.json(), json!([]));
}

#[tokio::test]
async fn search_wildcards_are_case_insensitive_and_escapes_work() {
    let t = TestApp::demo().await;
    let res = t
        .get(&format!(
            "/v1/books?q={}&limit=100&fields=id",
            enc("(title:book 99*)")
        ))
        .send()
        .await;
    assert_eq!(
        ids(&res.json()),
        vec![99, 990, 991, 992, 993, 994, 995, 996, 997, 998, 999]
    );
    t.post("/v1/books")
        .json(json!({"title": "A, B: (C)", "author": "X"}))
        .send()
        .await;
    let res = t
        .get(&format!("/v1/books?q={}", enc(r"(title:A\, B\: \(C\))")))
        .send()
        .await;
    assert_eq!(res.json()[0]["title"], "A, B: (C)");
    // % and _ are literal, not LIKE wildcards.
    let res = t
        .get(&format!("/v1/books?q={}", enc("(title:%*)")))
        .send()
        .await;
    assert_eq!(res.json(), json!([]));
}

#[tokio::test]
async fn malformed_or_unknown_queries_are_400_naming_the_problem() {
    let t = TestApp::demo().await;
    for (q, code, needle) in [
        ("q=(author:x", "INVALID_QUERY", "q"),
        ("q=(nope:1)", "UNKNOWN_FIELD", "nope"),
        ("q=(internalNote:x)", "UNKNOWN_FIELD", "internalNote"),
        ("q=(year:abc)", "INVALID_QUERY", "year"),
        ("sort=-bogus", "UNKNOWN_FIELD", "bogus"),
        ("fields=id,secret", "UNKNOWN_FIELD", "secret"),
        ("expand=authors", "UNKNOWN_FIELD", "authors"),
        ("filter=not%20json", "INVALID_QUERY", "filter"),
        ("filter%5Byear%5D%5Bgte%5D=abc", "INVALID_QUERY", "year"),
        ("filter%5Byear%5D%5Bnear%5D=1", "INVALID_QUERY", "near"),
        ("timestamp=yesterday", "INVALID_QUERY", "timestamp"),
        ("cursor=forged.cursor", "INVALID_CURSOR", "cursor"),
    ] {
        let res = t.get(&format!("/v1/books?{q}")).send().await;
        let b = assert_problem(&res, 400, code);
        assert!(b["detail"].as_str().unwrap().contains(needle), "{q}: {b}");
    }
}

#[tokio::test]
async fn hostile_strings_are_400_or_empty_never_executed() {
    let t = TestApp::demo().await;
    for q in [
        "(title:x'); DROP TABLE books;--)",
        "(title:x\\'); DROP TABLE books;--)",
        "(title:' OR '1'='1)",
        "(title:\" OR 1=1 --)",
    ] {
        let res = t.get(&format!("/v1/books?q={}", enc(q))).send().await;
        assert!(
            res.status == 400 || res.json() == json!([]),
            "{q}: {}",
            res.status
        );
    }
    let f = r#"[{"field":"title","operator":"=","value":"x' OR 1=1 --"}]"#;
    assert_eq!(
        t.get(&format!("/v1/books?filter={}", enc(f)))
            .send()
            .await
            .json(),
        json!([])
    );
    let f = r#"[{"field":"title; DROP TABLE books","operator":"=","value":"x"}]"#;
    assert_problem(
        &t.get(&format!("/v1/books?filter={}", enc(f))).send().await,
        400,
        "UNKNOWN_FIELD",
    );
    let res = t.get("/v1/books?limit=1").send().await;
    assert_eq!(res.header("x-pagination-total-count"), "1000");
}

#[tokio::test]
async fn json_and_bracket_filters_agree() {
    let t = TestApp::demo().await;
    let json_f = r#"[{"field":"year","operator":">=","value":2015},{"field":"year","operator":"<","value":2017},{"field":"author","operator":"in","value":["Author 10","Author 11","Stanimir Stoyanov"]}]"#;
    let a = t
        .get(&format!(
            "/v1/books?filter={}&limit=100&fields=id",
            enc(json_f)
        ))
        .send()
        .await
        .json();
    let b = t
        .get("/v1/books?filter[year][gte]=2015&filter[year][lt]=2017&filter[author][in][]=Author+10&filter[author][in][]=Author+11&filter[author][in][]=Stanimir+Stoyanov&limit=100&fields=id")
        .send()
        .await
        .json();
    let expected: Vec<i64> = (1..=1000)
        .filter(|n| {
            (2015..2017).contains(&year(*n))
                && ["Author 10", "Author 11", "Stanimir Stoyanov"].contains(&author(*n).as_str())
        })
        .collect();
    assert_eq!(ids(&a), expected);
    assert_eq!(a, b);
}

#[tokio::test]
async fn filter_groups_like_and_nin() {
    let t = TestApp::demo().await;
    let f = r#"{"or":[{"field":"year","operator":"<","value":1951},{"not":{"field":"year","operator":"<","value":2019}}]}"#;
    let got = ids(&t
        .get(&format!("/v1/books?filter={}&limit=100&fields=id", enc(f)))
        .send()
        .await
        .json());
    let expected: Vec<i64> = (1..=1000)
        .filter(|n| year(*n) < 1951 || year(*n) >= 2019)
        .take(100)
        .collect();
    assert_eq!(got, expected);
    let b = ids(&t.get("/v1/books?filter[or][0][year][lt]=1951&filter[or][1][not][year][lt]=2019&limit=100&fields=id").send().await.json());
    assert_eq!(b, expected);
    let like = r#"[{"field":"title","operator":"like","value":"OF BOOK"}]"#;
    assert_eq!(
        ids(&t
            .get(&format!("/v1/books?filter={}", enc(like)))
            .send()
            .await
            .json()),
        vec![2]
    );
    let nin = t
        .get("/v1/books?filter[id][nin][]=1&filter[id][nin][]=2&limit=1&fields=id")
        .send()
        .await
        .json();
    assert_eq!(ids(&nin), vec![3]);
}

#[tokio::test]
async fn partial_responses_in_both_spellings() {
    let t = TestApp::demo().await;
    for f in ["(id,title)", "id,title"] {
        let one = t
            .get(&format!("/v1/books/3?fields={}", enc(f)))
            .send()
            .await
            .json();
        assert_eq!(one, json!({"id": 3, "title": "OAuth2 with Phalcon"}));
        let list = t
            .get(&format!("/v1/books?limit=1&fields={}", enc(f)))
            .send()
            .await
            .json();
        assert_eq!(list, json!([{"id": 1, "title": "Greatest book"}]));
    }
    let list = t.get("/v1/books?limit=1&fields=title").send().await.json();
    assert_eq!(list, json!([{"title": "Greatest book"}]));
}

/// Generated clients send an array parameter as the key repeated
/// (OpenAPI's `form` style exploded): for the list parameters that means
/// the same as the comma list. Other parameters given twice stay a 400,
/// and `all` anywhere but a collection DELETE is one too.
#[tokio::test]
async fn list_parameters_accept_the_key_repeated() {
    let t = TestApp::demo().await;
    let listed = t
        .get("/v1/books?sort=-year,title&fields=(id,year)&limit=5")
        .send()
        .await
        .json();
    for q in [
        "sort=-year&sort=title&fields=id&fields=year&limit=5",
        "sort=-year&sort=title&fields=(id)&fields=(year)&limit=5",
    ] {
        let res = t.get(&format!("/v1/books?{q}")).send().await;
        assert_eq!(res.status, 200, "{q}");
        assert_eq!(res.json(), listed, "{q}");
    }
    let one = t
        .get("/v1/books/3?fields=id&fields=title")
        .send()
        .await
        .json();
    assert_eq!(one, json!({"id": 3, "title": "OAuth2 with Phalcon"}));
    for q in [
        "limit=2&limit=3",
        "cursor=&cursor=",
        "q=(year:1)&q=(year:2)",
    ] {
        let res = t.get(&format!("/v1/books?{q}")).send().await;
        let b = assert_problem(&res, 400, "INVALID_QUERY");
        assert!(
            b["detail"].as_str().unwrap().contains("more than once"),
            "{q}: {b}"
        );
    }
    for path in ["/v1/books?all=true", "/v1/books/3?all=true"] {
        let res = t.get(path).send().await;
        let b = assert_problem(&res, 400, "INVALID_QUERY");
        assert!(b["detail"].as_str().unwrap().contains("'all'"), "{b}");
    }
}

/// A field named twice is shown once, in a relation's fields as at the
/// top (PostgreSQL refuses a column selected twice: this was a 500 there).
#[tokio::test]
async fn a_field_named_twice_is_shown_once() {
    let t = TestApp::demo().await;
    for path in [
        "/v1/books/3?expand=reviews&fields=reviews.createdAt,year,reviews.createdAt",
        "/v1/books?limit=2&fields=reviews.rating,reviews.rating,id,id",
    ] {
        let res = t.get(path).send().await;
        assert_eq!(
            res.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
}

#[tokio::test]
async fn expand_embeds_relations_with_their_own_fields() {
    let t = TestApp::demo().await;
    for (user, rating) in [(1, 5), (2, 3)] {
        t.post("/v1/books/2/reviews")
            .by_user(user)
            .json(json!({"rating": rating, "body": "b"}))
            .send()
            .await;
    }
    let res = t
        .get("/v1/books?limit=2&expand=reviews&fields=id,reviews.rating")
        .send()
        .await
        .json();
    assert_eq!(
        res,
        json!([{"id": 1, "reviews": []}, {"id": 2, "reviews": [{"rating": 5}, {"rating": 3}]}])
    );
    let full = t
        .get("/v1/books?limit=2&offset=1&expand=reviews")
        .send()
        .await
        .json();
    let review = &full[0]["reviews"][0];
    assert_eq!(review["bookId"], 2);
    assert!(review.get("userId").is_some());
    let bad = t
        .get("/v1/books?expand=reviews&fields=id,reviews.secret")
        .send()
        .await;
    assert_problem(&bad, 400, "UNKNOWN_FIELD");
}

#[tokio::test]
async fn sort_is_total_and_pages_never_overlap_or_skip() {
    let t = TestApp::demo().await;
    // Some nulls in the sort key, too.
    for id in [5, 50, 500] {
        t.patch(&format!("/v1/books/{id}"))
            .json(json!({"year": null}))
            .send()
            .await;
    }
    for sort in ["-year,title", "year", "author,-id", "-author"] {
        let mut seen = Vec::new();
        for page in 1..=10 {
            let res = t
                .get(&format!(
                    "/v1/books?sort={sort}&page={page}&per-page=100&fields=id,year,title,author"
                ))
                .send()
                .await;
            seen.extend(res.json().as_array().unwrap().clone());
        }
        let set: HashSet<i64> = seen.iter().map(|b| b["id"].as_i64().unwrap()).collect();
        assert_eq!(set.len(), 1000, "{sort}: overlap or gap");
        if sort == "-year,title" {
            for w in seen.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                let ya = a["year"].as_i64().unwrap_or(i64::MIN);
                let yb = b["year"].as_i64().unwrap_or(i64::MIN);
                assert!(
                    ya > yb || (ya == yb && a["title"].as_str() <= b["title"].as_str()),
                    "{a} then {b}"
                );
            }
        }
    }
}

#[tokio::test]
async fn cursor_pages_walk_everything_and_refuse_tampering() {
    let t = TestApp::demo().await;
    t.patch("/v1/books/77")
        .json(json!({"year": null}))
        .send()
        .await;
    let mut uri = "/v1/books?sort=-year&limit=100&cursor=&fields=id".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let res = t.get(&uri).send().await;
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
        seen.extend(ids(&res.json()));
        pages += 1;
        assert!(res.link("last").is_none());
        let Some(next) = res.link("next") else {
            break;
        };
        uri = next;
        assert!(pages < 20);
    }
    assert_eq!(pages, 10);
    assert_eq!(seen.len(), 1000);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 1000);
    assert_eq!(
        *seen.last().unwrap(),
        77,
        "NULL years sort last when descending"
    );

    let res = t.get("/v1/books?sort=-year&limit=10&cursor=").send().await;
    let token = res.next_cursor().unwrap();
    let other_sort = t
        .get(&format!("/v1/books?sort=year&limit=10&cursor={token}"))
        .send()
        .await;
    assert_problem(&other_sort, 400, "INVALID_CURSOR");
    let by_title = t.get("/v1/books?sort=title&limit=10&cursor=").send().await;
    let title_token = by_title.next_cursor().unwrap();
    assert_eq!(
        t.get(&format!(
            "/v1/books?sort=title&limit=10&cursor={title_token}"
        ))
        .send()
        .await
        .status,
        200
    );
    let other_resource = t
        .get(&format!(
            "/v2/books?sort=title&limit=10&cursor={title_token}"
        ))
        .send()
        .await;
    assert_problem(&other_resource, 400, "INVALID_CURSOR");
    let mut forged = token.into_bytes();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_problem(
        &t.get(&format!("/v1/books?sort=-year&cursor={forged}"))
            .send()
            .await,
        400,
        "INVALID_CURSOR",
    );
}

#[tokio::test]
async fn offsets_beyond_sql_integers_are_empty_pages_not_errors() {
    let t = TestApp::demo().await;
    for q in [
        "offset=18446744073709551615",
        "page=18446744073709551615",
        "limit=18446744073709551615",
        // One record per page: the page number is u64::MAX + 1, saturated
        // (this overflowed, a 500 the contract fuzzer found).
        "offset=18446744073709551615&per-page=1",
        "offset=18446744073709551615&per-page=1&envelope=true",
        "offset=18446744073709551615&limit=1",
    ] {
        let res = t.get(&format!("/v1/books?{q}")).send().await;
        assert_eq!(
            res.status,
            200,
            "{q}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    assert_eq!(
        t.get("/v1/books?offset=18446744073709551615")
            .send()
            .await
            .json(),
        json!([])
    );
    let res = t
        .get("/v1/books?offset=18446744073709551615&per-page=1")
        .send()
        .await;
    assert_eq!(
        res.header("x-pagination-current-page"),
        u64::MAX.to_string()
    );
}

#[tokio::test]
async fn count_modes_follow_prefer() {
    let t = TestApp::demo().await;
    let none = t
        .get("/v1/books?limit=10")
        .header("prefer", "count=none")
        .send()
        .await;
    assert!(none.headers.get("x-pagination-total-count").is_none());
    assert!(none.headers.get("x-pagination-page-count").is_none());
    assert!(!none.header("link").contains("rel=\"last\""));
    assert!(none.header("link").contains("rel=\"next\""));
    assert_eq!(none.header("preference-applied"), "count=none");
    let env = t
        .get("/v1/books?limit=10&envelope=true")
        .header("prefer", "count=none")
        .send()
        .await
        .json();
    assert!(env["_meta"].get("totalCount").is_none() && env["_links"].get("last").is_none());
    let est = t
        .get("/v1/books?limit=10")
        .header("prefer", "count=estimated")
        .send()
        .await;
    assert_eq!(est.header("x-pagination-total-count"), "1000");
    assert_eq!(est.header("preference-applied"), "count=estimated");
    let exact = t.get("/v1/books?limit=10").send().await;
    assert!(exact.headers.get("preference-applied").is_none());
    let last = t
        .get("/v1/books?limit=10&offset=990")
        .header("prefer", "count=none")
        .send()
        .await;
    assert!(!last.header("link").contains("rel=\"next\""));
}

#[tokio::test]
async fn envelope_wraps_collections_and_records() {
    let t = TestApp::demo().await;
    let b = t
        .get("/v1/books?q=(author:John%20Doe)&envelope=true")
        .send()
        .await
        .json();
    assert_eq!(b["_meta"]["status"], "SUCCESS");
    assert_eq!(b["_meta"]["count"], 2);
    assert_eq!(b["_meta"]["totalCount"], 2);
    assert_eq!(b["_meta"]["pageCount"], 1);
    assert_eq!(b["_meta"]["currentPage"], 1);
    assert_eq!(b["_meta"]["perPage"], 20);
    assert!(b["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .starts_with("http://api.test/v1/books?"));
    assert!(b["_links"]["last"]["href"].is_string());
    assert_eq!(ids(&b["records"]), vec![1, 2]);
    let one = t.get("/v1/books/3?envelope=true").send().await.json();
    assert_eq!(one["record"]["id"], 3);
}

#[tokio::test]
async fn suppressed_error_codes_answer_200_with_x_status() {
    let t = TestApp::demo().await;
    let res = t
        .get("/v1/books/99999?suppress_error_codes=true")
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-status"), "ERROR");
    assert_eq!(res.json()["status"], 404);
    assert_eq!(res.json()["errorCode"], "RESOURCE_NOT_FOUND");
    let ok = t.get("/v1/books/1?suppress_error_codes=true").send().await;
    assert_eq!(ok.header("x-status"), "SUCCESS");
    let normal = t.get("/v1/books/99999").send().await;
    assert_eq!(normal.status, 404);
    assert_eq!(normal.header("x-status"), "ERROR");
}

#[tokio::test]
async fn guard_rails_bound_hostile_queries() {
    let t = TestApp::demo().await;
    let many: Vec<String> = (0..51)
        .map(|i| format!(r#"{{"field":"id","operator":"!=","value":{i}}}"#))
        .collect();
    let res = t
        .get(&format!(
            "/v1/books?filter={}",
            enc(&format!("[{}]", many.join(",")))
        ))
        .send()
        .await;
    assert_problem(&res, 400, "INVALID_QUERY");
    let big_in: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let f = format!(
        r#"[{{"field":"id","operator":"in","value":[{}]}}]"#,
        big_in.join(",")
    );
    assert_problem(
        &t.get(&format!("/v1/books?filter={}", enc(&f))).send().await,
        400,
        "INVALID_QUERY",
    );
    let deep = format!(
        "{}{{\"field\":\"id\",\"value\":1}}{}",
        "{\"not\":".repeat(9),
        "}".repeat(9)
    );
    assert_problem(
        &t.get(&format!("/v1/books?filter={}", enc(&deep)))
            .send()
            .await,
        400,
        "INVALID_QUERY",
    );
    let long = format!("/v1/books?q=(title:{})", "a".repeat(9000));
    assert_problem(&t.get(&long).send().await, 414, "URI_TOO_LONG");
    let ok_in: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    let f = format!(
        r#"[{{"field":"id","operator":"in","value":[{}]}}]"#,
        ok_in.join(",")
    );
    assert_eq!(
        t.get(&format!("/v1/books?filter={}&limit=1", enc(&f)))
            .send()
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn bulk_put_is_all_or_nothing_with_indexed_errors() {
    let t = TestApp::demo().await;
    let body = json!([
        {"id": 1, "title": "One", "author": "A"},
        {"id": 2, "title": "Two", "author": "B"},
        {"id": 3, "title": "", "author": "C", "year": 3000},
    ]);
    let res = t.put("/v1/books").json(body).send().await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(
        res.error_fields(),
        [
            ("[2].title".into(), "min_length".into()),
            ("[2].year".into(), "maximum".into())
        ]
    );
    assert_eq!(
        t.get("/v1/books/1").send().await.json()["title"],
        "Greatest book"
    );

    let res = t.put("/v1/books").json(json!([{"id": 1, "title": "One", "author": "A"}, {"id": 99999, "title": "X", "author": "Y"}])).send().await;
    assert_problem(&res, 404, "RESOURCE_NOT_FOUND");
    assert_eq!(
        t.get("/v1/books/1").send().await.json()["title"],
        "Greatest book"
    );

    let res = t.put("/v1/books").json(json!([{"id": 1, "title": "One", "author": "A"}, {"id": 2, "title": "Two", "author": "B"}])).send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()[1]["title"], "Two");
    assert_eq!(t.get("/v1/books/2").send().await.json()["author"], "B");
    let res = t
        .put("/v1/books")
        .json(json!([{"title": "no id", "author": "A"}]))
        .send()
        .await;
    assert_eq!(res.error_fields(), [("[0].id".into(), "required".into())]);
}

#[tokio::test]
async fn bulk_delete_needs_a_filter_or_all() {
    let t = TestApp::demo().await;
    assert_problem(&t.delete("/v1/books").send().await, 400, "INVALID_QUERY");
    let res = t
        .delete(&format!("/v1/books?q={}", enc("(author:Author 7)")))
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), json!({"deleted": 20}));
    let left = t.get("/v1/books?limit=1").send().await;
    assert_eq!(left.header("x-pagination-total-count"), "980");
    let res = t.delete("/v1/books?all=true").send().await;
    assert_eq!(res.json(), json!({"deleted": 980}));
}

const ROWS: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "rows"
table = "rows"
[module.resource.fields]
id  = { type = "integer", primary_key = true }
tag = { type = "string" }
"#;

/// `Prefer: count=estimated` past the 10,000 rows it counts exactly: an
/// unfiltered table is estimated from its keys — near the real count even
/// when deletions left every other key unused — and named as an estimate;
/// below the threshold the count is exact.
#[tokio::test]
async fn an_estimated_count_past_ten_thousand_rows_is_near_the_real_count() {
    let t = TestApp::with(ROWS, "", restkit::registry::Registry::builtin()).await;
    // 30,000 rows in one statement, then every other one of them deleted
    // (as a long-lived table's gaps), and 50 more: 15,050 rows, keys
    // 1..=30,050.
    let raw = crate::db::Raw::connect(&t.url).await;
    for sql in [
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) \
         INSERT INTO rows (id, tag) SELECT i, 'many' FROM n",
        "DELETE FROM rows WHERE id % 2 = 0",
        "WITH RECURSIVE n(i) AS (SELECT 30001 UNION ALL SELECT i + 1 FROM n WHERE i < 30050) \
         INSERT INTO rows (id, tag) SELECT i, 'few' FROM n",
    ] {
        raw.execute(sql).await;
    }
    raw.close().await;
    let count = |query: &'static str, prefer: &'static str| {
        let t = &t;
        async move {
            let res = t
                .get(&format!("/api/rows?limit=5{query}"))
                .header("prefer", prefer)
                .send()
                .await;
            assert_eq!(res.status, 200);
            let total: u64 = res.header("x-pagination-total-count").parse().unwrap();
            (total, res.header("preference-applied").to_string())
        }
    };
    assert_eq!(
        count("", "count=exact").await,
        (15_050, "count=exact".into())
    );
    let (estimate, applied) = count("", "count=estimated").await;
    assert_eq!(applied, "count=estimated");
    assert!(
        (14_000..=16_000).contains(&estimate),
        "estimated {estimate} rows of 15,050"
    );
    // Below the threshold, exact (and still the mode asked for).
    assert_eq!(
        count("&filter[tag]=few", "count=estimated").await,
        (50, "count=estimated".into())
    );
    // Filtered past it: the bound counted, reported as an estimate.
    assert_eq!(
        count("&filter[tag]=many", "count=estimated").await,
        (10_001, "count=estimated".into())
    );
}

/// The case rule for `like` and `*`, the same on both databases: ASCII
/// letters match either case; other letters (É/é, ẞ/ß) match only as
/// written (SQLite's LIKE folds ASCII only, and PostgreSQL's ILIKE under
/// the "C" collation does the same). Text sorts by code point on both.
#[tokio::test]
async fn case_folding_and_text_order_follow_one_rule_on_both_databases() {
    let t = TestApp::demo().await;
    for title in ["Émile Zola Ünd", "émile zola ünd", "STRASSE ẞ", "strasse ß"] {
        let res = t
            .post("/v1/books")
            .json(json!({"title": title, "author": "Fold"}))
            .send()
            .await;
        assert_eq!(res.status, 201);
    }
    let titles = |query: String| {
        let t = &t;
        async move {
            let res = t
                .get(&format!("/v1/books?filter[author]=Fold&sort=title&{query}"))
                .send()
                .await;
            assert_eq!(res.status, 200, "{query}");
            res.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["title"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    // Code-point order: 'S' < 's' < 'É' (U+00C9) < 'é' (U+00E9).
    assert_eq!(
        titles(String::new()).await,
        ["STRASSE ẞ", "strasse ß", "Émile Zola Ünd", "émile zola ünd"]
    );
    assert_eq!(
        titles(format!("filter[title][like]={}", enc("ZOLA"))).await,
        ["Émile Zola Ünd", "émile zola ünd"]
    );
    assert_eq!(
        titles(format!("filter[title][like]={}", enc("émile"))).await,
        ["émile zola ünd"]
    );
    assert_eq!(
        titles(format!("filter[title][like]={}", enc("ß"))).await,
        ["strasse ß"]
    );
    assert_eq!(
        titles(format!("q=(title:{})", enc("*ünd"))).await,
        ["émile zola ünd"]
    );
    assert_eq!(
        titles(format!("q=(title:{})", enc("strasse*"))).await,
        ["STRASSE ẞ", "strasse ß"]
    );
}
