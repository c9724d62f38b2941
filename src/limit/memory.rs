//! The in-process backend: one `governor` keyed GCRA limiter per policy.

use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::{Decision, Policy, Who};

type Keyed =
    RateLimiter<Who, DefaultKeyedStateStore<Who>, DefaultClock, StateInformationMiddleware>;

#[derive(Default)]
pub struct Memory {
    /// By policy id; added to only at start-up.
    limiters: Vec<Keyed>,
}

/// `requests` per `period`, as a burst of `burst` refilled evenly.
fn quota(p: &Policy) -> Quota {
    let burst = std::num::NonZeroU32::new(p.burst).unwrap_or(std::num::NonZeroU32::MIN);
    Quota::with_period(p.per())
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

impl Memory {
    pub fn add(&mut self, p: &Policy) {
        let limiter = RateLimiter::keyed(quota(p)).with_middleware::<StateInformationMiddleware>();
        debug_assert_eq!(self.limiters.len(), p.id);
        self.limiters.push(limiter);
    }

    pub fn check(&self, p: &Arc<Policy>, who: &Who) -> Decision {
        let limiter = &self.limiters[p.id];
        // One cell's worth of time: the allowance refills one request per
        // `per`.
        let per = p.per();
        match limiter.check_key(who) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    policy: p.clone(),
                    remaining,
                    reset: per * p.burst.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                Decision {
                    allowed: false,
                    policy: p.clone(),
                    remaining: 0,
                    reset: per * p.burst,
                    retry_after: wait,
                }
            }
        }
    }

    pub fn forget_idle(&self) {
        for l in &self.limiters {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.limiters.iter().map(|l| l.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(requests: u32, secs: u64) -> Arc<Policy> {
        let tier = crate::config::Tier {
            requests,
            period: Duration::from_secs(secs),
            burst: requests,
        };
        Arc::new(Policy::new(0, "t", &tier))
    }

    #[test]
    fn the_burst_is_the_quota_and_the_refusal_says_when() {
        let mut m = Memory::default();
        let p = policy(3, 60);
        m.add(&p);
        let who = Who::User(1);
        let remaining: Vec<u32> = (0..3).map(|_| m.check(&p, &who).remaining).collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = m.check(&p, &who);
        assert!(!refused.allowed);
        // One request refills every 20 s.
        assert!(refused.retry_after > Duration::from_secs(19));
        assert!(refused.retry_after <= Duration::from_secs(20));
        // Someone else has their own allowance; a client is not the user.
        assert!(m.check(&p, &Who::Client("1".into())).allowed);
        assert!(m.check(&p, &Who::User(2)).allowed);
        assert_eq!(m.tracked(), 3);
    }
}
