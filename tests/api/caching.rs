//! Conditional requests and caching (§5.6): strong ETags on every GET/HEAD
//! 200 in every format, If-None-Match → 304, If-Match on writes → 412 with
//! nothing written, Cache-Control.

use std::sync::Arc;

use restkit::registry::Registry;
use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn every_read_is_tagged_and_revalidates_to_304() {
    let t = TestApp::demo().await;
    for path in [
        "/v1/books/3",
        "/v1/books?limit=2",
        "/v1/books/3.xml",
        "/v1/books.csv?limit=2",
        "/v2/books/3",
    ] {
        let res = t.get(path).send().await;
        assert_eq!(res.status, 200, "{path}");
        let tag = res.header("etag").to_string();
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() > 10,
            "{path}: {tag}"
        );
        assert_eq!(res.header("cache-control"), "no-cache");
        let head = t.call(http::Method::HEAD, path).send().await;
        assert_eq!(head.header("etag"), tag, "{path}: HEAD carries GET's tag");
        for ask in [
            tag.clone(),
            "*".to_string(),
            format!("\"other\", {tag}"),
            format!("W/{tag}"),
        ] {
            let res = t.get(path).header("if-none-match", &ask).send().await;
            assert_eq!(res.status, 304, "{path} with {ask}");
            assert!(res.body.is_empty());
            assert_eq!(res.header("etag"), tag);
        }
        let res = t
            .get(path)
            .header("if-none-match", "\"stale\"")
            .send()
            .await;
        assert_eq!(res.status, 200);
    }
    // The format is part of the representation, so part of the tag.
    let json = t.get("/v1/books/3").send().await;
    let xml = t.get("/v1/books/3.xml").send().await;
    assert_ne!(json.header("etag"), xml.header("etag"));
    // A change makes a new tag.
    let before = json.header("etag").to_string();
    t.patch("/v1/books/3")
        .json(json!({"year": 2017}))
        .send()
        .await;
    let after = t.get("/v1/books/3").send().await;
    assert_ne!(after.header("etag"), before);
}

#[tokio::test]
async fn if_match_guards_writes_in_any_format() {
    let t = TestApp::demo().await;
    let json_tag = t.get("/v1/books/4").send().await.header("etag").to_string();
    let xml_tag = t
        .get("/v1/books/4.xml")
        .send()
        .await
        .header("etag")
        .to_string();
    let res = t
        .patch("/v1/books/4")
        .header("if-match", &xml_tag)
        .json(json!({"title": "from an XML client"}))
        .send()
        .await;
    assert_eq!(
        res.status, 200,
        "a tag of any representation the client read"
    );
    // Both tags are stale now.
    for stale in [&json_tag, &xml_tag] {
        let res = t
            .put("/v1/books/4")
            .header("if-match", stale)
            .json(json!({"title": "lost", "author": "x"}))
            .send()
            .await;
        assert_problem(&res, 412, "PRECONDITION_FAILED");
        let res = t
            .delete("/v1/books/4")
            .header("if-match", stale)
            .send()
            .await;
        assert_problem(&res, 412, "PRECONDITION_FAILED");
    }
    assert_eq!(
        t.get("/v1/books/4").send().await.json()["title"],
        "from an XML client"
    );
    // A weak tag never satisfies If-Match; * needs the record to exist.
    let current = t.get("/v1/books/4").send().await.header("etag").to_string();
    let res = t
        .patch("/v1/books/4")
        .header("if-match", &format!("W/{current}"))
        .json(json!({"year": 1}))
        .send()
        .await;
    assert_problem(&res, 412, "PRECONDITION_FAILED");
    let res = t
        .delete("/v1/books/99999")
        .header("if-match", "*")
        .send()
        .await;
    assert_problem(&res, 412, "PRECONDITION_FAILED");
    let res = t.delete("/v1/books/4").header("if-match", "*").send().await;
    assert_eq!(res.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_updating_with_if_match_lose_nothing() {
    let t = Arc::new(TestApp::demo().await);
    for round in 0..20 {
        let tag = t.get("/v1/books/6").send().await.header("etag").to_string();
        // Both read the same version, then write different fields.
        let write = |field: &'static str, value: serde_json::Value, tag: String| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut tag = tag;
                for _ in 0..10 {
                    let res = t
                        .patch("/v1/books/6")
                        .header("if-match", &tag)
                        .json(json!({ field: value.clone() }))
                        .send()
                        .await;
                    match res.status.as_u16() {
                        200 => return true,
                        // Someone else won: read again and retry.
                        412 => tag = t.get("/v1/books/6").send().await.header("etag").to_string(),
                        other => panic!("unexpected {other}"),
                    }
                }
                false
            })
        };
        let a = write("title", json!(format!("round {round}")), tag.clone());
        let b = write("year", json!(1900 + round), tag);
        assert!(a.await.unwrap() && b.await.unwrap());
        let now = t.get("/v1/books/6").send().await.json();
        assert_eq!(now["title"], format!("round {round}"));
        assert_eq!(now["year"], 1900 + round);
    }
}

