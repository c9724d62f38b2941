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
    bulk: Option<bool>,
    sync: Option<bool>,
    links: Option<bool>,
    /// `"/v1/books"`: this resource is that one (an earlier module's),
    /// with what this declaration changes.
    extends: Option<String>,
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
    /// Up to this many at once (default `requests`).
    burst: Option<u32>,
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
            if t.burst == Some(0) && t.requests > 0 {
                return Err(ModelError::new(
                    format!("{place}.rate_limit.{which}.burst"),
                    "must be at least 1 (requests = 0 turns the limit off)",
                ));
            }
            Ok(crate::model::RateTier {
                requests: t.requests,
                period,
                burst: t.burst.unwrap_or(t.requests),
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
    /// Required, except on a field of a resource that `extends` another
    /// where it is taken from the field it overrides.
    #[serde(rename = "type")]
    ty: Option<String>,
    column: Option<String>,
    primary_key: Option<bool>,
    required: Option<bool>,
    read_only: Option<bool>,
    hidden: Option<bool>,
    unique: Option<bool>,
    index: Option<bool>,
    max_length: Option<u64>,
    min_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    enumeration: Option<Vec<Value>>,
    default: Option<Value>,
    created_at: Option<bool>,
    updated_at: Option<bool>,
    description: Option<String>,
    /// The field's earlier name: `migrate` renames its column.
    renamed_from: Option<String>,
    /// `decimal`: how many digits in all, and after the point.
    precision: Option<u8>,
    scale: Option<u8>,
    /// `uuid`: filled on create when the client sends none.
    generated: Option<bool>,
    /// `json`: the JSON Schema its values satisfy.
    schema: Option<Value>,
    /// In a resource that `extends` another: the extended resource's
    /// field this one serves under a new name (same column).
    from: Option<String>,
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
        // Relations an extending resource took from its base, which this
        // module may not serve the targets of.
        let mut inherited: Vec<(String, Vec<String>)> = Vec::new();
        for r in m.resource {
            let base = match &r.extends {
                None => None,
                Some(path) => {
                    let base = extended(&model, path).ok_or_else(|| {
                        ModelError::new(
                            format!("{place}.resource '{}'.extends", r.name),
                            format!(
                                "'{path}' is no resource of an earlier module (write it \"/v1/books\")"
                            ),
                        )
                    })?;
                    let names = base
                        .relations
                        .iter()
                        .map(|x| x.name.clone())
                        .filter(|n| !r.relations.contains_key(n))
                        .collect();
                    inherited.push((r.name.clone(), names));
                    Some(base)
                }
            };
            flatten(
                r,
                None,
                module.convert_snake_case,
                &place,
                base.as_deref(),
                &mut module.resources,
            )?;
        }
        let served: Vec<String> = module.resources.iter().map(|r| r.name.clone()).collect();
        for (name, relations) in inherited {
            if let Some(r) = module.resources.iter_mut().find(|r| r.name == name) {
                Arc::make_mut(r)
                    .relations
                    .retain(|x| !relations.contains(&x.name) || served.contains(&x.resource));
            }
        }
        model.modules.push(module);
    }
    model.validate()?;
    Ok(model)
}

/// The resource `path` (`/v1/books`, or `v1.books`) names among the
/// modules declared so far.
fn extended(model: &ApiModel, path: &str) -> Option<Arc<Resource>> {
    let path = path.trim_start_matches('/');
    let (prefix, name) = path.rsplit_once(['/', '.'])?;
    let module = model
        .modules
        .iter()
        .find(|m| m.prefix.trim_start_matches('/') == prefix)?;
    module.find_resource(name).cloned()
}

