//! How the server reaches connections and asks about channels, whether they sit on this node
//! or on others: the [`Adapter`] trait, its two implementations, and the services a fleet
//! shares.
//!
//! The server holds an adapter only as `Arc<dyn Adapter>` and never touches another node
//! directly. Every operation is async and fallible because a remote node may be slow or gone.
//!
//! - [`LocalAdapter`] serves a single node from its [`soketi_channels::Registry`].
//! - [`HorizontalAdapter`] serves a fleet over any [`Transport`] (Redis, NATS and the cluster
//!   transport live in their own crates; [`MemoryHub`] is a fleet inside one process): it
//!   delivers to this node first, then sends one protobuf envelope to the others; queries fan
//!   out and merge; presence members of the other nodes are replicated; occupancy is arbitrated
//!   so that `channel_occupied` / `channel_vacated` fire once for the fleet; what a node that
//!   leaves takes with it is reported once, to a [`DepartureSink`]. Things built on the fleet's
//!   channel ([`Extension`]s, such as the cluster rate limiter) see it through [`Fleet`].
//! - The connection lifecycle: a server opens, subscribes, signs in, leaves and closes its
//!   connections through the [`Adapter`], never through the registry, so the counts that
//!   quotas and queries read change in one place.
//! - The presence lifecycle: [`Adapter::join_presence`] and [`Adapter::leave_channel`] register
//!   the connection and send `subscription_succeeded`, `member_added` and `member_removed`
//!   themselves, each change of this node's view of the members and its frames under one lock,
//!   so a connection hears of a member exactly once, in its list or after it. The caller gets
//!   the outcome ([`PresenceJoined`], [`ChannelLeft`]) for its webhooks.
//! - [`wire`]: the node-to-node format (`proto/soketi/v1/node.proto`), and [`membership`]: the
//!   liveness of a fleet on a pub/sub bus, shared by the Redis and NATS transports.
//! - [`Cache`] (the last event of cache channels), [`Queue`] (jobs retried with back-off) and
//!   [`RateLimiter`] (per-app budgets over a [`SlidingWindow`] of one second), with in-memory
//!   implementations; shared ones live in the transports' crates.
//!
//! This crate must not depend on any transport; transports depend on it.
//!
//! # Example
//!
//! Two nodes of a fleet, over [`MemoryHub`]: a publish on one reaches a subscriber of the
//! other.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use soketi_adapter_core::{Adapter, HorizontalAdapter, LocalAdapter, MemoryCache, MemoryHub};
//! use soketi_channels::Outbox;
//! use soketi_protocol::{CloseCode, SocketId};
//!
//! /// A connection that keeps the frames it is sent; a server's writes them to its socket.
//! struct Inbox {
//!     id: SocketId,
//!     frames: Mutex<Vec<Bytes>>,
//! }
//!
//! impl Outbox for Inbox {
//!     fn socket_id(&self) -> &SocketId {
//!         &self.id
//!     }
//!     fn send(&self, frame: Bytes) {
//!         self.frames.lock().unwrap().push(frame);
//!     }
//!     fn close(&self, _code: CloseCode, _reason: &str) {}
//! }
//!
//! /// One node: its own registry and cache, and a transport to the others. A real fleet uses
//! /// the Redis, NATS or cluster transport instead of an in-process hub.
//! fn node(hub: &MemoryHub, id: &str) -> Arc<dyn Adapter> {
//!     let cache = Arc::new(MemoryCache::new());
//!     let local = LocalAdapter::new(cache, Duration::from_secs(3600));
//!     HorizontalAdapter::start(local, hub.join(id), Duration::from_secs(1))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let hub = MemoryHub::new();
//! let (a, b) = (node(&hub, "a"), node(&hub, "b"));
//! let inbox = Arc::new(Inbox { id: SocketId::from_parts(1, 2), frames: Mutex::default() });
//! b.subscribe("app-id", "news", inbox.clone()).await;
//!
//! // Published on node a; node b delivers it to its own subscriber.
//! let event = r#"{"event":"update","channel":"news","data":"{}"}"#;
//! a.publish("app-id", "news", Bytes::from(event), None).await?;
//! let delivered = async {
//!     while inbox.frames.lock().unwrap().is_empty() {
//!         tokio::time::sleep(Duration::from_millis(5)).await;
//!     }
//! };
//! tokio::time::timeout(Duration::from_secs(5), delivered).await.expect("delivered in time");
//! assert!(inbox.frames.lock().unwrap()[0].ends_with(event.as_bytes()));
//! # Ok::<(), soketi_adapter_core::AdapterError>(())
//! # }).unwrap();
//! ```