#[tokio::test]
async fn cache_control_is_declared_per_resource() {
    let toml = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "colors"
cache_control = "public, max-age=60"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string" }
"#;
    let t = TestApp::with(toml, "", Registry::builtin()).await;
    t.post("/api/colors")
        .json(json!({"name": "red"}))
        .send()
        .await;
    let res = t.get("/api/colors/1").send().await;
    assert_eq!(res.header("cache-control"), "public, max-age=60");
    let bad = toml.replace("public, max-age=60", "a\nb");
    assert!(restkit::model::toml::parse(&bad).is_err());
}

#[tokio::test]
async fn responses_are_compressed_when_accepted_and_worth_it() {
    let t = TestApp::demo().await;
    let res = t
        .get("/v1/books?limit=20")
        .header("accept-encoding", "gzip")
        .send()
        .await;
    assert_eq!(res.header("content-encoding"), "gzip");
    let vary: Vec<String> = res
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(
        vary.iter().any(|v| v.contains("accept-encoding")),
        "{vary:?}"
    );
    assert!(vary.iter().any(|v| v == "accept"), "{vary:?}");
    assert_eq!(&res.body[..2], &[0x1f, 0x8b], "a gzip stream");
    let tag = res.header("etag").to_string();
    assert!(tag.ends_with("-gzip\""), "{tag}");
    // The compressed response's tag revalidates too.
    let again = t
        .get("/v1/books?limit=20")
        .header("accept-encoding", "gzip")
        .header("if-none-match", &tag)
        .send()
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let br = t
        .get("/v1/books?limit=20")
        .header("accept-encoding", "br")
        .send()
        .await;
    assert_eq!(br.header("content-encoding"), "br");
    // Tiny bodies stay as they are.
    let small = t
        .get("/health")
        .header("accept-encoding", "gzip")
        .send()
        .await;
    assert!(small.headers.get("content-encoding").is_none());
    // HEAD gets exactly GET's headers for the same Accept-Encoding.
    for coding in ["gzip", "br", "identity"] {
        let get = t
            .get("/v1/books?limit=20")
            .header("accept-encoding", coding)
            .send()
            .await;
        let head = t
            .call(http::Method::HEAD, "/v1/books?limit=20")
            .header("accept-encoding", coding)
            .send()
            .await;
        assert!(head.body.is_empty());
        for name in [
            "content-encoding",
            "etag",
            "content-length",
            "content-type",
            "vary",
        ] {
            assert_eq!(
                head.headers.get(name),
                get.headers.get(name),
                "{coding}: {name}"
            );
        }
    }
    let head = t
        .call(http::Method::HEAD, "/v1/books?limit=20")
        .send()
        .await;
    let plain = t.get("/v1/books?limit=20").send().await;
    assert_eq!(head.header("content-length"), plain.body.len().to_string());
}

#[tokio::test]
async fn a_client_can_put_back_what_it_got_links_included() {
    let t = TestApp::demo().await;
    let mut got = t.get("/v2/books/3").send().await.json();
    assert!(got["_links"]["self"]["href"].is_string());
    got["title"] = json!("Round trip");
    let res = t.put("/v2/books/3").json(got).send().await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["title"], "Round trip");
}

