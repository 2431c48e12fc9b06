//! Apps, channels, presence members and users of one node.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use soketi_protocol::message::PresenceMember;
use soketi_protocol::{CloseCode, SocketId};

use crate::error::ChannelsError;

/// A connection as the registry sees it: somewhere to queue frames, and a way to close it.
///
/// Implementations must not block: `send` only queues, and decides on its own what to do when
/// the connection's queue is full.
pub trait Outbox: Send + Sync {
    /// The connection's socket id.
    fn socket_id(&self) -> &SocketId;
    /// Queues one encoded WebSocket frame.
    fn send(&self, frame: Bytes);
    /// Closes the connection with a Pusher close code and a reason.
    fn close(&self, code: CloseCode, reason: &str);
}

/// A shared handle on a connection.
pub type SocketRef = Arc<dyn Outbox>;

/// Every app's state on this node.
#[derive(Default)]
pub struct Registry {
    apps: DashMap<Box<str>, Arc<AppChannels>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of `app_id`, created empty on first use.
    pub fn app(&self, app_id: &str) -> Arc<AppChannels> {
        if let Some(app) = self.apps.get(app_id) {
            return app.clone();
        }
        self.apps.entry(app_id.into()).or_default().clone()
    }

    /// The state of `app_id` if anything was ever registered for it.
    pub fn get_app(&self, app_id: &str) -> Option<Arc<AppChannels>> {
        self.apps.get(app_id).map(|a| a.clone())
    }

    /// Every app id with state on this node.
    pub fn app_ids(&self) -> Vec<String> {
        self.apps.iter().map(|e| e.key().to_string()).collect()
    }
}

/// Subscription and member counts of one channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    /// Connections subscribed.
    pub subscription_count: u64,
    /// Distinct users, for presence channels.
    pub user_count: Option<u64>,
}

/// What joining a presence channel did.
#[derive(Debug)]
pub struct Joined {
    /// Whether this is the user's first connection on the channel, so that the others must
    /// hear `member_added`.
    pub first_for_user: bool,
    /// Whether the channel had no connection before, on this node.
    pub first_on_channel: bool,
    /// The members after the join, for `subscription_succeeded`.
    pub members: Vec<PresenceMember>,
}

/// What leaving a channel did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// On a presence channel, the user whose last connection just left.
    pub user_removed: Option<String>,
    /// Whether no connection is left on the channel.
    pub channel_empty: bool,
}

struct Member {
    info: Option<Box<serde_json::value::RawValue>>,
    connections: u32,
}

#[derive(Default)]
struct Presence {
    members: HashMap<String, Member>,
    by_socket: HashMap<SocketId, String>,
}

#[derive(Default)]
struct Channel {
    subscribers: RwLock<HashMap<SocketId, SocketRef>>,
    presence: Mutex<Presence>,
}

impl Channel {
    fn is_empty(&self) -> bool {
        self.subscribers.read().is_empty()
    }
}

/// One app's connections, channels, members and users on this node.
#[derive(Default)]
pub struct AppChannels {
    connections: AtomicU64,
    channels: DashMap<Box<str>, Arc<Channel>>,
    users: DashMap<Box<str>, HashMap<SocketId, SocketRef>>,
}

impl AppChannels {
    /// Counts a new connection, unless the app already has `max`.
    pub fn add_connection(&self, max: Option<u64>) -> Result<(), ChannelsError> {
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        match max {
            Some(max) if before >= max => {
                self.connections.fetch_sub(1, Ordering::AcqRel);
                Err(ChannelsError::ConnectionLimit { max })
            }
            _ => Ok(()),
        }
    }

