//! Relations with referential integrity (§15): `belongs_to` keys are
//! foreign keys in the database; a write naming a record that is not
//! there (or not the caller's to see) is 422 on that field; a delete
//! restricts, cascades or clears as the relation says; `migrate` adds the
//! keys to tables that lack them, or refuses when rows would break them.

use restkit::registry::Registry;
use serde_json::{json, Value};

use crate::db::Raw;
use crate::helpers::{assert_problem, TestApp};

/// A veterinary clinic: owners and vets, pets belonging to both (a vet
/// leaving clears the pet's `vetId`), visits deleted with their pet,
/// private notes on pets that keep a pet from being deleted.
const CLINIC: &str = r#"
[[module]]
prefix = "/v1"

[[module.resource]]
name = "owners"
table = "owners"
bulk = true
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string", required = true }

[[module.resource]]
name = "vets"
table = "vets"
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string", required = true }

[[module.resource]]
name = "pets"
table = "pets"
bulk = true
sync = true
relations = { owner = { kind = "belongs_to", resource = "owners", foreign_key = "ownerId" }, vet = { kind = "belongs_to", resource = "vets", foreign_key = "vetId", on_delete = "set_null" }, shelter = { kind = "belongs_to", resource = "shelters", foreign_key = "shelterId", on_delete = "set_null" }, visits = { kind = "has_many", resource = "visits", foreign_key = "petId" } }
[module.resource.fields]
id        = { type = "integer", primary_key = true }
name      = { type = "string", required = true, unique = true }
ownerId   = { type = "integer", required = true }
vetId     = { type = "integer" }
shelterId = { type = "integer" }
updatedAt = { type = "datetime", read_only = true, updated_at = true }

[[module.resource]]
name = "visits"
table = "visits"
sync = true
relations = { pet = { kind = "belongs_to", resource = "pets", foreign_key = "petId", on_delete = "cascade" } }
[module.resource.fields]
id        = { type = "integer", primary_key = true }
petId     = { type = "integer", required = true }
reason    = { type = "string" }
updatedAt = { type = "datetime", read_only = true, updated_at = true }

[[module.resource]]
name = "shelters"
table = "shelters"
owner = { field = "userId", policy = "private" }
[module.resource.fields]
id     = { type = "integer", primary_key = true }
name   = { type = "string" }
userId = { type = "integer", read_only = true }

[[module.resource]]
name = "notes"
table = "notes"
owner = { field = "userId", policy = "private" }
relations = { pet = { kind = "belongs_to", resource = "pets", foreign_key = "petId" }, shelter = { kind = "belongs_to", resource = "shelters", foreign_key = "shelterId", on_delete = "set_null" } }
[module.resource.fields]
id        = { type = "integer", primary_key = true }
petId     = { type = "integer" }
shelterId = { type = "integer" }
userId    = { type = "integer", read_only = true }
text      = { type = "string" }
"#;

async fn clinic() -> TestApp {
    TestApp::with(CLINIC, "", Registry::builtin()).await
}

async fn create(t: &TestApp, path: &str, body: Value) -> i64 {
    let res = t.post(path).json(body).send().await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    res.json()["id"].as_i64().unwrap()
}

/// Creates as user `user` (for owner-scoped resources).
async fn create_by(t: &TestApp, user: i64, path: &str, body: Value) -> i64 {
    let res = t.post(path).by_user(user).json(body).send().await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    res.json()["id"].as_i64().unwrap()
}

async fn count(t: &TestApp, path: &str) -> usize {
    t.get(path).send().await.json().as_array().unwrap().len()
}

