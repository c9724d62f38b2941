//! The OpenAPI 3.1 document (§11), generated once at start-up from the
//! same routes the server serves — no second, hand-kept description.
//!
//! Every route and method (collections, records, nested resources,
//! actions, bulk), with:
//! - path parameters, and the read parameters each resource really takes:
//!   `fields`/`expand`/`sort` as lists of the allowed names, `q` as a
//!   pattern over the filterable fields and their types, `filter` as a
//!   JSON schema of conditions, paging as the resource pages (offset or
//!   cursor), `timestamp` only where changes are kept;
//! - request bodies from the declared input schemas (create, replace,
//!   merge patch, bulk), as JSON and, where the server takes them, as form
//!   fields;
//! - record, collection and envelope responses, the §7 error (with the
//!   422 `errors` array), the pagination and caching headers, the content
//!   types;
//! - links from each create to its record's operations;
//! - restkit's own endpoints and the OAuth2 and bearer security schemes
//!   with each operation's scope.
//!
//! `describe_routes` cuts the per-route descriptions that OPTIONS serves
//! out of the same document.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::config::Settings;
use crate::controller::Operation;
use crate::http::own::{OwnRoute, OwnRoutes};
use crate::http::routes::{Route, Target};
use crate::model::schema::field_schema;
use crate::model::{FieldType, RelationKind, Resource};
use crate::query::{QueryPolicy, QueryShape};

/// The content types every data operation can answer in (§5.1).
const MEDIA: &[&str] = &[
    "application/json",
    "application/xml",
    "text/csv",
    "text/html",
];

/// Statuses any operation may answer with, in the §7 form.
const COMMON_ERRORS: &[&str] = &[
    "400", "401", "403", "404", "406", "414", "429", "500", "503",
];

/// Statuses of an operation that reads a body.
const BODY_ERRORS: &[&str] = &["409", "412", "413", "415", "422"];

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

/// A live feed's `text/event-stream` answer (§16): the frames as text,
/// each event's shape in `x-event` (OpenAPI 3.1 has no way to type the
/// items of a stream).
fn live_content(event: &str) -> Value {
    json!({
        "x-event": schema_ref(event),
        "schema": {"type": "string", "description": "Server-Sent Events, asked for with `Accept: text/event-stream`, \
            `type=events` or a `.events` extension: `created`, `updated` and `deleted` \
            events as the list shows them (`q`, `filter`, `fields`, `expand` and owner rules \
            apply; a deletion within the caller's scope is told whatever `q` or `filter` say, \
            as a sync read's tombstones are). Each `id` is a sync position: send it back as `Last-Event-ID` (or \
            `timestamp=`) to resume right after it, losing nothing. A frame with only an \
            `id` moves that position; comments are heartbeats; an `end` event \
            (`{\"reason\": \"shutdown\" | \"unauthorized\" | \"refused\", \"detail\": …}`) \
            closes the stream. A position from before the deletions still kept \
            gets a `resync` event and the stream ends: read the list again and follow \
            from its `X-Sync-Timestamp`. Without a position, it starts from now. \
            Changes close together may arrive in one write."}
    })
}

/// One event of `r`'s live feed: its kind, its position and its data.
fn event_schema(r: &Resource, record: &Value) -> Value {
    json!({
        "type": "object",
        "description": format!("An event of the {} live feed (one SSE frame).", r.name),
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["created", "updated", "deleted", "end", "resync"]},
            "id": {"type": "string", "description": "The sync position: `time~key` (absent on `end` and `resync`).",
                   "examples": ["2026-12-06T11:34:32.473744Z~42"]},
            "data": {"oneOf": [
                record,
                {"type": "object", "description": "A deleted record's key.",
                 "required": [r.pk().name.clone()],
                 "properties": {r.pk().name.clone(): {"type": "integer"}}},
                {"type": "object", "description": "Why the stream ends (`end`, `resync`).",
                 "required": ["reason", "detail"],
                 "properties": {
                    "reason": {"type": "string",
                               "enum": ["shutdown", "unauthorized", "refused", "resync"]},
                    "detail": {"type": "string"}}}
            ]}
        }
    })
}