#[tokio::test]
async fn last_modified_and_if_modified_since() {
    let t = TestApp::demo().await;
    let res = t.get("/v1/books/3").send().await;
    let modified = res.header("last-modified").to_string();
    assert!(modified.ends_with(" GMT"), "{modified}");
    let stamp = chrono::DateTime::parse_from_rfc2822(&modified).unwrap();
    let updated =
        chrono::DateTime::parse_from_rfc3339(res.json()["updatedAt"].as_str().unwrap()).unwrap();
    assert_eq!(stamp.timestamp(), updated.timestamp());
    let res = t
        .get("/v1/books/3")
        .header("if-modified-since", &modified)
        .send()
        .await;
    assert_eq!(res.status, 304);
    let earlier = (stamp - chrono::Duration::seconds(10))
        .to_rfc2822()
        .replace("+0000", "GMT");
    let res = t
        .get("/v1/books/3")
        .header("if-modified-since", &earlier)
        .send()
        .await;
    assert_eq!(res.status, 200);
    // If-None-Match wins over If-Modified-Since.
    let res = t
        .get("/v1/books/3")
        .header("if-modified-since", &modified)
        .header("if-none-match", "\"stale\"")
        .send()
        .await;
    assert_eq!(res.status, 200);
    // Nonsense dates are ignored.
    let res = t
        .get("/v1/books/3")
        .header("if-modified-since", "yesterday")
        .send()
        .await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn a_304_carries_the_tag_the_200_would_have_carried() {
    let t = TestApp::demo().await;
    let path = "/v1/books?limit=20";
    for coding in ["br", "gzip", "identity"] {
        let full = t.get(path).header("accept-encoding", coding).send().await;
        assert_eq!(full.status, 200);
        let tag = full.header("etag").to_string();
        if coding != "identity" {
            assert!(tag.ends_with(&format!("-{coding}\"")), "{coding}: {tag}");
        }
        for ask in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"other\", {tag}"),
            "*".to_string(),
        ] {
            for method in [http::Method::GET, http::Method::HEAD] {
                let res = t
                    .call(method.clone(), path)
                    .header("accept-encoding", coding)
                    .header("if-none-match", &ask)
                    .send()
                    .await;
                assert_eq!(res.status, 304, "{method} {coding} with {ask}");
                assert_eq!(res.header("etag"), tag, "{method} {coding} with {ask}");
                assert!(res.body.is_empty());
                // Nothing describes a body that is not there.
                for gone in ["content-encoding", "content-type", "content-length"] {
                    assert!(res.headers.get(gone).is_none(), "{coding}: {gone}");
                }
                assert_eq!(
                    res.headers.get_all("vary").iter().collect::<Vec<_>>(),
                    full.headers.get_all("vary").iter().collect::<Vec<_>>(),
                    "{coding}: a 304 varies as its 200 does"
                );
            }
        }
    }
    // A tag of another coding of the same data revalidates too, and the
    // 304 names the tag this request's 200 would carry.
    let gzip = t.get(path).header("accept-encoding", "gzip").send().await;
    let br = t.get(path).header("accept-encoding", "br").send().await;
    let res = t
        .get(path)
        .header("accept-encoding", "br")
        .header("if-none-match", gzip.header("etag"))
        .send()
        .await;
    assert_eq!(res.status, 304);
    assert_eq!(res.header("etag"), br.header("etag"));
    // If-Modified-Since's 304 is tagged the same way.
    let one = "/v1/books/3?envelope=true";
    let full = t.get(one).header("accept-encoding", "br").send().await;
    let res = t
        .get(one)
        .header("accept-encoding", "br")
        .header("if-modified-since", full.header("last-modified"))
        .send()
        .await;
    assert_eq!(res.status, 304);
    assert_eq!(res.header("etag"), full.header("etag"));
    // A body too small to compress keeps its plain tag in both.
    let small = "/v1/books?limit=1&fields=id";
    let full = t.get(small).header("accept-encoding", "br").send().await;
    assert!(full.headers.get("content-encoding").is_none());
    let res = t
        .get(small)
        .header("accept-encoding", "br")
        .header("if-none-match", full.header("etag"))
        .send()
        .await;
    assert_eq!(res.status, 304);
    assert_eq!(res.header("etag"), full.header("etag"));
}

