//! A [`RateLimiter`] whose budgets live in Redis: one per app for the whole fleet, each check
//! one atomic script call.
//!
//! The budget is a one-second window, as soketi's `RateLimiterRedis`: the script adds the
//! points to the window's counter, sets its expiry on first use, and gives the points back when
//! they do not fit, so that a refused request costs nothing.

use std::time::Duration;

use async_trait::async_trait;
use soketi_adapter_core::{AdapterError, Budget, Decision, RateLimiter};

use crate::connect::RedisEndpoint;
use crate::lazy::LazyConnection;

const SCRIPT: &str = r"
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used == tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], 1000)
end
local ttl = redis.call('PTTL', KEYS[1])
if used > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return {0, used - tonumber(ARGV[1]), ttl}
end
return {1, used, ttl}
";

/// Budgets in Redis under `key_prefix`.
pub struct RedisRateLimiter {
    connection: LazyConnection,
    key_prefix: String,
    script: redis::Script,
}

impl RedisRateLimiter {
    /// A limiter at `url` (one plain server).
    pub fn new(url: &str, key_prefix: &str) -> Result<Self, crate::RedisTransportError> {
        Self::with_endpoint(&RedisEndpoint::from_url(url)?, key_prefix)
    }

    /// A limiter at `endpoint`; the connection is made on first use and re-made after Redis
    /// goes away. Each check touches one key, so a Redis Cluster needs no hash tags.
    pub fn with_endpoint(
        endpoint: &RedisEndpoint,
        key_prefix: &str,
    ) -> Result<Self, crate::RedisTransportError> {
        Ok(Self {
            connection: LazyConnection::new(endpoint, "rate limiter")?,
            key_prefix: key_prefix.to_owned(),
            script: redis::Script::new(SCRIPT),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn consume(
        &self,
        app_id: &str,
        budget: Budget,
        points: u64,
        per_second: u64,
    ) -> Result<Decision, AdapterError> {
        let mut conn = self.connection.get().await?;
        let kind = match budget {
            Budget::BackendEvents => "backend:events",
            Budget::ReadRequests => "backend:request_read",
        };
        // soketi's key names, under the database key prefix.
        let key = format!("{}app:{app_id}:{app_id}:{kind}", self.key_prefix);
        let (allowed, used, ttl): (i64, i64, i64) = self
            .script
            .key(key)
            .arg(points)
            .arg(per_second)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| AdapterError::Transport(format!("Redis rate limiter: {e}")))?;
        let used = u64::try_from(used).unwrap_or(0);
        Ok(Decision {
            allowed: allowed == 1,
            limit: per_second,
            remaining: per_second.saturating_sub(used),
            retry_after: if allowed == 1 {
                Duration::ZERO
            } else {
                Duration::from_millis(u64::try_from(ttl).unwrap_or(1000))
            },
        })
    }
}