#[tokio::test]
async fn a_write_naming_a_missing_record_is_422_on_that_field_through_every_route() {
    let t = clinic().await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let rex = create(&t, "/v1/pets", json!({"name": "Rex", "ownerId": ann})).await;

    let res = t
        .post("/v1/pets")
        .json(json!({"name": "Ghost", "ownerId": 999}))
        .send()
        .await;
    let body = assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(res.error_fields(), [("ownerId".into(), "exists".into())]);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("owner"),
        "{body}"
    );
    // Two at once: both named.
    let res = t
        .post("/v1/pets")
        .json(json!({"name": "Ghost", "ownerId": 999, "vetId": 7}))
        .send()
        .await;
    assert_eq!(
        res.error_fields(),
        [
            ("ownerId".into(), "exists".into()),
            ("vetId".into(), "exists".into())
        ]
    );
    let res = t
        .patch(&format!("/v1/pets/{rex}"))
        .json(json!({"ownerId": 999}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(res.error_fields(), [("ownerId".into(), "exists".into())]);
    let res = t
        .put(&format!("/v1/pets/{rex}"))
        .json(json!({"name": "Rex", "ownerId": 999}))
        .send()
        .await;
    assert_eq!(res.error_fields(), [("ownerId".into(), "exists".into())]);
    // Nothing was written by any of them.
    assert_eq!(count(&t, "/v1/pets").await, 1);
    let rex_now = t.get(&format!("/v1/pets/{rex}")).send().await.json();
    assert_eq!(rex_now["ownerId"], json!(ann));
    // A key that names a record is accepted; null clears an optional one.
    let vet = create(&t, "/v1/vets", json!({"name": "Dr Who"})).await;
    let res = t
        .patch(&format!("/v1/pets/{rex}"))
        .json(json!({"vetId": vet}))
        .send()
        .await;
    assert_eq!(res.status, 200);
    let res = t
        .patch(&format!("/v1/pets/{rex}"))
        .json(json!({"vetId": null}))
        .send()
        .await;
    assert_eq!(res.json()["vetId"], Value::Null);
}

#[tokio::test]
async fn a_bulk_write_names_the_item_whose_key_is_missing() {
    let t = clinic().await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let a = create(&t, "/v1/pets", json!({"name": "A", "ownerId": ann})).await;
    let b = create(&t, "/v1/pets", json!({"name": "B", "ownerId": ann})).await;
    let res = t
        .put("/v1/pets")
        .json(json!([
            {"id": a, "name": "A2", "ownerId": ann},
            {"id": b, "name": "B2", "ownerId": 999}
        ]))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(
        res.error_fields(),
        [("[1].ownerId".into(), "exists".into())]
    );
    // All or nothing: the first item was not written either.
    assert_eq!(
        t.get(&format!("/v1/pets/{a}")).send().await.json()["name"],
        "A"
    );
}

#[tokio::test]
async fn someone_elses_private_record_is_as_missing_as_one_that_does_not_exist() {
    let t = clinic().await;
    let mine = create_by(&t, 1, "/v1/shelters", json!({"name": "mine"})).await;
    let res = t
        .post("/v1/notes")
        .by_user(2)
        .json(json!({"shelterId": mine, "text": "x"}))
        .send()
        .await;
    let theirs = assert_problem(&res, 422, "VALIDATION_FAILED");
    let res = t
        .post("/v1/notes")
        .by_user(2)
        .json(json!({"shelterId": mine + 100, "text": "x"}))
        .send()
        .await;
    let missing = assert_problem(&res, 422, "VALIDATION_FAILED");
    let message = |b: &Value, id: i64| {
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .replace(&id.to_string(), "N")
    };
    assert_eq!(message(&theirs, mine), message(&missing, mine + 100));
    // Its owner may.
    let res = t
        .post("/v1/notes")
        .by_user(1)
        .json(json!({"shelterId": mine, "text": "x"}))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
}

#[tokio::test]
async fn restrict_refuses_the_delete_and_says_which_relation_and_how_many() {
    let t = clinic().await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let bob = create(&t, "/v1/owners", json!({"name": "Bob"})).await;
    create(&t, "/v1/pets", json!({"name": "Rex", "ownerId": ann})).await;
    create(&t, "/v1/pets", json!({"name": "Tom", "ownerId": ann})).await;
    let res = t.delete(&format!("/v1/owners/{ann}")).send().await;
    let body = assert_problem(&res, 409, "REFERENCE_CONFLICT");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("2 pets") && detail.contains("'owner'"),
        "{detail}"
    );
    // A collection delete that would take her is refused as a whole.
    let res = t.delete("/v1/owners?all=true").send().await;
    assert_problem(&res, 409, "REFERENCE_CONFLICT");
    assert_eq!(count(&t, "/v1/owners").await, 2);
    // An owner nobody refers to goes.
    assert_eq!(
        t.delete(&format!("/v1/owners/{bob}")).send().await.status,
        204
    );
    // Referred to by a private note of another user: refused, without
    // saying how many notes or whose.
    let pet = create(&t, "/v1/pets", json!({"name": "Kit", "ownerId": ann})).await;
    let res = t
        .post("/v1/notes")
        .by_user(5)
        .json(json!({"petId": pet, "text": "allergic"}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    let res = t.delete(&format!("/v1/pets/{pet}")).send().await;
    let body = assert_problem(&res, 409, "REFERENCE_CONFLICT");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("/v1/notes") && !detail.contains("1 note"),
        "{detail}"
    );
    // The document says so.
    let doc = t.get("/openapi.json").send().await.json();
    let delete = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(path, _)| path.starts_with("/v1/owners/{"))
        .map(|(_, item)| item["delete"].clone())
        .unwrap();
    assert!(delete["responses"]["409"].is_object(), "{delete}");
    assert!(doc.to_string().contains(
        "The id of a record of owners (relation owner; when that record is deleted: restrict)"
    ));
}

