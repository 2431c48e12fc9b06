//! A [`Cache`] in Redis, shared by every node: a cache channel's last event reaches subscribers
//! of nodes that joined after it was published.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use soketi_adapter_core::{AdapterError, Cache};

use crate::connect::RedisEndpoint;
use crate::lazy::LazyConnection;

/// Entries in Redis under `key_prefix`, with Redis's own expiry.
pub struct RedisCache {
    connection: LazyConnection,
    key_prefix: String,
}

impl RedisCache {
    /// A cache at `url` (one plain server).
    pub fn new(url: &str, key_prefix: &str) -> Result<Self, crate::RedisTransportError> {
        Self::with_endpoint(&RedisEndpoint::from_url(url)?, key_prefix)
    }

    /// A cache at `endpoint`. The connection is made on first use and re-made by itself after
    /// Redis goes away. Each entry is one key, so a Redis Cluster needs no hash tags.
    pub fn with_endpoint(
        endpoint: &RedisEndpoint,
        key_prefix: &str,
    ) -> Result<Self, crate::RedisTransportError> {
        Ok(Self {
            connection: LazyConnection::new(endpoint, "cache")?,
            key_prefix: key_prefix.to_owned(),
        })
    }
}

fn failed(e: redis::RedisError) -> AdapterError {
    AdapterError::Transport(format!("Redis cache: {e}"))
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, AdapterError> {
        let mut conn = self.connection.get().await?;
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{}{key}", self.key_prefix))
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), AdapterError> {
        let mut conn = self.connection.get().await?;
        redis::cmd("SET")
            .arg(format!("{}{key}", self.key_prefix))
            .arg(&value[..])
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(failed)
    }

    fn is_shared(&self) -> bool {
        true
    }
}