/// Turns a resource and its `nested` children into flat resources with
/// parent links.
///
/// A resource that `extends` another (`base`, an earlier module's) starts
/// as a copy of it — same table, fields, relations, owner, actions,
/// options — and the declaration changes what it names: a field entry
/// overrides the field of its name (or, with `from = "author"`, serves
/// that field under its own name), a new entry adds a field, `hidden`
/// hides, and every option given replaces the base's.
fn flatten(
    mut decl: ResourceDecl,
    parent: Option<(&str, String)>,
    convert: bool,
    place: &str,
    base: Option<&Resource>,
    out: &mut Vec<Arc<Resource>>,
) -> Result<(), ModelError> {
    let place = format!("{place}.resource '{}'", decl.name);
    let mut r = match base {
        None => Resource::new(
            decl.name.clone(),
            decl.table.clone().unwrap_or(decl.name.clone()),
        ),
        Some(b) => {
            if b.parent.is_some() || parent.is_some() {
                return Err(ModelError::new(
                    format!("{place}.extends"),
                    "only a top-level resource extends, and only a top-level one",
                ));
            }
            if decl.table.as_ref().is_some_and(|t| *t != b.table) {
                return Err(ModelError::new(
                    format!("{place}.table"),
                    format!(
                        "a resource that extends another is over its table ({})",
                        b.table
                    ),
                ));
            }
            Resource::extending(b, &decl.name)
        }
    };
    if let Some(c) = decl.controller.clone() {
        r.controller = Some(c);
    }
    if decl.renamed_from.is_some() {
        r.renamed_from = decl.renamed_from.clone();
    }
    r.bulk = decl.bulk.unwrap_or(r.bulk);
    r.sync = decl.sync.unwrap_or(r.sync);
    r.links = decl.links.unwrap_or(r.links);
    if let Some(s) = decl.scopes {
        let d = r.scopes.clone();
        r.scopes = Scopes {
            read: s.read.unwrap_or(d.read),
            write: s.write.unwrap_or(d.write),
        };
    }
    for (key, fd) in decl.fields {
        let name = if convert {
            camel_case(&key)
        } else {
            key.clone()
        };
        let over = match (&fd.from, base) {
            (Some(from), Some(b)) => Some(b.field_index(from).ok_or_else(|| {
                ModelError::new(
                    format!("{place}.fields.{key}.from"),
                    format!("'{from}' is not a field of the extended resource"),
                )
            })?),
            (Some(_), None) => {
                return Err(ModelError::new(
                    format!("{place}.fields.{key}.from"),
                    "from names a field of the resource this one extends, and it extends none",
                ))
            }
            (None, Some(b)) => b.field_index(&name),
            (None, None) => None,
        };
        match over {
            Some(i) => {
                let f = field(&key, fd, convert, &place, Some(&r.fields[i]))?;
                r.fields[i] = f;
            }
            None => r.fields.push(field(&key, fd, convert, &place, None)?),
        }
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
    // Declared here: they replace an inherited relation of their name.
    for name in decl.relations.keys() {
        r.relations.retain(|x| x.name != *name);
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
    let list = pick(decl.scenarios.list, "list")?;
    let view = pick(decl.scenarios.view, "view")?;
    let create = pick(decl.scenarios.create, "create")?;
    let update = pick(decl.scenarios.update, "update")?;
    let was = std::mem::take(&mut r.scenarios);
    r.scenarios = Scenarios {
        list: list.or(was.list),
        view: view.or(was.view),
        create: create.or(was.create),
        update: update.or(was.update),
    };
    r.filterable = filterable.or(r.filterable.take());
    r.sortable = sortable.or(r.sortable.take());
    if let Some(c) = decl.count {
        r.count = CountMode::parse(&c).ok_or_else(|| {
            ModelError::new(
                format!("{place}.count"),
                format!("'{c}' is not exact, estimated or none"),
            )
        })?;
    }
    if decl.cache_control.is_some() {
        r.cache_control = decl.cache_control.clone();
    }
    if !decl.description.is_empty() {
        r.description = decl.description.clone();
    }
    if decl.rate_limit.is_some() || base.is_none() {
        r.rate_limit = rate_limit(decl.rate_limit.take(), &place)?;
    }
    r.cursor_pagination = match decl.pagination.as_deref() {
        None => r.cursor_pagination,
        Some("offset") => false,
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
        flatten(
            child,
            Some((&name, String::new())),
            convert,
            &place,
            None,
            out,
        )?;
    }
    Ok(())
}

/// The field `key` declares — from scratch, or over `base` (a field of
/// the resource this one extends), changing what the declaration names.
fn field(
    key: &str,
    d: FieldDecl,
    convert: bool,
    place: &str,
    base: Option<&Field>,
) -> Result<Field, ModelError> {
    let place = format!("{place}.fields.{key}");
    let name = if convert {
        camel_case(key)
    } else {
        key.to_string()
    };
    let ty = match (&d.ty, base) {
        (Some(text), _) => FieldType::parse(text).ok_or_else(|| {
            ModelError::new(
                format!("{place}.type"),
                format!(
                    "'{text}' is not one of integer, number, string, boolean, datetime, date, time, decimal, uuid, json"
                ),
            )
        })?,
        (None, Some(b)) => b.ty,
        (None, None) => return Err(ModelError::new(&place, "type is required")),
    };
    let mut f = match base {
        Some(b) => {
            let mut f = b.clone();
            f.name = name;
            if f.ty.as_str() != ty.as_str() {
                f.ty = ty;
            }
            f
        }
        None => {
            let mut f = Field::new(name, ty);
            f.column = snake_case(key);
            f
        }
    };
    if let Some(c) = d.column {
        f.column = c;
    }
    let flag = |given: Option<bool>, was: bool| given.unwrap_or(was);
    f.primary_key = flag(d.primary_key, f.primary_key);
    f.required = flag(d.required, f.required);
    f.read_only = flag(d.read_only, f.read_only);
    f.hidden = flag(d.hidden, f.hidden);
    f.unique = flag(d.unique, f.unique);
    f.indexed = flag(d.index, f.indexed);
    f.created_at = flag(d.created_at, f.created_at);
    f.updated_at = flag(d.updated_at, f.updated_at);
    f.generated = flag(d.generated, f.generated);
    f.max_length = d.max_length.or(f.max_length);
    f.min_length = d.min_length.or(f.min_length);
    f.minimum = d.minimum.or(f.minimum);
    f.maximum = d.maximum.or(f.maximum);
    f.pattern = d.pattern.or(f.pattern);
    f.enumeration = d.enumeration.or(f.enumeration);
    f.default = d.default.or(f.default);
    f.description = d.description.unwrap_or(f.description);
    f.renamed_from = d.renamed_from;
    f.json_schema = d.schema.or(f.json_schema);
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
    if (f.created_at || f.updated_at) && f.ty != FieldType::DateTime {
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
