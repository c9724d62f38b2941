//! Reading (§6): one record, pages by offset or cursor, counts, sync
//! feeds and tombstones, links.

use serde_json::Value;

use super::{parse_id, TableController};
use crate::controller::{Ctx, Operation, Page, Reply, SyncInfo};
use crate::error::ApiError;
use crate::model::RelationKind;
use crate::query::{count_preference, CollectionQuery, CountMode, Position, QueryError};
use crate::store::{
    sql, Count, ListQuery, Record, Scope, Selection, Since, StoreError, TombstoneScope,
};

/// About the most tombstones reported in one `_meta.deleted`: past it the
/// list is cut after a whole group of equal deletion times, and
/// `X-Sync-Timestamp` says to continue from the cut (never silently
/// capped).
pub(super) const MAX_TOMBSTONES: u64 = 10_000;

/// A request's sync position in stored form (see [`Since`]).
pub(super) struct SincePos {
    field: usize,
    time: String,
    key: Option<i64>,
}

impl SincePos {
    pub(super) fn as_since(&self) -> Since<'_> {
        Since {
            field: self.field,
            time: &self.time,
            key: self.key,
        }
    }
}

/// What a sync page read tells [`TableController::sync_info`].
pub(super) struct SyncPage {
    /// The mark read with the page.
    mark: String,
    has_more: bool,
    /// A feed: `timestamp=` without `sort`, ordered by change time and key.
    feed: bool,
    /// A feed's last record's position.
    last_position: Option<String>,
}

impl TableController {
    pub(super) async fn list(&self, cx: &Ctx) -> Result<Reply, ApiError> {
        let q = CollectionQuery::parse(
            &cx.query,
            &self.resource,
            &self.policy,
            count_preference(&cx.headers),
        )?;
        let scope = self.scope(cx, Operation::Find).await?;
        self.read_page(cx, &q, &scope).await
    }

    pub(super) async fn read_one(&self, cx: &Ctx, id: &str) -> Result<Reply, ApiError> {
        let scope = self.scope(cx, Operation::Fetch).await?;
        let n = parse_id(id).ok_or_else(|| self.not_found(id))?;
        // `fields` and `expand` apply to one record as to a collection.
        let shaped = cx.query.iter().any(|(k, _)| k == "fields" || k == "expand");
        if !shaped {
            let rec = cx
                .store
                .fetch(&self.resource, &self.plan.view_fields, n, &scope)
                .await?
                .ok_or_else(|| self.not_found(id))?;
            return Ok(self.dated(self.record_reply(cx, rec)));
        }
        let q = CollectionQuery::parse(&cx.query, &self.resource, &self.view_policy, None)?;
        let shown = q
            .fields
            .clone()
            .unwrap_or_else(|| self.plan.view_fields.clone());
        let select = self.columns(&shown, [], &q);
        let rec = cx
            .store
            .fetch(&self.resource, &select, n, &scope)
            .await?
            .ok_or_else(|| self.not_found(id))?;
        let mut records = [rec];
        self.expand(cx, &q, &mut records).await?;
        self.add_links(cx, &mut records);
        self.strip(&mut records, &select, shown.len());
        let [rec] = records;
        Ok(self.dated(self.record_reply(cx, rec)))
    }

    pub(super) fn record_reply(&self, cx: &Ctx, rec: Record) -> Reply {
        let mut one = [rec];
        self.add_links(cx, &mut one);
        let [rec] = one;
        Reply::Record(rec)
    }

