//! XML and CSV (§5.1): read back with standard parsers and compared field
//! by field with the JSON; escaping; CSV formula guard; errors in XML.

use restkit::registry::Registry;
use serde_json::{json, Map, Value};

use crate::helpers::{assert_problem, TestApp, TestResponse};

/// The record elements of an XML body: `<response><item>…` for
/// collections, `<response>…` for one record; each field's text.
fn xml_records(res: &TestResponse) -> Vec<Map<String, Value>> {
    let text = String::from_utf8(res.body.clone()).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "response");
    let record = |node: roxmltree::Node| -> Map<String, Value> {
        node.children()
            .filter(|c| c.is_element())
            .map(|c| {
                let v = match c.text() {
                    Some(t) if c.children().all(|x| x.is_text()) => Value::String(t.to_string()),
                    _ if c.has_children() => Value::String("<nested>".into()),
                    _ => Value::Null,
                };
                (c.tag_name().name().to_string(), v)
            })
            .collect()
    };
    let items: Vec<_> = root
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "item")
        .collect();
    if items.is_empty() {
        vec![record(root)]
    } else {
        items.into_iter().map(record).collect()
    }
}

/// JSON scalars as the text XML and CSV carry.
fn as_text(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

#[tokio::test]
async fn xml_and_csv_carry_the_same_records_as_json() {
    let t = TestApp::demo().await;
    let json = t.get("/v1/books?limit=5&offset=2").send().await.json();
    let json: Vec<Map<String, Value>> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), as_text(v)))
                .collect()
        })
        .collect();

    let res = t.get("/v1/books.xml?limit=5&offset=2").send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), "application/xml; charset=UTF-8");
    assert_eq!(res.header("x-pagination-total-count"), "1000");
    assert_eq!(xml_records(&res), json);

    let res = t.get("/v1/books?limit=5&offset=2&type=csv").send().await;
    assert_eq!(res.header("content-type"), "text/csv; charset=UTF-8");
    let mut reader = csv::Reader::from_reader(res.body.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, json[0].keys().cloned().collect::<Vec<_>>());
    let rows: Vec<Map<String, Value>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .zip(r.unwrap().iter())
                .map(|(k, v)| {
                    let v = if v.is_empty() {
                        Value::Null
                    } else {
                        Value::String(v.to_string())
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .collect();
    assert_eq!(rows, json);

    // One record, by extension and by Accept.
    let one = t.get("/v1/books/3.xml").send().await;
    assert_eq!(xml_records(&one)[0]["title"], "OAuth2 with Phalcon");
    let one = t
        .get("/v1/books/3")
        .header("accept", "text/csv")
        .send()
        .await;
    assert_eq!(one.header("content-type"), "text/csv; charset=UTF-8");
    let text = String::from_utf8(one.body.clone()).unwrap();
    assert!(
        text.starts_with("id,title,author,year,isbn,createdAt,updatedAt\r\n3,OAuth2 with Phalcon,"),
        "{text}"
    );
    let res = t
        .get("/v1/books/3?csv_header=false")
        .header("accept", "text/csv")
        .send()
        .await;
    assert!(String::from_utf8(res.body).unwrap().starts_with("3,OAuth2"));
}

#[tokio::test]
async fn markup_and_formulas_are_inert_in_every_format() {
    let t = TestApp::demo().await;
    for title in [
        "<script>alert(1)</script>",
        "=HYPERLINK(\"http://x\")",
        "a & b \"c\"",
    ] {
        let res = t
            .post("/v1/books")
            .json(json!({"title": title, "author": "@me"}))
            .send()
            .await;
        let id = res.json()["id"].as_i64().unwrap();
        let xml = t.get(&format!("/v1/books/{id}.xml")).send().await;
        assert_eq!(
            xml_records(&xml)[0]["title"],
            title,
            "the parser reads back the exact text"
        );
        assert!(!String::from_utf8_lossy(&xml.body).contains("<script>"));
        let csv = t.get(&format!("/v1/books/{id}.csv")).send().await;
        let mut reader = csv::Reader::from_reader(csv.body.as_slice());
        let row = reader.records().next().unwrap().unwrap();
        let want = if title.starts_with('=') {
            format!("'{title}")
        } else {
            title.to_string()
        };
        assert_eq!(&row[1], want, "title cell");
        assert_eq!(&row[2], "'@me", "author cell");
        // HTML: the record page and a collection page show the text, and
        // no markup of it survives; restkit's own script is the only one.
        for path in [
            format!("/v1/books/{id}.html"),
            format!("/v1/books.html?filter[id]={id}"),
        ] {
            let page = t.get(&path).send().await;
            assert_eq!(page.status, 200, "{path}");
            let html = String::from_utf8(page.body).unwrap();
            assert_eq!(html.matches("<script").count(), 1, "{path}: {html}");
            assert!(!html.contains("<script>alert"), "{path}");
            let escaped = serde_json::to_string(title)
                .unwrap()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;");
            assert!(html.contains(&escaped), "{path}: {escaped} not in page");
        }
    }
}

#[tokio::test]
async fn the_html_page_browses_a_collection() {
    let t = TestApp::demo().await;
    let token = t.token_for(1, &["basic", "write"]);
    let res = t
        .get(&format!("/v1/books?limit=2&sort=id&access-token={token}"))
        .anonymous()
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), "text/html; charset=UTF-8");
    let csp = res.header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"));
    assert_eq!(res.header("x-content-type-options"), "nosniff");
    assert!(res.header("etag").starts_with('"'));
    let html = String::from_utf8(res.body.clone()).unwrap();
    assert!(!html.contains(&token), "credentials never shown");
    // The request, the status and headers, a table, pagination links,
    // clickable record links, and a form for the route's methods.
    assert!(html.contains("<b>GET</b> /v1/books?limit=2&amp;sort=id"));
    assert!(html.contains("HTTP 200 OK"));
    assert!(html.contains("X-Pagination-Total-Count:</span> 1000"));
    assert!(html.contains("<table>") && html.contains("<th>title</th>"));
    let next = res
        .header("link")
        .split(", ")
        .find(|l| l.contains("rel=\"next\""))
        .unwrap();
    let next = next.trim_start_matches('<').split('>').next().unwrap();
    let next_link = format!("<a href=\"{}\">next</a>", next.replace('&', "&amp;"));
    assert!(html.contains(&next_link), "{next_link}");
    assert!(
        html.contains("<option>GET</option>") && html.contains("<option selected>POST</option>")
    );
    assert!(
        html.contains("&quot;title&quot;: &quot;text&quot;"),
        "the form starts with the create fields"
    );
    // ...in values the schema takes: sent as it is, it creates a record.
    let start = html
        .find("<textarea name=\"body\" spellcheck=\"false\">")
        .unwrap();
    let rest = &html[start..];
    let text = &rest[rest.find('>').unwrap() + 1..rest.find("</textarea>").unwrap()];
    let example: serde_json::Value =
        serde_json::from_str(&text.replace("&quot;", "\"").replace("&amp;", "&")).unwrap();
    let fresh = TestApp::demo().await;
    let created = fresh.post("/v1/books").json(example).send().await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    // Records with links: the id and every URL are clickable.
    let v2 = t.get("/v2/books.html?limit=2&sort=id").send().await;
    let v2 = String::from_utf8(v2.body).unwrap();
    let self_link = v2
        .split("<td><a href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no linked id: {v2}"));
    assert!(self_link.ends_with("/v2/books/1"), "{self_link}");
    // The page revalidates like every other representation.
    let again = t
        .get("/v1/books?limit=2&sort=id")
        .header("accept", "text/html")
        .header("if-none-match", res.header("etag"))
        .send()
        .await;
    assert_eq!(again.status, 304);
}

