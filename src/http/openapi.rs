//! The OpenAPI 3.1 document (§11), generated once at start-up from the
//! same routes the server serves — no second, hand-kept description.
//!
//! First part: every declared route and method (collections, records,
//! nested resources, actions, bulk), path parameters, the collection
//! query parameters, request bodies from the declared input schemas,
//! record and collection responses from the readable fields, the §7
//! error (with the 422 `errors` array), the pagination and caching
//! headers, the content types, restkit's own endpoints, and the OAuth2 and
//! bearer security schemes with each operation's scope.

use serde_json::{json, Map, Value};

use super::routes::{Route, Target};
use crate::config::Settings;
use crate::controller::Operation;
use crate::model::schema::field_schema;
use crate::model::Resource;

/// The content types every data operation can answer in (§5.1).
const MEDIA: &[&str] = &[
    "application/json",
    "application/xml",
    "text/csv",
    "text/html",
];

fn content(schema: Value) -> Value {
    let mut m = Map::new();
    for media in MEDIA {
        let s = if *media == "application/json" {
            schema.clone()
        } else {
            json!({"type": "string"})
        };
        m.insert((*media).to_string(), json!({ "schema": s }));
    }
    Value::Object(m)
}

fn error_content() -> Value {
    json!({
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Error"}},
        "application/problem+xml": {"schema": {"type": "string"}},
        "text/html": {"schema": {"type": "string"}}
    })
}

/// A resource's record as served: its readable fields by API name.
fn record_schema(r: &Resource) -> Value {
    let mut props = Map::new();
    for i in r.readable(true) {
        let f = &r.fields[i];
        props.insert(f.name.clone(), field_schema(f));
    }
    json!({"type": "object", "properties": props})
}

