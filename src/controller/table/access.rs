//! Who may reach which rows (§4.2, §8.6): the scope every statement on a
//! resource carries, parents checked up the path, the owner rule.

use std::sync::Arc;

use serde_json::Value;

use super::{singular, TableController};
use crate::controller::{Ctx, Operation};
use crate::error::{ApiError, FieldError};
use crate::model::plan::ResourcePlan;
use crate::model::{Access, OnDelete, Resource};
use crate::store::{Scope, Selection, Within, WriteTx};

impl TableController {
    /// The scope every statement on this resource carries: parent keys
    /// (each ancestor checked to exist, within its own scope) and the rows
    /// the caller may read. A write needs a user wherever the owner rule
    /// confines writes (checked after the parents: a missing parent is
    /// 404 whoever asks).
    pub(super) async fn scope(&self, cx: &Ctx, op: Operation) -> Result<Scope, ApiError> {
        let mut scope = Scope::default();
        if let Some(link) = &self.resource.parent {
            let parent_id = parent_chain_id(cx, &self.plan, None).await?;
            scope = scope.and(link.field, Value::from(parent_id));
        }
        if op.is_write() {
            own_rows(&self.resource, Access::Write, cx)?;
        }
        Ok(own_rows(&self.resource, Access::Read, cx)?
            .into_iter()
            .fold(scope, |scope, (field, user)| scope.and(field, user)))
    }

    /// The rows of this resource the caller may change: those they may
    /// read, and only their own where the owner rule says so (a
    /// collection's delete).
    pub(super) async fn write_scope(&self, cx: &Ctx, op: Operation) -> Result<Scope, ApiError> {
        let scope = self.scope(cx, op).await?;
        Ok(own_rows(&self.resource, Access::Write, cx)?
            .into_iter()
            .fold(scope, |scope, (field, user)| scope.and(field, user)))
    }

    /// The caller must own record `id` where the owner rule lets them read
    /// more rows than they may change (read-all/write-own): another's is
    /// 403, not 404, since they can see it. Runs inside the write
    /// transaction, so ownership cannot change between the check and the
    /// write.
    pub(super) async fn check_owner(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        id: i64,
        scope: &Scope,
    ) -> Result<(), ApiError> {
        let r = &self.resource;
        let Some((field, user)) = own_rows(r, Access::Write, cx)? else {
            return Ok(());
        };
        if r.owner_field(Access::Read).is_some() {
            return Ok(()); // `scope` holds only the caller's rows already
        }
        let rec = tx
            .fetch(r, &[field], id, scope)
            .await?
            .ok_or_else(|| self.not_found(&id.to_string()))?;
        let owner = rec.get(&r.fields[field].name).and_then(Value::as_i64);
        if owner.is_none() || owner != user.as_i64() {
            return Err(ApiError::forbidden(
                "Only the owner may change this record.",
            ));
        }
        Ok(())
    }

    /// Re-checks, inside the write transaction that inserts, that every
    /// parent in the path still exists: one deleted since the request's
    /// scope was resolved cannot gain a child.
    pub(super) async fn confirm_parents(&self, cx: &Ctx, tx: &mut WriteTx) -> Result<(), ApiError> {
        if self.resource.parent.is_some() {
            parent_chain_id(cx, &self.plan, Some(tx)).await?;
        }
        Ok(())
    }

    /// Refuses (409) a delete of the selection's rows that would take
    /// rows owned by others with it (nested resources' rows, deleted by
    /// the cascade): a caller who may not delete someone's review may not
    /// delete it by deleting its book either. Runs in the deleting
    /// transaction.
    pub(super) async fn check_cascade(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        selection: &Selection<'_>,
    ) -> Result<(), ApiError> {
        let user = cx.identity.as_ref().and_then(|i| i.user_id);
        for path in &self.owned_below {
            let n = tx
                .count_owned_below(&self.resource, selection, path, user)
                .await?;
            if n > 0 {
                let Some((child, _)) = path.steps.last() else {
                    continue;
                };
                // Others' private rows do not exist for the caller (§8.6):
                // say neither what nor how many.
                let detail = if path.private {
                    "Records of other users depend on this one, so it cannot be deleted.".into()
                } else {
                    let what = if n == 1 {
                        singular(&child.name)
                    } else {
                        child.name.clone()
                    };
                    format!(
                        "{n} {what} of other users would be deleted with this; only their owners may delete them."
                    )
                };
                return Err(ApiError::new(
                    http::StatusCode::CONFLICT,
                    "REFERENCE_CONFLICT",
                    detail,
                ));
            }
        }
        Ok(())
    }
}

