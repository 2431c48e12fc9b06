//! The [`Adapter`]: how the server reaches connections and asks about channels, whether they sit
//! on this node or on others.
//!
//! The server holds an adapter only as `Arc<dyn Adapter>` and never touches another node
//! directly. [`LocalAdapter`] serves a single node from its [`soketi_channels::Registry`]; the
//! horizontal adapters (Redis, cluster) implement the same trait by delivering locally and
//! exchanging messages with the other nodes. Every operation is async and fallible because a
//! remote node may be slow or gone.
//!
//! This crate must not depend on any transport; transports depend on it.
#![warn(missing_docs)]

mod error;
mod local;
pub mod ratelimit;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use soketi_channels::{ChannelCounts, Registry};
use soketi_protocol::SocketId;
use soketi_protocol::message::PresenceMember;

pub use error::AdapterError;
pub use local::LocalAdapter;
pub use ratelimit::{Budget, Decision, LocalRateLimiter, RateLimiter};

/// Publishing and queries across every node that serves the same apps.
#[async_trait]
pub trait Adapter: Send + Sync {
    /// This node's registry, where the server adds and removes its own connections.
    fn local(&self) -> &Arc<Registry>;

    /// Sends one Pusher frame (its JSON text) to every subscriber of `channel`, except the
    /// connection `except`. A cache channel also keeps the frame for later subscribers.
    async fn publish(
        &self,
        app_id: &str,
        channel: &str,
        message: Bytes,
        except: Option<&SocketId>,
    ) -> Result<(), AdapterError>;

    /// Sends one Pusher frame (its JSON text) to every connection signed in as `user_id`.
    async fn send_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        message: Bytes,
    ) -> Result<(), AdapterError>;

    /// Closes every connection signed in as `user_id` with 4009.
    async fn terminate_user_connections(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<(), AdapterError>;

    /// Every occupied channel of the app with its counts.
    async fn channels(&self, app_id: &str) -> Result<Vec<(String, ChannelCounts)>, AdapterError>;

    /// One channel's counts; zero when it is empty.
    async fn channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<ChannelCounts, AdapterError>;

    /// The members of a presence channel, one per user.
    async fn presence_members(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Vec<PresenceMember>, AdapterError>;

    /// The app's open connections.
    async fn socket_count(&self, app_id: &str) -> Result<u64, AdapterError>;
}