#[tokio::test]
async fn if_modified_since_is_read_in_all_three_http_date_forms() {
    let t = TestApp::demo().await;
    let res = t.get("/v1/books/3").send().await;
    let modified = chrono::DateTime::parse_from_rfc2822(res.header("last-modified"))
        .unwrap()
        .to_utc();
    // RFC 9110 §5.6.7: IMF-fixdate, RFC 850 (two-digit year), asctime.
    let forms = |at: chrono::DateTime<chrono::Utc>| {
        [
            at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            at.format("%A, %d-%b-%y %H:%M:%S GMT").to_string(),
            at.format("%a %b %e %H:%M:%S %Y").to_string(),
        ]
    };
    for (since, want) in [
        (modified, 304),
        (modified + chrono::Duration::seconds(10), 304),
        (modified - chrono::Duration::seconds(10), 200),
    ] {
        for form in forms(since) {
            let res = t
                .get("/v1/books/3")
                .header("if-modified-since", &form)
                .send()
                .await;
            assert_eq!(res.status, want, "If-Modified-Since: {form}");
        }
    }
    // A day name that contradicts the date is not a date: ignored.
    let wrong_day = (modified + chrono::Duration::days(1))
        .format("%A")
        .to_string();
    let form = format!("{wrong_day}, {}", modified.format("%d-%b-%y %H:%M:%S GMT"));
    let res = t
        .get("/v1/books/3")
        .header("if-modified-since", &form)
        .send()
        .await;
    assert_eq!(res.status, 200, "{form}");
}

#[tokio::test]
async fn if_match_takes_the_tag_of_the_representation_the_client_read() {
    let t = TestApp::demo().await;
    let pairs = [
        (
            "/v1/books/5.csv?csv_header=false",
            "/v1/books/5.csv?csv_header=false",
        ),
        ("/v1/books/5.csv?csv_header=false", "/v1/books/5"),
        (
            "/v1/books/5?type=csv&csv_header=0",
            "/v1/books/5?type=csv&csv_header=0",
        ),
        ("/v1/books/5.csv", "/v1/books/5.csv"),
        ("/v1/books/5?envelope=true", "/v1/books/5?envelope=true"),
        ("/v1/books/5?envelope=true", "/v1/books/5"),
        ("/v1/books/5.xml", "/v1/books/5"),
        ("/v1/books/5", "/v1/books/5.csv"),
    ];
    for (i, (read, write)) in pairs.into_iter().enumerate() {
        let tag = t.get(read).send().await.header("etag").to_string();
        let res = t
            .patch(write)
            .header("if-match", &tag)
            .json(json!({ "year": 1900 + i }))
            .send()
            .await;
        assert_eq!(res.status, 200, "read {read}, wrote {write} with {tag}");
        // The write made that tag stale.
        let res = t
            .patch(write)
            .header("if-match", &tag)
            .json(json!({ "year": 1 }))
            .send()
            .await;
        assert_problem(&res, 412, "PRECONDITION_FAILED");
    }
    assert_eq!(t.get("/v1/books/5").send().await.json()["year"], 1907);
}

#[tokio::test]
async fn if_match_takes_the_csv_tag_when_the_formula_guard_is_off() {
    let t = TestApp::demo_with("[format]\ncsv_formula_guard = false\n").await;
    let res = t
        .patch("/v1/books/5")
        .json(json!({"title": "=1+1"}))
        .send()
        .await;
    assert_eq!(res.status, 200);
    let got = t.get("/v1/books/5.csv").send().await;
    assert!(
        String::from_utf8_lossy(&got.body).contains(",=1+1,"),
        "unguarded: {}",
        String::from_utf8_lossy(&got.body)
    );
    for (i, write) in ["/v1/books/5.csv", "/v1/books/5"].into_iter().enumerate() {
        let tag = t
            .get("/v1/books/5.csv")
            .send()
            .await
            .header("etag")
            .to_string();
        let res = t
            .patch(write)
            .header("if-match", &tag)
            .json(json!({ "title": format!("={i}+2") }))
            .send()
            .await;
        assert_eq!(res.status, 200, "{write}");
        let res = t
            .patch(write)
            .header("if-match", &tag)
            .json(json!({ "title": format!("={i}+3") }))
            .send()
            .await;
        assert_problem(&res, 412, "PRECONDITION_FAILED");
    }
}