pub mod cache;
mod error;
mod horizontal;
mod local;
pub mod membership;
mod pubsub_frame;
pub mod queue;
pub mod ratelimit;
mod transport;
mod users;
mod window;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use soketi_channels::Registry;
pub use soketi_channels::{ChannelCounts, ChannelsError, SocketRef};
use soketi_protocol::SocketId;
use soketi_protocol::message::PresenceMember;

pub use cache::{Cache, MemoryCache};
pub use error::AdapterError;
pub use horizontal::{Extension, Fleet, HorizontalAdapter};
pub use local::{LocalAdapter, Origin};
pub use queue::{
    InFlight, InFlightTask, JobError, JobHandler, MemoryBatches, Queue, RetryPolicy, SyncQueue,
};
pub use ratelimit::{Budget, Decision, LocalRateLimiter, RateLimiter, SlidingWindow};
pub use transport::{MemoryHub, PeerInfo, Transport, TransportEvent};
pub use users::user_key;

/// A channel's subscribers across the fleet, for `subscription_count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionCount {
    /// Connections subscribed anywhere in the fleet, as this node last heard.
    pub count: u64,
    /// Whether this node speaks for the fleet about the channel: of the nodes with
    /// subscribers, the one with the smallest id. Every node computes it from the same counts.
    pub speaks: bool,
}

/// Runs the README's example as a doctest, so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// A node's question before it announces `channel_occupied` or `channel_vacated`.
#[derive(Clone, Copy, Debug)]
pub struct OccupancyQuestion {
    /// `channel_occupied` when true, else `channel_vacated`.
    pub occupied: bool,
    /// When this node saw the change.
    pub since: std::time::Instant,
    /// Changes of other nodes this close to `since` count as simultaneous.
    pub tolerance: std::time::Duration,
    /// How long a vacated channel waits before it is announced; a channel taken again within
    /// it was never vacated.
    pub vacated_delay: std::time::Duration,
}

/// What joining a presence channel did, for the caller's webhooks and occupancy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceJoined {
    /// The channel had no connection on this node before.
    pub first_on_channel: bool,
    /// The user was nowhere in the fleet before: `member_added` went out.
    pub first_anywhere: bool,
}

/// What leaving a channel did, for the caller's webhooks and occupancy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelLeft {
    /// The channel has no connection left on this node.
    pub channel_empty: bool,
    /// On a presence channel, the user whose last connection anywhere just left:
    /// `member_removed` went out.
    pub user_gone: Option<String>,
}

/// What the fleet lost with a node that left without leaving its channels first (it died, or
/// went silent past the node timeout): the users whose last connection anywhere was there, and
/// the channels only it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Departure {
    /// `user_id` has no connection left on the presence channel `channel` anywhere.
    MemberRemoved {
        /// The app of the channel.
        app_id: String,
        /// The presence channel.
        channel: String,
        /// The user who is gone.
        user_id: String,
    },
    /// `user_id` has no signed-in connection left anywhere.
    UserOffline {
        /// The app of the user.
        app_id: String,
        /// The user who went offline.
        user_id: String,
    },
    /// `channel` has no subscriber left anywhere.
    Vacated {
        /// The app of the channel.
        app_id: String,
        /// The channel that is empty now.
        channel: String,
    },
}

/// Where an adapter reports [`Departure`]s: the server's webhooks.
pub trait DepartureSink: Send + Sync {
    /// The departures a node left behind, reported by one node of the fleet.
    fn departed(&self, departures: Vec<Departure>);
}

/// Where a horizontal adapter counts its requests to the other nodes (the queries of the HTTP
/// API and of connection quotas) and their answers: the server's metrics, soketi's
/// `horizontal_adapter_*`. Each call names the app the request is about.
pub trait RequestMetrics: Send + Sync {
    /// This node sent a request to the other nodes.
    fn request_sent(&self, app_id: &str);
    /// This node answered another node's request.
    fn request_received(&self, app_id: &str);
    /// Another node answered one of this node's requests.
    fn response_received(&self, app_id: &str);
    /// One of this node's requests ended `elapsed` after it was sent: with every node's answer
    /// (`complete`), or at the requests timeout without some of them.
    fn request_resolved(&self, app_id: &str, complete: bool, elapsed: std::time::Duration);
}

/// What subscribing to a channel without presence did, for the caller's occupancy webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscribed {
    /// The channel had no connection on this node before.
    pub first_on_channel: bool,
}

