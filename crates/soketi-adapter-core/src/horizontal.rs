//! An [`Adapter`] for a fleet of nodes over any [`Transport`].
//!
//! Every operation is served locally first, then the other nodes are told (publishing) or
//! asked (queries) through one protobuf envelope. Presence members of the other nodes are
//! replicated here from their `PresenceChange` messages, so that presence answers need no
//! round trip and `member_added` / `member_removed` fire once for the fleet. When a node leaves
//! or dies, its members are dropped and this node tells its own subscribers about the users
//! who were only there; one node of the fleet (see [`Adapter::set_departure_sink`]) reports
//! those users and the channels only the dead node held, for the webhooks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;
use prost::Message as _;
use serde_json::value::RawValue;
use soketi_channels::{ChannelCounts, Registry, SocketRef};
use soketi_protocol::message::{self, PresenceMember};
use soketi_protocol::{ChannelName, SocketId};
use tokio::sync::Notify;

use crate::local::{LocalAdapter, Origin, PresenceJoin};
use crate::transport::{Transport, TransportEvent};
use crate::wire::{self, v1};
use crate::{
    Adapter, AdapterError, ChannelLeft, Departure, DepartureSink, OccupancyQuestion, PresenceJoined,
};

/// A presence member seen on other nodes.
struct RemoteMember {
    info: Option<Box<RawValue>>,
    nodes: HashSet<String>,
}

/// Presence members of the other nodes, by app and channel.
#[derive(Default)]
struct Replica {
    channels: HashMap<(String, String), HashMap<String, RemoteMember>>,
}

impl Replica {
    fn add(&mut self, app: &str, channel: &str, node: &str, user: &str, info: &[u8]) {
        let members = self
            .channels
            .entry((app.to_owned(), channel.to_owned()))
            .or_default();
        let member = members
            .entry(user.to_owned())
            .or_insert_with(|| RemoteMember {
                info: None,
                nodes: HashSet::new(),
            });
        member.nodes.insert(node.to_owned());
        if !info.is_empty() {
            member.info = std::str::from_utf8(info)
                .ok()
                .and_then(|s| RawValue::from_string(s.to_owned()).ok());
        }
    }

    fn remove(&mut self, app: &str, channel: &str, node: &str, user: &str) {
        let key = (app.to_owned(), channel.to_owned());
        if let Some(members) = self.channels.get_mut(&key) {
            if let Some(member) = members.get_mut(user) {
                member.nodes.remove(node);
                if member.nodes.is_empty() {
                    members.remove(user);
                }
            }
            if members.is_empty() {
                self.channels.remove(&key);
            }
        }
    }

    fn has(&self, app: &str, channel: &str, user: &str) -> bool {
        self.channels
            .get(&(app.to_owned(), channel.to_owned()))
            .is_some_and(|m| m.contains_key(user))
    }

