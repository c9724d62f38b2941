//! Live changes (§16): the sync feed (§6.7) read as a sequence of
//! created, updated and deleted events, each at its own position.
//!
//! A read after position P takes, in one statement and one snapshot, the
//! records the caller's list shows that changed after P, ordered by
//! (change time, key), and the mark (nothing the caller may read changed
//! later than it without being in the snapshot, see
//! `sql::select_list_with_mark`); then, in a second statement, the
//! caller's tombstones between P and where the records end — complete,
//! because that end is never past the mark, and the mark never past the
//! clock (SQLite) or the horizon (PostgreSQL): nothing can still commit
//! a deletion at or before it. Both merge in position order, so resuming
//! at the position of any event sent gives exactly the events after it:
//! none lost, none twice.

use serde_json::Value;

use super::{parse_id, TableController};
use crate::controller::{Change, ChangeKind, Changes, Ctx, Operation};
use crate::error::ApiError;
use crate::query::{format_position, position_order, CollectionQuery};
use crate::store::{ListQuery, Record, Selection, TombstoneScope};

/// A position a read goes up to: (time, key), or the whole of `time`.
type Bound = (String, Option<i64>);

/// Is position `p` past `bound`?
fn after_bound(p: &(String, i64), bound: &Bound) -> bool {
    match bound.1 {
        Some(k) => (p.0.as_str(), p.1) > (bound.0.as_str(), k),
        None => p.0 > bound.0,
    }
}

/// Is `made` (a `time~key` position) after sync position `from`?
fn made_after(made: &str, from: &crate::store::Since<'_>) -> bool {
    position_order(made) > (from.time, from.key.unwrap_or(i64::MAX))
}

/// Parameters that mean nothing to a feed, which is ordered by change and
/// has no pages: refused rather than silently ignored.
const NOT_IN_A_FEED: &[&str] = &[
    "sort",
    "cursor",
    "page",
    "per-page",
    "limit",
    "offset",
    "sync_mark",
    "all",
];