fn error_content() -> Value {
    json!({
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Error"}},
        "application/problem+xml": {"schema": {"type": "string"}},
        "text/html": {"schema": {"type": "string"}}
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn header(description: &str, schema: Value) -> Value {
    json!({"description": description, "schema": schema})
}

fn errors(statuses: &[&str]) -> Map<String, Value> {
    statuses
        .iter()
        .map(|s| {
            (
                (*s).to_string(),
                json!({"$ref": "#/components/responses/Error"}),
            )
        })
        .collect()
}

/// `v1` + `book_reviews` → `V1BookReviews`: a component name.
fn schema_name(r: &Resource, prefix: &str) -> String {
    let mut name = String::new();
    for part in prefix.split('/').chain(r.name.split(['_', '-'])) {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            name.push(f.to_ascii_uppercase());
            name.push_str(c.as_str());
        }
    }
    name.retain(|c| c.is_ascii_alphanumeric());
    name
}

/// A resource's record as served: its readable fields by API name, the
/// relations `expand` may embed and, when it has them, `_links`.
fn record_schema(r: &Resource, shape: Option<&QueryShape>) -> Value {
    let mut fields: Vec<usize> = match shape {
        Some(s) => s.list.readable.clone(),
        None => r.readable(true),
    };
    if let Some(s) = shape {
        for i in &s.view.readable {
            if !fields.contains(i) {
                fields.push(*i);
            }
        }
    }
    fields.sort_unstable();
    let mut props = Map::new();
    for i in fields {
        let f = &r.fields[i];
        props.insert(f.name.clone(), field_schema(f));
    }
    for rel in &r.relations {
        if rel.kind == RelationKind::BelongsTo {
            // The key names a record of the target (a foreign key).
            if let Some(Value::Object(key)) = props.get_mut(&rel.foreign_key) {
                let said = key
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let refers = format!(
                    "The id of a record of {} (relation {}; when that record is deleted: {}).",
                    rel.resource,
                    rel.name,
                    rel.on_delete.as_str()
                );
                let text = if said.is_empty() {
                    refers
                } else {
                    format!("{said} {refers}")
                };
                key.insert("description".into(), json!(text));
            }
        }
        let embedded = match rel.kind {
            RelationKind::HasMany => {
                json!({"type": "array", "items": {"type": "object"}, "description": format!("Embedded by expand={}.", rel.name)})
            }
            RelationKind::BelongsTo => {
                json!({"type": ["object", "null"], "description": format!("Embedded by expand={}.", rel.name)})
            }
        };
        props.insert(rel.name.clone(), embedded);
    }
    if r.links {
        props.insert(
            "_links".into(),
            json!({"type": "object", "description": "HATEOAS links (self, and the record's relations)."}),
        );
    }
    let mut s = json!({"type": "object", "properties": props});
    if !r.description.is_empty() {
        s["description"] = json!(r.description);
    }
    s
}

fn envelope_schemas(schemas: &mut Map<String, Value>) {
    let link =
        json!({"type": "object", "required": ["href"], "properties": {"href": {"type": "string"}}});
    schemas.insert(
        "PageMeta".into(),
        json!({
            "type": "object",
            "required": ["status", "count", "perPage"],
            "properties": {
                "status": {"type": "string"}, "count": {"type": "integer"},
                "totalCount": {"type": "integer"}, "pageCount": {"type": "integer"},
                "currentPage": {"type": "integer"}, "perPage": {"type": "integer"},
                "timestamp": {"type": "string"},
                "deleted": {"type": "array", "items": {}}
            }
        }),
    );
    schemas.insert(
        "PageLinks".into(),
        json!({
            "type": "object", "required": ["self", "first"],
            "properties": {"self": link, "first": link, "prev": link, "next": link, "last": link}
        }),
    );
}

// ------------------------------------------------------------ parameters

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// A comma-separated list of names from `allowed` (`sort=-year,title`);
/// the key repeated (`sort=-year&sort=title`) means the same.
fn name_list(name: &str, description: &str, allowed: Vec<String>) -> Value {
    let description = format!(
        "{description} Repeating the parameter (`{name}=a&{name}=b`) means the same as \
         listing (`{name}=a,b`)."
    );
    json!({
        "name": name, "in": "query", "required": false, "description": description,
        "style": "form", "explode": false,
        "schema": {"type": "array", "minItems": 1, "maxItems": 200,
                   "items": {"type": "string", "enum": allowed}}
    })
}

fn names(r: &Resource, fields: &[usize]) -> Vec<String> {
    fields.iter().map(|i| r.fields[*i].name.clone()).collect()
}

/// Up to two of `fields`' names, the primary key last, for examples in
/// descriptions: they name the user's own fields, not the demo's.
fn two_names(r: &Resource, fields: &[usize]) -> Vec<String> {
    let mut picked: Vec<usize> = fields
        .iter()
        .copied()
        .filter(|&i| i != r.primary_key)
        .take(2)
        .collect();
    if picked.len() < 2 && fields.contains(&r.primary_key) {
        picked.push(r.primary_key);
    }
    names(r, &picked)
}

/// `fields=`: the readable fields, the relations and their fields.
fn fields_param(r: &Resource, policy: &QueryPolicy, shape: &QueryShape) -> Value {
    let mut allowed = names(r, &policy.readable);
    for (rel, target) in &shape.relations {
        allowed.push(rel.clone());
        allowed.extend(target.iter().map(|f| format!("{rel}.{f}")));
    }
    let mut description = format!(
        "Fields to return, comma-separated: `fields={}`.",
        two_names(r, &policy.readable).join(",")
    );
    if let Some((rel, target)) = shape.relations.first() {
        description.push_str(&format!(" A relation embeds it (`{rel}`)"));
        // A field of the target other than its key (listed first), if any.
        match target.get(1).or(target.first()) {
            Some(f) => description.push_str(&format!(", or some of its fields (`{rel}.{f}`).")),
            None => description.push('.'),
        }
    }
    name_list("fields", &description, allowed)
}

fn expand_param(shape: &QueryShape) -> Option<Value> {
    if shape.relations.is_empty() {
        return None;
    }
    Some(name_list(
        "expand",
        "Relations to embed, comma-separated.",
        shape.relations.iter().map(|(n, _)| n.clone()).collect(),
    ))
}

fn sort_param(r: &Resource, policy: &QueryPolicy) -> Option<Value> {
    if policy.sortable.is_empty() {
        return None;
    }
    let mut allowed = Vec::new();
    for n in names(r, &policy.sortable) {
        allowed.push(format!("-{n}"));
        allowed.push(n);
    }
    let example: Vec<String> = two_names(r, &policy.sortable)
        .into_iter()
        .enumerate()
        .map(|(i, n)| if i == 0 { format!("-{n}") } else { n })
        .collect();
    Some(name_list(
        "sort",
        &format!(
            "Sort keys, comma-separated; `-` sorts descending: `sort={}`. \
             The primary key always breaks ties.",
            example.join(",")
        ),
        allowed,
    ))
}

/// A regular expression for one `q` value of field type `ty`.
fn search_value(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Integer => r"-?[0-9]{1,18}",
        FieldType::Number => r"-?[0-9]{1,15}(\.[0-9]{1,6})?",
        FieldType::Boolean => "(true|false|1|0)",
        FieldType::DateTime => {
            r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z"
        }
        FieldType::Date => r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])",
        // `:` inside a value may be written as is or escaped.
        FieldType::Time => r"([01][0-9]|2[0-3])\\?:[0-5][0-9](\\?:[0-5][0-9](\.[0-9]{1,9})?)?",
        FieldType::Decimal { .. } => r"-?[0-9]{1,16}(\.[0-9]{1,2})?",
        FieldType::Uuid => r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        // `,:()\` are escaped with `\`; `*` is a wildcard.
        FieldType::String | FieldType::Json => r"([^,:()\\\x00]|\\[,:()\\])*",
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `q=(title:Dune*,year:1965)`: a pattern over the filterable fields.
fn q_param(r: &Resource, policy: &QueryPolicy) -> Option<Value> {
    if policy.filterable.is_empty() {
        return None;
    }
    let pair: Vec<String> = policy
        .filterable
        .iter()
        .map(|i| {
            let f = &r.fields[*i];
            format!("{}:{}", regex_escape(&f.name), search_value(f.ty))
        })
        .collect();
    let pair = format!("({})", pair.join("|"));
    let pattern = format!(r"^\({pair}(,{pair})*\)$");
    let fields = names(r, &policy.filterable).join(", ");
    let example = match policy
        .filterable
        .iter()
        .map(|i| &r.fields[*i])
        .find(|f| f.ty == FieldType::String)
    {
        Some(f) => format!("{}:ab*", f.name),
        None => {
            let f = &r.fields[policy.filterable[0]];
            format!("{}:{}", f.name, sample(f.ty).1)
        }
    };
    Some(query(
        "q",
        &format!(
            "Search: `(field:value,field:value)`, every pair must hold. A text value \
             matches exactly, or as a pattern where it has `*` (`{example}`); escape \
             `, : ( ) \\` with `\\`. Fields: {fields}."
        ),
        json!({"type": "string", "pattern": pattern}),
    ))
}

/// The value a filter condition compares a field of type `ty` with.
fn filter_value(ty: FieldType) -> Value {
    match ty {
        FieldType::Integer => {
            json!({"type": ["integer", "null"], "minimum": i64::MIN, "maximum": i64::MAX})
        }
        FieldType::Number => json!({"type": ["number", "null"]}),
        FieldType::Boolean => json!({"type": ["boolean", "null"]}),
        FieldType::DateTime => json!({"type": ["string", "null"], "format": "date-time"}),
        FieldType::Date => json!({"type": ["string", "null"], "format": "date"}),
        FieldType::Uuid => json!({"type": ["string", "null"], "format": "uuid"}),
        FieldType::Time => json!({
            "type": ["string", "null"],
            "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,9})?)?$"
        }),
        FieldType::Decimal { .. } => json!({
            "type": ["string", "number", "null"],
            "format": "decimal",
            "pattern": "^-?[0-9]+(\\.[0-9]+)?$"
        }),
        FieldType::String | FieldType::Json => {
            json!({"type": ["string", "null"], "pattern": "^[^\\u0000]*$"})
        }
    }
}

/// `filter=` as JSON: an array of conditions (all must hold) or one
/// condition or group; `condition` names the component of one condition.
fn filter_schema(condition: &str) -> Value {
    let condition = schema_ref(condition);
    let group = |key: &str| {
        json!({"type": "object", "additionalProperties": false, "required": [key],
               "properties": {key: {"type": "array", "items": condition}}})
    };
    let node = json!({"anyOf": [
        condition,
        group("and"),
        group("or"),
        {"type": "object", "additionalProperties": false, "required": ["not"], "properties": {"not": condition}}
    ]});
    json!({"anyOf": [{"type": "array", "items": node}, node]})
}

/// One filter condition on one of the filterable fields.
fn condition_schema(r: &Resource, policy: &QueryPolicy) -> Value {
    let mut conditions = Vec::new();
    for i in &policy.filterable {
        let f = &r.fields[*i];
        let v = filter_value(f.ty);
        conditions.push(json!({
            "type": "object", "additionalProperties": false, "required": ["field", "value"],
            "properties": {
                "field": {"const": f.name},
                "operator": {"enum": ["=", "==", "!=", "<>", "<", "<=", ">", ">="]},
                "value": v
            }
        }));
        conditions.push(json!({
            "type": "object", "additionalProperties": false, "required": ["field", "operator", "value"],
            "properties": {
                "field": {"const": f.name},
                "operator": {"const": "in"},
                "value": {"type": "array", "items": v}
            }
        }));
        if matches!(f.ty, FieldType::String | FieldType::Json) {
            conditions.push(json!({
                "type": "object", "additionalProperties": false, "required": ["field", "operator", "value"],
                "properties": {
                    "field": {"const": f.name},
                    "operator": {"const": "like"},
                    "value": {"type": "string", "pattern": "^[^\\u0000]*$"}
                }
            }));
        }
    }
    json!({ "anyOf": conditions })
}

/// A value of type `ty` as an example in a description (JSON, and as a
/// query string carries it).
fn sample(ty: FieldType) -> (&'static str, &'static str) {
    match ty {
        FieldType::Integer => ("10", "10"),
        FieldType::Number => ("1.5", "1.5"),
        FieldType::Boolean => ("true", "true"),
        FieldType::DateTime => ("\"2024-01-31T12:00:00Z\"", "2024-01-31T12:00:00Z"),
        FieldType::Date => ("\"2024-01-31\"", "2024-01-31"),
        FieldType::Time => ("\"12:30:00\"", "12:30:00"),
        FieldType::Decimal { .. } => ("\"9.99\"", "9.99"),
        FieldType::Uuid => (
            "\"0b8e3c3a-58a1-4c3e-9a3e-8f1f2b0c8d11\"",
            "0b8e3c3a-58a1-4c3e-9a3e-8f1f2b0c8d11",
        ),
        FieldType::String | FieldType::Json => ("\"abc\"", "abc"),
    }
}

fn filter_param(
    r: &Resource,
    name: &str,
    policy: &QueryPolicy,
    limits_text: &str,
) -> Option<Value> {
    // The examples name one of the resource's own filterable fields.
    let at = policy
        .filterable
        .iter()
        .copied()
        .find(|&i| i != r.primary_key)
        .or_else(|| policy.filterable.first().copied())?;
    let field = &r.fields[at];
    let f = &field.name;
    let (json_value, text) = sample(field.ty);
    Some(json!({
        "name": "filter", "in": "query", "required": false,
        "description": format!(
            "Filters, in either spelling. JSON (this parameter, a JSON text of the `contentSchema`): `[{{\"field\":\"{f}\",\"operator\":\"=\",\"value\":{json_value}}}]`, \
             with `and`/`or`/`not` groups and the operators = != < <= > >= in like. \
             Brackets (Yii2 style): `filter[{f}][eq]={text}`, `filter[{f}][neq]={text}`, \
             `filter[{f}][in][]={text}&filter[{f}][in][]=…`, `filter[or][0][{f}]={text}`, \
             `filter[not][{f}]={text}`; operators eq neq lt lte gt gte like in nin. {limits_text}"),
        // A string whose content is the JSON filter: generators keep a
        // string parameter (they drop one declared with `content`), and
        // `contentSchema` still says exactly what the string holds.
        "schema": {"type": "string", "contentMediaType": "application/json",
                   "contentSchema": schema_ref(name)}
    }))
}

/// Paging as the resource pages, and the other collection parameters.
fn collection_params(
    r: &Resource,
    shape: &QueryShape,
    filter_name: &str,
    read: bool,
) -> Vec<Value> {
    let policy = &shape.list;
    let limits_text = format!(
        "At most {} conditions, nested at most {} deep, {} values per `in`.",
        policy.limits.max_predicates, policy.limits.max_depth, policy.limits.max_in
    );
    let mut params: Vec<Value> = Vec::new();
    params.extend(q_param(r, policy));
    params.extend(filter_param(r, filter_name, policy, &limits_text));
    if r.sync {
        params.push(query(
            "timestamp",
            "Sync: only records changed after this time — Unix seconds (up to \
             12 digits), Unix milliseconds (13 digits or more) or RFC 3339, within the \
             years 1 to 9999 — or after a position `<time>~<id>` as `X-Sync-Timestamp` \
             gives it; deleted ids come in `_meta.deleted`. Without `sort`, a sync read \
             is ordered by change time, then id.",
            // The patterns name a part of what is accepted that is surely
            // inside the years 1 to 9999 (whatever the offset), so that a
            // value generated from them is never refused.
            json!({"anyOf": [
                {"type": "string", "pattern": "^([0-9]{1,11}|1[0-9]{11}|2[0-4][0-9]{10}|[0-9]{13,14})$"},
                {"type": "string", "format": "date-time", "pattern": "^[1-8][0-9]{3}-"},
                {"type": "string", "pattern": "^[1-8][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?Z~-?[0-9]{1,18}$"}
            ]}),
        ));
    }
    if !read {
        return params;
    }
    params.push(fields_param(r, policy, shape));
    params.extend(expand_param(shape));
    params.extend(sort_param(r, policy));
    let size = json!({"type": "integer", "minimum": 1, "maximum": u64::MAX});
    let max = policy.paging.max_per_page;
    params.push(query(
        "per-page",
        &format!(
            "Records per page (default {}). A larger size is served as {max}, the \
             maximum: `X-Pagination-Per-Page` tells the size applied, and the `next` \
             link goes on from there.",
            policy.paging.default_per_page
        ),
        size.clone(),
    ));
    params.push(query(
        "limit",
        &format!(
            "Records per page; `limit` wins over `per-page`. At most {max}: a larger limit \
             is served as {max}, as `X-Pagination-Per-Page` tells."
        ),
        size.clone(),
    ));
    if !policy.cursor_by_default {
        params.push(query("page", "Page number, from 1.", size));
        params.push(query(
            "offset",
            "Records to skip; `offset` wins over `page`.",
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        ));
    }
    params.push(query(
        "cursor",
        "Keyset paging: the opaque value of a previous page's `next` link, or empty to start \
         from the first page. It is bound to the query (q, filter, sort) it was issued for and \
         cannot be combined with `page` or `offset`.",
        json!({"type": "string"}),
    ));
    params
}

fn envelope_param() -> Value {
    query(
        "envelope",
        "`true`: the data comes wrapped — a page as `{_meta, _links, records}`, a record as `{_meta, record}`.",
        json!({"type": "boolean"}),
    )
}

fn type_param() -> Value {
    query(
        "type",
        "The format, instead of `Accept`.",
        json!({"type": "string", "enum": ["json", "xml", "csv", "html"]}),
    )
}

// ------------------------------------------------------------ bodies

/// A form field carries text: `null` cannot be sent (an empty value is
/// null for non-text fields), so form schemas leave it out.
fn form_schema(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        for p in props.values_mut() {
            if let Some(Value::Array(types)) = p.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    p["type"] = only;
                }
            }
            if let Some(Value::Array(e)) = p.get_mut("enum") {
                e.retain(|v| !v.is_null());
            }
        }
    }
    s
}

