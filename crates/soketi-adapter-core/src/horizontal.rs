//! An [`Adapter`] for a fleet of nodes over any [`Transport`].
//!
//! Every operation is served locally first, then the other nodes are told (publishing) or
//! asked (queries) through one protobuf envelope. Presence members of the other nodes are
//! replicated here from their `PresenceChange` messages, so that presence answers need no
//! round trip and `member_added` / `member_removed` fire once for the fleet. When a node leaves
//! or dies, its members are dropped and this node tells its own subscribers about the users
//! who were only there; one node of the fleet (see [`Adapter::set_departure_sink`]) reports
//! those users and the channels only the dead node held, for the webhooks.
//!
//! This file holds the adapter, its envelopes and the dispatch of what the transport receives;
//! each concern has its own file: `relay` (publishes, user messages and terminations), `query`
//! (requests fanned out and their answers), `replica` and `presence` (the other nodes' members
//! and the frames about them), `occupancy` (which node announces a channel occupied or
//! vacated), `subscriptions` (the subscriber counts behind `subscription_count`), `users` (who is online anywhere, for watchlists and the user webhooks, shared as
//! occupancy), `connections` (the connection counts behind apps' fleet-wide quotas), `nodes`
//! (nodes joining and leaving) and `extension` (what is built on the fleet's channel).

mod connections;
mod extension;
mod nodes;
mod occupancy;
mod presence;
mod query;
mod relay;
mod replica;
mod subscriptions;
mod users;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;
use prost::Message as _;
use soketi_channels::{ChannelCounts, Registry, SocketRef};
use soketi_protocol::SocketId;
use soketi_protocol::message::PresenceMember;

use crate::local::LocalAdapter;
use crate::transport::{Transport, TransportEvent};
use crate::wire::{self, v1};
use crate::{
    Adapter, AdapterError, ChannelLeft, DepartureSink, OccupancyQuestion, PresenceJoined,
    RequestMetrics,
};

use connections::PeerCounts;
pub use extension::{Extension, Fleet};
use occupancy::Vacate;
use query::Pending;
use replica::Replica;

/// An adapter for a fleet: local delivery plus a [`Transport`] to the other nodes.
pub struct HorizontalAdapter {
    local: LocalAdapter,
    transport: Arc<dyn Transport>,
    requests_timeout: Duration,
    next_request: AtomicU64,
    pending: DashMap<u64, Arc<Pending>>,
    replica: Mutex<Replica>,
    /// Channels occupied on other nodes, by (app, channel), with the nodes.
    occupancy: Mutex<HashMap<(String, String), HashMap<String, Instant>>>,
    /// When other nodes reported a channel empty, for the choice of the node that announces it.
    vacated: Mutex<HashMap<(String, String), HashMap<String, Vacate>>>,
    /// Channels this node reported occupied, for the snapshot a new node receives.
    occupied_here: Mutex<HashSet<(String, String)>>,
    /// When a presence user's last connection on another node left and the user was gone from
    /// the fleet as this node saw it, by (app, channel, user): a join here soon after is a move.
    left_fleet: Mutex<HashMap<(String, String, String), Instant>>,
    extensions: parking_lot::RwLock<HashMap<String, Arc<dyn Extension>>>,
    /// Extension messages that came before their extension was registered (a master's greeting
    /// can reach a node that is still wiring itself up), handed over on registration.
    unclaimed: Mutex<Vec<(String, v1::Extension)>>,
    /// Where the departures of nodes that left go, once the server has set it.
    departures: parking_lot::RwLock<Option<Arc<dyn DepartureSink>>>,
    /// Where requests to the other nodes and their answers are counted, once the server has
    /// set it.
    request_metrics: parking_lot::RwLock<Option<Arc<dyn RequestMetrics>>>,
    /// Senders of envelopes that were dropped (undecodable, another wire version), already
    /// reported: a broken or hostile peer is logged once, not once per envelope.
    reported: Mutex<HashSet<String>>,
    /// The other nodes' open connections per app, for fleet-wide connection quotas.
    peer_counts: Mutex<HashMap<String, PeerCounts>>,
    /// Whether this node's connection counts changed since they were last shared.
    counts_changed: AtomicBool,
    /// The fleet's subscriber counts for `subscription_count`.
    subscriptions: subscriptions::FleetSubscriptions,
    /// Set once this node said goodbye: it shares nothing more.
    left: AtomicBool,
    /// Users gone from the fleet as this node sees it whose `offline` its watchers have not
    /// heard yet, by (app, user), with the number of the wait ([`users::OFFLINE_GRACE`]).
    offline_pending: Mutex<HashMap<(String, String), u64>>,
    /// This adapter, for the tasks it starts.
    me: Weak<Self>,
}

