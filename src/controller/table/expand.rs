//! Expansion (§6.4): related records embedded in each record, bounded.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::access::read_scope;
use super::TableController;
use crate::controller::Ctx;
use crate::error::ApiError;
use crate::model::plan::ResourcePlan;
use crate::model::{Module, RelationKind, Resource};
use crate::query::{CollectionQuery, QueryError, MAX_EXPAND_DEPTH};
use crate::store::Record;

/// Most related records one has-many expansion embeds in each record
/// (the first ones by primary key); when there are more, the record's
/// `_links` names the relation's full collection. Documented in the README.
pub const MAX_EXPANDED: u64 = 20;

/// Most related records one response embeds, all expansions together: past
/// it the request is refused (400) rather than served. 100 books × 100
/// reviews of 1 KB made a 32 MB page that took a second to build; the
/// client lowers `limit` instead.
pub const MAX_EMBEDDED: u64 = 1000;

/// Most stored bytes (text as stored, other values counted as 8) one
/// response may embed through expansions: a thousand records of long text
/// would otherwise make a page tens of megabytes once escaped for HTML.
pub const MAX_EMBEDDED_BYTES: usize = 1 << 20;

/// A relation resolved against its target at start-up, with the
/// target's own relations in turn (down to [`MAX_EXPAND_DEPTH`]), for
/// `expand=pet.owner`.
pub(super) struct Link {
    pub(super) name: String,
    pub(super) kind: RelationKind,
    /// The target's plan: its readable fields and parent chain.
    pub(super) target: ResourcePlan,
    /// Has-many: the target's foreign key; belongs-to: this resource's.
    pub(super) key: usize,
    /// The target's relations, one level further down.
    pub(super) links: Vec<Link>,
}

/// `resource`'s relations resolved against `module`, and theirs in turn
/// while `depth` (1 for the resource's own) is within
/// [`MAX_EXPAND_DEPTH`].
pub(super) fn links_of(
    module: &Module,
    resource: &Resource,
    depth: usize,
) -> Result<Vec<Link>, String> {
    let mut links = Vec::new();
    for rel in &resource.relations {
        let target = module
            .find_resource(&rel.resource)
            .ok_or_else(|| format!("relation {} targets no resource", rel.name))?;
        let key = match rel.kind {
            RelationKind::HasMany => target.field_index(&rel.foreign_key),
            RelationKind::BelongsTo => resource.field_index(&rel.foreign_key),
        }
        .ok_or_else(|| format!("relation {}: no field {}", rel.name, rel.foreign_key))?;
        let below = if depth < MAX_EXPAND_DEPTH && target.controller.is_none() {
            links_of(module, target, depth + 1)?
        } else {
            Vec::new()
        };
        links.push(Link {
            name: rel.name.clone(),
            kind: rel.kind,
            target: module.plan(target),
            key,
            links: below,
        });
    }
    Ok(links)
}

/// One relation to embed in a request: its link, the fields asked of it,
/// and what to embed in each of its records in turn.
struct Embed<'a> {
    link: &'a Link,
    fields: Option<&'a [String]>,
    nested: Vec<Embed<'a>>,
}

/// `paths` (`owner`, `owner.city`, `vet`) against `links`, one embed per
/// first name; `above` names the path so far, for errors.
fn resolve<'a>(
    links: &'a [Link],
    paths: &[String],
    above: &str,
) -> Result<Vec<Embed<'a>>, ApiError> {
    let mut out: Vec<(Embed<'a>, Vec<String>)> = Vec::new();
    for path in paths {
        let (name, rest) = match path.split_once('.') {
            Some((name, rest)) => (name, Some(rest)),
            None => (path.as_str(), None),
        };
        let at = match out.iter().position(|(e, _)| e.link.name == name) {
            Some(at) => at,
            None => {
                let link = links.iter().find(|l| l.name == name).ok_or_else(|| {
                    ApiError::from(QueryError::UnknownField {
                        param: "expand".into(),
                        field: format!("{above}.{path}"),
                    })
                })?;
                out.push((
                    Embed {
                        link,
                        fields: None,
                        nested: Vec::new(),
                    },
                    Vec::new(),
                ));
                out.len() - 1
            }
        };
        if let Some(rest) = rest {
            out[at].1.push(rest.to_string());
        }
    }
    out.into_iter()
        .map(|(mut e, rest)| {
            e.nested = resolve(&e.link.links, &rest, &format!("{above}.{}", e.link.name))?;
            Ok(e)
        })
        .collect()
}

/// What one response has embedded so far, all levels together.
#[derive(Default)]
struct Budget {
    records: u64,
    bytes: usize,
}