fn schema_name(r: &Resource, prefix: &str) -> String {
    let module: String = prefix
        .trim_matches('/')
        .split('/')
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let mut name = String::new();
    for part in r.name.split(['_', '-']) {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            name.push(f.to_ascii_uppercase());
            name.push_str(c.as_str());
        }
    }
    format!("{module}{name}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// Names of the §5–§6 collection parameters in `components.parameters`.
const COLLECTION_PARAMETERS: &[&str] = &[
    "fields",
    "expand",
    "sort",
    "q",
    "filter",
    "page",
    "per-page",
    "limit",
    "offset",
    "cursor",
    "timestamp",
    "envelope",
    "type",
];

/// References to the collection parameters.
fn collection_parameters() -> Vec<Value> {
    COLLECTION_PARAMETERS
        .iter()
        .map(|n| json!({"$ref": format!("#/components/parameters/{n}")}))
        .collect()
}

/// §5–§6 parameters of a collection read, for `components.parameters`.
fn collection_parameter_definitions() -> Map<String, Value> {
    let defs = vec![
        query(
            "fields",
            "Comma-separated fields to return (`fields=id,title`; `rel.field` embeds a relation).",
            json!({"type": "string"}),
        ),
        query(
            "expand",
            "Comma-separated relations to embed.",
            json!({"type": "string"}),
        ),
        query(
            "sort",
            "Comma-separated fields, `-` for descending (`sort=-year,title`).",
            json!({"type": "string"}),
        ),
        query(
            "q",
            "Search: `(field:value,field:value*)`.",
            json!({"type": "string"}),
        ),
        json!({"name": "filter", "in": "query", "required": false, "style": "deepObject", "explode": true,
               "description": "Filters: `filter[field]=v`, `filter[field][gte]=v`, `filter[or][0][field]=v`; or a JSON object.",
               "schema": {"type": "object", "additionalProperties": true}}),
        query(
            "page",
            "Page number (1-based).",
            json!({"type": "integer", "minimum": 1}),
        ),
        query(
            "per-page",
            "Records per page.",
            json!({"type": "integer", "minimum": 1}),
        ),
        query(
            "limit",
            "Records per page (offset style).",
            json!({"type": "integer", "minimum": 0}),
        ),
        query(
            "offset",
            "Records to skip.",
            json!({"type": "integer", "minimum": 0}),
        ),
        query(
            "cursor",
            "Keyset cursor from a previous page's `next` link.",
            json!({"type": "string"}),
        ),
        query(
            "timestamp",
            "Sync: only records changed after this time (seconds, milliseconds or RFC 3339).",
            json!({"type": "string"}),
        ),
        query(
            "envelope",
            "`true`: records under `records` with `_meta` and `_links`.",
            json!({"type": "boolean"}),
        ),
        query(
            "type",
            "Format: json, xml, csv, html.",
            json!({"type": "string", "enum": ["json", "xml", "csv", "html"]}),
        ),
    ];
    defs.into_iter()
        .map(|d| (d["name"].as_str().unwrap_or_default().to_string(), d))
        .collect()
}

fn header(description: &str, schema: Value) -> Value {
    json!({"description": description, "schema": schema})
}

fn paging_headers() -> Value {
    json!({
        "X-Pagination-Total-Count": header("Records matching.", json!({"type": "integer"})),
        "X-Pagination-Page-Count": header("Pages.", json!({"type": "integer"})),
        "X-Pagination-Current-Page": header("This page.", json!({"type": "integer"})),
        "X-Pagination-Per-Page": header("Records per page.", json!({"type": "integer"})),
        "Link": header("RFC 8288 links: self, first, prev, next, last.", json!({"type": "string"})),
        "ETag": header("Strong entity tag of this representation.", json!({"type": "string"})),
        "X-Request-Id": header("The request's id.", json!({"type": "string"}))
    })
}

fn record_headers() -> Value {
    json!({
        "ETag": header("Strong entity tag of this representation.", json!({"type": "string"})),
        "Last-Modified": header("When the record last changed.", json!({"type": "string"})),
        "X-Request-Id": header("The request's id.", json!({"type": "string"}))
    })
}

fn errors(statuses: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for s in statuses {
        m.insert(
            (*s).to_string(),
            json!({"$ref": "#/components/responses/Error"}),
        );
    }
    m
}

/// The document for `routes`, under `settings`.
pub fn document(routes: &[std::sync::Arc<Route>], settings: &Settings) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Error".into(), json!({
        "type": "object",
        "required": ["type", "title", "status", "detail", "errorCode", "requestId"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "error": {"type": "integer"}, "errorCode": {"type": "string"},
            "userMessage": {"type": "string"}, "devMessage": {"type": "string"},
            "more": {"type": "string"}, "requestId": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "properties": {
                "field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}}}}
        }
    }));
    for route in routes {
        let mut item = Map::new();
        let params: Vec<Value> = route
            .param_names
            .iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            item.insert("parameters".into(), Value::Array(params));
        }
        for e in &route.endpoints {
            let mut op = Map::new();
            let method = e.method.as_str().to_ascii_lowercase();
            op.insert(
                "operationId".into(),
                json!(format!(
                    "{method}{}",
                    route.template.replace(['/', '{', '}', '-', '.'], "_")
                )),
            );
            op.insert("tags".into(), json!([route.module.prefix]));
            let mut responses = errors(&["400", "401", "403", "404", "406", "429", "500", "503"]);
            match &e.target {
                Target::Operation { controller, op: o } => {
                    let resource = controller.resource();
                    let name = resource.map(|r| schema_name(r, &route.module.prefix));
                    if let (Some(r), Some(n)) = (resource, &name) {
                        schemas.entry(n.clone()).or_insert_with(|| record_schema(r));
                    }
                    let record = name
                        .as_ref()
                        .map(|n| json!({"$ref": format!("#/components/schemas/{n}")}))
                        .unwrap_or(json!({"type": "object"}));
                    op.insert("summary".into(), json!(format!("{o:?} {}", route.template)));
                    if let Some(schema) = controller.input_schema(*o) {
                        let body = if *o == Operation::BulkUpdate {
                            json!({"type": "array", "items": schema})
                        } else {
                            schema.clone()
                        };
                        let media = if *o == Operation::Patch {
                            json!({"application/merge-patch+json": {"schema": body}, "application/json": {"schema": body}})
                        } else {
                            json!({"application/json": {"schema": body}, "application/x-www-form-urlencoded": {"schema": body}})
                        };
                        op.insert(
                            "requestBody".into(),
                            json!({"required": true, "content": media}),
                        );
                        responses.extend(errors(&["409", "412", "413", "415", "422"]));
                    }
                    match o {
                        Operation::Find => {
                            op.insert("parameters".into(), Value::Array(collection_parameters()));
                            responses.insert(
                                "200".into(),
                                json!({
                                    "description": "A page of records.",
                                    "headers": paging_headers(),
                                    "content": content(json!({"type": "array", "items": record}))
                                }),
                            );
                            responses.insert("304".into(), json!({"description": "Not modified."}));
                        }
                        Operation::Fetch => {
                            responses.insert(
                                "200".into(),
                                json!({
                                    "description": "The record.", "headers": record_headers(),
                                    "content": content(record)
                                }),
                            );
                            responses.insert("304".into(), json!({"description": "Not modified."}));
                        }
                        Operation::Create => {
                            responses.insert("201".into(), json!({
                                "description": "Created.",
                                "headers": {"Location": header("The new record's URL.", json!({"type": "string"}))},
                                "content": content(record)
                            }));
                        }
                        Operation::Update | Operation::Patch => {
                            responses.insert("200".into(), json!({"description": "The record as stored.", "content": content(record)}));
                            responses.insert(
                                "204".into(),
                                json!({"description": "Stored (Prefer: return=minimal)."}),
                            );
                        }
                        Operation::BulkUpdate => {
                            responses.insert("200".into(), json!({"description": "The records as stored.", "content": content(json!({"type": "array", "items": record}))}));
                        }
                        Operation::Delete | Operation::DeleteAll => {
                            if *o == Operation::DeleteAll {
                                op.insert(
                                    "parameters".into(),
                                    Value::Array(collection_parameters()),
                                );
                            }
                            responses.insert("204".into(), json!({"description": "Deleted."}));
                        }
                    }
                }
                Target::Action { action, schema, .. } => {
                    let summary = if action.summary.is_empty() {
                        format!("Action {}", action.handler)
                    } else {
                        action.summary.clone()
                    };
                    op.insert("summary".into(), json!(summary));
                    if let Some(s) = schema {
                        if e.method != http::Method::GET {
                            op.insert(
                                "requestBody".into(),
                                json!({"required": false, "content": {
                                "application/json": {"schema": s.source},
                                "application/x-www-form-urlencoded": {"schema": s.source}}}),
                            );
                        }
                        responses.extend(errors(&["422"]));
                    }
                    responses.insert("200".into(), json!({"description": "The action's result.", "content": content(json!({}))}));
                }
            }
            op.insert("responses".into(), Value::Object(responses));
            if !e.scope.is_empty() {
                op.insert(
                    "security".into(),
                    json!([{"oauth2": [e.scope]}, {"bearer": [e.scope]}]),
                );
            } else {
                op.insert("security".into(), json!([{}]));
            }
            item.insert(method, Value::Object(op));
        }
        paths.insert(route.template.clone(), Value::Object(item));
    }
    own_paths(&mut paths, settings);
    let issuer = settings.auth.issuer.trim_end_matches('/');
    let prefix = &settings.auth.prefix;
    let mut flows = Map::new();
    let token_url = format!("{issuer}{prefix}/access_token");
    let auth_url = format!("{issuer}{prefix}/authorize");
    let scopes = json!({"basic": "Read.", "write": "Create, change and delete."});
    for grant in &settings.auth.grants {
        match grant.as_str() {
            "password" => {
                flows.insert(
                    "password".into(),
                    json!({"tokenUrl": token_url, "refreshUrl": token_url, "scopes": scopes}),
                );
            }
            "client_credentials" => {
                flows.insert(
                    "clientCredentials".into(),
                    json!({"tokenUrl": token_url, "scopes": scopes}),
                );
            }
            "authorization_code" => {
                flows.insert("authorizationCode".into(), json!({"authorizationUrl": auth_url, "tokenUrl": token_url, "refreshUrl": token_url, "scopes": scopes}));
            }
            "implicit" => {
                flows.insert(
                    "implicit".into(),
                    json!({"authorizationUrl": auth_url, "scopes": scopes}),
                );
            }
            _ => {}
        }
    }
    let server = if settings.server.public_url.is_empty() {
        format!("http://{}", settings.server.bind)
    } else {
        settings.server.public_url.trim_end_matches('/').to_string()
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "restkit API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": collection_parameter_definitions(),
            "responses": {"Error": {"description": "An error (§7), in the negotiated format.", "content": error_content()}},
            "securitySchemes": {
                "oauth2": {"type": "oauth2", "flows": flows},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        }
    })
}