/// How many senders of dropped envelopes are remembered; past that, they go unreported.
const MAX_REPORTED: usize = 1024;

impl HorizontalAdapter {
    /// Starts an adapter over `transport`, serving this node from `local`. Queries wait at
    /// most `requests_timeout` for the other nodes. Must be called inside a tokio runtime: a
    /// task handles what the transport receives for as long as the adapter lives.
    pub fn start(
        local: LocalAdapter,
        transport: Arc<dyn Transport>,
        requests_timeout: Duration,
    ) -> Arc<Self> {
        let adapter = Arc::new_cyclic(|me| Self {
            local,
            transport: transport.clone(),
            requests_timeout,
            next_request: AtomicU64::new(1),
            pending: DashMap::new(),
            replica: Mutex::default(),
            occupancy: Mutex::default(),
            vacated: Mutex::default(),
            occupied_here: Mutex::default(),
            left_fleet: Mutex::default(),
            extensions: parking_lot::RwLock::default(),
            unclaimed: Mutex::default(),
            departures: parking_lot::RwLock::default(),
            request_metrics: parking_lot::RwLock::default(),
            reported: Mutex::default(),
            peer_counts: Mutex::default(),
            counts_changed: AtomicBool::new(false),
            subscriptions: subscriptions::FleetSubscriptions::default(),
            left: AtomicBool::new(false),
            offline_pending: Mutex::default(),
            me: me.clone(),
        });
        tokio::spawn(connections::share_counts(Arc::downgrade(&adapter)));
        if let Some(mut events) = transport.events() {
            let weak: Weak<Self> = Arc::downgrade(&adapter);
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    let Some(adapter) = weak.upgrade() else {
                        return;
                    };
                    adapter.on_event(event).await;
                }
            });
        }
        adapter
    }

    /// The transport, for its node id and for leaving the fleet at shutdown.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    fn envelope(&self, app_id: &str, body: v1::envelope::Body) -> Bytes {
        v1::Envelope {
            version: wire::VERSION,
            node_id: self.transport.node_id().to_owned(),
            app_id: app_id.to_owned(),
            body: Some(body),
        }
        .encode_to_vec()
        .into()
    }

    async fn tell_others(
        &self,
        app_id: &str,
        body: v1::envelope::Body,
    ) -> Result<(), AdapterError> {
        self.transport.publish(self.envelope(app_id, body)).await
    }

    async fn on_event(&self, event: TransportEvent) {
        match event {
            TransportEvent::Message { from, payload } => self.on_message(&from, &payload).await,
            TransportEvent::NodeJoined(node) => self.on_node_joined(&node).await,
            TransportEvent::NodeLeft(node) => self.on_node_left(&node).await,
        }
    }

    /// Whether a dropped envelope from `from` is the first one reported for that sender.
    fn first_from(&self, from: &str) -> bool {
        let mut reported = self.reported.lock();
        reported.len() < MAX_REPORTED && reported.insert(from.to_owned())
    }

    async fn on_message(&self, from: &str, payload: &[u8]) {
        let envelope = match v1::Envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                if self.first_from(from) {
                    tracing::warn!(from, error = %e, "dropping envelopes that do not decode (reported once per node)");
                } else {
                    tracing::debug!(from, error = %e, "dropping an envelope that does not decode");
                }
                return;
            }
        };
        if envelope.version != wire::VERSION {
            if self.first_from(from) {
                tracing::warn!(
                    from,
                    version = envelope.version,
                    "dropping envelopes of another wire version (reported once per node)"
                );
            }
            return;
        }
        let app = envelope.app_id.as_str();
        let Some(body) = envelope.body else {
            return;
        };
        use v1::envelope::Body;
        match body {
            Body::Broadcast(b) => self.on_broadcast(app, b).await,
            Body::SendToUser(s) => self.on_send_to_user(app, s),
            Body::TerminateUser(t) => self.on_terminate_user(app, t),
            Body::Request(request) => self.answer(from, app, request).await,
            Body::Response(response) => self.on_response(from, response),
            Body::PresenceChange(change) => self.on_presence_change(from, app, change).await,
            Body::PresenceSnapshot(snapshot) => self.on_snapshot(from, snapshot).await,
            Body::OccupancyChange(change) => self.on_occupancy_change(from, app, change),
            Body::Extension(extension) => self.on_extension(from, extension),
            Body::ConnectionCounts(counts) => {
                self.take_connection_counts(from, counts.apps, counts.full)
            }
            Body::SubscriptionCounts(counts) => {
                self.take_subscription_counts(from, counts.channels, false)
            }
        }
    }
}

#[async_trait]
impl Adapter for HorizontalAdapter {
    fn local(&self) -> &Arc<Registry> {
        self.local.local()
    }