    /// A record reply with its change time, when the resource keeps one and
    /// the record shows it (§5.6 `Last-Modified`).
    pub(super) fn dated(&self, reply: Reply) -> Reply {
        let Reply::Record(record) = reply else {
            return reply;
        };
        let modified = self
            .resource
            .updated_at()
            .and_then(|f| record.get(&f.name))
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc());
        match modified {
            Some(modified) => Reply::Dated { record, modified },
            None => Reply::Record(record),
        }
    }

    /// The collection's path with this request's parent ids filled in.
    pub(super) fn collection_url(&self, cx: &Ctx) -> String {
        let mut path = self.plan.collection_path.clone();
        for (name, value) in &cx.params {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        format!("{}{path}", cx.base_url)
    }

    /// HATEOAS (§5.5): `_links.self`, and `parent` for nested resources.
    pub(super) fn add_links(&self, cx: &Ctx, records: &mut [Record]) {
        if !self.resource.links {
            return;
        }
        let base = self.collection_url(cx);
        let pk = &self.resource.pk().name;
        let parent = base.rsplit_once('/').map(|(p, _)| p.to_string());
        for rec in records {
            let Some(id) = rec.get(pk).map(|v| v.to_string()) else {
                continue;
            };
            let mut links = serde_json::Map::new();
            links.insert(
                "self".into(),
                serde_json::json!({"href": format!("{base}/{id}")}),
            );
            if let (Some(_), Some(p)) = (&self.resource.parent, &parent) {
                links.insert("parent".into(), serde_json::json!({"href": p}));
            }
            // Links an expansion left (`link_rest`) follow these.
            if let Some(Value::Object(rest)) = rec.shift_remove("_links") {
                links.extend(rest);
            }
            rec.insert("_links".into(), Value::Object(links));
        }
    }

    /// The columns a read takes: those `shown`, then the key, `extra`,
    /// and the keys `q`'s expansions follow — the others stripped again
    /// by [`Self::strip`] before the records leave.
    pub(super) fn columns(
        &self,
        shown: &[usize],
        extra: impl IntoIterator<Item = usize>,
        q: &CollectionQuery,
    ) -> Vec<usize> {
        let r = &self.resource;
        let belongs_to = q
            .expand
            .iter()
            .map(|e| &self.links[e.relation])
            .filter(|l| l.kind == RelationKind::BelongsTo)
            .map(|l| l.key);
        let mut select = shown.to_vec();
        for i in std::iter::once(r.primary_key)
            .chain(extra)
            .chain(belongs_to)
        {
            if !select.contains(&i) {
                select.push(i);
            }
        }
        select
    }

    /// Removes from `records` the columns of `select` past the first
    /// `shown` (read for the server's own use).
    pub(super) fn strip(&self, records: &mut [Record], select: &[usize], shown: usize) {
        for rec in records {
            for i in &select[shown..] {
                rec.shift_remove(&self.resource.fields[*i].name);
            }
        }
    }

    /// The request's sync position (`timestamp=`), in stored form.
    pub(super) fn since_of(&self, q: &CollectionQuery) -> Option<SincePos> {
        let field = self.resource.fields.iter().position(|f| f.updated_at)?;
        q.since.map(|t| SincePos {
            field,
            time: crate::model::value::format_datetime(t),
            key: q.since_key,
        })
    }

    /// Whose tombstones a read within `scope` may see: its owner and
    /// parent keys.
    pub(super) fn tombstone_scope(&self, scope: &Scope) -> TombstoneScope {
        let key_of = |field: Option<usize>| {
            field.and_then(|f| {
                scope
                    .equal
                    .iter()
                    .find(|(i, _)| *i == f)
                    .and_then(|(_, v)| v.as_i64())
            })
        };
        TombstoneScope {
            owner: key_of(self.resource.owner.as_ref().map(|o| o.field)),
            parent: key_of(self.resource.parent.as_ref().map(|p| p.field)),
            record: None,
        }
    }

    /// Reads one page of the collection as `q` asks.
    ///
    /// A sync read (`timestamp=`) without `sort` is a feed: ordered by
    /// change time, then key, so that the position of its last record is
    /// a place to continue from (see [`Self::sync_info`]).
    pub(super) async fn read_page(
        &self,
        cx: &Ctx,
        q: &CollectionQuery,
        scope: &Scope,
    ) -> Result<Reply, ApiError> {
        let r = &self.resource;
        let shown: Vec<usize> = q
            .fields
            .clone()
            .unwrap_or_else(|| self.plan.list_fields.clone());
        let since = self.since_of(q);
        let feed = match &since {
            Some(s) if q.sort.is_empty() => Some(s.field),
            _ => None,
        };
        let sort = match feed {
            Some(updated) => vec![crate::query::SortKey {
                field: updated,
                descending: false,
            }],
            None => q.sort.clone(),
        };
        let order = sql::full_order(r, &sort);
        // Also read what expansion, cursors and positions need; strip it
        // afterwards.
        let cursor = matches!(q.position, Position::Cursor { .. });
        let cursor_keys = order.iter().filter(|_| cursor).map(|k| k.field);
        let select = self.columns(&shown, feed.into_iter().chain(cursor_keys), q);
        let after = match (&q.position, cx.query_param("cursor")) {
            (Position::Cursor { .. }, Some(token)) if !token.is_empty() => {
                let keys = self
                    .cursor_key
                    .open(token, &self.plan.collection_path, &q.signature)?;
                if keys.len() != order.len() {
                    return Err(QueryError::BadCursor("it does not fit this sort".into()).into());
                }
                Some(keys)
            }
            _ => None,
        };
        let selection = Selection {
            scope,
            filter: q.filter.as_ref(),
            since: since.as_ref().map(SincePos::as_since),
        };
        let limit = q.position.limit();
        let offset = match q.position {
            Position::Offset(p) => p.offset,
            Position::Cursor { .. } => 0,
        };
        // Sync pages must know for certain whether more remain.
        let probe = cursor || q.count == CountMode::None || r.sync;
        let list = ListQuery {
            fields: &select,
            selection,
            sort,
            after: after.as_deref(),
            limit: if probe { limit + 1 } else { limit },
            offset,
        };
        let count = async {
            match q.count {
                CountMode::Exact => cx
                    .store
                    .count(r, &selection)
                    .await
                    .map(|n| Some(Count::Exact(n))),
                CountMode::Estimated => cx.store.estimate(r, &selection).await.map(Some),
                CountMode::None => Ok(None),
            }
        };
        // A sync resource reads its mark with the page, in one statement
        // and one snapshot: any change the page does not show is later.
        let tombstones = self.tombstone_scope(scope);
        let page = async {
            if r.sync {
                let (mark, records) = cx.store.list_with_mark(r, &list, tombstones).await?;
                Ok::<_, StoreError>((Some(mark), records))
            } else {
                Ok((None, cx.store.list(r, &list).await?))
            }
        };
        let ((mark, mut records), total) = tokio::try_join!(page, count)?;
        let has_more = probe && records.len() as u64 > limit;
        records.truncate(limit as usize);
        let next_cursor = match (cursor, has_more, records.last()) {
            (true, true, Some(last)) => Some(
                self.cursor_key.issue(
                    &self.plan.collection_path,
                    &q.signature,
                    order
                        .iter()
                        .map(|k| {
                            last.get(&r.fields[k.field].name)
                                .cloned()
                                .unwrap_or(Value::Null)
                        })
                        .collect(),
                ),
            ),
            _ => None,
        };
        // The feed position of the last record: its change time and key.
        let last_position = feed.zip(records.last()).and_then(|(updated, last)| {
            let time = last.get(&r.fields[updated].name)?.as_str()?;
            let key = last.get(&r.pk().name)?.as_i64()?;
            Some(crate::query::format_position(time, Some(key)))
        });
        self.expand(cx, q, &mut records).await?;
        self.add_links(cx, &mut records);
        self.strip(&mut records, &select, shown.len());
        let sync = match mark {
            Some(mark) => Some(
                self.sync_info(
                    cx,
                    q,
                    scope,
                    since.as_ref(),
                    SyncPage {
                        mark,
                        has_more,
                        feed: feed.is_some(),
                        last_position,
                    },
                )
                .await?,
            ),
            None => None,
        };
        Ok(Reply::Collection {
            records,
            page: Page {
                total: total.map(Count::value),
                count_applied: q.count_requested.then(|| match total {
                    Some(Count::Estimated(_)) => "estimated",
                    Some(Count::Exact(_)) if q.count == CountMode::Estimated => "estimated",
                    Some(Count::Exact(_)) => "exact",
                    None => "none",
                }),
                per_page: limit,
                offset: (!cursor).then_some(offset),
                next_cursor,
                has_more,
                sync,
            },
        })
    }

    /// What a sync page tells the client (§6.7): the tombstones after its
    /// `timestamp`, and the `timestamp` to use next, chosen so that no
    /// change is ever skipped however the client pages — following `next`
    /// links, or passing each `X-Sync-Timestamp` back. Call the request's
    /// position T and the mark read with this page M (the latest change
    /// among the rows and tombstones the caller may read, never the
    /// database's clock: positions reveal nothing of other owners' writes).
    ///
    /// A feed (`timestamp=` without `sort`) is ordered by (change time,
    /// key), so on a page that starts at T — the first offset page, or any
    /// cursor page — everything up to its last record has been shown:
    /// - more pages remain: the last record's position `time~key` (ties at
    ///   one time continue at the next key), which the `next` link also
    ///   carries as its `timestamp`;
    /// - the last page: M.
    ///
    /// A feed page further in by offset may have been shifted past a row
    /// that changed meanwhile, so it answers T.
    ///
    /// Any other sync read (a `sort`, or no `timestamp`):
    /// - more pages remain: T (the client has not seen everything after T;
    ///   one that follows this header instead of the `next` link re-reads,
    ///   it never skips);
    /// - a single page (the first, and the last): M;
    /// - the last page of a longer traversal: the mark of its first page,
    ///   M1, which restkit's links carry as `sync_mark`. Keyset (cursor)
    ///   pages cannot skip a row, so M1 holds. Offset pages can: a row
    ///   deleted or moved under the reader shifts the next page past a row
    ///   it never sent. So with offsets, M1 holds only if nothing the
    ///   caller may read changed since M1; otherwise, and when the
    ///   traversal's first mark is unknown (URLs built by hand), T: the
    ///   client reads again from where it started (duplicates are allowed,
    ///   misses are not).
    ///
    /// Never later than where a long tombstone list was cut.
    pub(super) async fn sync_info(
        &self,
        cx: &Ctx,
        q: &CollectionQuery,
        scope: &Scope,
        since: Option<&SincePos>,
        page: SyncPage,
    ) -> Result<SyncInfo, ApiError> {
        let SyncPage {
            mark,
            has_more,
            feed,
            last_position,
        } = page;
        let from = since.map_or(crate::store::EPOCH.to_string(), |s| {
            crate::query::format_position(&s.time, s.key)
        });
        let tombstones = self.tombstone_scope(scope);
        let first_page = match q.position {
            Position::Offset(p) => p.offset == 0,
            Position::Cursor { .. } => cx.query_param("cursor").is_none_or(str::is_empty),
        };
        let from_start = first_page || matches!(q.position, Position::Cursor { .. });
        let (mut next, mut next_position, carried_mark) = if feed {
            match (from_start, has_more) {
                (true, true) => match last_position {
                    Some(at) => {
                        let link = matches!(q.position, Position::Offset(_)).then(|| at.clone());
                        (at, link, None)
                    }
                    // A change time restkit cannot read back (written by
                    // another program): stay, and page by offset.
                    None => (from.clone(), None, None),
                },
                (true, false) => (mark, None, None),
                (false, _) => (from.clone(), None, None),
            }
        } else {
            let carried = q.sync_mark.map(crate::model::value::format_datetime);
            let first_mark = match (&carried, first_page) {
                (Some(m1), false) => m1.clone().min(mark.clone()),
                _ => mark.clone(),
            };
            let next = if has_more {
                from.clone()
            } else if first_page {
                mark
            } else {
                match (carried, &q.position) {
                    (Some(_), Position::Cursor { .. }) => first_mark.clone(),
                    (Some(_), Position::Offset(_)) => {
                        let changed = cx
                            .store
                            .changed_since(&self.resource, &first_mark, scope, tombstones)
                            .await?;
                        if changed {
                            from.clone()
                        } else {
                            first_mark.clone()
                        }
                    }
                    (None, _) => from.clone(),
                }
            };
            (next, None, Some(first_mark))
        };
        let deleted = match since {
            Some(s) => {
                let d = cx
                    .store
                    .deleted_since(&self.resource, &s.time, MAX_TOMBSTONES, tombstones)
                    .await?;
                kept_since(cx, &s.time, s.key).await?;
                if let Some(cut) = d.cut {
                    // Positions are `time[~key]`, times fixed-width: a cut
                    // earlier than a position's time comes first.
                    let before = |p: &str| cut.as_str() < p.split('~').next().unwrap_or(p);
                    if before(&next) {
                        next = cut.clone();
                    }
                    if next_position.as_deref().is_some_and(before) {
                        next_position = Some(cut);
                    }
                }
                Some(d.ids)
            }
            None => None,
        };
        Ok(SyncInfo {
            next_timestamp: next,
            deleted,
            mark: carried_mark,
            next_position,
        })
    }
}

/// Refuses a sync position from before the deletions kept
/// (`database.keep_deletions`): what was deleted since cannot be told in
/// full, so the client must read the collection again (410). Called after
/// the tombstones were read (see [`crate::store::Store::forgotten_after`]).
pub(super) async fn kept_since(cx: &Ctx, time: &str, key: Option<i64>) -> Result<(), ApiError> {
    match cx.store.forgotten_after(time, key).await? {
        None => Ok(()),
        Some(upto) => Err(ApiError::new(
            http::StatusCode::GONE,
            "SYNC_TOO_OLD",
            format!(
                "Deletions up to {upto} are no longer kept, so the changes after {time} \
                 cannot all be told: read the collection again without timestamp and \
                 continue from its X-Sync-Timestamp."
            ),
        )),
    }
}