/// A merge patch (RFC 7396): any subset of the replaceable fields.
fn patch_schema(update: &Value) -> Value {
    let mut s = update.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("required");
    }
    s
}

/// Bulk replace: each item is a replacement with the record's key.
fn bulk_schema(update: &Value, r: &Resource) -> Value {
    let mut item = update.clone();
    let pk = r.pk();
    let mut key = field_schema(pk);
    if let Some(m) = key.as_object_mut() {
        m.remove("readOnly");
    }
    item["properties"][&pk.name] = key;
    match item.get_mut("required").and_then(Value::as_array_mut) {
        Some(req) => req.insert(0, json!(pk.name)),
        None => item["required"] = json!([pk.name]),
    }
    json!({"type": "array", "maxItems": crate::controller::table::MAX_BULK, "uniqueItems": true,
           "description": format!("Each record at most once (by `{}`); all are written or none.", pk.name),
           "items": item})
}

/// Text values are stored as sent, so NUL (which SQLite truncates at and
/// PostgreSQL refuses) is refused in every string a body carries.
fn without_nul(schema: &mut Value) {
    let Some(m) = schema.as_object_mut() else {
        return;
    };
    let text = match m.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    if text && !m.contains_key("format") {
        let no_nul = json!({"pattern": "^[^\\u0000]*$"});
        if m.contains_key("pattern") {
            m.insert("allOf".into(), json!([no_nul]));
        } else {
            m.insert("pattern".into(), no_nul["pattern"].clone());
        }
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = m.get_mut(key) {
            props.values_mut().for_each(without_nul);
        }
    }
    if let Some(items) = m.get_mut("items") {
        without_nul(items);
    }
}

