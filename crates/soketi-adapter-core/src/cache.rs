//! The cache of cache channels: the last event of each, for subscribers who come later.
//!
//! [`MemoryCache`] keeps entries in this process: with a horizontal adapter every node stores
//! what it delivers, so any node that saw the event has it. A shared cache (Redis) is written
//! once by the node that publishes, and gives the event to nodes that joined afterwards.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;

use crate::AdapterError;

/// Keys and values with a time to live. Held as `Arc<dyn Cache>`.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value of `key`, if it has not expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, AdapterError>;
    /// Keeps `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), AdapterError>;
    /// Whether every node reads the same entries, so that only the publishing node writes.
    fn is_shared(&self) -> bool;
}

/// The key of a cache channel's last event, as soketi names it.
pub fn channel_key(app_id: &str, channel: &str) -> String {
    format!("app:{app_id}:channel:{channel}:cache_miss")
}

/// Entries in this process.
#[derive(Default)]
pub struct MemoryCache {
    entries: DashMap<String, (Bytes, Instant)>,
}

impl MemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops expired entries; the server calls it from time to time.
    pub fn purge(&self) {
        let now = Instant::now();
        self.entries.retain(|_, (_, expires)| *expires > now);
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, AdapterError> {
        let now = Instant::now();
        let hit = self
            .entries
            .get(key)
            .filter(|e| e.1 > now)
            .map(|e| e.0.clone());
        if hit.is_none() {
            self.entries
                .remove_if(key, |_, (_, expires)| *expires <= now);
        }
        Ok(hit)
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), AdapterError> {
        self.entries
            .insert(key.to_owned(), (value, Instant::now() + ttl));
        Ok(())
    }

    fn is_shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire() {
        let cache = MemoryCache::new();
        cache
            .set("a", Bytes::from_static(b"x"), Duration::from_secs(60))
            .await
            .unwrap();
        cache
            .set("b", Bytes::from_static(b"y"), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(cache.get("a").await.unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(cache.get("b").await.unwrap(), None);
        assert_eq!(cache.get("c").await.unwrap(), None);
        cache.purge();
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(
            channel_key("1", "cache-x"),
            "app:1:channel:cache-x:cache_miss"
        );
    }
}
