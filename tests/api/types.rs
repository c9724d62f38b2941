//! The types real APIs need (§15): date, time, exact decimal, uuid and
//! json with its own schema — each in every format and body, in filters
//! and sorts with the right comparison, in the OpenAPI document, and at
//! its edges.

use restkit::registry::Registry;
use serde_json::{json, Value};

use crate::db::Raw;
use crate::helpers::{assert_problem, TestApp};

const VISITS: &str = r#"
[[module]]
prefix = "/v1"

[[module.resource]]
name = "visits"
table = "visits"
[module.resource.fields]
id    = { type = "integer", primary_key = true }
day   = { type = "date", required = true }
at    = { type = "time" }
fee   = { type = "decimal", precision = 10, scale = 2, minimum = 0 }
token = { type = "uuid", generated = true }
kind  = { type = "string", enum = ["checkup", "vaccine", "surgery"] }
notes = { type = "json", schema = { type = "object", properties = { weight = { type = "number" } }, required = ["weight"] } }
"#;

async fn visits() -> TestApp {
    TestApp::with(VISITS, "", Registry::builtin()).await
}

async fn create(t: &TestApp, body: Value) -> Value {
    let res = t.post("/v1/visits").json(body).send().await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    res.json()
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn each_type_is_stored_and_served_in_its_one_spelling() {
    let t = visits().await;
    let v = create(
        &t,
        json!({
            "day": "2024-02-29",
            "at": "09:30",
            "fee": "0.1",
            "token": "67E55044-10B1-426F-9247-BB680E5FE0C8",
            "notes": {"weight": 3.5}
        }),
    )
    .await;
    assert_eq!(v["day"], "2024-02-29");
    assert_eq!(v["at"], "09:30:00");
    assert_eq!(v["fee"], "0.10");
    assert_eq!(v["token"], "67e55044-10b1-426f-9247-bb680e5fe0c8");
    assert_eq!(v["notes"], json!({"weight": 3.5}));
    // Read back as stored, exactly.
    let id = v["id"].as_i64().unwrap();
    assert_eq!(t.get(&format!("/v1/visits/{id}")).send().await.json(), v);
    // A number is taken when a float holds it exactly as written.
    let v = create(&t, json!({"day": "0001-01-01", "fee": 0.3})).await;
    assert_eq!(v["fee"], "0.30");
    // Edges: year 1 and 9999, the largest fee, a generated UUID.
    let v = create(
        &t,
        json!({"day": "9999-12-31", "at": "23:59:59.999999999", "fee": "99999999.99"}),
    )
    .await;
    assert_eq!(v["day"], "9999-12-31");
    assert_eq!(v["at"], "23:59:59.999999999");
    assert_eq!(v["fee"], "99999999.99");
    let token = v["token"].as_str().unwrap();
    assert_eq!(
        restkit::model::value::parse_uuid(token).as_deref(),
        Some(token)
    );
    // Stored as the database's integer of cents: never a float.
    let raw = Raw::connect(&t.url).await;
    assert_eq!(
        raw.scalar("SELECT fee FROM visits WHERE day = '0001-01-01'")
            .await,
        30
    );
    assert_eq!(
        raw.scalar("SELECT CAST(SUM(fee) AS BIGINT) FROM visits")
            .await,
        10 + 30 + 9_999_999_999
    );
    raw.close().await;
}

#[tokio::test]
async fn values_outside_a_type_are_422_on_their_field() {
    let t = visits().await;
    for (body, field, code) in [
        (json!({"day": "2023-02-29"}), "day", "format"),
        (json!({"day": "0000-01-01"}), "day", "format"),
        (json!({"day": "2024-1-1"}), "day", "format"),
        (json!({"day": "2024-01-01", "at": "24:00"}), "at", "format"),
        (
            json!({"day": "2024-01-01", "at": "12:00:00Z"}),
            "at",
            "format",
        ),
        (
            json!({"day": "2024-01-01", "fee": "1.234"}),
            "fee",
            "decimal",
        ),
        (
            json!({"day": "2024-01-01", "fee": "100000000.00"}),
            "fee",
            "decimal",
        ),
        (json!({"day": "2024-01-01", "fee": 1e20}), "fee", "decimal"),
        (
            json!({"day": "2024-01-01", "fee": 0.1234567890123456}),
            "fee",
            "decimal",
        ),
        (
            json!({"day": "2024-01-01", "fee": "-0.01"}),
            "fee",
            "minimum",
        ),
        (
            json!({"day": "2024-01-01", "token": "not-a-uuid"}),
            "token",
            "format",
        ),
        (
            json!({"day": "2024-01-01", "kind": "party"}),
            "kind",
            "enum",
        ),
        (
            json!({"day": "2024-01-01", "notes": {"weight": "heavy"}}),
            "notes.weight",
            "type",
        ),
        (
            json!({"day": "2024-01-01", "notes": {}}),
            "notes.weight",
            "required",
        ),
        (json!({"day": 20240101}), "day", "type"),
    ] {
        let res = t.post("/v1/visits").json(body.clone()).send().await;
        assert_problem(&res, 422, "VALIDATION_FAILED");
        assert_eq!(
            res.error_fields(),
            [(field.to_string(), code.to_string())],
            "{body}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    let res = t.get("/v1/visits").send().await;
    assert_eq!(res.json(), json!([]), "nothing was written");
}

#[tokio::test]
async fn filters_and_sorts_compare_each_type_as_what_it_is() {
    let t = visits().await;
    for (day, at, fee) in [
        ("2024-01-10", "10:00:00.5", "10.00"),
        ("2023-12-31", "09:59:59", "9.50"),
        ("2024-01-02", "10:00", "100.00"),
    ] {
        create(&t, json!({"day": day, "at": at, "fee": fee})).await;
    }
    let get = |q: &str| {
        let t = &t;
        let q = q.to_string();
        async move {
            let res = t.get(&format!("/v1/visits?{q}")).send().await;
            assert_eq!(
                res.status,
                200,
                "{q}: {}",
                String::from_utf8_lossy(&res.body)
            );
            ids(&res.json())
        }
    };
    assert_eq!(get("sort=day").await, [2, 3, 1]);
    assert_eq!(get("sort=-at").await, [1, 3, 2]);
    // 9.50 < 10.00 < 100.00 as numbers (as text, "100.00" < "9.50").
    assert_eq!(get("sort=fee").await, [2, 1, 3]);
    assert_eq!(get("filter[fee][gte]=10").await, [1, 3]);
    assert_eq!(get("filter[fee][lt]=9.6").await, [2]);
    assert_eq!(get("filter[day][gt]=2024-01-01").await, [1, 3]);
    assert_eq!(get("filter[at][gte]=10:00").await, [1, 3]);
    assert_eq!(get("q=(day:2023-12-31)").await, [2]);
    assert_eq!(get("q=(fee:9.5)").await, [2]);
    let token = t.get("/v1/visits/2").send().await.json()["token"]
        .as_str()
        .unwrap()
        .to_uppercase();
    assert_eq!(get(&format!("filter[token]={token}")).await, [2]);
    // A value that is not of the type is a 400, never a match on text.
    for bad in [
        "filter[day][gt]=yesterday",
        "filter[fee][gt]=1.234",
        "filter[token]=x",
    ] {
        let res = t.get(&format!("/v1/visits?{bad}")).send().await;
        assert_eq!(res.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn every_format_and_form_bodies_carry_the_types() {
    let t = visits().await;
    let res = t
        .post("/v1/visits")
        .raw(
            "application/x-www-form-urlencoded",
            "day=2024-03-01&at=08%3A15&fee=12.5&token=67E55044-10B1-426F-9247-BB680E5FE0C8",
        )
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let v = res.json();
    assert_eq!(
        (v["day"].clone(), v["at"].clone(), v["fee"].clone()),
        (json!("2024-03-01"), json!("08:15:00"), json!("12.50"))
    );
    let csv = t
        .get("/v1/visits")
        .header("Accept", "text/csv")
        .send()
        .await;
    let text = String::from_utf8_lossy(&csv.body).to_string();
    assert!(
        text.contains("2024-03-01") && text.contains("08:15:00") && text.contains("12.50"),
        "{text}"
    );
    let xml = t
        .get("/v1/visits")
        .header("Accept", "application/xml")
        .send()
        .await;
    let text = String::from_utf8_lossy(&xml.body).to_string();
    assert!(
        text.contains("<fee>12.50</fee>") && text.contains("<day>2024-03-01</day>"),
        "{text}"
    );
    let html = t
        .get("/v1/visits")
        .header("Accept", "text/html")
        .send()
        .await;
    assert!(String::from_utf8_lossy(&html.body).contains("12.50"));
}

#[tokio::test]
async fn the_openapi_document_names_each_type() {
    let t = visits().await;
    let doc = t.get("/openapi.json").send().await.json();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let visit = schemas
        .values()
        .find(|s| s["properties"]["fee"].is_object())
        .expect("a schema of visits");
    let p = &visit["properties"];
    assert_eq!(p["day"]["format"], "date");
    assert_eq!(p["token"]["format"], "uuid");
    assert_eq!(p["fee"]["format"], "decimal");
    assert!(p["fee"]["pattern"].as_str().unwrap().contains("{2}"));
    assert!(p["at"]["pattern"].is_string());
    assert_eq!(
        p["kind"]["enum"],
        json!(["checkup", "vaccine", "surgery", null])
    );
    assert_eq!(p["notes"]["required"], json!(["weight"]));
    assert_eq!(p["notes"]["type"], json!(["object", "null"]));
}

#[tokio::test]
async fn declarations_of_types_are_checked_at_start_up() {
    for (change, expected) in [
        ("precision = 10, scale = 2", "precision = 19, scale = 2"),
        ("precision = 10, scale = 2", "precision = 2, scale = 3"),
        (
            "token = { type = \"uuid\", generated = true }",
            "token = { type = \"string\", generated = true }",
        ),
        (
            "day   = { type = \"date\", required = true }",
            "day   = { type = \"date\", required = true, default = \"2023-02-29\" }",
        ),
        (
            "at    = { type = \"time\" }",
            "at    = { type = \"time\", precision = 3 }",
        ),
    ] {
        let model = VISITS.replace(change, expected);
        assert_ne!(model, VISITS, "{expected}");
        let e = restkit::model::toml::parse(&model)
            .map(|_| ())
            .expect_err(expected);
        assert!(!e.to_string().is_empty());
    }
}

#[tokio::test]
async fn retyping_a_field_over_stored_values_is_refused() {
    let t = visits().await;
    create(&t, json!({"day": "2024-01-01", "fee": "12.34"})).await;
    let retyped = VISITS.replace(
        "fee   = { type = \"decimal\", precision = 10, scale = 2, minimum = 0 }",
        "fee   = { type = \"integer\" }",
    );
    let (e, db) = match TestApp::reopen(t.into_dir(), &retyped).await {
        Ok(_) => panic!("1234 cents would have been served as 1234"),
        Err(refusal) => refusal,
    };
    assert!(
        e.contains("field 'fee' was decimal(10,2) and is declared integer"),
        "{e}"
    );
    // More digits, same scale: the same values.
    let wider = VISITS.replace("precision = 10", "precision = 12");
    let t = TestApp::reopen(db, &wider)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(t.get("/v1/visits/1").send().await.json()["fee"], "12.34");
}

#[tokio::test]
async fn a_decimal_over_integers_no_migration_recorded_as_decimals_is_refused() {
    let integers = VISITS.replace(
        "fee   = { type = \"decimal\", precision = 10, scale = 2, minimum = 0 }",
        "price = { type = \"integer\" }",
    );
    let t = TestApp::with(&integers, "", Registry::builtin()).await;
    create(&t, json!({"day": "2024-01-01", "price": 12})).await;
    // Renamed and retyped at once: 12 must not become "0.12".
    let renamed = VISITS.replace(
        "fee   = { type = \"decimal\", precision = 10, scale = 2, minimum = 0 }",
        "fee   = { type = \"decimal\", precision = 10, scale = 2, renamed_from = \"price\" }",
    );
    let e = match TestApp::reopen(t.into_dir(), &renamed).await {
        Ok(t) => panic!("served {}", t.get("/v1/visits/1").send().await.json()),
        Err((e, _)) => e,
    };
    assert!(
        e.contains("field 'fee' was integer and is declared decimal(10,2)"),
        "{e}"
    );
}

/// A value its type refuses (a day that does not exist, a decimal with too
/// many places) and a constraint another field fails (an enum, a JSON
/// schema) come back in one 422: every failure at once, not one per try.
#[tokio::test]
async fn refused_values_and_failed_constraints_are_reported_together() {
    let t = visits().await;
    let res = t
        .post("/v1/visits")
        .json(json!({
            "day": "2023-02-29",
            "fee": "1.005",
            "kind": "massage",
            "notes": {"weight": "heavy"},
            "at": "25:00"
        }))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    let mut fields: Vec<String> = res.error_fields().into_iter().map(|(f, _)| f).collect();
    fields.sort();
    assert_eq!(fields, ["at", "day", "fee", "kind", "notes.weight"]);
}
