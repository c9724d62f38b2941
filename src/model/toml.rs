//! Loading an [`ApiModel`] from TOML (§2.1).
//!
//! The file's `[[module]]` tables declare the API; the same file may carry
//! settings (`[server]`, …), which [`crate::config`] reads. Unknown keys in a
//! declaration are errors naming the key, so a typo never silently drops a
//! constraint.
//!
//! ```toml
//! [[module]]
//! prefix = "/v1"
//! versions = ["1.0", "1.1"]
//!
//! [[module.resource]]
//! name = "books"
//! hidden = ["internal_note"]
//! [module.resource.fields]
//! id     = { type = "integer", primary_key = true }
//! title  = { type = "string", required = true, max_length = 200 }
//! author = { type = "string", required = true, column = "author_name" }
//!
//! [[module.resource.nested]]          # /v1/books/{bookId}/reviews
//! name = "reviews"
//! parent_key = "bookId"
//! [module.resource.nested.fields]
//! id     = { type = "integer", primary_key = true }
//! bookId = { type = "integer" }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

use super::{
    camel_case, snake_case, Action, ActionLevel, ApiModel, CountMode, Credentials, Field,
    FieldType, ModelError, Module, ModuleCors, OnDelete, Owner, OwnerPolicy, ParentLink, Relation,
    RelationKind, Resource, Scenarios, Scopes, Verb,
};

#[derive(Deserialize)]
struct FileDecl {
    #[serde(default)]
    module: Vec<ModuleDecl>,
    #[serde(default)]
    seed: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleDecl {
    prefix: String,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default = "yes")]
    convert_snake_case: bool,
    #[serde(default)]
    resource: Vec<ResourceDecl>,
    #[serde(default)]
    action: Vec<ActionDecl>,
    #[serde(default)]
    cors: Option<CorsDecl>,
    /// Credential kinds: bearer, query, basic, api_key (§8.4).
    #[serde(default)]
    credentials: Option<Vec<String>>,
    /// For the generated documentation (§11), as are the other
    /// `description` keys.
    #[serde(default)]
    description: String,
}

/// `[module.cors]`: overrides of the global `[cors]` for one module.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorsDecl {
    origins: Option<Vec<String>>,
    credentials: Option<bool>,
    max_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceDecl {
    name: String,
    table: Option<String>,
    #[serde(default)]
    scopes: Option<ScopesDecl>,
    #[serde(default)]
    bulk: bool,
    #[serde(default)]
    sync: bool,
    #[serde(default)]
    links: bool,
    #[serde(default)]
    hidden: Vec<String>,
    #[serde(default)]
    fields: IndexMap<String, FieldDecl>,
    /// A hand-written controller registered under this name serves the
    /// path instead of the table.
    #[serde(default)]
    controller: Option<String>,
    #[serde(default)]
    owner: Option<OwnerDecl>,
    /// Only on `nested` resources: the child field holding the parent key.
    #[serde(default)]
    parent_key: Option<String>,
    #[serde(default)]
    nested: Vec<ResourceDecl>,
    #[serde(default)]
    relations: BTreeMap<String, RelationDecl>,
    #[serde(default)]
    scenarios: ScenariosDecl,
    #[serde(default)]
    filterable: Option<Vec<String>>,
    #[serde(default)]
    sortable: Option<Vec<String>>,
    #[serde(default)]
    count: Option<String>,
    /// `"offset"` (default) or `"cursor"`.
    #[serde(default)]
    pagination: Option<String>,
    /// `Cache-Control` for GET/HEAD (default `no-cache`).
    #[serde(default)]
    cache_control: Option<String>,
    #[serde(default)]
    action: Vec<ActionDecl>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    rate_limit: Option<RateLimitDecl>,
    /// The table's earlier name: `migrate` renames it.
    renamed_from: Option<String>,
}

/// `rate_limit = { authenticated = { requests = 10, period = "1m" } }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitDecl {
    anonymous: Option<RateTierDecl>,
    authenticated: Option<RateTierDecl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateTierDecl {
    requests: u32,
    period: String,
}

