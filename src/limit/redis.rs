//! The Redis backend (§9, §14): the same GCRA decision as the in-process
//! one, made atomically by a Lua script in one round trip, so every
//! instance sharing the Redis enforces one limit.
//!
//! Every call has a short timeout. When Redis is down or slow the caller
//! gets [`Unavailable`] at once and follows `rate_limit.on_backend_error`;
//! a failed connection is retried at most once a second, so an outage
//! costs no connection attempt per request, and limiting resumes by itself
//! when Redis is back.

use std::sync::atomic::{AtomicU64, Ordering};
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
    client: redis::Client,
    script: redis::Script,
    conn: Mutex<Option<ConnectionManager>>,
    /// Serializes reconnection attempts.
    connecting: tokio::sync::Mutex<()>,
    /// Milliseconds since `started` of the last failed connection.
    failed_at: AtomicU64,
    started: Instant,
    timeout: Duration,
}

impl RedisBackend {
    pub fn new(url: &str, timeout: Duration) -> Result<RedisBackend, String> {
        let client = redis::Client::open(url).map_err(|e| format!("rate_limit.redis_url: {e}"))?;
        Ok(RedisBackend {
            client,
            script: redis::Script::new(GCRA),
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            failed_at: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            timeout,
        })
    }

    fn since_start(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn connection(&self) -> Result<ConnectionManager, Unavailable> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(c);
        }
        let failed = self.failed_at.load(Ordering::Relaxed);
        if failed != u64::MAX && self.since_start().saturating_sub(failed) < 1000 {
            return Err(Unavailable(
                "Redis was unreachable less than a second ago".into(),
            ));
        }
        // One task connects; the others fail fast meanwhile.
        let Ok(_guard) = self.connecting.try_lock() else {
            return Err(Unavailable("connecting to Redis".into()));
        };
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        match self.client.get_connection_manager_with_config(config).await {
            Ok(c) => {
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                self.failed_at.store(u64::MAX, Ordering::Relaxed);
                Ok(c)
            }
            Err(e) => {
                self.failed_at.store(self.since_start(), Ordering::Relaxed);
                Err(Unavailable(e.to_string()))
            }
        }
    }

    /// Whether Redis answers PING within the timeout.
    pub async fn ping(&self) -> bool {
        let run = async {
            let mut conn = self.connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        matches!(tokio::time::timeout(self.timeout, run).await, Ok(Some(_)))
    }

    pub async fn check(&self, p: &Arc<Policy>, who: &Who) -> Result<Decision, Unavailable> {
        let run = async {
            let mut conn = self.connection().await?;
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
        match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(Unavailable(format!(
                "Redis did not answer within {:?}",
                self.timeout
            ))),
        }
    }
}
