//! Refused requests are logged as summaries, not one line each: a flood
//! that the rate limiter refuses (hundreds of thousands a second) would
//! otherwise cost as much in log as it saves in work. Refusals are counted
//! per caller and reason, and written at most once a second (the first
//! refusal after a quiet second at once, so a lone one is not delayed),
//! as at most [`MAX_LINES`] lines — the callers with the most refusals,
//! then one line for the rest. Served requests keep their own lines.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// How often a summary may be written.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Callers named in one summary; the rest are one line.
pub const MAX_LINES: usize = 20;

/// Distinct (caller, reason) pairs remembered between summaries; beyond
/// it, refusals are only counted, so a flood from many addresses cannot
/// grow the map.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
struct Pending {
    last_written: Option<Instant>,
    counts: HashMap<(String, &'static str), u64>,
    /// Refusals of callers that did not fit in `counts`.
    unnamed: u64,
}

#[derive(Default)]
pub struct Refusals {
    pending: Mutex<Pending>,
}

impl Refusals {
    /// Counts one refused request of `caller` (`ip:…`, `u:1`, …) for
    /// `reason` (its §7 error code), and writes the summary when one is due.
    pub fn record(&self, caller: &str, reason: &'static str) {
        let mut p = self.lock();
        let key = (caller.to_string(), reason);
        if p.counts.len() < MAX_KEYS || p.counts.contains_key(&key) {
            *p.counts.entry(key).or_insert(0) += 1;
        } else {
            p.unnamed += 1;
        }
        drop(p);
        self.write_if_due();
    }

    /// Writes what was counted if a second has passed since the last
    /// summary; called on every refusal and by a timer, so the last counts
    /// of a flood are written too.
    pub fn write_if_due(&self) {
        let now = Instant::now();
        let mut p = self.lock();
        if (p.counts.is_empty() && p.unnamed == 0)
            || p.last_written
                .is_some_and(|t| now.duration_since(t) < INTERVAL)
        {
            return;
        }
        p.last_written = Some(now);
        let counts = std::mem::take(&mut p.counts);
        let unnamed = std::mem::take(&mut p.unnamed);
        // Logging happens outside the lock: refusals go on being counted.
        drop(p);
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let rest: u64 = unnamed + counts.iter().skip(MAX_LINES).map(|c| c.1).sum::<u64>();
        let rest_callers = counts.len().saturating_sub(MAX_LINES);
        for ((caller, reason), n) in counts.into_iter().take(MAX_LINES) {
            tracing::info!(
                target: "restkit::refused",
                caller = caller.as_str(),
                reason = reason,
                refused = n,
                "requests refused in the last second or more",
            );
        }
        if rest > 0 {
            tracing::info!(
                target: "restkit::refused",
                caller = "(others)",
                callers = rest_callers,
                refused = rest,
                "requests refused in the last second or more",
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes due summaries once a second while `owner` lives.
    pub fn write_periodically<T: Send + Sync + 'static>(
        owner: Weak<T>,
        refusals: fn(&T) -> &Refusals,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match owner.upgrade() {
                    Some(o) => refusals(&o).write_if_due(),
                    None => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_not_listed() {
        let r = Refusals::default();
        for _ in 0..1000 {
            r.record("ip:203.0.113.9", "RATE_LIMITED");
        }
        // The first refusal was written at once; the other 999 wait for
        // the next second.
        let p = r.lock();
        assert_eq!(
            p.counts.get(&("ip:203.0.113.9".into(), "RATE_LIMITED")),
            Some(&999)
        );
        drop(p);
        r.write_if_due();
        assert_eq!(r.lock().counts.len(), 1, "not due yet");
    }

    #[test]
    fn callers_beyond_the_cap_are_counted_together() {
        let r = Refusals::default();
        r.lock().last_written = Some(Instant::now());
        for i in 0..(MAX_KEYS + 5) {
            r.record(&format!("ip:{i}"), "RATE_LIMITED");
        }
        let p = r.lock();
        assert_eq!(p.counts.len(), MAX_KEYS);
        assert_eq!(p.unnamed, 5);
    }
}