fn rate_limit(
    d: Option<RateLimitDecl>,
    place: &str,
) -> Result<crate::model::RateLimitOverride, ModelError> {
    let tier = |t: Option<RateTierDecl>, which: &str| -> Result<_, ModelError> {
        t.map(|t| {
            let period = crate::config::parse_duration(&t.period).ok_or_else(|| {
                ModelError::new(
                    format!("{place}.rate_limit.{which}.period"),
                    format!("'{}' is not a duration like 30s, 5m, 1h", t.period),
                )
            })?;
            if period.is_zero() && t.requests > 0 {
                return Err(ModelError::new(
                    format!("{place}.rate_limit.{which}.period"),
                    "must be longer than zero (requests = 0 turns the limit off)",
                ));
            }
            Ok(crate::model::RateTier {
                requests: t.requests,
                period,
            })
        })
        .transpose()
    };
    Ok(match d {
        None => Default::default(),
        Some(d) => crate::model::RateLimitOverride {
            anonymous: tier(d.anonymous, "anonymous")?,
            authenticated: tier(d.authenticated, "authenticated")?,
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopesDecl {
    read: Option<String>,
    write: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FieldDecl {
    #[serde(rename = "type")]
    ty: String,
    column: Option<String>,
    #[serde(default)]
    primary_key: bool,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    hidden: bool,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    index: bool,
    max_length: Option<u64>,
    min_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    enumeration: Option<Vec<Value>>,
    default: Option<Value>,
    #[serde(default)]
    created_at: bool,
    #[serde(default)]
    updated_at: bool,
    #[serde(default)]
    description: String,
    /// The field's earlier name: `migrate` renames its column.
    renamed_from: Option<String>,
    /// `decimal`: how many digits in all, and after the point.
    precision: Option<u8>,
    scale: Option<u8>,
    /// `uuid`: filled on create when the client sends none.
    #[serde(default)]
    generated: bool,
    /// `json`: the JSON Schema its values satisfy.
    schema: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerDecl {
    field: String,
    #[serde(default = "private")]
    policy: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelationDecl {
    kind: String,
    resource: String,
    foreign_key: String,
    on_delete: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScenariosDecl {
    list: Option<Vec<String>>,
    view: Option<Vec<String>>,
    create: Option<Vec<String>>,
    update: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionDecl {
    path: String,
    #[serde(default = "post")]
    method: String,
    /// `collection` or `record` on a resource; ignored on a module.
    #[serde(default)]
    on: Option<String>,
    handler: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    rate_limit: Option<RateLimitDecl>,
}

fn yes() -> bool {
    true
}
fn private() -> String {
    "private".into()
}
fn post() -> String {
    "POST".into()
}

/// Parses a TOML document into a checked model.
pub fn parse(text: &str) -> Result<ApiModel, ModelError> {
    let file: FileDecl =
        ::toml::from_str(text).map_err(|e| ModelError::new("configuration", e.to_string()))?;
    let mut model = ApiModel {
        modules: Vec::new(),
        seed: file.seed,
    };
    for (mi, m) in file.module.into_iter().enumerate() {
        let place = format!("module[{mi}]");
        let mut module = Module {
            prefix: m.prefix,
            versions: m.versions,
            convert_snake_case: m.convert_snake_case,
            resources: Vec::new(),
            actions: Vec::new(),
            description: m.description.clone(),
            credentials: match &m.credentials {
                None => None,
                Some(names) => Some(
                    Credentials::from_names(names.iter().map(String::as_str))
                        .map_err(|e| ModelError::new(format!("{place}.credentials"), e))?,
                ),
            },
            cors: match m.cors {
                None => Default::default(),
                Some(c) => ModuleCors {
                    origins: c.origins,
                    credentials: c.credentials,
                    max_age: match c.max_age {
                        None => None,
                        Some(text) => {
                            Some(crate::config::parse_duration(&text).ok_or_else(|| {
                                ModelError::new(
                                    format!("{place}.cors.max_age"),
                                    format!("'{text}' is not a duration like 30s, 5m, 1h"),
                                )
                            })?)
                        }
                    },
                },
            },
        };
        for a in m.action {
            let path = if a.path.starts_with('/') {
                a.path.clone()
            } else {
                format!("/{}", a.path)
            };
            module
                .actions
                .push(action(a, path, ActionLevel::Module, &place)?);
        }
        for r in m.resource {
            flatten(
                r,
                None,
                module.convert_snake_case,
                &place,
                &mut module.resources,
            )?;
        }
        model.modules.push(module);
    }
    model.validate()?;
    Ok(model)
}

/// Turns a resource and its `nested` children into flat resources with
/// parent links.
fn flatten(
    mut decl: ResourceDecl,
    parent: Option<(&str, String)>,
    convert: bool,
    place: &str,
    out: &mut Vec<Arc<Resource>>,
) -> Result<(), ModelError> {
    let place = format!("{place}.resource '{}'", decl.name);
    let mut r = Resource::new(decl.name.clone(), decl.table.unwrap_or(decl.name.clone()));
    r.controller = decl.controller.clone();
    r.renamed_from = decl.renamed_from.clone();
    r.bulk = decl.bulk;
    r.sync = decl.sync;
    r.links = decl.links;
    if let Some(s) = decl.scopes {
        let d = Scopes::default();
        r.scopes = Scopes {
            read: s.read.unwrap_or(d.read),
            write: s.write.unwrap_or(d.write),
        };
    }
    for (key, fd) in decl.fields {
        r.fields.push(field(&key, fd, convert, &place)?);
    }
    for h in &decl.hidden {
        match r.fields.iter_mut().find(|f| f.name == *h || f.column == *h) {
            Some(f) => f.hidden = true,
            None => {
                // A hidden column need not be declared: it is a nullable text
                // column that no request can name.
                let name = if convert { camel_case(h) } else { h.clone() };
                let mut f = Field::new(name, FieldType::String);
                f.column = snake_case(h);
                f.hidden = true;
                r.fields.push(f);
            }
        }
    }
    let index = |r: &Resource, name: &str, what: &str| {
        r.field_index(name)
            .ok_or_else(|| ModelError::new(&place, format!("{what} '{name}' is not a field")))
    };
    if let Some(o) = decl.owner {
        let policy = match o.policy.as_str() {
            "private" => OwnerPolicy::Private,
            "read_all" => OwnerPolicy::ReadAllWriteOwn,
            other => {
                return Err(ModelError::new(
                    format!("{place}.owner.policy"),
                    format!("'{other}' is not 'private' or 'read_all'"),
                ))
            }
        };
        r.owner = Some(Owner {
            field: index(&r, &o.field, "owner field")?,
            policy,
        });
    }
    match (&parent, decl.parent_key) {
        (Some((pname, _)), Some(key)) => {
            r.parent = Some(ParentLink {
                resource: pname.to_string(),
                field: index(&r, &key, "parent_key")?,
            });
        }
        (Some(_), None) => {
            return Err(ModelError::new(
                &place,
                "a nested resource needs parent_key",
            ))
        }
        (None, Some(_)) => {
            return Err(ModelError::new(
                &place,
                "parent_key is only for nested resources",
            ))
        }
        (None, None) => {}
    }
    for (name, rel) in decl.relations {
        let kind = match rel.kind.as_str() {
            "has_many" => RelationKind::HasMany,
            "belongs_to" => RelationKind::BelongsTo,
            other => {
                return Err(ModelError::new(
                    format!("{place}.relations.{name}.kind"),
                    format!("'{other}' is not 'has_many' or 'belongs_to'"),
                ))
            }
        };
        let on_delete = match (kind, rel.on_delete.as_deref()) {
            (_, None) => OnDelete::default(),
            (RelationKind::BelongsTo, Some(s)) => OnDelete::parse(s).ok_or_else(|| {
                ModelError::new(
                    format!("{place}.relations.{name}.on_delete"),
                    format!("'{s}' is not 'restrict', 'cascade' or 'set_null'"),
                )
            })?,
            (RelationKind::HasMany, Some(_)) => {
                return Err(ModelError::new(
                    format!("{place}.relations.{name}.on_delete"),
                    "on_delete belongs on the belongs_to side, whose table holds the key",
                ))
            }
        };
        r.relations.push(Relation {
            name,
            kind,
            resource: rel.resource,
            foreign_key: rel.foreign_key,
            on_delete,
        });
    }
    let pick = |list: Option<Vec<String>>, what: &str| -> Result<Option<Vec<usize>>, ModelError> {
        list.map(|names| {
            names
                .iter()
                .map(|n| index(&r, n, &format!("{what} entry")))
                .collect()
        })
        .transpose()
    };
    let filterable = pick(decl.filterable, "filterable")?;
    let sortable = pick(decl.sortable, "sortable")?;
    let scenarios = Scenarios {
        list: pick(decl.scenarios.list, "list")?,
        view: pick(decl.scenarios.view, "view")?,
        create: pick(decl.scenarios.create, "create")?,
        update: pick(decl.scenarios.update, "update")?,
    };
    r.scenarios = scenarios;
    r.filterable = filterable;
    r.sortable = sortable;
    if let Some(c) = decl.count {
        r.count = CountMode::parse(&c).ok_or_else(|| {
            ModelError::new(
                format!("{place}.count"),
                format!("'{c}' is not exact, estimated or none"),
            )
        })?;
    }
    r.cache_control = decl.cache_control.clone();
    r.description = decl.description.clone();
    r.rate_limit = rate_limit(decl.rate_limit.take(), &place)?;
    r.cursor_pagination = match decl.pagination.as_deref() {
        None | Some("offset") => false,
        Some("cursor") => true,
        Some(other) => {
            return Err(ModelError::new(
                format!("{place}.pagination"),
                format!("'{other}' is not 'offset' or 'cursor'"),
            ))
        }
    };
    for a in decl.action {
        let level = match a.on.as_deref() {
            None | Some("record") => ActionLevel::Record,
            Some("collection") => ActionLevel::Collection,
            Some(other) => {
                return Err(ModelError::new(
                    format!("{place}.action '{}'.on", a.path),
                    format!("'{other}' is not 'record' or 'collection'"),
                ))
            }
        };
        let path = a.path.trim_matches('/').to_string();
        if path.is_empty() || path.contains('/') || path.contains('{') {
            return Err(ModelError::new(
                format!("{place}.action '{}'", a.path),
                "a resource action's path is one segment",
            ));
        }
        r.actions.push(action(a, path, level, &place)?);
    }
    let name = r.name.clone();
    out.push(Arc::new(r));
    for child in decl.nested {
        flatten(child, Some((&name, String::new())), convert, &place, out)?;
    }
    Ok(())
}

fn field(key: &str, d: FieldDecl, convert: bool, place: &str) -> Result<Field, ModelError> {
    let place = format!("{place}.fields.{key}");
    let ty = FieldType::parse(&d.ty).ok_or_else(|| {
        ModelError::new(
            format!("{place}.type"),
            format!(
                "'{}' is not one of integer, number, string, boolean, datetime, date, time, decimal, uuid, json",
                d.ty
            ),
        )
    })?;
    let name = if convert {
        camel_case(key)
    } else {
        key.to_string()
    };
    let mut f = Field::new(name, ty);
    f.column = d.column.unwrap_or_else(|| snake_case(key));
    f.primary_key = d.primary_key;
    f.required = d.required;
    f.read_only = d.read_only;
    f.hidden = d.hidden;
    f.unique = d.unique;
    f.indexed = d.index;
    f.max_length = d.max_length;
    f.min_length = d.min_length;
    f.minimum = d.minimum;
    f.maximum = d.maximum;
    f.pattern = d.pattern;
    f.enumeration = d.enumeration;
    f.default = d.default;
    f.created_at = d.created_at;
    f.updated_at = d.updated_at;
    f.description = d.description;
    f.renamed_from = d.renamed_from;
    f.generated = d.generated;
    f.json_schema = d.schema;
    match (&mut f.ty, d.precision, d.scale) {
        (FieldType::Decimal { precision, scale }, p, s) => {
            if let Some(p) = p {
                *precision = p;
            }
            if let Some(s) = s {
                *scale = s;
            }
        }
        (_, None, None) => {}
        _ => {
            return Err(ModelError::new(
                place,
                "precision and scale are for decimal fields",
            ))
        }
    }
    if (f.created_at || f.updated_at) && ty != FieldType::DateTime {
        return Err(ModelError::new(
            place,
            "created_at/updated_at need type = \"datetime\"",
        ));
    }
    Ok(f)
}

fn action(
    a: ActionDecl,
    path: String,
    level: ActionLevel,
    place: &str,
) -> Result<Action, ModelError> {
    let verb = Verb::parse(&a.method).ok_or_else(|| {
        ModelError::new(
            format!("{place}.action '{}'.method", a.path),
            format!("'{}' is not GET, POST, PUT, PATCH or DELETE", a.method),
        )
    })?;
    if let Some(schema) = &a.input {
        if let Err(e) = jsonschema::validator_for(schema) {
            return Err(ModelError::new(
                format!("{place}.action '{}'.input", a.path),
                format!("not a valid JSON Schema: {e}"),
            ));
        }
    }
    Ok(Action {
        path,
        verb,
        level,
        handler: a.handler,
        input: a.input,
        scope: a.scope,
        summary: a.summary,
        description: a.description,
        rate_limit: rate_limit(a.rate_limit, &format!("{place}.action '{}'", a.path))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
[[module]]
prefix = "/v1"
[[module.resource]]
name = "books"
hidden = ["internal_note"]
[module.resource.fields]
id = { type = "integer", primary_key = true }
author_name = { type = "string", required = true }
title = { type = "string", column = "book_title" }
[[module.resource.nested]]
name = "reviews"
parent_key = "bookId"
[module.resource.nested.fields]
id = { type = "integer", primary_key = true }
bookId = { type = "integer" }
"#;

    #[test]
    fn names_are_camel_cased_and_columns_kept() {
        let m = parse(SMALL).unwrap();
        let books = m.modules[0].find_resource("books").unwrap();
        let names: Vec<_> = books.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "authorName", "title", "internalNote"]);
        assert_eq!(
            books.find_field("authorName").unwrap().column,
            "author_name"
        );
        assert_eq!(books.find_field("title").unwrap().column, "book_title");
        assert!(books.find_field("internalNote").unwrap().hidden);
        assert_eq!(books.readable(false), vec![0, 1, 2]);
    }

    #[test]
    fn nested_resources_get_parent_paths() {
        let m = parse(SMALL).unwrap();
        let module = &m.modules[0];
        let reviews = module.find_resource("reviews").unwrap();
        assert_eq!(
            module.plan(reviews).collection_path,
            "/v1/books/{bookId}/reviews"
        );
        // The parent key is set from the path, never the body.
        assert!(!reviews.writable(true).contains(&1));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let bad = SMALL.replace("required = true", "requird = true");
        let e = parse(&bad).unwrap_err();
        assert!(e.to_string().contains("requird"), "{e}");
    }

    #[test]
    fn bad_type_names_the_field() {
        let bad = SMALL.replace("type = \"string\", column", "type = \"strin\", column");
        let e = parse(&bad).unwrap_err();
        assert!(e.to_string().contains("fields.title.type"), "{e}");
    }

    #[test]
    fn missing_primary_key_is_an_error() {
        let bad = SMALL.replace(
            "id = { type = \"integer\", primary_key = true }\nauthor",
            "id = { type = \"integer\" }\nauthor",
        );
        assert!(parse(&bad).unwrap_err().to_string().contains("primary_key"));
    }
}