impl TableController {
    /// See [`crate::controller::Controller::changes`].
    pub(super) async fn read_changes(
        &self,
        cx: &Ctx,
        id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Changes, ApiError> {
        let r = &self.resource;
        if let Some((k, _)) = cx
            .query
            .iter()
            .find(|(k, _)| NOT_IN_A_FEED.contains(&k.as_str()))
        {
            return Err(ApiError::bad_query(format!(
                "'{k}' means nothing to a live feed, which is ordered by change and has no pages."
            )));
        }
        let Some(updated) = r
            .fields
            .iter()
            .position(|f| f.updated_at)
            .filter(|_| r.sync)
        else {
            return Err(ApiError::new(
                http::StatusCode::NOT_ACCEPTABLE,
                "NOT_ACCEPTABLE",
                "This resource keeps no change times (sync is off): it cannot be followed live \
                 (text/event-stream).",
            ));
        };
        // The position travels as `timestamp`, parsed as a sync read's.
        let mut query: Vec<(String, String)> = cx
            .query
            .iter()
            .filter(|(k, _)| k != "timestamp")
            .cloned()
            .collect();
        if let Some(p) = after {
            query.push(("timestamp".into(), p.to_string()));
        }
        let (policy, default_fields) = match id {
            Some(_) => (&self.view_policy, &self.plan.view_fields),
            None => (&self.policy, &self.plan.list_fields),
        };
        let q = CollectionQuery::parse(&query, r, policy, None)?;
        let op = if id.is_some() {
            Operation::Fetch
        } else {
            Operation::Find
        };
        let mut scope = self.scope(cx, op).await?;
        let key = match id {
            Some(id) => {
                let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
                scope.equal.push((r.primary_key, Value::from(n)));
                Some(n)
            }
            None => None,
        };
        // A record's feed reads that record's tombstones only.
        let tombstones = TombstoneScope {
            record: key,
            ..self.tombstone_scope(&scope)
        };
        let shown = q.fields.clone().unwrap_or_else(|| default_fields.clone());
        let created = r.fields.iter().position(|f| f.created_at);
        let select = self.columns(&shown, std::iter::once(updated).chain(created), &q);
        let since = self.since_of(&q);
        let Some(since) = since else {
            // From now: the mark alone (a one-row read of the newest).
            let now = self.mark(cx, &q, &scope, tombstones, updated).await?;
            return Ok(Changes {
                changes: Vec::new(),
                reached: now.clone(),
                position: now,
                more: false,
            });
        };
        let list = ListQuery {
            fields: &select,
            selection: Selection {
                scope: &scope,
                filter: q.filter.as_ref(),
                since: Some(since.as_since()),
            },
            sort: vec![crate::query::SortKey {
                field: updated,
                descending: false,
            }],
            after: None,
            limit: limit + 1,
            offset: 0,
        };
        let (mark, mut records) = cx.store.list_with_mark(r, &list, tombstones).await?;
        let mut more = records.len() as u64 > limit;
        records.truncate(limit as usize);
        let at = |rec: &Record| -> Option<(String, i64)> {
            let time = rec.get(&r.fields[updated].name)?.as_str()?.to_string();
            Some((time, rec.get(&r.pk().name)?.as_i64()?))
        };
        // Where this read ends: the last record when more wait, else the
        // mark (everything up to it is in the snapshot).
        let mut upto: Bound = match records.last().and_then(at) {
            Some((t, k)) if more => (t, Some(k)),
            _ => (mark, None),
        };
        let from = since.as_since();
        let mut deleted = cx
            .store
            .deleted_between(
                r,
                (from.time, from.key),
                (&upto.0, upto.1),
                limit + 1,
                tombstones,
            )
            .await?;
        super::read::kept_since(cx, from.time, from.key).await?;
        // More deletions than one read takes: it ends at the last kept.
        if deleted.len() as u64 > limit {
            deleted.truncate(limit as usize);
            if let Some((id, t)) = deleted.last() {
                upto = (t.clone(), Some(*id));
            }
            more = true;
        }
        // Merge in position order, at most `limit` in all.
        let mut order: Vec<((String, i64), Option<usize>)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, rec)| at(rec).map(|p| (p, Some(i))))
            .chain(deleted.iter().map(|(id, t)| ((t.clone(), *id), None)))
            .filter(|(p, _)| !after_bound(p, &upto))
            .collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        if order.len() as u64 > limit {
            order.truncate(limit as usize);
            if let Some(((t, k), _)) = order.last() {
                upto = (t.clone(), Some(*k));
            }
            more = true;
        }
        // Records past the end wait for the next read (they are a suffix:
        // records come in position order).
        records.retain(|rec| at(rec).is_some_and(|p| !after_bound(&p, &upto)));
        let positions: Vec<Option<(String, i64)>> = records.iter().map(at).collect();
        // Where each record was made: (creation time, key) as a position.
        let made: Vec<Option<String>> = records
            .iter()
            .zip(&positions)
            .map(|(rec, p)| {
                let (c, (_, k)) = (created?, p.as_ref()?);
                let made = rec.get(&r.fields[c].name).and_then(Value::as_str)?;
                Some(format_position(made, Some(*k)))
            })
            .collect();
        self.expand(cx, &q, &mut records).await?;
        self.add_links(cx, &mut records);
        self.strip(&mut records, &select, shown.len());
        let mut by_index: Vec<Option<Record>> = records.into_iter().map(Some).collect();
        let mut changes = Vec::with_capacity(order.len());
        for ((time, k), index) in order {
            let position = format_position(&time, Some(k));
            match index {
                Some(i) if i < by_index.len() => {
                    let Some(rec) = by_index[i].take() else {
                        continue;
                    };
                    let made = made[i].clone();
                    // Made after the position: news to the follower.
                    let news = made.as_deref().is_some_and(|m| made_after(m, &from));
                    changes.push(Change {
                        kind: if news {
                            ChangeKind::Created
                        } else {
                            ChangeKind::Updated
                        },
                        position,
                        data: Value::Object(rec),
                        made,
                    });
                }
                Some(_) => {}
                None => changes.push(Change {
                    kind: ChangeKind::Deleted,
                    position,
                    data: serde_json::json!({ r.pk().name.clone(): k }),
                    made: None,
                }),
            }
        }
        // Never behind where the caller said it stands (a position later
        // than anything it may see stays as it is).
        let start: Bound = (from.time.to_string(), from.key);
        let reached = format_position(&upto.0, upto.1);
        let (t, k) = if after_bound(&(upto.0.clone(), upto.1.unwrap_or(i64::MAX)), &start) {
            upto
        } else {
            start
        };
        let position = format_position(&t, k);
        Ok(Changes {
            changes,
            position,
            more,
            reached,
        })
    }

    /// The caller's mark now: a position at which to start following.
    async fn mark(
        &self,
        cx: &Ctx,
        q: &CollectionQuery,
        scope: &crate::store::Scope,
        tombstones: TombstoneScope,
        updated: usize,
    ) -> Result<String, ApiError> {
        let r = &self.resource;
        let fields = [r.primary_key];
        let list = ListQuery {
            fields: &fields,
            selection: Selection {
                scope,
                filter: q.filter.as_ref(),
                since: None,
            },
            sort: vec![crate::query::SortKey {
                field: updated,
                descending: true,
            }],
            after: None,
            limit: 1,
            offset: 0,
        };
        let (mark, _) = cx.store.list_with_mark(r, &list, tombstones).await?;
        Ok(mark)
    }
}
