//! A Redis connection made on first use and re-made by itself after Redis goes away: what the
//! cache, the rate limiter and the queue each hold.

use std::sync::Arc;

use soketi_adapter_core::AdapterError;
use tokio::sync::OnceCell;

use crate::RedisTransportError;
use crate::connect::{Conn, Connector, RedisEndpoint};

/// A lazily made, self-healing connection.
pub(crate) struct LazyConnection {
    connector: Arc<Connector>,
    cell: OnceCell<Conn>,
    what: &'static str,
}

impl LazyConnection {
    /// A connection to `endpoint` for `what` (named in errors).
    pub(crate) fn new(
        endpoint: &RedisEndpoint,
        what: &'static str,
    ) -> Result<Self, RedisTransportError> {
        Ok(Self {
            connector: endpoint.connector()?,
            cell: OnceCell::new(),
            what,
        })
    }

    /// The connector, for callers that make their own connections.
    pub(crate) fn connector(&self) -> &Arc<Connector> {
        &self.connector
    }

    /// The connection, made now if it is the first use.
    pub(crate) async fn get(&self) -> Result<Conn, AdapterError> {
        self.cell
            .get_or_try_init(|| self.connector.managed(None))
            .await
            .cloned()
            .map_err(|e| {
                AdapterError::Transport(format!("cannot reach the Redis {}: {e}", self.what))
            })
    }
}