    fn members(&self, app: &str, channel: &str) -> Vec<PresenceMember> {
        self.channels
            .get(&(app.to_owned(), channel.to_owned()))
            .map(|members| {
                members
                    .iter()
                    .map(|(id, m)| PresenceMember {
                        user_id: id.clone(),
                        user_info: m.info.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops `node` everywhere; returns the (app, channel, user) left with no node.
    fn drop_node(&mut self, node: &str) -> Vec<(String, String, String)> {
        let mut gone = Vec::new();
        self.channels.retain(|(app, channel), members| {
            members.retain(|user, member| {
                if member.nodes.remove(node) && member.nodes.is_empty() {
                    gone.push((app.clone(), channel.clone(), user.clone()));
                    false
                } else {
                    !member.nodes.is_empty()
                }
            });
            !members.is_empty()
        });
        gone
    }
}

/// A request waiting for the other nodes' answers.
struct Pending {
    awaited: Mutex<HashSet<String>>,
    answers: Mutex<Vec<v1::response::Answer>>,
    done: Notify,
}

impl Pending {
    fn settle(&self, node: &str, answer: Option<v1::response::Answer>) {
        let mut awaited = self.awaited.lock();
        if awaited.remove(node) {
            if let Some(answer) = answer {
                self.answers.lock().push(answer);
            }
            if awaited.is_empty() {
                self.done.notify_one();
            }
        }
    }
}

/// Something built on the fleet's channel, such as the cluster rate limiter: it receives the
/// [`v1::Extension`] messages of its kind, and may greet nodes that join.
pub trait Extension: Send + Sync {
    /// A message of this extension from another node.
    fn on_message(&self, from: &str, payload: &[u8]);
    /// A node joined; the returned payload, if any, is sent to it alone. `is_master` says
    /// whether this node is the one that greets newcomers (always true without a master).
    fn on_node_joined(&self, node: &str, is_master: bool) -> Option<Bytes>;
}

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
    vacated: Mutex<HashMap<(String, String), HashMap<String, Instant>>>,
    /// Channels this node reported occupied, for the snapshot a new node receives.
    occupied_here: Mutex<HashSet<(String, String)>>,
    extensions: parking_lot::RwLock<HashMap<String, Arc<dyn Extension>>>,
    /// Where the departures of nodes that left go, once the server has set it.
    departures: parking_lot::RwLock<Option<Arc<dyn DepartureSink>>>,
}

impl HorizontalAdapter {
    /// Starts an adapter over `transport`, serving this node from `local`. Queries wait at
    /// most `requests_timeout` for the other nodes. Must be called inside a tokio runtime: a
    /// task handles what the transport receives for as long as the adapter lives.
    pub fn start(
        local: LocalAdapter,
        transport: Arc<dyn Transport>,
        requests_timeout: Duration,
    ) -> Arc<Self> {
        let adapter = Arc::new(Self {
            local,
            transport: transport.clone(),
            requests_timeout,
            next_request: AtomicU64::new(1),
            pending: DashMap::new(),
            replica: Mutex::default(),
            occupancy: Mutex::default(),
            vacated: Mutex::default(),
            occupied_here: Mutex::default(),
            extensions: parking_lot::RwLock::default(),
            departures: parking_lot::RwLock::default(),
        });
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

    /// Whether this node greets newcomers: the master, or every node without one.
    pub fn is_master(&self) -> bool {
        self.transport
            .master()
            .is_none_or(|m| m == self.transport.node_id())
    }

    /// Routes the extension messages of `kind` to `extension`.
    pub fn register_extension(&self, kind: &str, extension: Arc<dyn Extension>) {
        self.extensions.write().insert(kind.to_owned(), extension);
    }

    /// Sends an extension message to every other node, or to one.
    pub async fn send_extension(
        &self,
        kind: &str,
        payload: Bytes,
        to: Option<&str>,
    ) -> Result<(), AdapterError> {
        let envelope = self.envelope(
            "",
            v1::envelope::Body::Extension(v1::Extension {
                kind: kind.to_owned(),
                payload: payload.to_vec(),
            }),
        );
        match to {
            Some(node) => self.transport.send_to(node, envelope).await,
            None => self.transport.publish(envelope).await,
        }
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

    async fn on_message(&self, from: &str, payload: &[u8]) {
        let envelope = match v1::Envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(from, error = %e, "dropping an envelope that does not decode");
                return;
            }
        };
        if envelope.version != wire::VERSION {
            tracing::warn!(
                from,
                version = envelope.version,
                "dropping an envelope of another wire version"
            );
            return;
        }
        let app = envelope.app_id.as_str();
        let Some(body) = envelope.body else {
            return;
        };
        use v1::envelope::Body;
        match body {
            Body::Broadcast(b) => {
                let except = (!b.except_socket_id.is_empty())
                    .then(|| SocketId::parse(&b.except_socket_id).ok())
                    .flatten();
                self.local
                    .deliver(
                        app,
                        &b.channel,
                        &b.message,
                        except.as_ref(),
                        Origin::OtherNode,
                    )
                    .await;
            }
            Body::SendToUser(s) => {
                self.local.deliver_to_user(app, &s.user_id, &s.message);
            }
            Body::TerminateUser(t) => {
                self.local.terminate_local(app, &t.user_id);
            }
            Body::Request(request) => self.answer(from, app, request).await,
            Body::Response(response) => {
                if let Some(pending) = self.pending.get(&response.request_id).map(|p| p.clone()) {
                    pending.settle(from, response.answer);
                }
            }
            Body::PresenceChange(change) => self.on_presence_change(from, app, change).await,
            Body::PresenceSnapshot(snapshot) => self.on_snapshot(from, snapshot).await,
            Body::OccupancyChange(change) => {
                let key = (app.to_owned(), change.channel);
                let now = Instant::now();
                let mut occupancy = self.occupancy.lock();
                if change.occupied {
                    occupancy
                        .entry(key)
                        .or_default()
                        .insert(from.to_owned(), now);
                } else {
                    if let Some(nodes) = occupancy.get_mut(&key) {
                        nodes.remove(from);
                        if nodes.is_empty() {
                            occupancy.remove(&key);
                        }
                    }
                    let mut vacated = self.vacated.lock();
                    // Reports older than a minute can no longer matter.
                    vacated.retain(|_, nodes| {
                        nodes.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
                        !nodes.is_empty()
                    });
                    vacated.entry(key).or_default().insert(from.to_owned(), now);
                }
            }
            Body::Extension(extension) => {
                let handler = self.extensions.read().get(&extension.kind).cloned();
                match handler {
                    Some(handler) => handler.on_message(from, &extension.payload),
                    None => tracing::debug!(kind = extension.kind, "no extension of this kind"),
                }
            }
        }
    }

    /// Takes in another node's presence change, and tells this node's subscribers when the
    /// user came to or left the whole fleet as this node sees it. Each node announces the
    /// changes of its own view to its own subscribers, under its presence lock, so a socket
    /// that joins meanwhile gets the user either in its `subscription_succeeded` or after it.
    async fn on_presence_change(&self, from: &str, app: &str, change: v1::PresenceChange) {
        let channel = change.channel.as_str();
        let user = change.user_id.as_str();
        let _presence = self.local.presence_lock().await;
        let local = self.is_local_member(app, channel, user);
        let mut replica = self.replica.lock();
        let before = local || replica.has(app, channel, user);
        if change.present {
            replica.add(app, channel, from, user, &change.user_info);
        } else {
            replica.remove(app, channel, from, user);
        }
        let after = local || replica.has(app, channel, user);
        drop(replica);
        let frame = match (before, after) {
            (false, true) => message::member_added(channel, &wire_member(user, &change.user_info)),
            (true, false) => message::member_removed(channel, user),
            _ => return,
        };
        self.local.deliver_now(app, channel, frame.as_bytes(), None);
    }

    /// Takes in the presence members of a node. Users that nobody knew of are announced to
    /// this node's subscribers: after a partition heals, they would otherwise stay unseen.
    async fn on_snapshot(&self, from: &str, snapshot: v1::PresenceSnapshot) {
        {
            let mut occupancy = self.occupancy.lock();
            // Occupied before this node knew: as good as long ago.
            let long_ago = Instant::now()
                .checked_sub(Duration::from_secs(3600))
                .unwrap_or_else(Instant::now);
            for c in snapshot.occupied {
                occupancy
                    .entry((c.app_id, c.channel))
                    .or_default()
                    .insert(from.to_owned(), long_ago);
            }
        }
        let _presence = self.local.presence_lock().await;
        let mut announce = Vec::new();
        {
            let mut replica = self.replica.lock();
            for channel in snapshot.channels {
                for member in channel.members {
                    let known = replica.has(&channel.app_id, &channel.channel, &member.user_id)
                        || self.is_local_member(&channel.app_id, &channel.channel, &member.user_id);
                    replica.add(
                        &channel.app_id,
                        &channel.channel,
                        from,
                        &member.user_id,
                        &member.user_info,
                    );
                    if !known {
                        announce.push((channel.app_id.clone(), channel.channel.clone(), member));
                    }
                }
            }
        }
        for (app, channel, member) in announce {
            let member = wire_member(&member.user_id, &member.user_info);
            let added = message::member_added(&channel, &member);
            self.local
                .deliver_now(&app, &channel, added.as_bytes(), None);
        }
    }

    fn is_local_member(&self, app: &str, channel: &str, user: &str) -> bool {
        self.local
            .local()
            .get_app(app)
            .is_some_and(|a| a.has_member(channel, user))
    }

    async fn on_node_joined(&self, node: &str) {
        let registry = self.local.local();
        let mut channels = Vec::new();
        for app_id in registry.app_ids() {
            let Some(app) = registry.get_app(&app_id) else {
                continue;
            };
            for (channel, members) in app.presence_snapshot() {
                channels.push(v1::PresenceMembers {
                    app_id: app_id.clone(),
                    channel,
                    members: members
                        .into_iter()
                        .map(|m| v1::Member {
                            user_id: m.user_id,
                            user_info: m
                                .user_info
                                .map(|i| i.get().as_bytes().to_vec())
                                .unwrap_or_default(),
                        })
                        .collect(),
                });
            }
        }
        let occupied = self
            .occupied_here
            .lock()
            .iter()
            .map(|(app_id, channel)| v1::OccupiedChannel {
                app_id: app_id.clone(),
                channel: channel.clone(),
            })
            .collect();
        let snapshot = self.envelope(
            "",
            v1::envelope::Body::PresenceSnapshot(v1::PresenceSnapshot { channels, occupied }),
        );
        if let Err(e) = self.transport.send_to(node, snapshot).await {
            tracing::warn!(node, error = %e, "could not send the presence snapshot to a new node");
        }
        let is_master = self.is_master();
        let greetings: Vec<(String, Bytes)> = self
            .extensions
            .read()
            .iter()
            .filter_map(|(kind, ext)| {
                ext.on_node_joined(node, is_master)
                    .map(|payload| (kind.clone(), payload))
            })
            .collect();
        for (kind, payload) in greetings {
            if let Err(e) = self.send_extension(&kind, payload, Some(node)).await {
                tracing::warn!(node, kind, error = %e, "could not greet a new node");
            }
        }
    }

    /// Whether this node reports what `gone` left behind for the fleet: the master, or without
    /// one the node with the smallest id. Every survivor computes the same from the same nodes.
    fn speaks_for(&self, gone: &str) -> bool {
        let me = self.transport.node_id();
        match self.transport.master() {
            Some(master) if master != gone => master == me,
            _ => self
                .transport
                .live_nodes()
                .iter()
                .filter(|n| n.as_str() != gone)
                .all(|n| me < n.as_str()),
        }
    }

    async fn on_node_left(&self, node: &str) {
        let mut emptied = Vec::new();
        self.occupancy.lock().retain(|key, nodes| {
            let held = nodes.remove(node).is_some();
            if held && nodes.is_empty() {
                emptied.push(key.clone());
            }
            !nodes.is_empty()
        });
        self.vacated.lock().retain(|_, nodes| {
            nodes.remove(node);
            !nodes.is_empty()
        });
        for pending in self.pending.iter() {
            pending.settle(node, None);
        }
        let presence = self.local.presence_lock().await;
        let gone = self.replica.lock().drop_node(node);
        let mut departures = Vec::new();
        for (app, channel, user) in gone {
            if !self.is_local_member(&app, &channel, &user) {
                // Every surviving node tells its own subscribers, so each hears it once.
                let removed = message::member_removed(&channel, &user);
                self.local
                    .deliver_now(&app, &channel, removed.as_bytes(), None);
                departures.push(Departure::MemberRemoved {
                    app_id: app,
                    channel,
                    user_id: user,
                });
            }
        }
        drop(presence);
        for (app, channel) in emptied {
            let here = Adapter::local(self)
                .get_app(&app)
                .is_some_and(|a| a.channel_counts(&channel).subscription_count > 0);
            if !here {
                departures.push(Departure::Vacated {
                    app_id: app,
                    channel,
                });
            }
        }
        let sink = self.departures.read().clone();
        if let Some(sink) = sink
            && !departures.is_empty()
            && self.speaks_for(node)
        {
            sink.departed(departures);
        }
        tracing::info!(node, "a node left the fleet");
    }

    async fn answer(&self, from: &str, app: &str, request: v1::Request) {
        use v1::request::Query;
        use v1::response::Answer;
        let Some(query) = request.query else {
            return;
        };
        let local = self.local.local().get_app(app);
        let answer = match query {
            Query::Channels(_) => Answer::Channels(v1::ChannelList {
                channels: local
                    .map(|a| a.channels())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(channel, counts)| v1::ChannelCount {
                        channel,
                        subscription_count: counts.subscription_count,
                    })
                    .collect(),
            }),
            Query::ChannelCounts(channel) => Answer::ChannelCounts(v1::ChannelCount {
                subscription_count: local
                    .map(|a| a.channel_counts(&channel).subscription_count)
                    .unwrap_or_default(),
                channel,
            }),
            Query::SocketCount(_) => {
                Answer::SocketCount(local.map(|a| a.connection_count()).unwrap_or_default())
            }
            Query::SocketInChannel(q) => Answer::SocketInChannel(
                SocketId::parse(&q.socket_id)
                    .is_ok_and(|id| local.is_some_and(|a| a.is_subscribed(&q.channel, &id))),
            ),
            Query::UserConnections(user) => {
                Answer::UserConnections(local.map_or(0, |a| a.user_connection_count(&user) as u64))
            }
        };
        let response = self.envelope(
            app,
            v1::envelope::Body::Response(v1::Response {
                request_id: request.request_id,
                answer: Some(answer),
            }),
        );
        if let Err(e) = self.transport.send_to(from, response).await {
            tracing::warn!(node = from, error = %e, "could not answer a request");
        }
    }

    /// Asks every live node and returns their answers; partial after the timeout.
    async fn ask(&self, app_id: &str, query: v1::request::Query) -> Vec<v1::response::Answer> {
        let nodes: HashSet<String> = self.transport.live_nodes().into_iter().collect();
        if nodes.is_empty() {
            return Vec::new();
        }
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(Pending {
            awaited: Mutex::new(nodes.clone()),
            answers: Mutex::default(),
            done: Notify::new(),
        });
        self.pending.insert(request_id, pending.clone());
        let body = v1::envelope::Body::Request(v1::Request {
            request_id,
            query: Some(query),
        });
        let sent = self.tell_others(app_id, body).await;
        let finished = match sent {
            Ok(()) => tokio::time::timeout(self.requests_timeout, pending.done.notified())
                .await
                .is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, "could not ask the other nodes; answering for this node");
                false
            }
        };
        self.pending.remove(&request_id);
        if !finished {
            let missing = pending.awaited.lock().len();
            tracing::warn!(
                missing,
                asked = nodes.len(),
                "some nodes did not answer in time; the answer is partial"
            );
        }
        std::mem::take(&mut *pending.answers.lock())
    }

    fn merged_members(&self, app_id: &str, channel: &str) -> Vec<PresenceMember> {
        let mut members = self
            .local
            .local()
            .get_app(app_id)
            .map(|a| a.presence_members(channel))
            .unwrap_or_default();
        let known: HashSet<String> = members.iter().map(|m| m.user_id.clone()).collect();
        members.extend(
            self.replica
                .lock()
                .members(app_id, channel)
                .into_iter()
                .filter(|m| !known.contains(&m.user_id)),
        );
        members
    }

    fn presence_change(
        &self,
        channel: &str,
        user_id: &str,
        info: Option<&RawValue>,
        present: bool,
    ) -> v1::envelope::Body {
        v1::envelope::Body::PresenceChange(v1::PresenceChange {
            channel: channel.to_owned(),
            user_id: user_id.to_owned(),
            user_info: info
                .map(|i| i.get().as_bytes().to_vec())
                .unwrap_or_default(),
            present,
        })
    }
}

#[async_trait]
impl Adapter for HorizontalAdapter {
    fn local(&self) -> &Arc<Registry> {
        self.local.local()
    }