#[tokio::test]
async fn html_errors_are_pages() {
    let t = TestApp::demo().await;
    let res = t.get("/v1/books/99999.html").send().await;
    assert_eq!(res.status, 404);
    assert_eq!(res.header("content-type"), "text/html; charset=UTF-8");
    assert!(res
        .header("content-security-policy")
        .contains("default-src 'none'"));
    let html = String::from_utf8(res.body).unwrap();
    assert!(html.contains("HTTP 404 Not Found"));
    assert!(html.contains("RESOURCE_NOT_FOUND"));
    let res = t
        .post("/v1/books?type=html")
        .json(json!({"title": "<b>x</b>", "year": "nope"}))
        .send()
        .await;
    assert_eq!(res.status, 422);
    let html = String::from_utf8(res.body).unwrap();
    assert!(html.contains("HTTP 422"));
    assert!(!html.contains("<b>x</b>"));
}

#[tokio::test]
async fn the_formula_guard_can_be_turned_off() {
    let text = restkit::demo::DEMO_TOML.replace(
        "[database]\n",
        "[format]\ncsv_formula_guard = false\n\n[database]\n",
    );
    let t = TestApp::with(&text, "", Registry::builtin()).await;
    let res = t
        .post("/v1/books")
        .json(json!({"title": "=1+1", "author": "a"}))
        .send()
        .await;
    let id = res.json()["id"].as_i64().unwrap();
    let csv = t
        .get(&format!("/v1/books/{id}.csv?csv_header=false"))
        .send()
        .await;
    assert!(String::from_utf8(csv.body).unwrap().contains(",=1+1,"));
}