/// Publishing and queries across every node that serves the same apps, and the lifecycle of
/// this node's connections: opened, subscribed, joined, signed in, left, closed. The adapter
/// decides what the channel and the fleet hear and in what order; the caller turns the outcome
/// into the connection's own frames and its webhooks. The counts of connections, subscriptions
/// and users per app change only here.
#[async_trait]
pub trait Adapter: Send + Sync {
    /// This node's registry of connections, channels and users. Reading it is for queries of
    /// this node alone; changes go through the lifecycle methods below.
    fn local(&self) -> &Arc<Registry>;

    /// Counts a new connection of the app, unless the app already has `max`
    /// ([`ChannelsError::ConnectionLimit`]): on this node alone, or in a fleet on this node plus
    /// the other nodes' counts as last shared, which lag by a short propagation window. Every
    /// counted connection ends with [`Adapter::close_connection`].
    async fn open_connection(&self, app_id: &str, max: Option<u64>) -> Result<(), AdapterError> {
        Ok(self.local().app(app_id).add_connection(max)?)
    }

    /// Subscribes `socket` to a channel without presence (public, private, encrypted, cache).
    /// Returns `None` when it was subscribed already.
    async fn subscribe(
        &self,
        app_id: &str,
        channel: &str,
        socket: SocketRef,
    ) -> Option<Subscribed> {
        self.local()
            .app(app_id)
            .subscribe(channel, socket)
            .map(|first_on_channel| Subscribed { first_on_channel })
    }

    /// Signs `socket` in as `user_id`, after `previous` when it had signed in before, so that
    /// [`Adapter::send_to_user`] and [`Adapter::terminate_user_connections`] reach it.
    async fn sign_in(
        &self,
        app_id: &str,
        socket: SocketRef,
        user_id: &str,
        previous: Option<&str>,
    ) {
        let app = self.local().app(app_id);
        if let Some(previous) = previous {
            app.remove_user(previous, socket.socket_id());
        }
        app.add_user(user_id, socket);
    }

    /// Forgets a connection counted by [`Adapter::open_connection`], signed in as `user_id`
    /// when it was. The caller leaves its channels first, with [`Adapter::leave_channel`].
    async fn close_connection(&self, app_id: &str, socket_id: &SocketId, user_id: Option<&str>) {
        let app = self.local().app(app_id);
        if let Some(user_id) = user_id {
            app.remove_user(user_id, socket_id);
        }
        app.remove_connection();
    }

    /// Counts a connection signed in as `user_id` as online, for watchlists and the user
    /// webhooks, after [`Adapter::sign_in`]; in a fleet the other nodes are told of the user's
    /// first connection here. When the user was online nowhere before, the connections that
    /// watch it get `online`. Returns whether it is the user's first connection on this node:
    /// the caller then hands `user_online` to the webhooks, which decide once for the fleet
    /// (with [`Adapter::announces`] on [`user_key`]), as for `channel_occupied`.
    async fn user_signed_in(&self, app_id: &str, user_id: &str) -> bool;

    /// Forgets a connection counted by [`Adapter::user_signed_in`], when it closes or signs in
    /// as someone else. When it was the user's last anywhere, the connections that watch it get
    /// `offline`. Returns whether it was the user's last connection on this node, for
    /// `user_offline` as for `channel_vacated`.
    async fn user_signed_out(&self, app_id: &str, user_id: &str) -> bool;

    /// Whether `user_id` has a connection counted by [`Adapter::user_signed_in`] anywhere, as
    /// far as this node knows without asking.
    fn user_online(&self, app_id: &str, user_id: &str) -> bool;

    /// Makes `socket` watch the users of `watchlist` (replacing what it watched) and sends it
    /// `pusher_internal:watchlist_events` with their state now, then one each time one of them
    /// comes online or goes offline anywhere: in that frame or after it, never both.
    fn watch(&self, app_id: &str, socket: SocketRef, watchlist: &[String]);

    /// Stops `socket_id` watching anyone.
    fn unwatch(&self, app_id: &str, socket_id: &SocketId);

    /// Marks `channel`'s subscribers on this node as changed, for `subscription_count`: the
    /// server calls it on each subscribe and leave of a non-presence channel of an app with
    /// `enable_subscription_count`. In a fleet the other nodes are told the new count within
    /// one share interval (50 ms).
    fn subscription_count_changed(&self, _app_id: &str, _channel: &str) {}