/// A request body in JSON (and merge-patch JSON, and a form). With a
/// `name`, the schemas are components — `{name}` for JSON and merge patch
/// (one model, however many media types carry it) and `{name}Form` — so a
/// generated client has one model per body, named for its resource.
fn body(
    schemas: &mut Map<String, Value>,
    name: Option<String>,
    mut schema: Value,
    patch: bool,
    form: bool,
) -> Value {
    without_nul(&mut schema);
    let mut form_body = form_schema(&schema);
    if let Some(name) = name {
        schemas.insert(name.clone(), schema);
        schema = schema_ref(&name);
        if form {
            let form_name = format!("{name}Form");
            schemas.insert(form_name.clone(), form_body);
            form_body = schema_ref(&form_name);
        }
    }
    let mut media = Map::new();
    if patch {
        media.insert(
            "application/merge-patch+json".into(),
            json!({ "schema": schema }),
        );
    }
    if form {
        media.insert(
            "application/x-www-form-urlencoded".into(),
            json!({ "schema": form_body }),
        );
    }
    media.insert("application/json".into(), json!({ "schema": schema }));
    json!({"required": true, "content": media})
}

// ------------------------------------------------------------ responses

/// §9: on every rate-limited response.
fn rate_headers(h: &mut Value) {
    let int = json!({"type": "integer"});
    let text = json!({"type": "string"});
    h["X-Rate-Limit-Limit"] = header("Requests allowed per period.", int.clone());
    h["X-Rate-Limit-Remaining"] = header("Requests left now.", int.clone());
    h["X-Rate-Limit-Reset"] = header("Seconds until the allowance is whole again.", int);
    h["RateLimit-Policy"] = header("IETF: `\"name\";q=requests;w=seconds`.", text.clone());
    h["RateLimit"] = header("IETF: `\"name\";r=remaining;t=seconds`.", text);
}

fn paging_headers(r: &Resource) -> Value {
    let int = || json!({"type": "integer"});
    let mut h = json!({
        "X-Pagination-Total-Count": header("Records matching (unless counting is off).", int()),
        "X-Pagination-Page-Count": header("Pages.", int()),
        "X-Pagination-Current-Page": header("This page.", int()),
        "X-Pagination-Per-Page": header("Records per page.", int()),
        "Link": header("RFC 8288 links: self, first, prev, next, last.", json!({"type": "string"})),
        "ETag": header("Strong entity tag of this representation.", json!({"type": "string"})),
        "X-Request-Id": header("The request's id.", json!({"type": "string"}))
    });
    rate_headers(&mut h);
    if r.sync {
        h["X-Sync-Timestamp"] = header(
            "Pass as `timestamp` on the next request: it advances page by page \
             (a position `<time>~<id>` while a feed has more pages) and never skips a change.",
            json!({"type": "string"}),
        );
    }
    h
}

fn record_headers() -> Value {
    let mut h = json!({
        "ETag": header("Strong entity tag of this representation.", json!({"type": "string"})),
        "Last-Modified": header("When the record last changed.", json!({"type": "string"})),
        "X-Request-Id": header("The request's id.", json!({"type": "string"}))
    });
    rate_headers(&mut h);
    h
}

/// A record's JSON, bare or in its envelope (`envelope=true`).
fn record_or_envelope(record: &Value) -> Value {
    json!({"anyOf": [
        record,
        {"type": "object", "required": ["_meta", "record"], "properties": {
            "_meta": {"type": "object"}, "record": record}}
    ]})
}

fn page_or_envelope(record: &Value) -> Value {
    let list = json!({"type": "array", "items": record});
    json!({"anyOf": [
        list,
        {"type": "object", "required": ["_meta", "_links", "records"], "properties": {
            "_meta": schema_ref("PageMeta"), "_links": schema_ref("PageLinks"), "records": list}}
    ]})
}

fn operation_id(method: &str, template: &str) -> String {
    format!(
        "{method}{}",
        template.replace(['/', '{', '}', '-', '.'], "_")
    )
}

/// `getV1Books` from `get_v1_books`: a component name part.
fn pascal(id: &str) -> String {
    id.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A standalone JSON Schema (an action's input or output) made fit to
/// stand inside this document: references into its own root (`#`, and
/// `#/$defs/X` that a recursive type keeps) would resolve against the
/// document's root instead, so the schema becomes component `name`, its
/// `$defs` components `{name}{X}`, and the references point at them. A
/// schema without such references is returned as it is.
fn lift_refs(mut schema: Value, name: &str, schemas: &mut Map<String, Value>) -> Value {
    fn has_local_ref(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                m.get("$ref")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.starts_with('#'))
                    || m.values().any(has_local_ref)
            }
            Value::Array(a) => a.iter().any(has_local_ref),
            _ => false,
        }
    }
    fn rewrite(v: &mut Value, name: &str) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get_mut("$ref") {
                    if r == "#" {
                        *r = format!("#/components/schemas/{name}");
                    } else if let Some(def) = r.strip_prefix("#/$defs/") {
                        *r = format!("#/components/schemas/{name}{def}");
                    }
                }
                m.values_mut().for_each(|v| rewrite(v, name));
            }
            Value::Array(a) => a.iter_mut().for_each(|v| rewrite(v, name)),
            _ => {}
        }
    }
    if !has_local_ref(&schema) {
        return schema;
    }
    let defs = schema
        .as_object_mut()
        .and_then(|m| m.remove("$defs"))
        .and_then(|d| match d {
            Value::Object(d) => Some(d),
            _ => None,
        })
        .unwrap_or_default();
    for (def, mut body) in defs {
        rewrite(&mut body, name);
        schemas.insert(format!("{name}{def}"), body);
    }
    rewrite(&mut schema, name);
    schemas.insert(name.to_string(), schema);
    schema_ref(name)
}