#[tokio::test]
async fn errors_follow_xml_and_stay_json_for_csv() {
    let t = TestApp::demo().await;
    let res = t.get("/v1/books/99999.xml").send().await;
    assert_eq!(res.status, 404);
    assert_eq!(
        res.header("content-type"),
        "application/problem+xml; charset=UTF-8"
    );
    let fields = &xml_records(&res)[0];
    assert_eq!(fields["errorCode"], "RESOURCE_NOT_FOUND");
    assert_eq!(fields["status"], "404");
    let res = t.get("/v1/books/99999.csv").send().await;
    assert_problem(&res, 404, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn head_matches_get_and_v2_names_carry_over() {
    let t = TestApp::demo().await;
    for path in [
        "/v1/books/3.xml",
        "/v1/books.csv?limit=3",
        "/v2/books/3.xml",
    ] {
        let get = t.get(path).send().await;
        let head = t.call(http::Method::HEAD, path).send().await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            get.body.len().to_string(),
            "{path}"
        );
        assert_eq!(head.header("content-type"), get.header("content-type"));
    }
    let v2 = t.get("/v2/books/3.xml").send().await;
    let text = String::from_utf8(v2.body).unwrap();
    assert!(
        text.contains("<authorName>Stanimir Stoyanov</authorName>"),
        "{text}"
    );
    assert!(text.contains("<published>2016</published>"), "{text}");
    assert!(
        text.contains("<_links><self><href>http://api.test/v2/books/3</href></self></_links>"),
        "{text}"
    );
}

/// The browsable page's form, shown a record (even an expanded one), is
/// pre-filled with only what a write takes, so sending it back unchanged
/// succeeds.
#[tokio::test]
async fn an_edit_form_sent_back_unchanged_succeeds() {
    let t = TestApp::demo().await;
    let page = t
        .get("/v1/books/3?expand=reviews")
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body).to_string();
    let start = html
        .find("<textarea name=\"body\" spellcheck=\"false\">")
        .unwrap();
    let rest = &html[start..];
    let text = &rest[rest.find('>').unwrap() + 1..rest.find("</textarea>").unwrap()];
    let text = text
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(keys.contains(&&"title".to_string()), "{body}");
    for absent in ["id", "reviews", "createdAt", "_links"] {
        assert!(body.get(absent).is_none(), "{absent} in {body}");
    }
    for method in [http::Method::PATCH, http::Method::PUT] {
        let res = t
            .call(method.clone(), "/v1/books/3")
            .json(body.clone())
            .send()
            .await;
        assert_eq!(
            res.status,
            200,
            "{method}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
}
