//! The Redis backend (§9, §14): the same GCRA decision as the in-process
//! one, made atomically by a Lua script in one round trip, so every
//! instance sharing the Redis enforces one limit.
//!
//! Every call has a short timeout, and a circuit breaker stands in front:
//! [`TRIP_AFTER`] failures in a row (errors or timeouts) open it — one slow
//! call alone does not — and while it is open every decision fails at once,
//! so no request waits on a Redis that is known to be down, and the caller
//! follows `rate_limit.on_backend_error`. Every [`PROBE_EVERY`] one
//! background probe runs the decision script itself on a probe key
//! (reconnecting if need be; a PING would pass on a Redis that refuses
//! writes); when it succeeds the breaker closes and limiting resumes by
//! itself, on a connection already known to work.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::{Decision, Policy, Who};

/// GCRA over Redis's clock. KEYS[1]: the caller's key; ARGV[1]: the
/// emission interval T (µs per request); ARGV[2]: the burst (requests).
/// Returns {allowed, remaining, µs until full, µs until the next request
/// may pass}. The key expires when the allowance is whole again.
const GCRA: &str = r"
local t = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tau = t * burst
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + t
local allow_at = new_tat - tau
if allow_at > now then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now + tau - new_tat) / t), new_tat - now, 0}
";

/// Redis did not answer in time, or failed.
#[derive(Debug)]
pub struct Unavailable(pub String);

pub struct RedisBackend {
    shared: Arc<Shared>,
}

/// What the background probe shares with the requests.
struct Shared {
    client: redis::Client,
    script: redis::Script,
    conn: Mutex<Option<ConnectionManager>>,
    /// Serializes connection attempts.
    connecting: tokio::sync::Mutex<()>,
    /// Milliseconds since `started` of the last failure; `u64::MAX`: the
    /// breaker is closed.
    failed_at: AtomicU64,
    /// Failures in a row.
    failures: AtomicU32,
    /// A probe is running.
    probing: AtomicBool,
    started: Instant,
    timeout: Duration,
}

/// Failures in a row that open the breaker.
pub const TRIP_AFTER: u32 = 3;

/// Milliseconds between probes while the breaker is open.
pub const PROBE_EVERY: u64 = 250;

impl Shared {
    fn since_start(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A failed call: the breaker opens at the [`TRIP_AFTER`]th in a row.
    fn failed(&self) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= TRIP_AFTER {
            self.failed_at.store(self.since_start(), Ordering::Relaxed);
        }
    }

    fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, Unavailable> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(c);
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let c = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// One run of the decision script on `key` within the timeout.
    async fn decide(
        &self,
        key: String,
        per_us: u64,
        burst: u32,
    ) -> Result<(i64, i64, i64, i64), Unavailable> {
        let run = async {
            let mut conn = self.connection().await?;
            self.script
                .key(key)
                .arg(per_us)
                .arg(burst)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| Unavailable(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(Unavailable(format!(
                "Redis did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Whether a decision can be made now (on a probe key of its own).
    async fn answers(&self) -> bool {
        self.decide("restkit:rl:probe".into(), 1, 1_000_000)
            .await
            .is_ok()
    }
}

/// Clears `probing` when the probe ends, however it ends.
struct Probing(Arc<Shared>);

impl Drop for Probing {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

impl RedisBackend {
    pub fn new(url: &str, timeout: Duration) -> Result<RedisBackend, String> {
        let client = redis::Client::open(url).map_err(|e| format!("rate_limit.redis_url: {e}"))?;
        Ok(RedisBackend {
            shared: Arc::new(Shared {
                client,
                script: redis::Script::new(GCRA),
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                failed_at: AtomicU64::new(u64::MAX),
                failures: AtomicU32::new(0),
                probing: AtomicBool::new(false),
                started: Instant::now(),
                timeout,
            }),
        })
    }

    /// `true` while the breaker is open; then, every [`PROBE_EVERY`], a
    /// background probe tries Redis and closes the breaker if it answers.
    fn open(&self) -> bool {
        let s = &self.shared;
        let failed = s.failed_at.load(Ordering::Relaxed);
        if failed == u64::MAX {
            return false;
        }
        if s.since_start().saturating_sub(failed) >= PROBE_EVERY
            && !s.probing.swap(true, Ordering::AcqRel)
        {
            let probing = Probing(s.clone());
            tokio::spawn(async move {
                let shared = &probing.0;
                if shared.answers().await {
                    shared.failures.store(0, Ordering::Relaxed);
                    shared.failed_at.store(u64::MAX, Ordering::Relaxed);
                } else {
                    shared
                        .failed_at
                        .store(shared.since_start(), Ordering::Relaxed);
                }
            });
        }
        true
    }

    /// Whether a decision can be made now (`false` at once while the
    /// breaker is open).
    pub async fn ping(&self) -> bool {
        if self.open() {
            return false;
        }
        let ok = self.shared.answers().await;
        if ok {
            self.shared.succeeded();
        } else {
            self.shared.failed();
        }
        ok
    }

    pub async fn check(&self, p: &Arc<Policy>, who: &Who) -> Result<Decision, Unavailable> {
        if self.open() {
            return Err(Unavailable("Redis is unavailable (probing)".into()));
        }
        let per = p.per();
        // The quota is in the key: a changed one starts afresh rather than
        // reading a state computed under another.
        let key = format!(
            "restkit:rl:{}:{}/{}/{}:{}",
            p.name,
            p.requests,
            p.period.as_millis(),
            p.burst,
            who.key()
        );
        let reply = match self
            .shared
            .decide(key, per.as_micros().max(1) as u64, p.burst)
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                self.shared.failed();
                return Err(e);
            }
        };
        self.shared.succeeded();
        let us = |n: i64| Duration::from_micros(n.max(0) as u64);
        Ok(Decision {
            allowed: reply.0 == 1,
            policy: p.clone(),
            remaining: reply.1.clamp(0, i64::from(p.burst)) as u32,
            reset: us(reply.2),
            retry_after: us(reply.3),
        })
    }
}