/// A path parameter's schema: the keys of table-backed resources are
/// 64-bit integers (a generated client types them so); a hand-written
/// controller's are whatever it takes.
fn path_schema(route: &Route) -> Value {
    let table_backed = route.endpoints.iter().all(|e| {
        let resource = match &e.target {
            Target::Operation { controller, .. } => controller.resource(),
            Target::Action { controller, .. } => controller.as_ref().and_then(|c| c.resource()),
        };
        resource.is_some_and(|r| r.controller.is_none())
    });
    if table_backed {
        json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX})
    } else {
        json!({"type": "string"})
    }
}

/// The document for `routes`, under `settings`.
pub fn document(routes: &[Arc<Route>], own: &OwnRoutes, settings: &Settings) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Error".into(), json!({
        "type": "object",
        "required": ["type", "title", "status", "detail", "errorCode", "requestId"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "error": {"type": ["integer", "string"], "description": "The status; on the OAuth2 endpoints' 429, RFC 6749's error code (with `error_description`)."},
            "error_description": {"type": "string"},
            "errorCode": {"type": "string"},
            "userMessage": {"type": "string"}, "devMessage": {"type": "string"},
            "more": {"type": "string"}, "requestId": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object",
                "required": ["field", "code", "message"], "properties": {
                "field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}}}}
        }
    }));
    envelope_schemas(&mut schemas);
    let mut tags: Vec<Value> = Vec::new();
    for route in routes {
        // The API root (`GET /`) belongs to no module: its tag is `/`.
        let prefix = match route.module.prefix.as_str() {
            "" => "/",
            p => p,
        };
        if !tags.iter().any(|t| t["name"] == prefix) {
            let mut tag = json!({ "name": prefix });
            if !route.module.description.is_empty() {
                tag["description"] = json!(route.module.description);
            }
            tags.push(tag);
        }
        let mut item = Map::new();
        let params: Vec<Value> = route
            .param_names
            .iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": path_schema(route)}))
            .collect();
        if !params.is_empty() {
            item.insert("parameters".into(), Value::Array(params));
        }
        for e in &route.endpoints {
            let method = e.method.as_str().to_ascii_lowercase();
            let mut op = Map::new();
            // A collection's DELETE is named apart from a record's.
            let delete_all = matches!(
                e.target,
                Target::Operation {
                    op: Operation::DeleteAll,
                    ..
                }
            );
            let id_method = if delete_all { "deleteAll" } else { &method };
            op.insert(
                "operationId".into(),
                json!(operation_id(id_method, &route.template)),
            );
            op.insert("tags".into(), json!([prefix]));
            let mut responses = errors(COMMON_ERRORS);
            match &e.target {
                Target::Operation { controller, op: o } => {
                    let o = *o;
                    let resource = controller.resource();
                    let shape = controller.query_shape();
                    let name = resource.map(|r| schema_name(r, prefix));
                    if let (Some(r), Some(n)) = (resource, &name) {
                        schemas
                            .entry(n.clone())
                            .or_insert_with(|| record_schema(r, shape.as_ref()));
                        if let Some(s) = &shape {
                            let condition = format!("{n}FilterCondition");
                            schemas
                                .entry(format!("{n}Filter"))
                                .or_insert_with(|| filter_schema(&condition));
                            schemas
                                .entry(condition)
                                .or_insert_with(|| condition_schema(r, &s.list));
                        }
                    }
                    let record = name
                        .as_deref()
                        .map(schema_ref)
                        .unwrap_or(json!({"type": "object"}));
                    let noun = resource.map(|r| r.name.as_str()).unwrap_or("resource");
                    op.insert("summary".into(), json!(summary(o, noun)));
                    if let Some(d) = resource.map(|r| &r.description).filter(|d| !d.is_empty()) {
                        op.insert("description".into(), json!(d));
                    }
                    let mut params = Vec::new();
                    if let (Some(r), Some(s), Some(n)) = (resource, &shape, &name) {
                        let filter = format!("{n}Filter");
                        match o {
                            Operation::Find => {
                                params = collection_params(r, s, &filter, true);
                                params.push(envelope_param());
                                params.push(type_param());
                            }
                            Operation::DeleteAll => {
                                params = collection_params(r, s, &filter, false);
                                params.push(query(
                                    "all",
                                    "`true` deletes every record; without it, `q` or `filter` must say which.",
                                    json!({"type": "boolean"}),
                                ));
                            }
                            Operation::Fetch => {
                                params.push(fields_param(r, &s.view, s));
                                params.extend(expand_param(s));
                                params.push(envelope_param());
                                params.push(type_param());
                            }
                            _ => {
                                params.push(envelope_param());
                                params.push(type_param());
                            }
                        }
                    }
                    if !params.is_empty() {
                        op.insert("parameters".into(), Value::Array(params));
                    }
                    if let Some(schema) = controller.input_schema(o) {
                        let named = |suffix: &str| name.as_ref().map(|n| format!("{n}{suffix}"));
                        let request = match (o, resource) {
                            (Operation::BulkUpdate, Some(r)) => body(
                                &mut schemas,
                                named("BulkReplace"),
                                bulk_schema(schema, r),
                                false,
                                false,
                            ),
                            (Operation::Patch, _) => {
                                // An empty patch changes nothing, as `{}` does.
                                let mut b = body(
                                    &mut schemas,
                                    named("Patch"),
                                    patch_schema(schema),
                                    true,
                                    true,
                                );
                                b["required"] = json!(false);
                                b
                            }
                            (Operation::Update, _) => {
                                body(&mut schemas, named("Replace"), schema.clone(), false, true)
                            }
                            _ => body(&mut schemas, named("Create"), schema.clone(), false, true),
                        };
                        op.insert("requestBody".into(), request);
                        responses.extend(errors(BODY_ERRORS));
                    }
                    let not_modified = json!({"description": "Not modified (If-None-Match)."});
                    // A sync resource's collection and records can be
                    // followed live (§16): the same 200, as an event stream.
                    let live = settings.live.enabled && controller.live();
                    let with_events = |mut c: Value, schemas: &mut Map<String, Value>| {
                        if let (true, Some(n), Some(r)) = (live, &name, resource) {
                            let event = format!("{n}Event");
                            schemas
                                .entry(event.clone())
                                .or_insert_with(|| event_schema(r, &record));
                            c["text/event-stream"] = live_content(&event);
                        }
                        c
                    };
                    match o {
                        Operation::Find => {
                            let headers = resource.map(|r| paging_headers(r)).unwrap_or(json!({}));
                            let c = with_events(content(page_or_envelope(&record)), &mut schemas);
                            responses.insert(
                                "200".into(),
                                json!({"description": "A page of records.", "headers": headers,
                                       "content": c}),
                            );
                            responses.insert("304".into(), not_modified);
                            // A `timestamp` from before the deletions kept.
                            if resource.is_some_and(|r| r.sync) {
                                responses.extend(errors(&["410"]));
                            }
                        }
                        Operation::Fetch => {
                            let c = with_events(content(record_or_envelope(&record)), &mut schemas);
                            responses.insert(
                                "200".into(),
                                json!({"description": "The record.", "headers": record_headers(),
                                       "content": c}),
                            );
                            responses.insert("304".into(), not_modified);
                        }
                        Operation::Create => {
                            responses.insert("201".into(), json!({
                                "description": "Created.",
                                "headers": {"Location": header("The new record's URL.", json!({"type": "string"}))},
                                "content": content(record_or_envelope(&record))
                            }));
                        }
                        Operation::Update | Operation::Patch => {
                            responses.insert(
                                "200".into(),
                                json!({"description": "The record as stored.",
                                "content": content(record_or_envelope(&record))}),
                            );
                            responses.insert(
                                "204".into(),
                                json!({"description": "Stored (Prefer: return=minimal)."}),
                            );
                        }
                        Operation::BulkUpdate => {
                            let list = json!({"type": "array", "items": record});
                            responses.insert("200".into(), json!({"description": "The records as stored, in the order sent.",
                                "content": content(json!({"anyOf": [list, {"type": "object", "required": ["_meta", "records"],
                                    "properties": {"_meta": {"type": "object"}, "records": list}}]}))}));
                        }
                        Operation::Delete => {
                            responses.insert("204".into(), json!({"description": "Deleted."}));
                            // Referred to by a `restrict` relation, or
                            // taking others' records with it; If-Match.
                            responses.extend(errors(&["409", "412"]));
                        }
                        Operation::DeleteAll => {
                            responses.extend(errors(&["409"]));
                            responses.insert("200".into(), json!({"description": "How many were deleted.",
                                "content": content(json!({"type": "object", "required": ["deleted"],
                                    "properties": {"deleted": {"type": "integer", "minimum": 0}}}))}));
                        }
                    }
                }
                Target::Action {
                    action,
                    schema,
                    handler,
                    ..
                } => {
                    let summary = if action.summary.is_empty() {
                        format!("Action {}", action.handler)
                    } else {
                        action.summary.clone()
                    };
                    op.insert("summary".into(), json!(summary));
                    if !action.description.is_empty() {
                        op.insert("description".into(), json!(action.description));
                    }
                    op.insert("parameters".into(), json!([envelope_param(), type_param()]));
                    if let Some(s) = schema {
                        if e.method != http::Method::GET {
                            let name =
                                format!("{}Input", pascal(&operation_id(&method, &route.template)));
                            let input = lift_refs(s.source.clone(), &name, &mut schemas);
                            let mut b = body(&mut schemas, None, input, false, true);
                            b["required"] = json!(false);
                            op.insert("requestBody".into(), b);
                        }
                        responses.extend(errors(&["413", "415", "422"]));
                    }
                    let output = match handler.output_schema() {
                        Some(out) => {
                            let name = format!(
                                "{}Output",
                                pascal(&operation_id(&method, &route.template))
                            );
                            lift_refs(out, &name, &mut schemas)
                        }
                        None => json!({}),
                    };
                    responses.insert(
                        "200".into(),
                        json!({"description": "The action's result.", "content": content(output)}),
                    );
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
    link_creates_to_records(routes, &mut paths);
    own_paths(&mut paths, own, settings);
    let info = &settings.info;
    let mut info_doc = json!({"title": info.title, "version": info.version});
    if !info.description.is_empty() {
        info_doc["description"] = json!(info.description);
    }
    json!({
        "openapi": "3.1.0",
        "info": info_doc,
        "servers": [{"url": settings.server_url()}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {"Error": {
                "description": "An error (problem details: `type`, `title`, `status`, `detail`, `errorCode`, …), in the negotiated format. A 429 (over the rate limit) \
                                and a 503 carry `Retry-After`.",
                "headers": error_headers(),
                "content": error_content()}},
            "securitySchemes": security_schemes(settings)
        }
    })
}

fn error_headers() -> Value {
    let mut h = json!({
        "X-Request-Id": header("The request's id, also in the body.", json!({"type": "string"})),
        "Retry-After": header("Seconds to wait (429, 503).", json!({"type": "integer"}))
    });
    rate_headers(&mut h);
    h
}

/// "List owners", "Create an owner": `noun` is the resource's (plural)
/// name, with `_` and `-` read as spaces.
fn summary(op: Operation, noun: &str) -> String {
    let plural = noun.replace(['_', '-'], " ");
    let one = with_article(&singular(&plural));
    match op {
        Operation::Find => format!("List {plural}"),
        Operation::Fetch => format!("Fetch {one}"),
        Operation::Create => format!("Create {one}"),
        Operation::Update => format!("Replace {one}"),
        Operation::Patch => format!("Change {one} (merge patch)"),
        Operation::Delete => format!("Delete {one}"),
        Operation::BulkUpdate => format!("Replace many {plural} at once"),
        Operation::DeleteAll => format!("Delete the {plural} matching a filter"),
    }
}

/// English singular of a resource name's last word, by the regular rules
/// (`categories` → `category`, `boxes` → `box`, `owners` → `owner`); a
/// name that is not a regular plural (`news`, `data`) is left alone.
fn singular(plural: &str) -> String {
    let (head, last) = match plural.rsplit_once(' ') {
        Some((h, l)) => (format!("{h} "), l),
        None => (String::new(), plural),
    };
    let lower = last.to_ascii_lowercase();
    // Plurals the rules below would get wrong: `-ie` words, and words
    // that are the same in both numbers.
    const IE: [&str; 9] = [
        "movies", "cookies", "pies", "ties", "lies", "zombies", "rookies", "calories", "hoodies",
    ];
    const SAME: [&str; 4] = ["news", "series", "species", "data"];
    let word = if SAME.contains(&lower.as_str()) {
        last.to_string()
    } else if IE.contains(&lower.as_str()) {
        last[..last.len() - 1].to_string()
    } else if lower.ends_with("ies") && last.len() > 3 {
        format!("{}y", &last[..last.len() - 3])
    } else if ["sses", "shes", "ches", "xes", "zzes"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        last[..last.len() - 2].to_string()
    } else if lower.ends_with('s')
        && !lower.ends_with("ss")
        && !lower.ends_with("us")
        && !lower.ends_with("is")
    {
        last[..last.len() - 1].to_string()
    } else {
        last.to_string()
    };
    format!("{head}{word}")
}

/// `an owner`, `a book`; `a user`, `a unit` (a `u` that sounds "you").
fn with_article(noun: &str) -> String {
    let lower = noun.to_ascii_lowercase();
    let vowel = lower.starts_with(['a', 'e', 'i', 'o'])
        || (lower.starts_with('u') && !lower.starts_with("us") && !lower.starts_with("uni"));
    format!("{} {noun}", if vowel { "an" } else { "a" })
}

/// OpenAPI links from each create (201) to its record's operations, with
/// the new key from the body and the parents' keys from the request.
fn link_creates_to_records(routes: &[Arc<Route>], paths: &mut Map<String, Value>) {
    for route in routes.iter().filter(|r| !r.record) {
        let Some(create) = route.endpoints.iter().find(|e| {
            matches!(
                e.target,
                Target::Operation {
                    op: Operation::Create,
                    ..
                }
            )
        }) else {
            continue;
        };
        let Target::Operation { controller, .. } = &create.target else {
            continue;
        };
        let Some(r) = controller.resource() else {
            continue;
        };
        let Some(record) = routes.iter().find(|x| {
            x.record
                && x.param_names.len() == route.param_names.len() + 1
                && x.template.rsplit_once('/').map(|(head, _)| head) == Some(&route.template)
        }) else {
            continue;
        };
        let id_param = record.param_names.last().cloned().unwrap_or_default();
        let mut links = Map::new();
        for e in &record.endpoints {
            let method = e.method.as_str().to_ascii_lowercase();
            let mut parameters = Map::new();
            for p in &route.param_names {
                parameters.insert(p.clone(), json!(format!("$request.path.{p}")));
            }
            parameters.insert(
                id_param.clone(),
                json!(format!("$response.body#/{}", r.pk().name)),
            );
            let name = format!("{}{}", e.method.as_str(), r.name.replace(['-', '_'], ""));
            links.insert(
                name,
                json!({"operationId": operation_id(&method, &record.template), "parameters": parameters}),
            );
        }
        // The new record's children: its nested collections.
        for child in routes.iter().filter(|x| {
            !x.record
                && x.module.prefix == route.module.prefix
                && x.param_names.len() == route.param_names.len() + 1
                && x.endpoints.iter().any(|e| match &e.target {
                    Target::Operation { controller, .. } => controller
                        .resource()
                        .and_then(|c| c.parent.as_ref())
                        .is_some_and(|p| p.resource == r.name),
                    Target::Action { .. } => false,
                })
        }) {
            for e in &child.endpoints {
                let method = e.method.as_str().to_ascii_lowercase();
                let mut parameters = Map::new();
                for (p, own) in child.param_names.iter().zip(&route.param_names) {
                    parameters.insert(p.clone(), json!(format!("$request.path.{own}")));
                }
                if let Some(last) = child.param_names.last() {
                    parameters.insert(
                        last.clone(),
                        json!(format!("$response.body#/{}", r.pk().name)),
                    );
                }
                let tail = child.template.rsplit('/').next().unwrap_or_default();
                links.insert(
                    format!("{}{}", e.method.as_str(), tail.replace(['-', '_'], "")),
                    json!({"operationId": operation_id(
                        if matches!(e.target, Target::Operation { op: Operation::DeleteAll, .. }) { "deleteAll" } else { &method },
                        &child.template), "parameters": parameters}),
                );
            }
        }
        if let Some(created) = paths
            .get_mut(&route.template)
            .and_then(|i| i.get_mut("post"))
            .and_then(|o| o.get_mut("responses"))
            .and_then(|r| r.get_mut("201"))
        {
            created["links"] = Value::Object(links);
        }
    }
}

fn security_schemes(settings: &Settings) -> Value {
    let issuer = settings.issuer();
    let prefix = &settings.auth.prefix;
    let mut flows = Map::new();
    let token_url = format!("{issuer}{prefix}/access_token");
    let auth_url = format!("{issuer}{prefix}/authorize");
    let scopes = json!({"basic": "Read.", "write": "Create, change and delete."});
    for grant in &settings.auth.grants {
        let flow = match grant.as_str() {
            "password" => Some((
                "password",
                json!({"tokenUrl": token_url, "refreshUrl": token_url, "scopes": scopes}),
            )),
            "client_credentials" => Some((
                "clientCredentials",
                json!({"tokenUrl": token_url, "scopes": scopes}),
            )),
            "authorization_code" => Some((
                "authorizationCode",
                json!({"authorizationUrl": auth_url,
                "tokenUrl": token_url, "refreshUrl": token_url, "scopes": scopes}),
            )),
            "implicit" => Some((
                "implicit",
                json!({"authorizationUrl": auth_url, "scopes": scopes}),
            )),
            _ => None,
        };
        if let Some((name, flow)) = flow {
            flows.insert(name.into(), flow);
        }
    }
    json!({
        "oauth2": {"type": "oauth2", "flows": flows},
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    })
}

/// Text without NUL, as every OAuth2 parameter must be.
fn oauth_text() -> Value {
    json!({"type": "string", "pattern": "^[^\\u0000]*$"})
}

/// The token endpoint's form: one shape per grant the server enables.
fn token_form(settings: &Settings) -> Value {
    let t = oauth_text;
    let client = json!({"client_id": t(), "client_secret": t(), "scope": t()});
    let mut variants = Vec::new();
    for grant in &settings.auth.grants {
        let (required, extra): (&[&str], Value) = match grant.as_str() {
            "password" => (
                &["username", "password"],
                json!({"username": t(), "password": t()}),
            ),
            "client_credentials" => (&[], json!({})),
            "refresh_token" => (&["refresh_token"], json!({"refresh_token": t()})),
            "authorization_code" => (
                &["code"],
                json!({"code": t(), "redirect_uri": t(), "code_verifier": t()}),
            ),
            _ => continue,
        };
        let mut props = client.clone();
        props["grant_type"] = json!({"const": grant});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                props[k] = v.clone();
            }
        }
        let mut req = vec![json!("grant_type")];
        req.extend(required.iter().map(|r| json!(r)));
        variants.push(
            json!({"type": "object", "required": req, "properties": props,
                             "additionalProperties": t(), "propertyNames": t()}),
        );
    }
    json!({"oneOf": variants})
}

/// restkit's own endpoints, as [`OwnRoutes`] declares them.
fn own_paths(paths: &mut Map<String, Value>, own: &OwnRoutes, settings: &Settings) {
    for (route, path) in own.iter() {
        paths.insert(path.to_string(), own_path(route, settings));
    }
}

/// The path item of one of restkit's own endpoints.
fn own_path(route: OwnRoute, settings: &Settings) -> Value {
    let json_ok = |d: &str| json!({"200": {"description": d, "content": {"application/json": {"schema": {"type": "object"}}}}});
    let oauth_error = json!({"description": "An OAuth2 error (RFC 6749 §5.2).", "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}}}}}});
    let form = |schema: Value| json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": schema}}});
    let token_form_body = |required: &[&str]| {
        form(json!({"type": "object", "required": required,
            "properties": {"token": oauth_text(), "token_type_hint": {"enum": ["access_token", "refresh_token"]},
                           "client_id": oauth_text(), "client_secret": oauth_text()},
            "additionalProperties": oauth_text(), "propertyNames": oauth_text()}))
    };
    let oauth_post = |id: &str, summary: &str, body: Value| {
        let mut responses = json_ok("Success.");
        responses["400"] = oauth_error.clone();
        responses["401"] = oauth_error.clone();
        responses["413"] = json!({"$ref": "#/components/responses/Error"});
        responses["415"] = oauth_error.clone();
        json!({"post": {"operationId": id, "summary": summary, "security": [{}],
                        "requestBody": body, "responses": responses}})
    };
    let html = json!({"text/html": {"schema": {"type": "string"}}});
    match route {
        OwnRoute::Health => {
            let health = json!({"type": "object", "required": ["status", "database"], "properties": {
                "status": {"enum": ["ok", "error"]}, "database": {"enum": ["ok", "unavailable"]},
                "redis": {"enum": ["ok", "unavailable"], "description": "With the Redis rate-limit backend."}}});
            json!({"get": {"operationId": "health", "summary": "Liveness and database check.",
                "security": [{}], "responses": {
                    "200": {"description": "Healthy.", "content": {"application/json": {"schema": health}}},
                    "503": {"description": "The database does not answer, or Redis is down under `on_backend_error = \"deny\"`.", "content": {"application/json": {"schema": health}}}}}})
        }
        OwnRoute::Metrics => json!({"get": {"operationId": "metrics",
            "summary": "Prometheus metrics: requests, latency, auth failures, rate limits, database pool.",
            "description": "OpenMetrics text when `Accept` asks for `application/openmetrics-text`, else Prometheus's classic text format (version 0.0.4).",
            "security": [{}], "responses": {
                "200": {"description": "The metrics.", "content": {
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}}}},
                "403": {"$ref": "#/components/responses/Error"}}}}),
        OwnRoute::Token => oauth_post(
            "token",
            "OAuth2 token endpoint (RFC 6749): one form per grant.",
            form(token_form(settings)),
        ),
        OwnRoute::Revoke => oauth_post(
            "revoke",
            "Token revocation (RFC 7009).",
            token_form_body(&["token"]),
        ),
        OwnRoute::Introspect => oauth_post(
            "introspect",
            "Token introspection (RFC 7662); needs client authentication.",
            token_form_body(&["token"]),
        ),
        OwnRoute::Authorize => {
            let t = oauth_text;
            let authorize_params: Vec<Value> = [
                ("response_type", true, json!({"enum": ["code", "token"]})),
                ("client_id", true, t()),
                ("redirect_uri", false, t()),
                ("scope", false, t()),
                ("state", false, t()),
                ("code_challenge", false, t()),
                ("code_challenge_method", false, json!({"const": "S256"})),
            ]
            .into_iter()
            .map(|(n, required, s)| json!({"name": n, "in": "query", "required": required, "schema": s}))
            .collect();
            json!({
                "get": {"operationId": "authorizeForm", "summary": "Sign-in and consent page (authorization code and implicit grants).",
                        "security": [{}], "parameters": authorize_params,
                        "responses": {"200": {"description": "The page.", "content": html},
                                      "302": {"description": "Back to the client with an error."},
                                      "400": {"description": "An unknown client or redirect URI: not redirected.", "content": html}}},
                "post": {"operationId": "authorizeDecide", "summary": "Sign in and decide.", "security": [{}],
                         "requestBody": form(json!({"type": "object", "additionalProperties": t(), "propertyNames": t()})),
                         "responses": {"302": {"description": "Back to the client with a code, a token or an error."},
                                       "400": {"description": "An unknown client or redirect URI: not redirected.", "content": html},
                                       "401": {"description": "Wrong credentials: the form again.", "content": html},
                                       "403": {"description": "The form's CSRF token did not match.", "content": html},
                                       "413": {"$ref": "#/components/responses/Error"},
                                       "415": {"description": "Not a form.", "content": html}}}
            })
        }
        OwnRoute::Authenticate => {
            let credentials = json!({"type": "object", "required": ["username", "password"],
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}}});
            let key = json!({"type": "object", "required": ["api_key", "token_type", "header", "expires_in", "ip"],
                "properties": {"api_key": {"type": "string"}, "token_type": {"const": "ApiKey"},
                               "header": {"const": "X-API-Key"}, "expires_in": {"type": "integer"},
                               "ip": {"type": "string", "description": "The only address the key works from."}}});
            json!({"post": {"operationId": "authenticate",
                "summary": "A user's username and password for an API key usable only from the caller's address.",
                "security": [{}],
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": credentials},
                    "application/x-www-form-urlencoded": {"schema": credentials}}},
                "responses": {
                    "200": {"description": "The key.", "content": {"application/json": {"schema": key}}},
                    "400": {"$ref": "#/components/responses/Error"},
                    "401": {"$ref": "#/components/responses/Error"},
                    "413": {"$ref": "#/components/responses/Error"},
                    "415": {"$ref": "#/components/responses/Error"}}}})
        }
        OwnRoute::Jwks => {
            json!({"get": {"operationId": "jwks", "summary": "Public keys (RFC 7517).", "security": [{}], "responses": json_ok("The key set.")}})
        }
        OwnRoute::ServerMetadata => {
            json!({"get": {"operationId": "oauthMetadata", "summary": "Authorization server metadata (RFC 8414).", "security": [{}], "responses": json_ok("The metadata.")}})
        }
        OwnRoute::Docs => {
            json!({"get": {"operationId": "docs", "summary": "This reference as an HTML page.", "security": [{}],
            "responses": {"200": {"description": "The page.", "content": html}}}})
        }
        OwnRoute::OpenApi => {
            json!({"get": {"operationId": "openapi", "summary": "This document.", "security": [{}], "responses": json_ok("The document.")}})
        }
        OwnRoute::SignIn => {
            json!({"get": {"operationId": "browserSignIn", "summary": "Sign in to the browsable pages (starts the authorization-code flow of the built-in client).", "security": [{}],
            "parameters": [{"name": "next", "in": "query", "required": false, "description": "A path on this server to return to.", "schema": {"type": "string"}}],
            "responses": {"303": {"description": "To the sign-in and consent page."}}}})
        }
        OwnRoute::SignedIn => {
            json!({"get": {"operationId": "browserSignedIn", "summary": "Where the browsable pages' sign-in returns: keeps the token in an HttpOnly session cookie.", "security": [{}],
            "parameters": [
                {"name": "code", "in": "query", "required": false, "schema": {"type": "string"}},
                {"name": "state", "in": "query", "required": false, "schema": {"type": "string"}}],
            "responses": {"303": {"description": "Back to the page the sign-in started from."},
                          "400": {"description": "A flow not started here, or a bad code.", "content": html}}}})
        }
        OwnRoute::SignOut => {
            json!({"post": {"operationId": "browserSignOut", "summary": "Sign out of the browsable pages: revokes the session's token.", "security": [{}],
            "responses": {"303": {"description": "To the API root."},
                          "403": {"description": "Not sent from this server's own pages.", "content": html}}}})
        }
    }
}