    /// Takes the channels whose fleet-wide subscriber count may have changed since the last
    /// call: changed here, or on another node by its reports, or with a node gone.
    fn take_subscription_count_changes(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// `channel`'s subscribers across the fleet as this node knows them without asking, and
    /// whether this node speaks for the fleet about it (the `subscription_count` webhook).
    fn subscription_count(&self, app_id: &str, channel: &str) -> SubscriptionCount {
        let here = self
            .local()
            .get_app(app_id)
            .map_or(0, |app| app.channel_counts(channel).subscription_count);
        SubscriptionCount {
            count: here,
            speaks: here > 0,
        }
    }

    /// Whether `channel` has subscribers anywhere, as far as this node knows without asking:
    /// here, or on another node by the occupancy reports.
    fn occupied(&self, app_id: &str, channel: &str) -> bool {
        let here = self
            .local()
            .get_app(app_id)
            .is_some_and(|a| a.channel_counts(channel).subscription_count > 0);
        here || self.occupied_elsewhere(app_id, channel)
    }

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

    /// Adds `socket` to the presence channel `channel` as `member`, and writes its
    /// `pusher_internal:subscription_succeeded` with the members of the whole fleet. When the
    /// user is new to the fleet, this node's other subscribers of the channel get
    /// `member_added` and the other nodes are told, so that each tells its own.
    ///
    /// The guarantee a client relies on: no `member_added` or `member_removed` of the channel
    /// reaches the socket before its `subscription_succeeded`, and a member that joins or
    /// leaves anywhere meanwhile is either in that list or announced after it, never both and
    /// never neither. Every change of this node's view of a channel's members, and the frames it
    /// sends about it, happen under one lock with the join.
    async fn join_presence(
        &self,
        app_id: &str,
        channel: &str,
        socket: SocketRef,
        member: PresenceMember,
        max_members: usize,
    ) -> Result<PresenceJoined, AdapterError>;

    /// Removes a connection from `channel` (of any kind). When it was a presence user's last
    /// connection anywhere, this node's other subscribers get `member_removed` and the other
    /// nodes are told. Returns `None` when the connection was not subscribed.
    async fn leave_channel(
        &self,
        app_id: &str,
        channel: &str,
        socket_id: &SocketId,
    ) -> Option<ChannelLeft>;

    /// Tells the other nodes that `channel` became occupied (`true`) or empty (`false`) on
    /// this node. Returns whether the whole fleet changed with it: the first subscriber
    /// anywhere, or the last one gone everywhere, in which case the caller fires the webhook.
    async fn occupancy_changed(
        &self,
        app_id: &str,
        channel: &str,
        occupied: bool,
    ) -> Result<bool, AdapterError>;

    /// Whether `channel` has subscribers on another node, as far as this node knows.
    fn occupied_elsewhere(&self, app_id: &str, channel: &str) -> bool;

    /// How long a fleet-wide change should settle before a node decides to announce it: the
    /// time the other nodes' reports take to arrive. Zero on one node.
    fn settle_time(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Whether this node is the one that announces a change of `channel`'s occupancy that it
    /// saw at `question.since`, so that the fleet announces it once. Always true on one node.
    fn announces(&self, _app_id: &str, _channel: &str, _question: &OccupancyQuestion) -> bool {
        true
    }

    /// Whether `user_id` left `channel` through another node of the fleet less than `within`
    /// ago, so that its arrival here is a move: within the vacated delay, no `member_added` is
    /// announced (the other node's `member_removed` is dropped, as the user is back). Never on
    /// one node, where a quick return cancels the pending `member_removed` itself.
    fn member_moved(
        &self,
        _app_id: &str,
        _channel: &str,
        _user_id: &str,
        _within: std::time::Duration,
    ) -> bool {
        false
    }

    /// The open connections per app of the other nodes, by node id, as this node last heard
    /// them: what a fleet-wide connection quota adds to this node's own count. Empty on one
    /// node.
    fn peer_connections(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> {
        std::collections::BTreeMap::new()
    }

    /// Tells the other nodes that this one leaves, so that they drop its members and counts
    /// at once; it tells them nothing more afterwards. Nothing to do on one node.
    async fn leave_fleet(&self) -> Result<(), AdapterError> {
        Ok(())
    }

    /// Sets where the departures of nodes that left go. One node of the fleet (the master, or
    /// the node with the smallest id without one) reports them, so that the fleet reports each
    /// once. One node alone has no departures, so the default drops the sink.
    fn set_departure_sink(&self, _sink: Arc<dyn DepartureSink>) {}

    /// Sets where the adapter counts its requests to the other nodes and their answers. One
    /// node alone asks no one, so the default drops the sink.
    fn set_request_metrics(&self, _metrics: Arc<dyn RequestMetrics>) {}
}