impl TableController {
    /// Every foreign key among `values` (field, value) — a `belongs_to` of
    /// any declaration over the table — names a record the caller can see
    /// (§15), checked inside the write transaction:
    /// else 422 on that field (`prefix` before its name: `[3].` in a bulk
    /// write), with one message whether the record is missing or someone
    /// else's private one, which the caller must not learn exists. The
    /// database's foreign key holds too; this is the answer a client can
    /// act on.
    pub(super) async fn check_references(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        values: &[(usize, Value)],
        prefix: &str,
    ) -> Result<(), ApiError> {
        let user = cx.identity.as_ref().and_then(|i| i.user_id);
        let mut errors = Vec::new();
        for (key, target_plan) in &self.keys {
            let Some((_, v)) = values.iter().find(|(i, _)| i == key) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            let target = &target_plan.resource;
            let found = match (v.as_i64(), read_scope(&target_plan.chain, user)) {
                (Some(id), Some(scope)) => tx
                    .fetch(target, &[target.primary_key], id, &scope)
                    .await?
                    .is_some(),
                _ => false,
            };
            if !found {
                let name = &self.resource.fields[*key].name;
                errors.push(FieldError {
                    field: format!("{prefix}{name}"),
                    code: "exists".into(),
                    message: format!(
                        "{prefix}{name} names no {} ({v}): there is none you can see.",
                        singular(&target.name)
                    ),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(errors))
        }
    }

    /// What a delete of the selection's rows does to the rows that name
    /// them through a `belongs_to` key (§15), in the deleting
    /// transaction: `restrict` refuses (409, saying which relation and how
    /// many, unless those rows are private to their owners), `set_null`
    /// clears the key and stamps the rows (so sync clients see it),
    /// `cascade` is the database's (checked with the nested resources'
    /// cascades by [`Self::check_cascade`]).
    pub(super) async fn release_references(
        &self,
        tx: &mut WriteTx,
        selection: &Selection<'_>,
    ) -> Result<(), ApiError> {
        for reference in &self.references {
            match reference.on_delete {
                OnDelete::Cascade => {}
                OnDelete::SetNull => {
                    tx.detach_referring(&self.resource, selection, reference)
                        .await?;
                }
                OnDelete::Restrict => {
                    let n = tx
                        .count_referring(&self.resource, selection, reference)
                        .await?;
                    if n == 0 {
                        continue;
                    }
                    let child = &reference.resource;
                    let path = format!("{}/{}", child.module_prefix, child.name);
                    let detail = if reference.private {
                        format!(
                            "Records of {path} refer to this {} through '{}'; it cannot be deleted while they do.",
                            self.noun, reference.relation
                        )
                    } else {
                        let what = if n == 1 {
                            format!("1 {} refers", singular(&child.name))
                        } else {
                            format!("{n} {} refer", child.name)
                        };
                        format!(
                            "{what} to this {} through '{}' ({path}); delete them or point them elsewhere first.",
                            self.noun, reference.relation
                        )
                    };
                    return Err(ApiError::new(
                        http::StatusCode::CONFLICT,
                        "REFERENCE_CONFLICT",
                        detail,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The rows of `chain`'s last resource a caller may read when they are
/// reached from elsewhere (an expansion): within its private owner's rows,
/// and each parent within its own scope in turn, up the chain. `None` when
/// a private owner is met and there is no user (nothing is readable).
pub(super) fn read_scope(chain: &[Arc<Resource>], user: Option<i64>) -> Option<Scope> {
    let mut above: Option<Scope> = None;
    for (i, res) in chain.iter().enumerate() {
        let mut scope = Scope::default();
        if let Some(field) = res.owner_field(Access::Read) {
            scope = scope.and(field, Value::from(user?));
        }
        if let (Some(link), Some(parent_scope)) = (&res.parent, above.take()) {
            if !parent_scope.equal.is_empty() || !parent_scope.within.is_empty() {
                scope.within.push(Within {
                    field: link.field,
                    parent: chain[i - 1].clone(),
                    scope: parent_scope,
                });
            }
        }
        above = Some(scope);
    }
    above
}

/// Resolves the parent id of `r` from the path, checking every ancestor
/// exists within its own scope: a missing parent, or a child under the
/// wrong parent, is 404.
pub(super) async fn parent_chain_id(
    cx: &Ctx,
    plan: &ResourcePlan,
    mut tx: Option<&mut WriteTx>,
) -> Result<i64, ApiError> {
    // Walk from the top-most ancestor down to the direct parent; the path
    // names each parent's key in the same order.
    let parents = &plan.chain[..plan.chain.len() - 1];
    let mut id = 0;
    let mut above: Option<i64> = None;
    for (parent, param) in parents.iter().zip(&plan.parent_params) {
        let raw = cx.param(param).unwrap_or_default();
        let noun = singular(&parent.name);
        id = raw
            .parse::<i64>()
            .map_err(|_| ApiError::not_found(&noun, raw))?;
        let mut scope = Scope::default();
        if let (Some(link), Some(above_id)) = (&parent.parent, above) {
            scope = scope.and(link.field, Value::from(above_id));
        }
        if let Some((field, user)) = own_rows(parent, Access::Read, cx)? {
            scope = scope.and(field, user);
        }
        let found = match tx.as_deref_mut() {
            Some(tx) => tx
                .fetch(parent, &[parent.primary_key], id, &scope)
                .await?
                .is_some(),
            None => cx.store.exists(parent, id, &scope).await?,
        };
        if !found {
            return Err(ApiError::not_found(&noun, raw));
        }
        above = Some(id);
    }
    Ok(id)
}

/// The owner condition on `res`'s rows for `access` — the caller's own
/// rows, where [`crate::model::Owner::restricts`] confines it — or `None`
/// when every row is in reach. Without a user where one is needed: 401
/// (or 403 for a client acting for itself).
pub(super) fn own_rows(
    res: &Resource,
    access: Access,
    cx: &Ctx,
) -> Result<Option<(usize, Value)>, ApiError> {
    match res.owner_field(access) {
        Some(field) => Ok(Some((field, Value::from(cx.require_user()?)))),
        None => Ok(None),
    }
}
