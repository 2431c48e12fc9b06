//! The adapter of a single node.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use soketi_channels::{ChannelCounts, Registry};
use soketi_protocol::message::PresenceMember;
use soketi_protocol::{ChannelName, CloseCode, SocketId, ws};

use crate::{Adapter, AdapterError};

/// Serves every operation from this node's [`Registry`].
pub struct LocalAdapter {
    registry: Arc<Registry>,
    cache_ttl: Duration,
}

impl LocalAdapter {
    /// An adapter over `registry` that keeps cache channels' last events for `cache_ttl`.
    pub fn new(registry: Arc<Registry>, cache_ttl: Duration) -> Self {
        Self {
            registry,
            cache_ttl,
        }
    }

    /// Delivers a frame to this node's subscribers; what every adapter does for its own node.
    /// Returns how many connections it was queued for.
    pub fn deliver(
        &self,
        app_id: &str,
        channel: &str,
        message: &[u8],
        except: Option<&SocketId>,
    ) -> usize {
        // The WebSocket frame is encoded once and the same bytes go to every subscriber.
        let frame = ws::text(message);
        let app = self.registry.app(app_id);
        if ChannelName::classify(channel).is_cache() && !is_internal(message) {
            let expires = now_ms().saturating_add(self.cache_ttl.as_millis() as u64);
            app.cache_event(channel, frame.clone(), expires);
        }
        app.publish(channel, &frame, except)
    }

    /// Delivers a frame to this node's connections of `user_id`.
    pub fn deliver_to_user(&self, app_id: &str, user_id: &str, message: &[u8]) -> usize {
        let Some(app) = self.registry.get_app(app_id) else {
            return 0;
        };
        let sockets = app.user_sockets(user_id);
        if sockets.is_empty() {
            return 0;
        }
        let frame = ws::text(message);
        for socket in &sockets {
            socket.send(frame.clone());
        }
        sockets.len()
    }

    /// Closes this node's connections of `user_id`.
    pub fn terminate_local(&self, app_id: &str, user_id: &str) -> usize {
        let Some(app) = self.registry.get_app(app_id) else {
            return 0;
        };
        let sockets = app.user_sockets(user_id);
        for socket in &sockets {
            socket.close(CloseCode::UNAUTHORIZED, "You got disconnected by the app.");
        }
        sockets.len()
    }
}

/// Whether a frame is one of the server's own `pusher_internal:` events (member added or
/// removed). A cache channel remembers the app's last event, never these. The frame builders
/// of soketi-protocol always write `event` first, which makes the prefix check exact.
fn is_internal(message: &[u8]) -> bool {
    message.starts_with(br#"{"event":"pusher_internal:"#)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[async_trait]
impl Adapter for LocalAdapter {
    fn local(&self) -> &Arc<Registry> {
        &self.registry
    }

    async fn publish(
        &self,
        app_id: &str,
        channel: &str,
        message: Bytes,
        except: Option<&SocketId>,
    ) -> Result<(), AdapterError> {
        self.deliver(app_id, channel, &message, except);
        Ok(())
    }

    async fn send_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        message: Bytes,
    ) -> Result<(), AdapterError> {
        self.deliver_to_user(app_id, user_id, &message);
        Ok(())
    }

    async fn terminate_user_connections(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<(), AdapterError> {
        self.terminate_local(app_id, user_id);
        Ok(())
    }

    async fn channels(&self, app_id: &str) -> Result<Vec<(String, ChannelCounts)>, AdapterError> {
        Ok(self
            .registry
            .get_app(app_id)
            .map(|a| a.channels())
            .unwrap_or_default())
    }

    async fn channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<ChannelCounts, AdapterError> {
        Ok(self
            .registry
            .get_app(app_id)
            .map(|a| a.channel_counts(channel))
            .unwrap_or_default())
    }

    async fn presence_members(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Vec<PresenceMember>, AdapterError> {
        Ok(self
            .registry
            .get_app(app_id)
            .map(|a| a.presence_members(channel))
            .unwrap_or_default())
    }

    async fn presence_joined(
        &self,
        _app_id: &str,
        _channel: &str,
        _member: &PresenceMember,
    ) -> Result<bool, AdapterError> {
        // On one node, the registry's first connection of a user is the fleet's first.
        Ok(true)
    }

    async fn presence_left(
        &self,
        _app_id: &str,
        _channel: &str,
        _user_id: &str,
    ) -> Result<bool, AdapterError> {
        Ok(true)
    }

    async fn socket_count(&self, app_id: &str) -> Result<u64, AdapterError> {
        Ok(self
            .registry
            .get_app(app_id)
            .map_or(0, |a| a.connection_count()))
    }
}

#[cfg(test)]
mod tests;
