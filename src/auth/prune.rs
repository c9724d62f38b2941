//! Pruning restkit's own expired rows (§8.3): revocations past the expiry
//! of every token they cover, authorization codes past their ten minutes
//! (used or not), refresh tokens and API keys past their expiry — and the
//! in-process revocation set with them. Nothing else ever deletes these
//! rows, so without this they grow with every sign-in for ever. Sync
//! tombstones older than `database.keep_deletions` go in the same task
//! ([`Store::prune_deletions`]).
//!
//! [`run`] is started with the server ([`crate::App::serve`]); each pass
//! ([`prune`]) deletes in transactions of at most [`PRUNE_BATCH`] rows, so
//! a large backlog never holds the single writer for long. Rows are kept
//! [`PRUNE_GRACE`] past their expiry: a used code or refresh token stays
//! while it could still be replayed, and its replay still revokes what it
//! issued.

use std::time::Duration;

use super::tokens::{self, Tokens};
use crate::error::ApiError;
use crate::store::{own, Store};

/// How often the server prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Most rows deleted per transaction.
pub const PRUNE_BATCH: u64 = 1000;

/// How long past its expiry a row is kept (clock skew between instances).
pub const PRUNE_GRACE: i64 = 60;

/// What one pass deleted, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub revocations: u64,
    pub codes: u64,
    pub refresh_tokens: u64,
    pub api_keys: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.revocations + self.codes + self.refresh_tokens + self.api_keys
    }
}

/// One pass at time `now` (unix seconds): every row that expired before
/// `now - PRUNE_GRACE` goes, `batch` rows per transaction, and so do the
/// in-process revocations that expired.
pub async fn prune(
    store: &Store,
    tokens: &Tokens,
    now: i64,
    batch: u64,
) -> Result<Pruned, ApiError> {
    let before = now - PRUNE_GRACE;
    let batch = batch.max(1);
    let mut pruned = Pruned::default();
    for (r, count) in [
        (own::revocations(), &mut pruned.revocations),
        (own::codes(), &mut pruned.codes),
        (own::refresh_tokens(), &mut pruned.refresh_tokens),
        (own::api_keys(), &mut pruned.api_keys),
    ] {
        loop {
            let n = own::delete_expired(store, r, "expiresAt", before, batch).await?;
            *count += n;
            if n < batch {
                break;
            }
            // Let the writes queued behind this batch go first.
            tokio::task::yield_now().await;
        }
    }
    tokens.revocations.prune(now);
    Ok(pruned)
}

/// Prunes every [`PRUNE_EVERY`], for as long as the server runs — and
/// the tombstones of `sync_tables` older than `database.keep_deletions`
/// ([`Store::prune_deletions`]); a failed pass (the database busy or
/// away) is logged and tried again next time.
pub async fn run(store: Store, tokens: std::sync::Arc<Tokens>, sync_tables: Vec<String>) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match prune(&store, &tokens, tokens::now(), PRUNE_BATCH).await {
            Ok(p) if p.total() > 0 => tracing::info!(
                revocations = p.revocations,
                codes = p.codes,
                refresh_tokens = p.refresh_tokens,
                api_keys = p.api_keys,
                "pruned expired rows"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.detail, "pruning expired rows failed"),
        }
        match store
            .prune_deletions(&sync_tables, chrono::Utc::now(), PRUNE_BATCH)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(tombstones = n, "pruned deletions older than kept"),
            Err(e) => tracing::warn!(error = %e, "pruning old tombstones failed"),
        }
    }
}