#[tokio::test]
async fn cascade_deletes_the_referring_records_each_with_a_tombstone() {
    let t = clinic().await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let rex = create(&t, "/v1/pets", json!({"name": "Rex", "ownerId": ann})).await;
    let tom = create(&t, "/v1/pets", json!({"name": "Tom", "ownerId": ann})).await;
    let mut rex_visits = Vec::new();
    for reason in ["vaccine", "checkup"] {
        rex_visits.push(create(&t, "/v1/visits", json!({"petId": rex, "reason": reason})).await);
    }
    let toms = create(&t, "/v1/visits", json!({"petId": tom})).await;
    assert_eq!(
        t.delete(&format!("/v1/pets/{rex}")).send().await.status,
        204
    );
    let left: Vec<i64> = t
        .get("/v1/visits")
        .send()
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(left, vec![toms]);
    let raw = Raw::connect(&t.url).await;
    let mut tombstones: Vec<i64> = raw
        .pairs("SELECT record_id, owner_id FROM restkit_tombstones WHERE table_name = 'visits'")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    raw.close().await;
    tombstones.sort();
    assert_eq!(tombstones, rex_visits);
}

#[tokio::test]
async fn set_null_clears_the_key_and_stamps_the_record_for_sync_clients() {
    let t = clinic().await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let vet = create(&t, "/v1/vets", json!({"name": "Dr Who"})).await;
    let other = create(&t, "/v1/vets", json!({"name": "Dr No"})).await;
    let rex = create(
        &t,
        "/v1/pets",
        json!({"name": "Rex", "ownerId": ann, "vetId": vet}),
    )
    .await;
    let tom = create(
        &t,
        "/v1/pets",
        json!({"name": "Tom", "ownerId": ann, "vetId": other}),
    )
    .await;
    let before = t.get(&format!("/v1/pets/{rex}")).send().await.json();
    let res = t.get("/v1/pets").send().await;
    let mark = res.header("x-sync-timestamp").to_string();
    assert_eq!(
        t.delete(&format!("/v1/vets/{vet}")).send().await.status,
        204
    );
    let after = t.get(&format!("/v1/pets/{rex}")).send().await.json();
    assert_eq!(after["vetId"], Value::Null);
    assert_ne!(after["updatedAt"], before["updatedAt"]);
    assert_eq!(
        t.get(&format!("/v1/pets/{tom}")).send().await.json()["vetId"],
        json!(other)
    );
    // A sync client sees the change.
    let enc: String = form_urlencoded::byte_serialize(mark.as_bytes()).collect();
    let changed = t
        .get(&format!("/v1/pets?timestamp={enc}"))
        .send()
        .await
        .json();
    let ids: Vec<i64> = changed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![rex], "{changed}");
}

#[tokio::test]
async fn the_database_holds_the_keys_for_writes_made_outside_restkit() {
    let t = clinic().await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    create(&t, "/v1/pets", json!({"name": "Rex", "ownerId": ann})).await;
    let raw = Raw::connect(&t.url).await;
    for sql in [
        "INSERT INTO pets (name, owner_id) VALUES ('Ghost', 999)".to_string(),
        format!("DELETE FROM owners WHERE id = {ann}"),
    ] {
        assert!(raw.try_execute(&sql).await.is_err(), "{sql} was accepted");
    }
    assert_eq!(raw.scalar("SELECT count(*) FROM pets").await, 1);
    raw.close().await;
}