    /// Forgets a connection counted by [`AppChannels::add_connection`].
    pub fn remove_connection(&self) {
        // Saturate rather than wrap: a double removal must not make the app look full forever.
        let _ = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// The app's connections on this node.
    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// Adds `socket` to a channel without presence. Returns `None` when it was there already,
    /// else whether it is the channel's first connection on this node.
    pub fn subscribe(&self, channel: &str, socket: SocketRef) -> Option<bool> {
        // The insertion happens while the map entry is held, so that a concurrent removal of
        // the emptied channel cannot orphan this subscriber.
        let entry = self.channels.entry(channel.into()).or_default();
        let id = socket.socket_id().clone();
        let mut subscribers = entry.subscribers.write();
        let first = subscribers.is_empty();
        subscribers.insert(id, socket).is_none().then_some(first)
    }

    /// Adds `socket` to a presence channel as `member`. A user already present is not counted
    /// twice; a new user is refused when the channel has `max_members`.
    pub fn join_presence(
        &self,
        channel: &str,
        socket: SocketRef,
        member: PresenceMember,
        max_members: usize,
    ) -> Result<Joined, ChannelsError> {
        let entry = self.channels.entry(channel.into()).or_default();
        let mut presence = entry.presence.lock();
        let id = socket.socket_id().clone();
        if presence.by_socket.contains_key(&id) {
            // A repeated subscribe from the same connection changes nothing.
            return Ok(Joined {
                first_for_user: false,
                first_on_channel: false,
                members: members_of(&presence),
            });
        }
        let presence = &mut *presence;
        let member_count = presence.members.len();
        let first_for_user = match presence.members.get_mut(&member.user_id) {
            Some(existing) => {
                existing.connections += 1;
                false
            }
            None if member_count >= max_members => {
                return Err(ChannelsError::PresenceFull { max: max_members });
            }
            None => {
                presence.members.insert(
                    member.user_id.clone(),
                    Member {
                        info: member.user_info,
                        connections: 1,
                    },
                );
                true
            }
        };
        presence.by_socket.insert(id.clone(), member.user_id);
        let mut subscribers = entry.subscribers.write();
        let first_on_channel = subscribers.is_empty();
        subscribers.insert(id, socket);
        Ok(Joined {
            first_for_user,
            first_on_channel,
            members: members_of(presence),
        })
    }

    /// Removes a connection from a channel, and the channel itself when it empties.
    /// Returns `None` when the connection was not subscribed.
    pub fn unsubscribe(&self, channel: &str, socket_id: &SocketId) -> Option<Left> {
        let ch = self.channels.get(channel)?.clone();
        let mut left = Left::default();
        {
            let mut presence = ch.presence.lock();
            if let Some(user_id) = presence.by_socket.remove(socket_id)
                && let Entry::Occupied(mut e) = presence.members.entry(user_id)
            {
                e.get_mut().connections -= 1;
                if e.get().connections == 0 {
                    left.user_removed = Some(e.remove_entry().0);
                }
            }
            ch.subscribers.write().remove(socket_id)?;
        }
        drop(ch);
        left.channel_empty = self
            .channels
            .remove_if(channel, |_, c| c.is_empty())
            .is_some()
            || !self.channels.contains_key(channel);
        Some(left)
    }

    /// Queues `frame` for every subscriber of `channel` but `except`. Returns how many.
    pub fn publish(&self, channel: &str, frame: &Bytes, except: Option<&SocketId>) -> usize {
        let Some(ch) = self.channels.get(channel).map(|c| c.clone()) else {
            return 0;
        };
        let subscribers = ch.subscribers.read();
        let mut sent = 0;
        for (id, socket) in subscribers.iter() {
            if Some(id) != except {
                socket.send(frame.clone());
                sent += 1;
            }
        }
        sent
    }

    /// Whether `socket_id` is subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &str, socket_id: &SocketId) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.subscribers.read().contains_key(socket_id))
    }

    /// Counts of one channel; zero when nobody is subscribed.
    pub fn channel_counts(&self, channel: &str) -> ChannelCounts {
        match self.channels.get(channel).map(|c| c.clone()) {
            Some(ch) => counts_of(channel, &ch),
            None => ChannelCounts::default(),
        }
    }

    /// Every occupied channel with its counts.
    pub fn channels(&self) -> Vec<(String, ChannelCounts)> {
        let channels: Vec<(String, Arc<Channel>)> = self
            .channels
            .iter()
            .map(|e| (e.key().to_string(), e.value().clone()))
            .collect();
        channels
            .into_iter()
            .map(|(name, ch)| {
                let counts = counts_of(&name, &ch);
                (name, counts)
            })
            .filter(|(_, c)| c.subscription_count > 0)
            .collect()
    }

    /// Every presence channel of the app with its members, for a node that joins the fleet.
    pub fn presence_snapshot(&self) -> Vec<(String, Vec<PresenceMember>)> {
        let channels: Vec<(String, Arc<Channel>)> = self
            .channels
            .iter()
            .filter(|e| e.key().starts_with("presence-"))
            .map(|e| (e.key().to_string(), e.value().clone()))
            .collect();
        channels
            .into_iter()
            .map(|(name, ch)| {
                let members = members_of(&ch.presence.lock());
                (name, members)
            })
            .filter(|(_, members)| !members.is_empty())
            .collect()
    }

    /// Whether `user_id` has a connection on a presence channel of this node.
    pub fn has_member(&self, channel: &str, user_id: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.presence.lock().members.contains_key(user_id))
    }

    /// The connections signed in as `user_id` on this node.
    pub fn user_connection_count(&self, user_id: &str) -> usize {
        self.users.get(user_id).map_or(0, |s| s.len())
    }

    /// The members of a presence channel, one per user.
    pub fn presence_members(&self, channel: &str) -> Vec<PresenceMember> {
        match self.channels.get(channel).map(|c| c.clone()) {
            Some(ch) => members_of(&ch.presence.lock()),
            None => Vec::new(),
        }
    }

    /// Records that `socket` is signed in as `user_id`.
    pub fn add_user(&self, user_id: &str, socket: SocketRef) {
        let id = socket.socket_id().clone();
        self.users
            .entry(user_id.into())
            .or_default()
            .insert(id, socket);
    }

    /// Forgets that `socket_id` is signed in as `user_id`.
    pub fn remove_user(&self, user_id: &str, socket_id: &SocketId) {
        if let Some(mut sockets) = self.users.get_mut(user_id) {
            sockets.remove(socket_id);
        }
        self.users.remove_if(user_id, |_, s| s.is_empty());
    }

    /// The connections signed in as `user_id`.
    pub fn user_sockets(&self, user_id: &str) -> Vec<SocketRef> {
        self.users
            .get(user_id)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

fn counts_of(name: &str, ch: &Channel) -> ChannelCounts {
    let subscription_count = ch.subscribers.read().len() as u64;
    let user_count = name
        .starts_with("presence-")
        .then(|| ch.presence.lock().members.len() as u64);
    ChannelCounts {
        subscription_count,
        user_count,
    }
}

fn members_of(presence: &Presence) -> Vec<PresenceMember> {
    presence
        .members
        .iter()
        .map(|(id, m)| PresenceMember {
            user_id: id.clone(),
            user_info: m.info.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