    async fn open_connection(&self, app_id: &str, max: Option<u64>) -> Result<(), AdapterError> {
        self.open_fleet_connection(app_id, max)
    }

    async fn close_connection(&self, app_id: &str, socket_id: &SocketId, user_id: Option<&str>) {
        let app = self.local.local().app(app_id);
        if let Some(user_id) = user_id {
            app.remove_user(user_id, socket_id);
        }
        app.remove_connection();
        self.counts_changed.store(true, Ordering::Release);
    }

    async fn user_signed_in(&self, app_id: &str, user_id: &str) -> bool {
        self.fleet_user_signed_in(app_id, user_id).await
    }

    async fn user_signed_out(&self, app_id: &str, user_id: &str) -> bool {
        self.fleet_user_signed_out(app_id, user_id).await
    }

    fn user_online(&self, app_id: &str, user_id: &str) -> bool {
        self.fleet_user_online(app_id, user_id)
    }

    fn watch(&self, app_id: &str, socket: SocketRef, watchlist: &[String]) {
        self.fleet_watch(app_id, socket, watchlist);
    }

    fn unwatch(&self, app_id: &str, socket_id: &SocketId) {
        self.local.users().lock().unwatch(app_id, socket_id);
    }

    fn subscription_count_changed(&self, app_id: &str, channel: &str) {
        self.local.subscription_count_changed(app_id, channel);
        self.subscriptions.changed_here(app_id, channel);
    }

    fn take_subscription_count_changes(&self) -> Vec<(String, String)> {
        self.local.take_subscription_count_changes()
    }

    fn subscription_count(&self, app_id: &str, channel: &str) -> crate::SubscriptionCount {
        self.fleet_subscription_count(app_id, channel)
    }

    fn peer_connections(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.peer_connection_counts()
    }

    async fn leave_fleet(&self) -> Result<(), AdapterError> {
        self.left.store(true, Ordering::Release);
        self.transport.leave().await
    }

    async fn publish(
        &self,
        app_id: &str,
        channel: &str,
        message: Bytes,
        except: Option<&SocketId>,
    ) -> Result<(), AdapterError> {
        self.relay_publish(app_id, channel, message, except).await
    }

    async fn send_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        message: Bytes,
    ) -> Result<(), AdapterError> {
        self.relay_to_user(app_id, user_id, message).await
    }

    async fn terminate_user_connections(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<(), AdapterError> {
        self.relay_terminate_user(app_id, user_id).await
    }

    async fn channels(&self, app_id: &str) -> Result<Vec<(String, ChannelCounts)>, AdapterError> {
        self.fleet_channels(app_id).await
    }

    async fn channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<ChannelCounts, AdapterError> {
        self.fleet_channel_counts(app_id, channel).await
    }

    async fn presence_members(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Vec<PresenceMember>, AdapterError> {
        Ok(self.merged_members(app_id, channel))
    }

    async fn socket_count(&self, app_id: &str) -> Result<u64, AdapterError> {
        self.fleet_socket_count(app_id).await
    }

    async fn join_presence(
        &self,
        app_id: &str,
        channel: &str,
        socket: SocketRef,
        member: PresenceMember,
        max_members: usize,
    ) -> Result<PresenceJoined, AdapterError> {
        self.join_fleet_presence(app_id, channel, socket, member, max_members)
            .await
    }

    async fn leave_channel(
        &self,
        app_id: &str,
        channel: &str,
        socket_id: &SocketId,
    ) -> Option<ChannelLeft> {
        self.leave_fleet_channel(app_id, channel, socket_id).await
    }

    async fn occupancy_changed(
        &self,
        app_id: &str,
        channel: &str,
        occupied: bool,
    ) -> Result<bool, AdapterError> {
        self.share_occupancy(app_id, channel, occupied).await
    }

    fn occupied_elsewhere(&self, app_id: &str, channel: &str) -> bool {
        self.occupied_on_other_nodes(app_id, channel)
    }

    fn settle_time(&self) -> Duration {
        // Far longer than an envelope takes between nodes of one network.
        Duration::from_millis(100)
    }

    fn announces(&self, app_id: &str, channel: &str, q: &OccupancyQuestion) -> bool {
        self.announces_occupancy(app_id, channel, q)
    }

    fn member_moved(&self, app_id: &str, channel: &str, user_id: &str, within: Duration) -> bool {
        self.left_fleet_within(app_id, channel, user_id, within)
    }

    fn set_departure_sink(&self, sink: Arc<dyn DepartureSink>) {
        *self.departures.write() = Some(sink);
    }

    fn set_request_metrics(&self, metrics: Arc<dyn RequestMetrics>) {
        *self.request_metrics.write() = Some(metrics);
    }
}

#[cfg(test)]
mod tests;