    async fn publish(
        &self,
        app_id: &str,
        channel: &str,
        message: Bytes,
        except: Option<&SocketId>,
    ) -> Result<(), AdapterError> {
        self.local
            .deliver(app_id, channel, &message, except, Origin::ThisNode)
            .await;
        let body = v1::envelope::Body::Broadcast(v1::Broadcast {
            channel: channel.to_owned(),
            message: message.to_vec(),
            except_socket_id: except.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        });
        self.tell_others(app_id, body).await
    }

    async fn send_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        message: Bytes,
    ) -> Result<(), AdapterError> {
        self.local.deliver_to_user(app_id, user_id, &message);
        let body = v1::envelope::Body::SendToUser(v1::SendToUser {
            user_id: user_id.to_owned(),
            message: message.to_vec(),
        });
        self.tell_others(app_id, body).await
    }

    async fn terminate_user_connections(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<(), AdapterError> {
        self.local.terminate_local(app_id, user_id);
        let body = v1::envelope::Body::TerminateUser(v1::TerminateUser {
            user_id: user_id.to_owned(),
        });
        self.tell_others(app_id, body).await
    }

    async fn channels(&self, app_id: &str) -> Result<Vec<(String, ChannelCounts)>, AdapterError> {
        let mut counts: HashMap<String, u64> = self
            .local
            .channels(app_id)
            .await?
            .into_iter()
            .map(|(name, c)| (name, c.subscription_count))
            .collect();
        for answer in self
            .ask(app_id, v1::request::Query::Channels(v1::Empty {}))
            .await
        {
            if let v1::response::Answer::Channels(list) = answer {
                for c in list.channels {
                    *counts.entry(c.channel).or_default() += c.subscription_count;
                }
            }
        }
        Ok(counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, subscription_count)| {
                let user_count = ChannelName::classify(&name)
                    .is_presence()
                    .then(|| self.merged_members(app_id, &name).len() as u64);
                (
                    name,
                    ChannelCounts {
                        subscription_count,
                        user_count,
                    },
                )
            })
            .collect())
    }

    async fn channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<ChannelCounts, AdapterError> {
        let mut subscription_count = self
            .local
            .channel_counts(app_id, channel)
            .await?
            .subscription_count;
        let query = v1::request::Query::ChannelCounts(channel.to_owned());
        for answer in self.ask(app_id, query).await {
            if let v1::response::Answer::ChannelCounts(c) = answer {
                subscription_count += c.subscription_count;
            }
        }
        let user_count = ChannelName::classify(channel)
            .is_presence()
            .then(|| self.merged_members(app_id, channel).len() as u64);
        Ok(ChannelCounts {
            subscription_count,
            user_count,
        })
    }

    async fn presence_members(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Vec<PresenceMember>, AdapterError> {
        Ok(self.merged_members(app_id, channel))
    }

    async fn socket_count(&self, app_id: &str) -> Result<u64, AdapterError> {
        let mut count = self.local.socket_count(app_id).await?;
        for answer in self
            .ask(app_id, v1::request::Query::SocketCount(v1::Empty {}))
            .await
        {
            if let v1::response::Answer::SocketCount(n) = answer {
                count += n;
            }
        }
        Ok(count)
    }

    async fn join_presence(
        &self,
        app_id: &str,
        channel: &str,
        socket: SocketRef,
        member: PresenceMember,
        max_members: usize,
    ) -> Result<PresenceJoined, AdapterError> {
        let info = member.user_info.clone();
        let user_id = member.user_id.clone();
        // The lock is held until the client's subscription_succeeded is queued: the other
        // nodes hear of the join first (so that, once the client knows it is in, any node
        // answers with it), and no presence frame of the channel can reach the client before.
        let held = self.local.presence_lock().await;
        let join = PresenceJoin {
            socket: socket.clone(),
            member,
            max_members,
        };
        let (joined, new_here, succeeded) =
            self.local
                .join_presence_locked(&held, app_id, channel, join, |user| {
                    let replica = self.replica.lock();
                    (
                        replica.members(app_id, channel),
                        replica.has(app_id, channel, user),
                    )
                })?;
        if new_here {
            let body = self.presence_change(channel, &user_id, info.as_deref(), true);
            if let Err(e) = self.tell_others(app_id, body).await {
                tracing::warn!(error = %e, channel, "could not tell the other nodes of a presence join");
            }
        }
        socket.send(succeeded);
        drop(held);
        Ok(joined)
    }

    async fn leave_channel(
        &self,
        app_id: &str,
        channel: &str,
        socket_id: &SocketId,
    ) -> Option<ChannelLeft> {
        // Held while the other nodes are told, so that this node's presence changes reach them
        // in the order they happened here.
        let held = self.local.presence_lock().await;
        let (left, gone_here) =
            self.local
                .leave_channel_locked(&held, app_id, channel, socket_id, |user| {
                    self.replica.lock().has(app_id, channel, user)
                })?;
        if let Some(user_id) = gone_here {
            let body = self.presence_change(channel, &user_id, None, false);
            if let Err(e) = self.tell_others(app_id, body).await {
                tracing::warn!(error = %e, channel, "could not tell the other nodes of a presence leave");
            }
        }
        Some(left)
    }

    async fn occupancy_changed(
        &self,
        app_id: &str,
        channel: &str,
        occupied: bool,
    ) -> Result<bool, AdapterError> {
        let key = (app_id.to_owned(), channel.to_owned());
        if occupied {
            self.occupied_here.lock().insert(key);
        } else {
            self.occupied_here.lock().remove(&key);
        }
        let changed = !self.occupied_elsewhere(app_id, channel);
        let body = v1::envelope::Body::OccupancyChange(v1::OccupancyChange {
            channel: channel.to_owned(),
            occupied,
        });
        if let Err(e) = self.tell_others(app_id, body).await {
            tracing::warn!(error = %e, channel, "could not tell the other nodes of an occupancy change");
        }
        Ok(changed)
    }

    fn occupied_elsewhere(&self, app_id: &str, channel: &str) -> bool {
        self.occupancy
            .lock()
            .contains_key(&(app_id.to_owned(), channel.to_owned()))
    }

    fn settle_time(&self) -> Duration {
        // Far longer than an envelope takes between nodes of one network.
        Duration::from_millis(100)
    }

    fn announces(&self, app_id: &str, channel: &str, q: &OccupancyQuestion) -> bool {
        let key = (app_id.to_owned(), channel.to_owned());
        let me = self.transport.node_id();
        let near = |at: Instant| {
            let gap = if at > q.since {
                at - q.since
            } else {
                q.since - at
            };
            gap <= q.tolerance
        };
        let occupancy = self.occupancy.lock();
        let vacated = self.vacated.lock();
        let vacated = vacated.get(&key);
        if q.occupied {
            // A node that emptied it just before (or had it still, its report arriving after):
            // this is a move within the vacated delay, which cancels the vacated; nothing is
            // announced.
            if vacated.is_some_and(|nodes| {
                nodes
                    .values()
                    .any(|at| q.since.saturating_duration_since(*at) < q.vacated_delay)
            }) {
                return false;
            }
            // A node that had it before spoke already; of nodes that took it at the same
            // moment, the smallest id speaks.
            occupancy.get(&key).is_none_or(|nodes| {
                nodes
                    .iter()
                    .all(|(n, at)| (*at >= q.since || near(*at)) && me < n.as_str())
            })
        } else if occupancy.contains_key(&key) {
            false
        } else {
            // A node that emptied it later speaks; of nodes that emptied it at the same moment,
            // the smallest id speaks.
            vacated.is_none_or(|nodes| {
                nodes.iter().all(|(n, at)| {
                    if near(*at) {
                        me < n.as_str()
                    } else {
                        *at < q.since
                    }
                })
            })
        }
    }

    fn set_departure_sink(&self, sink: Arc<dyn DepartureSink>) {
        *self.departures.write() = Some(sink);
    }
}

/// A presence member as another node sent it: its user info is JSON text, or empty.
fn wire_member(user_id: &str, info: &[u8]) -> PresenceMember {
    PresenceMember {
        user_id: user_id.to_owned(),
        user_info: std::str::from_utf8(info)
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|s| RawValue::from_string(s.to_owned()).ok()),
    }
}

#[cfg(test)]
mod tests;
