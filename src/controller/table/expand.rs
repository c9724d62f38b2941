//! Expansion (§6.4): related records embedded in each record, bounded.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::access::read_scope;
use super::TableController;
use crate::controller::Ctx;
use crate::error::ApiError;
use crate::model::plan::ResourcePlan;
use crate::model::RelationKind;
use crate::query::{CollectionQuery, QueryError};
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

/// A relation resolved against its target at start-up.
pub(super) struct Link {
    pub(super) name: String,
    pub(super) kind: RelationKind,
    /// The target's plan: its readable fields and parent chain.
    pub(super) target: ResourcePlan,
    /// Has-many: the target's foreign key; belongs-to: this resource's.
    pub(super) key: usize,
}

impl TableController {
    /// Embeds the requested relations (§6.4). Targets are read within
    /// their own owner scope: private rows of others never appear. Bounded
    /// twice: [`MAX_EXPANDED`] per record and relation (a record with more
    /// gets `_links.<relation>`, its full collection), and
    /// [`MAX_EMBEDDED`] per response (past it, 400).
    pub(super) async fn expand(
        &self,
        cx: &Ctx,
        q: &CollectionQuery,
        records: &mut [Record],
    ) -> Result<(), ApiError> {
        let r = &self.resource;
        let mut embedded = 0u64;
        let mut embedded_bytes = 0usize;
        for e in &q.expand {
            let link = &self.links[e.relation];
            let t = &link.target.resource;
            let shown: Vec<usize> = match &e.fields {
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
            let (mine, theirs) = match link.kind {
                RelationKind::HasMany => (r.primary_key, link.key),
                RelationKind::BelongsTo => (link.key, t.primary_key),
            };
            let mut select = shown.clone();
            if !select.contains(&theirs) {
                select.push(theirs);
            }
            let user = cx.identity.as_ref().and_then(|i| i.user_id);
            let Some(scope) = read_scope(&link.target.chain, user) else {
                // A private owner somewhere up the chain, and no user.
                for rec in records.iter_mut() {
                    rec.insert(link.name.clone(), empty(link.kind));
                }
                continue;
            };
            let mine_name = &r.fields[mine].name;
            let mut distinct = HashSet::new();
            let keys: Vec<Value> = records
                .iter()
                .filter_map(|rec| rec.get(mine_name).filter(|v| !v.is_null()))
                .filter(|v| distinct.insert(v.to_string()))
                .cloned()
                .collect();
            // One row past the bound per key tells whether a record has
            // more; the total read is capped too, so a refused page costs
            // at most what an accepted one does.
            let per_key = (link.kind == RelationKind::HasMany).then_some(MAX_EXPANDED + 1);
            let budget = MAX_EMBEDDED - embedded;
            let cap = budget
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
            if rows.len() as u64 >= cap {
                return Err(too_many(embedded + rows.len() as u64 - keys.len() as u64));
            }
            embedded_bytes += rows.iter().map(stored_size).sum::<usize>();
            if embedded_bytes > MAX_EMBEDDED_BYTES {
                return Err(ApiError::bad_query(format!(
                    "This page would embed more than 1 MiB of related records (expand={}); \
                     lower `limit`, or choose their fields (fields={}.id).",
                    link.name, link.name
                )));
            }
            // Group once by key: linear in records + rows.
            let theirs_name = &t.fields[theirs].name;
            let strip = !shown.contains(&theirs);
            let mut by_key: HashMap<String, Vec<Value>> = HashMap::with_capacity(keys.len());
            for mut row in rows {
                let Some(k) = row.get(theirs_name).map(Value::to_string) else {
                    continue;
                };
                if strip {
                    row.shift_remove(theirs_name);
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
                            self.link_rest(cx, rec, link);
                        }
                        embedded += matching.len() as u64;
                        Value::Array(matching)
                    }
                    RelationKind::BelongsTo => {
                        let parent = matching.into_iter().next().unwrap_or(Value::Null);
                        embedded += u64::from(!parent.is_null());
                        parent
                    }
                };
                rec.insert(link.name.clone(), v);
            }
            if embedded > MAX_EMBEDDED {
                return Err(too_many(embedded));
            }
        }
        Ok(())
    }

    /// Points a record whose has-many expansion was cut at
    /// [`MAX_EXPANDED`] to all of it: `_links.<relation>.href` is the
    /// target's collection under this record when it is nested here, else
    /// the target's collection filtered by the foreign key (`null` when
    /// neither can be addressed: the cut is still shown).
    /// [`Self::add_links`] keeps it.
    pub(super) fn link_rest(&self, cx: &Ctx, rec: &mut Record, link: &Link) {
        let Some(id) = rec.get(&self.resource.pk().name).map(Value::to_string) else {
            return;
        };
        let target = &link.target;
        let nested_here = target
            .resource
            .parent
            .as_ref()
            .is_some_and(|p| p.resource == self.resource.name && p.field == link.key);
        let href = if nested_here {
            Value::from(format!(
                "{}/{id}/{}",
                self.collection_url(cx),
                target.resource.name
            ))
        } else if !target.collection_path.contains('{') && target.filterable.contains(&link.key) {
            Value::from(format!(
                "{}{}?filter[{}]={id}",
                cx.base_url, target.collection_path, target.resource.fields[link.key].name
            ))
        } else {
            Value::Null
        };
        let links = rec
            .entry("_links")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(links) = links {
            links.insert(link.name.clone(), serde_json::json!({ "href": href }));
        }
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