impl TableController {
    /// Embeds the requested relations (§6.4), and theirs in turn
    /// (`expand=pet.owner`, [`MAX_EXPAND_DEPTH`] deep): one read per
    /// relation and level, whatever the page size. Targets are read
    /// within their own owner scope at every hop: private rows of others
    /// never appear. Bounded twice: [`MAX_EXPANDED`] per record and
    /// relation (a record with more gets `_links.<relation>`, its full
    /// collection), and [`MAX_EMBEDDED`] per response, every level
    /// counted (past it, 400).
    pub(super) async fn expand(
        &self,
        cx: &Ctx,
        q: &CollectionQuery,
        records: &mut [Record],
    ) -> Result<(), ApiError> {
        if q.expand.is_empty() {
            return Ok(());
        }
        let mut embeds = Vec::with_capacity(q.expand.len());
        for e in &q.expand {
            let link = &self.links[e.relation];
            embeds.push(Embed {
                link,
                fields: e.fields.as_deref(),
                nested: resolve(&link.links, &e.nested, &link.name)?,
            });
        }
        let mut budget = Budget::default();
        self.embed(cx, &self.resource, &embeds, records, &mut budget, true)
            .await
    }

    /// Embeds `embeds` in `records` of `owner` (this resource at the
    /// top, a target further down).
    fn embed<'a>(
        &'a self,
        cx: &'a Ctx,
        owner: &'a Resource,
        embeds: &'a [Embed<'a>],
        records: &'a mut [Record],
        budget: &'a mut Budget,
        top: bool,
    ) -> futures_util::future::BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            for e in embeds {
                self.embed_one(cx, owner, e, records, budget, top).await?;
            }
            Ok(())
        })
    }

    async fn embed_one(
        &self,
        cx: &Ctx,
        owner: &Resource,
        e: &Embed<'_>,
        records: &mut [Record],
        budget: &mut Budget,
        top: bool,
    ) -> Result<(), ApiError> {
        let link = e.link;
        let t = &link.target.resource;
        // An embedded record is read as a GET of it would be: the caller
        // needs the target's read scope, or a public resource would hand
        // out a protected one's records.
        crate::auth::scopes::authorize(
            &t.scopes.read,
            cx.identity.as_ref(),
            &crate::auth::default_credentials(true),
        )
        .map_err(|mut e| {
            e.detail = format!("Embedding '{}': {}", link.name, e.detail).into();
            e.dev_message = e.detail.clone();
            e
        })?;
        let shown: Vec<usize> = match e.fields {
            None => link.target.list_fields.clone(),
            Some(names) => names
                .iter()
                .map(|n| {
                    t.field_index(n)
                        .filter(|i| link.target.list_fields.contains(i))
                        .ok_or_else(|| {
                            ApiError::from(QueryError::UnknownField {
                                param: "fields".into(),
                                field: format!("{}.{n}", link.name),
                            })
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        // Each column once, however often it was named.
        let mut seen = HashSet::new();
        let shown: Vec<usize> = shown.into_iter().filter(|i| seen.insert(*i)).collect();
        let (mine, theirs) = match link.kind {
            RelationKind::HasMany => (owner.primary_key, link.key),
            RelationKind::BelongsTo => (link.key, t.primary_key),
        };
        // Read also the key each row is grouped by, and the keys the
        // next level joins on; strip them after, unless shown.
        let mut select = shown.clone();
        let mut need = |i: usize| {
            if !select.contains(&i) {
                select.push(i);
            }
        };
        need(theirs);
        for n in &e.nested {
            need(match n.link.kind {
                RelationKind::HasMany => t.primary_key,
                RelationKind::BelongsTo => n.link.key,
            });
        }
        let user = cx.identity.as_ref().and_then(|i| i.user_id);
        let Some(scope) = read_scope(&link.target.chain, user) else {
            // A private owner somewhere up the chain, and no user.
            for rec in records.iter_mut() {
                rec.insert(link.name.clone(), empty(link.kind));
            }
            return Ok(());
        };
        let mine_name = &owner.fields[mine].name;
        let mut distinct = HashSet::new();
        let keys: Vec<Value> = records
            .iter()
            .filter_map(|rec| rec.get(mine_name).filter(|v| !v.is_null()))
            .filter(|v| distinct.insert(v.to_string()))
            .cloned()
            .collect();
        let too_many = |n: u64| {
            ApiError::bad_query(format!(
                "This page would embed more than {MAX_EMBEDDED} related records \
                 (expand={}); lower `limit`.",
                link.name
            ))
            .dev(format!(
                "{n} or more records to embed; at most {MAX_EMBEDDED} per response."
            ))
        };
        let mut rows = if keys.is_empty() {
            Vec::new()
        } else {
            // One row past the bound per key tells whether a record has
            // more; the total read is capped too, so a refused page costs
            // at most what an accepted one does.
            let per_key = (link.kind == RelationKind::HasMany).then_some(MAX_EXPANDED + 1);
            let room = MAX_EMBEDDED.saturating_sub(budget.records);
            let cap = room
                + 1
                + if per_key.is_some() {
                    keys.len() as u64
                } else {
                    0
                };
            let rows = cx
                .store
                .fetch_by_keys(t, &select, theirs, &keys, &scope, per_key, cap)
                .await?;
            // Each key adds at most one row it does not embed, so a read
            // cut at `cap` embeds more than the budget.
            if rows.len() as u64 >= cap {
                return Err(too_many(
                    budget.records + rows.len() as u64 - keys.len() as u64,
                ));
            }
            rows
        };
        budget.bytes += rows.iter().map(stored_size).sum::<usize>();
        if budget.bytes > MAX_EMBEDDED_BYTES {
            return Err(ApiError::bad_query(format!(
                "This page would embed more than 1 MiB of related records (expand={}); \
                 lower `limit`, or choose their fields (fields={}.id).",
                link.name, link.name
            )));
        }
        if !e.nested.is_empty() {
            self.embed(cx, t, &e.nested, &mut rows, budget, false)
                .await?;
        }
        // Group once by key: linear in records + rows.
        let theirs_name = &t.fields[theirs].name;
        let extra: Vec<&str> = select[shown.len()..]
            .iter()
            .map(|i| t.fields[*i].name.as_str())
            .collect();
        let mut by_key: HashMap<String, Vec<Value>> = HashMap::with_capacity(keys.len());
        for mut row in rows {
            let Some(k) = row.get(theirs_name).map(Value::to_string) else {
                continue;
            };
            for name in &extra {
                row.shift_remove(*name);
            }
            by_key.entry(k).or_default().push(Value::Object(row));
        }
        for rec in records.iter_mut() {
            let key = rec
                .get(mine_name)
                .filter(|v| !v.is_null())
                .map(Value::to_string);
            let mut matching = match (key, link.kind) {
                // Each record has its own children: move them.
                (Some(k), RelationKind::HasMany) => by_key.remove(&k),
                // Several records may share one parent: copy it.
                (Some(k), RelationKind::BelongsTo) => by_key.get(&k).cloned(),
                (None, _) => None,
            }
            .unwrap_or_default();
            let v = match link.kind {
                RelationKind::HasMany => {
                    if matching.len() as u64 > MAX_EXPANDED {
                        matching.truncate(MAX_EXPANDED as usize);
                        let base = top.then(|| self.collection_url(cx));
                        link_rest(cx, owner, base, rec, link);
                    }
                    budget.records += matching.len() as u64;
                    Value::Array(matching)
                }
                RelationKind::BelongsTo => {
                    let parent = matching.into_iter().next().unwrap_or(Value::Null);
                    budget.records += u64::from(!parent.is_null());
                    parent
                }
            };
            rec.insert(link.name.clone(), v);
        }
        if budget.records > MAX_EMBEDDED {
            return Err(too_many(budget.records));
        }
        Ok(())
    }
}

/// Points a record of `owner` whose has-many expansion was cut at
/// [`MAX_EXPANDED`] to all of it: `_links.<relation>.href` is the
/// target's collection under this record when it is nested here (and
/// `base`, the record's own collection URL, is known: the top level),
/// else the target's collection filtered by the foreign key (`null` when
/// neither can be addressed: the cut is still shown). `add_links` keeps
/// it.
fn link_rest(cx: &Ctx, owner: &Resource, base: Option<String>, rec: &mut Record, link: &Link) {
    let Some(id) = rec.get(&owner.pk().name).map(Value::to_string) else {
        return;
    };
    let target = &link.target;
    let nested_here = target
        .resource
        .parent
        .as_ref()
        .is_some_and(|p| p.resource == owner.name && p.field == link.key);
    let href = match base {
        Some(base) if nested_here => Value::from(format!("{base}/{id}/{}", target.resource.name)),
        _ if !target.collection_path.contains('{') && target.filterable.contains(&link.key) => {
            Value::from(format!(
                "{}{}?filter[{}]={id}",
                cx.base_url, target.collection_path, target.resource.fields[link.key].name
            ))
        }
        _ => Value::Null,
    };
    let links = rec
        .entry("_links")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(links) = links {
        links.insert(link.name.clone(), serde_json::json!({ "href": href }));
    }
}

/// About how many bytes a record holds: its text as stored, and 8 for
/// any other value.
pub(super) fn stored_size(rec: &Record) -> usize {
    rec.values()
        .map(|v| match v {
            Value::String(s) => s.len(),
            _ => 8,
        })
        .sum()
}

pub(super) fn empty(kind: RelationKind) -> Value {
    match kind {
        RelationKind::HasMany => Value::Array(Vec::new()),
        RelationKind::BelongsTo => Value::Null,
    }
}
