//! A Redis connection made on first use and re-made by itself after Redis goes away: what the
//! cache, the rate limiter and the queue each hold.

use redis::aio::ConnectionManager;
use soketi_adapter_core::AdapterError;
use tokio::sync::OnceCell;

use crate::RedisTransportError;

/// A lazily made, self-healing connection.
pub(crate) struct LazyConnection {
    client: redis::Client,
    cell: OnceCell<ConnectionManager>,
    what: &'static str,
}

impl LazyConnection {
    /// A connection to `url` for `what` (named in errors).
    pub(crate) fn new(url: &str, what: &'static str) -> Result<Self, RedisTransportError> {
        let client = redis::Client::open(url).map_err(|source| RedisTransportError::Url {
            url: crate::redact(url),
            source,
        })?;
        Ok(Self {
            client,
            cell: OnceCell::new(),
            what,
        })
    }

    /// The client, for callers that make their own connections.
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The connection, made now if it is the first use.
    pub(crate) async fn get(&self) -> Result<ConnectionManager, AdapterError> {
        self.cell
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await
            .cloned()
            .map_err(|e| {
                AdapterError::Transport(format!("cannot reach the Redis {}: {e}", self.what))
            })
    }
}