/// restkit's own endpoints: health, OAuth2, well-known documents.
fn own_paths(paths: &mut Map<String, Value>, settings: &Settings) {
    let prefix = &settings.auth.prefix;
    let json_ok = |d: &str| json!({"200": {"description": d, "content": {"application/json": {"schema": {"type": "object"}}}}});
    let oauth_error = json!({"description": "An OAuth2 error (RFC 6749 §5.2).", "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}}}}}});
    let form = json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}}});
    paths.insert("/health".into(), json!({"get": {"operationId": "health", "summary": "Liveness and database check.", "security": [{}], "responses": json_ok("Healthy.")}}));
    for (path, id, summary) in [
        ("access_token", "token", "OAuth2 token endpoint (RFC 6749)."),
        ("revoke", "revoke", "Token revocation (RFC 7009)."),
        (
            "introspect",
            "introspect",
            "Token introspection (RFC 7662).",
        ),
    ] {
        let mut responses = json_ok("Success.");
        responses["400"] = oauth_error.clone();
        responses["401"] = oauth_error.clone();
        paths.insert(
            format!("{prefix}/{path}"),
            json!({"post": {
            "operationId": id, "summary": summary, "security": [{}],
            "requestBody": form, "responses": responses}}),
        );
    }
    paths.insert(format!("{prefix}/authorize"), json!({
        "get": {"operationId": "authorizeForm", "summary": "Sign-in and consent page.", "security": [{}],
                "responses": {"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                              "302": {"description": "Back to the client with an error."},
                              "400": {"description": "A request that cannot be redirected.", "content": {"text/html": {"schema": {"type": "string"}}}}}},
        "post": {"operationId": "authorizeDecide", "summary": "Sign in and decide.", "security": [{}], "requestBody": form,
                 "responses": {"302": {"description": "Back to the client with a code, a token or an error."},
                               "401": {"description": "Wrong credentials: the form again.", "content": {"text/html": {"schema": {"type": "string"}}}},
                               "403": {"description": "The form's CSRF token did not match.", "content": {"text/html": {"schema": {"type": "string"}}}}}}
    }));
    paths.insert("/.well-known/jwks.json".into(), json!({"get": {"operationId": "jwks", "summary": "Public keys (RFC 7517).", "security": [{}], "responses": json_ok("The key set.")}}));
    paths.insert("/.well-known/oauth-authorization-server".into(), json!({"get": {"operationId": "oauthMetadata", "summary": "Authorization server metadata (RFC 8414).", "security": [{}], "responses": json_ok("The metadata.")}}));
    paths.insert("/docs".into(), json!({"get": {"operationId": "docs", "summary": "This reference as an HTML page.", "security": [{}],
        "responses": {"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}}}));
    paths.insert("/openapi.json".into(), json!({"get": {"operationId": "openapi", "summary": "This document.", "security": [{}], "responses": json_ok("The document.")}}));
}