/// Per route template, what OPTIONS answers (§11): the route's methods,
/// each with its summary, scope, parameters, input schema and statuses —
/// cut from `doc` once at start-up.
pub fn describe_routes(routes: &[Arc<Route>], doc: &Value) -> HashMap<String, Arc<Value>> {
    let mut out = HashMap::new();
    for route in routes {
        let item = &doc["paths"][&route.template];
        let path_params = item["parameters"].as_array().cloned().unwrap_or_default();
        let methods: Vec<Value> = route
            .endpoints
            .iter()
            .map(|e| {
                let op = &item[e.method.as_str().to_ascii_lowercase()];
                let mut params = path_params.clone();
                params.extend(op["parameters"].as_array().cloned().unwrap_or_default());
                let mut m = json!({
                    "method": e.method.as_str(),
                    "summary": op["summary"],
                    "scope": e.scope,
                    "parameters": params,
                    "responses": op["responses"].as_object().map(|r| r.keys().cloned().collect::<Vec<_>>()),
                });
                if let Some(d) = op.get("description") {
                    m["description"] = d.clone();
                }
                if let Some(input) = op["requestBody"]["content"].get("application/json") {
                    // Whole, not a reference into a document the client
                    // of OPTIONS does not have.
                    m["input"] = super::resolve(doc, &input["schema"]).clone();
                }
                match &e.target {
                    Target::Operation { op, .. } => m["operation"] = json!(format!("{op:?}")),
                    Target::Action { action, .. } => m["handler"] = json!(action.handler),
                }
                m
            })
            .collect();
        out.insert(
            route.template.clone(),
            Arc::new(json!({
                "path": route.template,
                "allow": route.allow.to_str().unwrap_or(""),
                "methods": methods,
            })),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_as_english() {
        assert_eq!(summary(Operation::Create, "owners"), "Create an owner");
        assert_eq!(summary(Operation::Fetch, "categories"), "Fetch a category");
        assert_eq!(summary(Operation::Delete, "boxes"), "Delete a box");
        assert_eq!(
            summary(Operation::Patch, "users"),
            "Change a user (merge patch)"
        );
        assert_eq!(
            summary(Operation::Update, "order_items"),
            "Replace an order item"
        );
        assert_eq!(summary(Operation::Find, "order_items"), "List order items");
        assert_eq!(summary(Operation::Create, "news"), "Create a news");
        assert_eq!(summary(Operation::Create, "movies"), "Create a movie");
        assert_eq!(summary(Operation::Fetch, "series"), "Fetch a series");
        assert_eq!(summary(Operation::Create, "addresses"), "Create an address");
    }
}
