//! The Redis backend (§9, §14): the same GCRA decision as the in-process
//! one, made atomically by a Lua script in one round trip, so every
//! instance sharing the Redis enforces one limit.
//!
//! Every call has a short timeout, and a circuit breaker stands in front:
//! the first call that fails (an error or the timeout) opens it, and while
//! it is open every decision fails at once — no request waits on a Redis
//! that is known to be down — and the caller follows
//! `rate_limit.on_backend_error`. Once a second, one background probe
//! (PING, reconnecting if need be) tries Redis; when it answers, the
//! breaker closes and limiting resumes by itself, on a connection already
//! known to work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    script: redis::Script,
}

/// What the background probe shares with the requests.
struct Shared {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    /// Serializes connection attempts.
    connecting: tokio::sync::Mutex<()>,
    /// Milliseconds since `started` of the last failure; `u64::MAX`: the
    /// breaker is closed.
    failed_at: AtomicU64,
    /// A probe is running.
    probing: AtomicBool,
    started: Instant,
    timeout: Duration,
}

/// How long the breaker stays open before the next probe.
const PROBE_EVERY: u64 = 1000;

impl Shared {
    fn since_start(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn trip(&self) {
        self.failed_at.store(self.since_start(), Ordering::Relaxed);
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

    /// PING within the timeout.
    async fn answers(&self) -> bool {
        let run = async {
            let mut conn = self.connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        matches!(tokio::time::timeout(self.timeout, run).await, Ok(Some(_)))
    }
}

impl RedisBackend {
    pub fn new(url: &str, timeout: Duration) -> Result<RedisBackend, String> {
        let client = redis::Client::open(url).map_err(|e| format!("rate_limit.redis_url: {e}"))?;
        Ok(RedisBackend {
            shared: Arc::new(Shared {
                client,
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                failed_at: AtomicU64::new(u64::MAX),
                probing: AtomicBool::new(false),
                started: Instant::now(),
                timeout,
            }),
            script: redis::Script::new(GCRA),
        })
    }

    /// `true` while the breaker is open; then, at most once a second, a
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
            let shared = s.clone();
            tokio::spawn(async move {
                if shared.answers().await {
                    shared.failed_at.store(u64::MAX, Ordering::Relaxed);
                } else {
                    shared.trip();
                }
                shared.probing.store(false, Ordering::Release);
            });
        }
        true
    }

    /// Whether Redis answers PING within the timeout (`false` at once
    /// while the breaker is open).
    pub async fn ping(&self) -> bool {
        if self.open() {
            return false;
        }
        let ok = self.shared.answers().await;
        if !ok {
            self.shared.trip();
        }
        ok
    }

    pub async fn check(&self, p: &Arc<Policy>, who: &Who) -> Result<Decision, Unavailable> {
        if self.open() {
            return Err(Unavailable(
                "Redis is unavailable (probed once a second)".into(),
            ));
        }
        let run = async {
            let mut conn = self.shared.connection().await?;
            let per = p.period / p.requests.max(1);
            let key = format!(
                "restkit:rl:{}:{}/{}:{}",
                p.name,
                p.requests,
                p.period.as_millis(),
                who.key()
            );
            let reply: (i64, i64, i64, i64) = self
                .script
                .key(key)
                .arg(per.as_micros().max(1) as u64)
                .arg(p.requests)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| Unavailable(e.to_string()))?;
            let us = |n: i64| Duration::from_micros(n.max(0) as u64);
            Ok(Decision {
                allowed: reply.0 == 1,
                policy: p.clone(),
                remaining: reply.1.clamp(0, i64::from(p.requests)) as u32,
                reset: us(reply.2),
                retry_after: us(reply.3),
            })
        };
        let failure = match tokio::time::timeout(self.shared.timeout, run).await {
            Ok(Ok(d)) => return Ok(d),
            Ok(Err(e)) => e,
            Err(_) => Unavailable(format!(
                "Redis did not answer within {:?}",
                self.shared.timeout
            )),
        };
        self.shared.trip();
        Err(failure)
    }
}
