//! Refusals that cost nothing (§8.2, §9): the memory that lets the
//! identity step refuse repeated bad tokens without an RSA verification.
//!
//! A well-formed JWT with a known `kid` and a wrong signature costs an RSA
//! verification (hundreds of µs) before the rate limiter has decided
//! anything. Two memories bound that:
//! - [`Refusals::token`]: tokens refused lately, by SHA-256, with why — the
//!   same forged token again is refused at the price of a hash lookup;
//! - [`Refusals::failing`]: callers (by IP, as the limiter keys them) that
//!   sent a token this server did not sign lately (an expired or not yet
//!   valid token of ours does not count: clients send those in the normal
//!   course of things). A token such a caller sends that needs a
//!   real verification is first charged to its `anonymous` allowance, so a
//!   flood of ever-new forged tokens from one address gets 429s at the
//!   price of a limiter decision once that allowance is spent.
//!
//! Both are bounded: past their size, expired entries go (or all).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limit::Who;

/// How long a refused token, or a caller's failure, is remembered.
pub const REMEMBER: Duration = Duration::from_secs(60);

/// Most entries each memory holds.
const MAX: usize = 10_000;

#[derive(Default)]
pub struct Refusals {
    tokens: Mutex<HashMap<[u8; 32], (&'static str, Instant)>>,
    failing: Mutex<HashMap<Who, Instant>>,
    /// Tokens verified for real (signature and claims) so far: the cost
    /// these memories exist to spare.
    verifications: AtomicU64,
}

fn bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, at: impl Fn(&V) -> Instant) {
    if map.len() >= MAX {
        map.retain(|_, v| at(v).elapsed() < REMEMBER);
        if map.len() >= MAX {
            map.clear();
        }
    }
}

impl Refusals {
    /// Counts a real verification.
    pub fn verifying(&self) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
    }

    /// How many tokens were verified for real so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Why the token with this SHA-256 was refused, if it was lately.
    pub fn token(&self, key: &[u8; 32]) -> Option<&'static str> {
        let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, at)| at.elapsed() < REMEMBER)
            .map(|(why, _)| *why)
    }

    /// Remembers a refused token.
    pub fn refuse(&self, key: [u8; 32], why: &'static str) {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        bounded(&mut map, |(_, at)| *at);
        map.insert(key, (why, Instant::now()));
    }

    /// Remembers that credentials sent from `ip` failed.
    pub fn failed(&self, ip: Option<IpAddr>) {
        let mut map = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        bounded(&mut map, |at| *at);
        map.insert(Who::ip(ip), Instant::now());
    }

    /// Did credentials sent from `ip` fail lately?
    pub fn failing(&self, ip: Option<IpAddr>) -> bool {
        let map = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&Who::ip(ip))
            .is_some_and(|at| at.elapsed() < REMEMBER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_and_its_sender_are_remembered_and_bounded() {
        let r = Refusals::default();
        let ip: Option<IpAddr> = "192.0.2.7".parse().ok();
        assert!(!r.failing(ip));
        r.refuse([1; 32], "bad");
        r.failed(ip);
        assert_eq!(r.token(&[1; 32]), Some("bad"));
        assert!(r.failing(ip));
        assert!(!r.failing("192.0.2.8".parse().ok()));
        for i in 0..(MAX as u32 + 10) {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            r.refuse(key, "bad");
        }
        let held = r.tokens.lock().unwrap().len();
        assert!(held <= MAX, "{held}");
    }
}
