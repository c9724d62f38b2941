//! Schema evolution with a plan (§15): a declaration changed under
//! stored data is either applied with a plan that says what it does, or
//! refused with a message that names what to do — never a change that
//! loses or hides data. Each test fills a database through the API, then
//! opens it with the changed declaration, as `serve` does.

use restkit::registry::Registry;
use restkit::store::migrate::{Options, Report};
use serde_json::{json, Value};

use crate::db::{Raw, TestDb};
use crate::helpers::{assert_problem, TestApp};

const OWNERS: &str = r#"
[[module]]
prefix = "/v1"

[[module.resource]]
name = "owners"
table = "owners"
[module.resource.fields]
id    = { type = "integer", primary_key = true }
name  = { type = "string", required = true }
phone = { type = "string" }
city  = { type = "string" }
"#;

/// `OWNERS` with `line` added to the fields.
fn with_field(line: &str) -> String {
    format!("{OWNERS}{line}\n")
}

/// `OWNERS` with one field's line replaced.
fn changed(field: &str, line: &str) -> String {
    OWNERS
        .lines()
        .map(|l| {
            if l.split_whitespace().next() == Some(field) {
                line.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn owners(rows: &[Value]) -> TestApp {
    let t = TestApp::with(OWNERS, "", Registry::builtin()).await;
    for row in rows {
        let res = t.post("/v1/owners").json(row.clone()).send().await;
        assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    }
    t
}

async fn opened(db: TestDb, model: &str) -> TestApp {
    match TestApp::reopen(db, model).await {
        Ok(t) => t,
        Err((e, _)) => panic!("refused: {e}"),
    }
}

async fn refused(db: TestDb, model: &str) -> (String, TestDb) {
    match TestApp::reopen(db, model).await {
        Ok(_) => panic!("migrated, but should have been refused"),
        Err(refusal) => refusal,
    }
}

async fn list(t: &TestApp) -> Vec<Value> {
    t.get("/v1/owners?sort=id")
        .send()
        .await
        .json()
        .as_array()
        .unwrap()
        .clone()
}

/// Plans (or applies) `model` over `url` as `restkit migrate` does.
async fn migrate(url: &str, model: &str, options: Options, apply: bool) -> Result<Report, String> {
    let store = restkit::store::Store::open(url, &restkit::store::Limits::default())
        .await
        .unwrap();
    let model = restkit::model::toml::parse(model).unwrap();
    store
        .migrate_with(&model, options, apply)
        .await
        .map_err(|e| e.to_string())
}

fn whats(report: &Report) -> Vec<String> {
    report.steps.iter().map(|s| s.what.clone()).collect()
}

#[tokio::test]
async fn a_required_field_without_a_default_over_rows_is_refused_and_nothing_changes() {
    let t = owners(&[json!({"name": "Ann"}), json!({"name": "Bob"})]).await;
    // An optional field (a step that would work) and a required one.
    let model =
        with_field("notes = { type = \"string\" }\nemail = { type = \"string\", required = true }");
    let (e, db) = refused(t.into_dir(), &model).await;
    assert!(
        e.contains("/v1/owners field 'email'") && e.contains("2 rows") && e.contains("default"),
        "{e}"
    );
    let raw = Raw::connect(&db.url).await;
    assert!(!raw.columns("owners").await.contains(&"notes".to_string()));
    raw.close().await;
    // With a default, it is applied: the rows get it, and the database
    // refuses a row without one from now on.
    let model = with_field(
        "email = { type = \"string\", required = true, default = \"unknown@example.com\" }",
    );
    let t = opened(db, &model).await;
    for owner in list(&t).await {
        assert_eq!(owner["email"], "unknown@example.com", "{owner}");
    }
    let raw = Raw::connect(&t.url).await;
    assert!(raw
        .try_execute("INSERT INTO owners (name, email) VALUES ('Eve', NULL)")
        .await
        .is_err());
    raw.close().await;
}

#[tokio::test]
async fn a_new_required_field_on_an_empty_table_is_not_null_on_both_databases() {
    let t = owners(&[]).await;
    let t = opened(
        t.into_dir(),
        &with_field("email = { type = \"string\", required = true }"),
    )
    .await;
    let raw = Raw::connect(&t.url).await;
    assert!(raw
        .try_execute("INSERT INTO owners (name) VALUES ('Eve')")
        .await
        .is_err());
    raw.close().await;
    let res = t
        .post("/v1/owners")
        .json(json!({"name": "Eve", "email": "e@example.com"}))
        .send()
        .await;
    assert_eq!(res.status, 201);
}

#[tokio::test]
async fn a_default_added_later_fills_the_rows_without_a_value_once() {
    let t = owners(&[
        json!({"name": "Ann"}),
        json!({"name": "Bob", "city": "Oslo"}),
    ])
    .await;
    let model = changed("city", "city  = { type = \"string\", default = \"Paris\" }");
    let report = migrate(&t.url, &model, Options::default(), false)
        .await
        .unwrap();
    assert!(
        whats(&report)
            .iter()
            .any(|w| w.contains("fill field 'city'") && w.contains("1 row")),
        "{report:?}"
    );
    let t = opened(t.into_dir(), &model).await;
    let cities: Vec<Value> = list(&t).await.iter().map(|o| o["city"].clone()).collect();
    assert_eq!(cities, [json!("Paris"), json!("Oslo")]);
    // A null set on purpose afterwards stays: the default is not new any
    // more.
    let res = t
        .patch("/v1/owners/2")
        .json(json!({"city": null}))
        .send()
        .await;
    assert_eq!(res.status, 200);
    let t = opened(t.into_dir(), &model).await;
    assert_eq!(list(&t).await[1]["city"], Value::Null);
}

#[tokio::test]
async fn a_field_made_required_needs_its_empty_values_filled_first() {
    let t = owners(&[
        json!({"name": "Ann", "phone": "123"}),
        json!({"name": "Bob"}),
    ])
    .await;
    let (e, db) = refused(
        t.into_dir(),
        &changed("phone", "phone = { type = \"string\", required = true }"),
    )
    .await;
    assert!(
        e.contains("field 'phone' is required") && e.contains("1 row"),
        "{e}"
    );
    let t = opened(
        db,
        &changed(
            "phone",
            "phone = { type = \"string\", required = true, default = \"none\" }",
        ),
    )
    .await;
    let phones: Vec<Value> = list(&t).await.iter().map(|o| o["phone"].clone()).collect();
    assert_eq!(phones, [json!("123"), json!("none")]);
    let raw = Raw::connect(&t.url).await;
    assert!(raw
        .try_execute("UPDATE owners SET phone = NULL")
        .await
        .is_err());
    raw.close().await;
    // Optional again (an earlier declaration: `migrate` first, as serve
    // says): null is accepted again.
    let db = t.into_dir();
    migrate(&db.url, OWNERS, Options::default(), true)
        .await
        .unwrap();
    let t = opened(db, OWNERS).await;
    let res = t
        .patch("/v1/owners/1")
        .json(json!({"phone": null}))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
}

#[tokio::test]
async fn a_new_unique_over_repeated_values_is_refused_with_how_many() {
    let t = owners(&[
        json!({"name": "Ann", "city": "Paris"}),
        json!({"name": "Bob", "city": "Paris"}),
        json!({"name": "Eve", "city": "Oslo"}),
    ])
    .await;
    let unique = changed("city", "city  = { type = \"string\", unique = true }");
    let (e, db) = refused(t.into_dir(), &unique).await;
    assert!(
        e.contains("field 'city' is now unique") && e.contains("2 rows"),
        "{e}"
    );
    let t = opened(db, OWNERS).await;
    t.patch("/v1/owners/2")
        .json(json!({"city": "Rome"}))
        .send()
        .await;
    let t = opened(t.into_dir(), &unique).await;
    let res = t
        .post("/v1/owners")
        .json(json!({"name": "Zed", "city": "Oslo"}))
        .send()
        .await;
    assert_problem(&res, 409, "DUPLICATE_VALUE");
}

#[tokio::test]
async fn a_declared_rename_moves_the_data_and_an_undeclared_one_hides_nothing() {
    let t = owners(&[
        json!({"name": "Ann", "phone": "123"}),
        json!({"name": "Bob", "phone": "456"}),
    ])
    .await;
    // Not declared: a new empty column, the old one kept and reported.
    let guessed = changed("phone", "phoneNumber = { type = \"string\" }");
    let report = migrate(&t.url, &guessed, Options::default(), false)
        .await
        .unwrap();
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("owners.phone") && n.contains("2 rows") && n.contains("--drop")),
        "{report:?}"
    );
    // Declared: the column is renamed, the plan says so.
    let renamed = changed(
        "phone",
        "phoneNumber = { type = \"string\", renamed_from = \"phone\" }",
    );
    let report = migrate(&t.url, &renamed, Options::default(), false)
        .await
        .unwrap();
    assert!(
        whats(&report)
            .iter()
            .any(|w| w.contains("rename field 'phoneNumber'")),
        "{report:?}"
    );
    assert!(report.notes.is_empty(), "{report:?}");
    let t = opened(t.into_dir(), &renamed).await;
    let numbers: Vec<Value> = list(&t)
        .await
        .iter()
        .map(|o| o["phoneNumber"].clone())
        .collect();
    assert_eq!(numbers, [json!("123"), json!("456")]);
    // Applied once: the next start has nothing to do.
    let report = migrate(&t.url, &renamed, Options::default(), false)
        .await
        .unwrap();
    assert!(report.is_current(), "{report:?}");
}

#[tokio::test]
async fn a_column_no_longer_declared_is_kept_unless_drop_is_asked() {
    let t = owners(&[json!({"name": "Ann", "phone": "123"})]).await;
    let fewer: String = OWNERS
        .lines()
        .filter(|l| !l.starts_with("phone"))
        .collect::<Vec<_>>()
        .join("\n");
    let t = opened(t.into_dir(), &fewer).await;
    let raw = Raw::connect(&t.url).await;
    assert!(raw.columns("owners").await.contains(&"phone".to_string()));
    // Declared again (the earlier declaration: `migrate` first), the
    // value is still there.
    let db = t.into_dir();
    migrate(&db.url, OWNERS, Options::default(), true)
        .await
        .unwrap();
    let t = opened(db, OWNERS).await;
    assert_eq!(list(&t).await[0]["phone"], "123");
    let report = migrate(
        &t.url,
        &fewer,
        Options {
            drop: true,
            ..Options::default()
        },
        true,
    )
    .await
    .unwrap();
    assert!(
        whats(&report)
            .iter()
            .any(|w| w.contains("drop column phone")),
        "{report:?}"
    );
    assert!(!raw.columns("owners").await.contains(&"phone".to_string()));
    raw.close().await;
}

#[tokio::test]
async fn a_renamed_table_keeps_its_rows() {
    let t = owners(&[json!({"name": "Ann"})]).await;
    let model = OWNERS.replace(
        "table = \"owners\"",
        "table = \"clients\"\nrenamed_from = \"owners\"",
    );
    let t = opened(t.into_dir(), &model).await;
    assert_eq!(list(&t).await[0]["name"], "Ann");
    let raw = Raw::connect(&t.url).await;
    assert!(raw.columns("owners").await.is_empty());
    raw.close().await;
}

#[tokio::test]
async fn a_plan_changes_nothing_and_applying_it_does_what_it_said() {
    let t = owners(&[json!({"name": "Ann"})]).await;
    let model = with_field("email = { type = \"string\", index = true }");
    let planned = migrate(&t.url, &model, Options::default(), false)
        .await
        .unwrap();
    assert_eq!(
        whats(&planned),
        [
            "add field 'email' (string, column email)",
            "index email (index ix_owners_email)"
        ],
        "{}",
        planned.render()
    );
    assert!(planned.steps[0].sql[0].contains("ALTER TABLE"));
    let raw = Raw::connect(&t.url).await;
    assert!(!raw.columns("owners").await.contains(&"email".to_string()));
    let applied = migrate(&t.url, &model, Options::default(), true)
        .await
        .unwrap();
    assert_eq!(applied.steps, planned.steps);
    assert!(raw.columns("owners").await.contains(&"email".to_string()));
    raw.close().await;
    let again = migrate(&t.url, &model, Options::default(), false)
        .await
        .unwrap();
    assert!(again.is_current(), "{}", again.render());
    assert!(again.render().starts_with("no changes"));
}

#[tokio::test]
async fn serve_refuses_a_database_migrated_to_a_later_declaration() {
    let t = owners(&[json!({"name": "Ann"})]).await;
    let later = with_field("email = { type = \"string\" }");
    let t = opened(t.into_dir(), &later).await;
    let (e, db) = refused(t.into_dir(), OWNERS).await;
    assert!(
        e.contains("migrated to another declaration") && e.contains("restkit migrate"),
        "{e}"
    );
    // `migrate` with the older declaration takes the database back to it
    // (the newer column kept); then it serves.
    migrate(&db.url, OWNERS, Options::default(), true)
        .await
        .unwrap();
    let t = opened(db, OWNERS).await;
    assert_eq!(list(&t).await.len(), 1);
}

#[tokio::test]
async fn rows_a_migration_fills_are_changes_sync_clients_see() {
    let synced = OWNERS.replace("table = \"owners\"", "table = \"owners\"\nsync = true")
        + "updatedAt = { type = \"datetime\", read_only = true, updated_at = true }\n";
    let t = TestApp::with(&synced, "", Registry::builtin()).await;
    for body in [
        json!({"name": "Ann"}),
        json!({"name": "Bob", "city": "Oslo"}),
    ] {
        assert_eq!(t.post("/v1/owners").json(body).send().await.status, 201);
    }
    let mark = t
        .get("/v1/owners")
        .send()
        .await
        .header("x-sync-timestamp")
        .to_string();
    let with_default = synced.replace(
        "city  = { type = \"string\" }",
        "city  = { type = \"string\", default = \"Paris\" }",
    );
    let t = opened(t.into_dir(), &with_default).await;
    let enc: String = form_urlencoded::byte_serialize(mark.as_bytes()).collect();
    let changed = t
        .get(&format!("/v1/owners?timestamp={enc}"))
        .send()
        .await
        .json();
    let names: Vec<&str> = changed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ann"], "{changed}");
    assert_eq!(changed[0]["city"], "Paris");
}

#[tokio::test]
async fn a_renamed_sync_table_keeps_its_deletions_and_records_each_once() {
    let synced = OWNERS.replace("table = \"owners\"", "table = \"owners\"\nsync = true")
        + "updatedAt = { type = \"datetime\", read_only = true, updated_at = true }\n";
    let t = TestApp::with(&synced, "", Registry::builtin()).await;
    for name in ["Ann", "Bob", "Eve"] {
        t.post("/v1/owners")
            .json(json!({"name": name}))
            .send()
            .await;
    }
    let mark = t
        .get("/v1/owners")
        .send()
        .await
        .header("x-sync-timestamp")
        .to_string();
    assert_eq!(t.delete("/v1/owners/1").send().await.status, 204);
    let renamed = synced.replace(
        "table = \"owners\"",
        "table = \"clients\"\nrenamed_from = \"owners\"",
    );
    let t = opened(t.into_dir(), &renamed).await;
    assert_eq!(t.delete("/v1/owners/2").send().await.status, 204);
    let raw = Raw::connect(&t.url).await;
    let recorded = raw
        .pairs("SELECT record_id, owner_id FROM restkit_tombstones ORDER BY record_id")
        .await;
    assert_eq!(
        recorded.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM restkit_tombstones WHERE table_name = 'clients'")
            .await,
        2
    );
    raw.close().await;
    let enc: String = form_urlencoded::byte_serialize(mark.as_bytes()).collect();
    let res = t
        .get(&format!("/v1/owners?timestamp={enc}&envelope=true"))
        .send()
        .await;
    assert_eq!(res.json()["_meta"]["deleted"], json!([1, 2]));
}