/// The clinic before its relations were declared.
fn without_relations() -> String {
    CLINIC
        .lines()
        .filter(|l| !l.starts_with("relations"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn migrate_adds_the_keys_to_existing_tables_and_keeps_every_row() {
    let t = TestApp::with(&without_relations(), "", Registry::builtin()).await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let vet = create(&t, "/v1/vets", json!({"name": "Dr Who"})).await;
    let mut pets = Vec::new();
    for name in ["Rex", "Tom", "Kit"] {
        pets.push(
            create(
                &t,
                "/v1/pets",
                json!({"name": name, "ownerId": ann, "vetId": vet}),
            )
            .await,
        );
    }
    let visit = create(&t, "/v1/visits", json!({"petId": pets[0]})).await;
    // The highest id is deleted: it must never be handed out again.
    let last = pets.pop().unwrap();
    assert_eq!(
        t.delete(&format!("/v1/pets/{last}")).send().await.status,
        204
    );
    let before = t.get("/v1/pets").send().await.json();
    let t = match TestApp::reopen(t.into_dir(), CLINIC).await {
        Ok(t) => t,
        Err((e, _)) => panic!("{e}"),
    };
    assert_eq!(t.get("/v1/pets").send().await.json(), before);
    // The keys hold now …
    let raw = Raw::connect(&t.url).await;
    assert!(raw
        .try_execute("INSERT INTO pets (name, owner_id) VALUES ('Ghost', 999)")
        .await
        .is_err());
    raw.close().await;
    // … and act: the visit goes with its pet, the vet's pets are cleared.
    assert_eq!(
        t.delete(&format!("/v1/pets/{}", pets[0]))
            .send()
            .await
            .status,
        204
    );
    assert_eq!(
        t.get(&format!("/v1/visits/{visit}")).send().await.status,
        404
    );
    assert_eq!(
        t.delete(&format!("/v1/vets/{vet}")).send().await.status,
        204
    );
    assert_eq!(
        t.get(&format!("/v1/pets/{}", pets[1])).send().await.json()["vetId"],
        Value::Null
    );
    // The unique index survived the rebuild, and ids are not reused.
    let res = t
        .post("/v1/pets")
        .json(json!({"name": "Tom", "ownerId": ann}))
        .send()
        .await;
    assert_problem(&res, 409, "DUPLICATE_VALUE");
    let next = create(&t, "/v1/pets", json!({"name": "New", "ownerId": ann})).await;
    assert!(next > last, "id {next} reused (last was {last})");
    // A second start finds nothing to do.
    let t = match TestApp::reopen(t.into_dir(), CLINIC).await {
        Ok(t) => t,
        Err((e, _)) => panic!("{e}"),
    };
    assert_eq!(count(&t, "/v1/pets").await, 2);
}

#[tokio::test]
async fn migrate_refuses_a_key_that_stored_rows_would_break_and_changes_nothing() {
    let t = TestApp::with(&without_relations(), "", Registry::builtin()).await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    create(&t, "/v1/pets", json!({"name": "Rex", "ownerId": ann})).await;
    create(&t, "/v1/pets", json!({"name": "Ghost", "ownerId": 999})).await;
    create(&t, "/v1/pets", json!({"name": "Ghost2", "ownerId": 998})).await;
    let (e, db) = match TestApp::reopen(t.into_dir(), CLINIC).await {
        Ok(_) => panic!("migrated over two orphans"),
        Err(refused) => refused,
    };
    assert!(
        e.contains("2 rows of pets") && e.contains("ownerId") && e.contains("owners"),
        "{e}"
    );
    assert!(
        e.contains("SELECT * FROM pets WHERE owner_id NOT IN"),
        "{e}"
    );
    // Nothing changed: the old declaration still serves every row.
    let t = match TestApp::reopen(db, &without_relations()).await {
        Ok(t) => t,
        Err((e, _)) => panic!("{e}"),
    };
    assert_eq!(count(&t, "/v1/pets").await, 3);
    // Fixed, it migrates.
    let raw = Raw::connect(&t.url).await;
    raw.execute(&format!(
        "UPDATE pets SET owner_id = {ann} WHERE owner_id > 900"
    ))
    .await;
    raw.close().await;
    assert!(TestApp::reopen(t.into_dir(), CLINIC).await.is_ok());
}

#[tokio::test]
async fn declarations_that_cannot_be_keys_are_refused_at_start_up() {
    let cases = [
        (
            CLINIC.replace(
                "vetId     = { type = \"integer\" }",
                "vetId     = { type = \"integer\", required = true }",
            ),
            "set_null",
        ),
        (
            CLINIC.replace(
                "ownerId   = { type = \"integer\", required = true }",
                "ownerId   = { type = \"string\", required = true }",
            ),
            "integer",
        ),
        (
            CLINIC.replace("on_delete = \"cascade\"", "on_delete = \"explode\""),
            "explode",
        ),
    ];
    for (model, expected) in cases {
        let e = restkit::model::toml::parse(&model)
            .map(|_| ())
            .expect_err(expected)
            .to_string();
        assert!(e.contains(expected), "{e}");
    }
}

#[tokio::test]
async fn nested_expansion_embeds_each_level_within_its_owners_rules() {
    let t = clinic().await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let vet = create(&t, "/v1/vets", json!({"name": "Dr Who"})).await;
    let stans = create_by(&t, 1, "/v1/shelters", json!({"name": "Stan's"})).await;
    let rex = create_by(
        &t,
        1,
        "/v1/pets",
        json!({"name": "Rex", "ownerId": ann, "vetId": vet, "shelterId": stans}),
    )
    .await;
    for reason in ["a", "b"] {
        create(&t, "/v1/visits", json!({"petId": rex, "reason": reason})).await;
    }
    let page = t
        .get("/v1/visits?expand=pet.owner,pet.vet,pet.shelter")
        .by_user(1)
        .send()
        .await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    for visit in page.json().as_array().unwrap() {
        let pet = &visit["pet"];
        assert_eq!(pet["name"], "Rex", "{visit}");
        assert_eq!(pet["owner"]["name"], "Ann", "{visit}");
        assert_eq!(pet["vet"]["name"], "Dr Who", "{visit}");
        assert_eq!(pet["shelter"]["name"], "Stan's", "{visit}");
    }
    // The shelter is private to user 1: to user 2 it is not there, at any
    // depth.
    let page = t
        .get("/v1/visits?expand=pet.shelter")
        .by_user(2)
        .send()
        .await
        .json();
    assert_eq!(page[0]["pet"]["name"], "Rex");
    assert_eq!(page[0]["pet"]["shelter"], Value::Null, "{page}");
    // Three levels, both directions: a visit's pet's visits.
    let one = t
        .get("/v1/visits/1?expand=pet.visits.pet")
        .send()
        .await
        .json();
    let visits = one["pet"]["visits"].as_array().unwrap();
    assert_eq!(visits.len(), 2, "{one}");
    assert_eq!(visits[1]["pet"]["name"], "Rex");
    // Fields of the first level still choose what is shown there; the
    // key the next level joins on is not shown unless asked for.
    let page = t
        .get("/v1/visits?fields=id,pet.name&expand=pet.owner")
        .send()
        .await
        .json();
    assert_eq!(
        page[0]["pet"],
        json!({"name": "Rex", "owner": {"id": ann, "name": "Ann"}}),
        "{page}"
    );
    // Deeper than three, or a name no target has: 400.
    let res = t.get("/v1/visits?expand=pet.visits.pet.owner").send().await;
    assert_eq!(res.status, 400);
    let res = t.get("/v1/visits?expand=pet.nope").send().await;
    let body = assert_problem(&res, 400, "UNKNOWN_FIELD");
    assert!(body.to_string().contains("pet.nope"), "{body}");
}

#[tokio::test]
async fn a_declaration_without_the_relation_still_gets_a_422_for_a_key_naming_nothing() {
    // v2 serves pets without owners: the relation is not inherited, the
    // table's foreign key still holds.
    let model = format!(
        "{CLINIC}\n[[module]]\nprefix = \"/v2\"\n[[module.resource]]\nname = \"pets\"\nextends = \"/v1/pets\"\n"
    );
    let t = TestApp::with(&model, "", Registry::builtin()).await;
    let res = t
        .post("/v2/pets")
        .json(json!({"name": "Ghost", "ownerId": 999}))
        .send()
        .await;
    assert_problem(&res, 422, "VALIDATION_FAILED");
    assert_eq!(res.error_fields(), [("ownerId".into(), "exists".into())]);
    // Someone else's private shelter is as missing through v2 as via v1.
    let mine = create_by(&t, 1, "/v1/shelters", json!({"name": "mine"})).await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let res = t
        .post("/v2/pets")
        .by_user(2)
        .json(json!({"name": "Rex", "ownerId": ann, "shelterId": mine}))
        .send()
        .await;
    assert_eq!(res.error_fields(), [("shelterId".into(), "exists".into())]);
}

#[tokio::test]
async fn column_names_that_contain_keywords_do_not_block_the_rebuild() {
    let plain = without_relations().replace(
        "reason    = { type = \"string\" }",
        "reason    = { type = \"string\" }\ncheckedIn = { type = \"string\" }\nuniqueCode = { type = \"string\" }",
    );
    let t = TestApp::with(&plain, "", Registry::builtin()).await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    let rex = create(&t, "/v1/pets", json!({"name": "Rex", "ownerId": ann})).await;
    create(&t, "/v1/visits", json!({"petId": rex, "checkedIn": "yes"})).await;
    let related = CLINIC.replace(
        "reason    = { type = \"string\" }",
        "reason    = { type = \"string\" }\ncheckedIn = { type = \"string\" }\nuniqueCode = { type = \"string\" }",
    );
    let t = match TestApp::reopen(t.into_dir(), &related).await {
        Ok(t) => t,
        Err((e, _)) => panic!("{e}"),
    };
    assert_eq!(
        t.get("/v1/visits/1").send().await.json()["checkedIn"],
        "yes"
    );
}

#[tokio::test]
async fn a_new_required_key_over_rows_is_refused_in_words_not_with_an_sql_error() {
    let t = TestApp::with(CLINIC, "", Registry::builtin()).await;
    let ann = create(&t, "/v1/owners", json!({"name": "Ann"})).await;
    create(&t, "/v1/pets", json!({"name": "Rex", "ownerId": ann})).await;
    let model = CLINIC.replace(
        "vetId     = { type = \"integer\" }",
        "vetId     = { type = \"integer\" }\nclinicId  = { type = \"integer\", required = true }",
    )
    .replace(
        "vet = { kind = \"belongs_to\", resource = \"vets\", foreign_key = \"vetId\", on_delete = \"set_null\" }",
        "vet = { kind = \"belongs_to\", resource = \"vets\", foreign_key = \"vetId\", on_delete = \"set_null\" }, clinic = { kind = \"belongs_to\", resource = \"vets\", foreign_key = \"clinicId\" }",
    );
    let e = match TestApp::reopen(t.into_dir(), &model).await {
        Ok(_) => panic!("a required key added over a row without a value"),
        Err((e, _)) => e,
    };
    assert!(
        e.contains("field 'clinicId' is new and required") && !e.contains("no such column"),
        "{e}"
    );
}

/// A public resource with a relation to a protected one: embedding it is
/// reading it, so it needs the target's read scope — 401 without
/// credentials, 403 without the scope — never a way around it.
#[tokio::test]
async fn embedding_a_protected_resource_needs_its_read_scope() {
    let t = TestApp::with(
        r#"
[[module]]
prefix = "/api"

[[module.resource]]
name = "authors"
table = "authors"
scopes = { read = "", write = "write" }
relations = { recipes = { kind = "has_many", resource = "recipes", foreign_key = "authorId" } }
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string", required = true }

[[module.resource]]
name = "recipes"
table = "recipes"
scopes = { read = "chef", write = "chef" }
relations = { author = { kind = "belongs_to", resource = "authors", foreign_key = "authorId" } }
[module.resource.fields]
id       = { type = "integer", primary_key = true }
title    = { type = "string", required = true }
authorId = { type = "integer", required = true }
"#,
        "",
        Registry::builtin(),
    )
    .await;
    let ann = create(&t, "/api/authors", json!({"name": "Ann"})).await;
    let res = t
        .post("/api/recipes")
        .with_scopes(&["chef"])
        .json(json!({"title": "Secret sauce", "authorId": ann}))
        .send()
        .await;
    assert_eq!(res.status, 201);
    // The authors are public; their recipes are not.
    assert_eq!(t.get("/api/authors").anonymous().send().await.status, 200);
    for path in [
        "/api/authors?expand=recipes",
        "/api/authors?fields=id,recipes.title",
        &format!("/api/authors/{ann}?expand=recipes"),
    ] {
        let res = t.get(path).anonymous().send().await;
        let b = assert_problem(&res, 401, "UNAUTHORIZED");
        assert!(b["detail"].as_str().unwrap().contains("'recipes'"), "{b}");
        assert!(!String::from_utf8_lossy(&res.body).contains("Secret sauce"));
        let res = t.get(path).with_scopes(&["basic"]).send().await;
        assert_problem(&res, 403, "INSUFFICIENT_SCOPE");
    }
    let res = t
        .get("/api/authors?expand=recipes")
        .with_scopes(&["chef"])
        .send()
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()[0]["recipes"][0]["title"], "Secret sauce");
}
