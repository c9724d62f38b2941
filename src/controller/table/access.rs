//! Who may reach which rows (§4.2, §8.6): the scope every statement on a
//! resource carries, parents checked up the path, the owner rule.

use std::sync::Arc;

use serde_json::Value;

use super::{singular, TableController};
use crate::controller::{Ctx, Operation};
use crate::error::ApiError;
use crate::model::plan::ResourcePlan;
use crate::model::{OwnerPolicy, Resource};
use crate::store::{Scope, Selection, Within, WriteTx};

impl TableController {
    /// The scope every statement on this resource carries: parent keys
    /// (each ancestor checked to exist, within its own scope) and, for
    /// private resources, the owner.
    pub(super) async fn scope(&self, cx: &Ctx, op: Operation) -> Result<Scope, ApiError> {
        let mut scope = Scope::default();
        if let Some(link) = &self.resource.parent {
            let parent_id = parent_chain_id(cx, &self.plan, None).await?;
            scope = scope.and(link.field, Value::from(parent_id));
        }
        if let Some(owner) = &self.resource.owner {
            let private = owner.policy == OwnerPolicy::Private;
            if private || op.is_write() {
                let user = cx.require_user()?;
                if private {
                    scope = scope.and(owner.field, Value::from(user));
                }
            }
        }
        Ok(scope)
    }

    /// For read-all/write-own resources: the caller must own record `id`.
    /// Runs inside the write transaction, so ownership cannot change
    /// between the check and the write.
    pub(super) async fn check_owner(
        &self,
        cx: &Ctx,
        tx: &mut WriteTx,
        id: i64,
        scope: &Scope,
    ) -> Result<(), ApiError> {
        let Some(owner) = &self.resource.owner else {
            return Ok(());
        };
        if owner.policy != OwnerPolicy::ReadAllWriteOwn {
            return Ok(());
        }
        let user = cx.require_user()?;
        let rec = tx
            .fetch(&self.resource, &[owner.field], id, scope)
            .await?
            .ok_or_else(|| self.not_found(&id.to_string()))?;
        let field = &self.resource.fields[owner.field].name;
        if rec.get(field).and_then(Value::as_i64) != Some(user) {
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

/// The rows of `chain`'s last resource a caller may read when they are
/// reached from elsewhere (an expansion): within its private owner's rows,
/// and each parent within its own scope in turn, up the chain. `None` when
/// a private owner is met and there is no user (nothing is readable).
pub(super) fn read_scope(chain: &[Arc<Resource>], user: Option<i64>) -> Option<Scope> {
    let mut above: Option<Scope> = None;
    for (i, res) in chain.iter().enumerate() {
        let mut scope = Scope::default();
        if let Some(owner) = res
            .owner
            .as_ref()
            .filter(|o| o.policy == OwnerPolicy::Private)
        {
            scope = scope.and(owner.field, Value::from(user?));
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
        if let Some(owner) = &parent.owner {
            if owner.policy == OwnerPolicy::Private {
                scope = scope.and(owner.field, Value::from(cx.require_user()?));
            }
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
