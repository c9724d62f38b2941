//! What a declaration implies, applied everywhere: scenarios bound every
//! way of reading a field, `fields` and `expand` agree about relations, and
//! an expansion respects the owners of its target's parents.

use restkit::registry::Registry;
use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

const SCENARIOS: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "agents"
[module.resource.fields]
id       = { type = "integer", primary_key = true }
name     = { type = "string" }
codename = { type = "string" }
[module.resource.scenarios]
list = ["id", "name"]
"#;

#[tokio::test]
async fn a_field_left_out_of_the_list_scenario_cannot_be_read_through_queries() {
    let t = TestApp::with(SCENARIOS, "", Registry::builtin()).await;
    t.post("/api/agents")
        .json(json!({"name": "James", "codename": "007"}))
        .send()
        .await;
    for query in [
        "fields=id,codename",
        "sort=codename",
        "filter[codename]=007",
        "q=(codename:007)",
        "filter=%5B%7B%22field%22%3A%22codename%22%2C%22operator%22%3A%22%3D%22%2C%22value%22%3A%22007%22%7D%5D",
    ] {
        let res = t.get(&format!("/api/agents?{query}")).send().await;
        let b = assert_problem(&res, 400, "UNKNOWN_FIELD");
        assert!(b["detail"].as_str().unwrap().contains("codename"), "{query}: {b}");
    }
    let list = t.get("/api/agents").send().await.json();
    assert!(list[0].get("codename").is_none());
    // The view scenario (all fields) still shows it on the record.
    let one = t
        .get("/api/agents/1?fields=id,codename")
        .send()
        .await
        .json();
    assert_eq!(one, json!({"id": 1, "codename": "007"}));
}

#[tokio::test]
async fn fields_and_expand_agree_about_relations() {
    let t = TestApp::demo().await;
    t.post("/v1/books/1/reviews")
        .by_user(1)
        .json(json!({"rating": 4, "body": "good"}))
        .send()
        .await;
    // A relation named in fields embeds it, with or without expand.
    for query in ["fields=id,reviews", "expand=reviews&fields=id,reviews"] {
        let b = t.get(&format!("/v1/books/1?{query}")).send().await.json();
        assert_eq!(b["id"], 1, "{query}");
        assert_eq!(b["reviews"][0]["rating"], 4, "{query}: {b}");
        assert!(b.get("title").is_none(), "{query}");
    }
    // A relation's field in fields embeds just that field.
    let b = t
        .get("/v1/books?fields=id,reviews.rating&limit=1")
        .send()
        .await
        .json();
    assert_eq!(b, json!([{"id": 1, "reviews": [{"rating": 4}]}]));
    // expand adds to fields.
    let b = t
        .get("/v1/books/1?expand=reviews&fields=id")
        .send()
        .await
        .json();
    assert_eq!(b["reviews"][0]["body"], "good");
    // Anything else is a 400 naming it, never silently dropped.
    for bad in [
        "fields=id,nope.x",
        "fields=id,reviews.nope",
        "fields=id,title.x",
    ] {
        let res = t.get(&format!("/v1/books/1?{bad}")).send().await;
        assert_problem(&res, 400, "UNKNOWN_FIELD");
    }
}

const PLACEMENTS: &str = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "titles"
relations = { placements = { kind = "has_many", resource = "placements", foreign_key = "titleId" } }
[module.resource.fields]
id   = { type = "integer", primary_key = true }
name = { type = "string" }
[[module.resource]]
name = "shelves"
owner = { field = "userId", policy = "private" }
[module.resource.fields]
id     = { type = "integer", primary_key = true }
name   = { type = "string" }
userId = { type = "integer", read_only = true }
[[module.resource.nested]]
name = "placements"
table = "placements"
parent_key = "shelfId"
[module.resource.nested.fields]
id      = { type = "integer", primary_key = true }
shelfId = { type = "integer", read_only = true }
titleId = { type = "integer" }
"#;

#[tokio::test]
async fn an_expansion_respects_the_owner_of_the_targets_parents() {
    let t = TestApp::with(PLACEMENTS, "", Registry::builtin()).await;
    t.post("/api/titles")
        .json(json!({"name": "Dune"}))
        .send()
        .await;
    for user in [1, 2] {
        let shelf = t
            .post("/api/shelves")
            .by_user(user)
            .json(json!({"name": format!("shelf of {user}")}))
            .send()
            .await
            .json();
        let res = t
            .post(&format!("/api/shelves/{}/placements", shelf["id"]))
            .by_user(user)
            .json(json!({"titleId": 1}))
            .send()
            .await;
        assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    }
    // Each user sees only the placement on their own shelf.
    for (user, shelf) in [(1, 1), (2, 2)] {
        let b = t
            .get("/api/titles/1?expand=placements")
            .by_user(user)
            .send()
            .await
            .json();
        let placements = b["placements"].as_array().unwrap();
        assert_eq!(placements.len(), 1, "user {user}: {b}");
        assert_eq!(placements[0]["shelfId"], shelf);
    }
    // Without a user (a client_credentials token), private parents hide
    // every placement.
    let b = t
        .get("/api/titles/1?expand=placements")
        .header(
            "authorization",
            &format!("Bearer {}", t.client_token(&["basic"])),
        )
        .send()
        .await
        .json();
    assert_eq!(b["placements"], json!([]));
}

#[tokio::test]
async fn declarations_that_would_collide_stop_start_up() {
    let collide = r#"
[[module]]
prefix = "/api"
[[module.resource]]
name = "a"
relations = { b = { kind = "has_many", resource = "b", foreign_key = "aId" } }
[module.resource.fields]
id = { type = "integer", primary_key = true }
b  = { type = "string" }
[[module.resource]]
name = "b"
[module.resource.fields]
id  = { type = "integer", primary_key = true }
aId = { type = "integer" }
"#;
    let err = restkit::model::toml::parse(collide)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("relation 'b' has the name of a field"),
        "{err}"
    );
    let stamps = r#"
[[module]]
prefix = "/v1"
[[module.resource]]
name = "items"
sync = true
[module.resource.fields]
id        = { type = "integer", primary_key = true }
updatedAt = { type = "datetime", read_only = true, updated_at = true }
[[module]]
prefix = "/v2"
[[module.resource]]
name = "items"
[module.resource.fields]
id       = { type = "integer", primary_key = true }
changed  = { type = "datetime", read_only = true, updated_at = true }
"#;
    let err = restkit::model::toml::parse(stamps).unwrap_err().to_string();
    assert!(err.contains("updated_at column"), "{err}");
}
