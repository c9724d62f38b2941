//! When the database changed: the wake-up signal of live feeds (§16).
//!
//! Signals only wake readers up; what changed is always read back from
//! the database (sync positions and tombstones, §6.7), so a lost or
//! doubled signal costs a read, never an event. Two sources:
//! - this process's own commits, at once ([`Changes::committed`], called
//!   by the store after a commit is durable);
//! - everyone else's (other instances on one PostgreSQL, another process
//!   on one SQLite file): while anyone listens, one task per store reads
//!   the horizon (the latest time nothing in flight can commit at or
//!   before) every poll interval and signals when it moved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A store's change counter; listeners wait for it to move.
pub struct Changes {
    count: watch::Sender<u64>,
    /// Whether the horizon poller runs.
    polling: AtomicBool,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            count: watch::Sender::new(0),
            polling: AtomicBool::new(false),
        }
    }
}

impl Changes {
    /// Something was committed (or may have been): wake every listener.
    pub fn committed(&self) {
        self.count.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later [`Changes::committed`] (many
    /// signals while it is busy count as one).
    pub fn listen(&self) -> watch::Receiver<u64> {
        self.count.subscribe()
    }

    /// Starts the poller unless it runs: every `every`, `horizon` is read
    /// and a move signalled. It stops by itself once no one listens (and
    /// the next [`Changes::watch_horizon`] starts it again).
    pub fn watch_horizon<F, Fut>(self: &Arc<Self>, every: Duration, horizon: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Option<String>> + Send,
    {
        if self.polling.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut first = true;
            loop {
                if !std::mem::take(&mut first) {
                    tokio::time::sleep(every).await;
                }
                let Some(changes) = me.upgrade() else { return };
                if changes.count.receiver_count() == 0 {
                    changes.polling.store(false, Ordering::Release);
                    // A listener that came between the count and the
                    // store started no poller: take over again for it.
                    if changes.count.receiver_count() == 0
                        || changes.polling.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                }
                drop(changes);
                // A failed read (the database away) signals nothing; the
                // listeners' own reads report the outage.
                let Some(now) = horizon().await else { continue };
                let Some(changes) = me.upgrade() else { return };
                // The first reading signals too: a listener's own first
                // read may have run before it, and missed what came between.
                if last.as_ref() != Some(&now) {
                    changes.committed();
                }
                last = Some(now);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn a_commit_wakes_every_listener_and_signals_coalesce() {
        let c = Changes::default();
        let mut a = c.listen();
        let mut b = c.listen();
        c.committed();
        c.committed();
        a.changed().await.unwrap();
        b.changed().await.unwrap();
        // Two signals while busy: one wake-up, then nothing pending.
        assert!(!a.has_changed().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn the_poller_signals_a_moved_horizon_and_stops_without_listeners() {
        let c = Arc::new(Changes::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let r = reads.clone();
        let mut rx = c.listen();
        c.watch_horizon(Duration::from_millis(100), move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            // The horizon moves at the third read.
            async move { Some(if n < 2 { "a" } else { "b" }.to_string()) }
        });
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .expect("the moved horizon is signalled")
            .unwrap();
        drop(rx);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = reads.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(reads.load(Ordering::SeqCst), after, "the poller stopped");
        assert!(!c.polling.load(Ordering::SeqCst));
    }
}
