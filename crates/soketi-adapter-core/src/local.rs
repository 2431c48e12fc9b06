//! The adapter of a single node.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use soketi_channels::{ChannelCounts, Registry, SocketRef};
use soketi_protocol::message::{self, PresenceMember};
use soketi_protocol::{ChannelName, CloseCode, SocketId, ws};
use tokio::sync::{Mutex, MutexGuard};

use crate::cache::{self, Cache};
use crate::{Adapter, AdapterError, ChannelLeft, PresenceJoined};

/// Serves every operation from this node's [`Registry`].
pub struct LocalAdapter {
    registry: Arc<Registry>,
    cache: Arc<dyn Cache>,
    cache_ttl: Duration,
    /// Held while this node's view of presence members changes and while the frames about
    /// it are queued, so that a join's `subscription_succeeded` and every `member_added` /
    /// `member_removed` reach each socket in the order the changes happened. An async lock: a
    /// join holds it while it tells the other nodes, before the client hears it succeeded.
    presence: Mutex<()>,
    /// The users signed in here and the connections watching users.
    users: crate::users::Users,
    /// Channels whose `subscription_count` may have changed since the server last looked.
    subscription_changes: parking_lot::Mutex<HashSet<(String, String)>>,
}

/// A connection joining a presence channel as `member`, refused past `max_members` users.
pub(crate) struct PresenceJoin {
    /// The connection.
    pub(crate) socket: SocketRef,
    /// Its presence member.
    pub(crate) member: PresenceMember,
    /// The channel's most users on this node.
    pub(crate) max_members: usize,
}

/// Where a delivered frame comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Published on this node.
    ThisNode,
    /// Relayed from another node.
    OtherNode,
}

impl LocalAdapter {
    /// An adapter over a new, empty registry that keeps cache channels' last events in `cache`
    /// for `cache_ttl`.
    pub fn new(cache: Arc<dyn Cache>, cache_ttl: Duration) -> Self {
        Self {
            registry: Arc::new(Registry::new()),
            cache,
            cache_ttl,
            presence: Mutex::new(()),
            users: crate::users::Users::default(),
            subscription_changes: parking_lot::Mutex::default(),
        }
    }

    /// The users signed in here and their watchers.
    pub(crate) fn users(&self) -> &crate::users::Users {
        &self.users
    }

    /// The lock of this node's presence changes (see the field); a horizontal adapter takes it
    /// while it applies another node's change, and passes the guard to the `_locked` methods.
    pub(crate) async fn presence_lock(&self) -> MutexGuard<'_, ()> {
        self.presence.lock().await
    }

    /// Joins `socket` to a presence channel under the presence lock (`_held`): registers it,
    /// builds its `subscription_succeeded` with this node's members and those `elsewhere` gives
    /// (the other nodes' members, and whether `member`'s user is among them), and announces a
    /// user new to the fleet to this node's other subscribers. Returns the outcome, whether the
    /// user is new on this node (the other nodes must then be told), and the
    /// `subscription_succeeded` frame, which the caller sends, still under the lock, once the
    /// other nodes are told.
    pub(crate) fn join_presence_locked(
        &self,
        _held: &MutexGuard<'_, ()>,
        app_id: &str,
        channel: &str,
        join: PresenceJoin,
        elsewhere: impl FnOnce(&str) -> (Vec<PresenceMember>, bool),
    ) -> Result<(PresenceJoined, bool, Bytes), AdapterError> {
        let PresenceJoin {
            socket,
            member,
            max_members,
        } = join;
        let joined = self.registry.app(app_id).join_presence(
            channel,
            socket.clone(),
            member.clone(),
            max_members,
        )?;
        let (others, user_elsewhere) = elsewhere(&member.user_id);
        let mut members = joined.members;
        let here: std::collections::HashSet<String> =
            members.iter().map(|m| m.user_id.clone()).collect();
        members.extend(others.into_iter().filter(|m| !here.contains(&m.user_id)));
        let succeeded =
            ws::text(message::presence_subscription_succeeded(channel, &members).as_bytes());
        let first_anywhere = joined.first_for_user && !user_elsewhere;
        if first_anywhere {
            let added = message::member_added(channel, &member);
            self.deliver_now(app_id, channel, added.as_bytes(), Some(socket.socket_id()));
        }
        Ok((
            PresenceJoined {
                first_on_channel: joined.first_on_channel,
                first_anywhere,
            },
            joined.first_for_user,
            succeeded,
        ))
    }

    /// Removes a connection from a channel under the presence lock, and tells this node's other
    /// subscribers when a presence user left for good (`still_elsewhere` says whether another
    /// node has the user). Returns the outcome and the user whose last connection on this node
    /// left (the other nodes must then be told).
    pub(crate) fn leave_channel_locked(
        &self,
        _held: &MutexGuard<'_, ()>,
        app_id: &str,
        channel: &str,
        socket_id: &SocketId,
        still_elsewhere: impl FnOnce(&str) -> bool,
    ) -> Option<(ChannelLeft, Option<String>)> {
        let left = self
            .registry
            .get_app(app_id)?
            .unsubscribe(channel, socket_id)?;
        let user_gone = left
            .user_removed
            .clone()
            .filter(|user| !still_elsewhere(user));
        if let Some(user) = &user_gone {
            let removed = message::member_removed(channel, user);
            self.deliver_now(app_id, channel, removed.as_bytes(), None);
        }
        Some((
            ChannelLeft {
                channel_empty: left.channel_empty,
                user_gone,
            },
            left.user_removed,
        ))
    }

    /// The cache of cache channels.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// Delivers a frame to this node's subscribers; what every adapter does for its own node.
    /// A cache channel's event is also kept: by the node that published it, and by every node
    /// when the cache is not shared. Returns how many connections it was queued for.
    pub async fn deliver(
        &self,
        app_id: &str,
        channel: &str,
        message: &[u8],
        except: Option<&SocketId>,
        origin: Origin,
    ) -> usize {
        if ChannelName::classify(channel).is_cache()
            && !is_internal(message)
            && (origin == Origin::ThisNode || !self.cache.is_shared())
        {
            let key = cache::channel_key(app_id, channel);
            let value = Bytes::copy_from_slice(message);
            if let Err(e) = self.cache.set(&key, value, self.cache_ttl).await {
                tracing::warn!(error = %e, channel, "could not keep the event of a cache channel");
            }
        }
        self.deliver_now(app_id, channel, message, except)
    }

    /// Delivers a frame to this node's subscribers without touching the cache.
    pub fn deliver_now(
        &self,
        app_id: &str,
        channel: &str,
        message: &[u8],
        except: Option<&SocketId>,
    ) -> usize {
        // The WebSocket frame is encoded once and the same bytes go to every subscriber.
        let frame = ws::text(message);
        self.registry.app(app_id).publish(channel, &frame, except)
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
        self.deliver(app_id, channel, &message, except, Origin::ThisNode)
            .await;
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

    async fn join_presence(
        &self,
        app_id: &str,
        channel: &str,
        socket: SocketRef,
        member: PresenceMember,
        max_members: usize,
    ) -> Result<PresenceJoined, AdapterError> {
        let held = self.presence_lock().await;
        let join = PresenceJoin {
            socket: socket.clone(),
            member,
            max_members,
        };
        let (joined, _, succeeded) =
            self.join_presence_locked(&held, app_id, channel, join, |_| (Vec::new(), false))?;
        socket.send(succeeded);
        Ok(joined)
    }

    async fn leave_channel(
        &self,
        app_id: &str,
        channel: &str,
        socket_id: &SocketId,
    ) -> Option<ChannelLeft> {
        let held = self.presence_lock().await;
        self.leave_channel_locked(&held, app_id, channel, socket_id, |_| false)
            .map(|(left, _)| left)
    }

    async fn occupancy_changed(
        &self,
        _app_id: &str,
        _channel: &str,
        _occupied: bool,
    ) -> Result<bool, AdapterError> {
        Ok(true)
    }

    fn occupied_elsewhere(&self, _app_id: &str, _channel: &str) -> bool {
        false
    }

    async fn user_signed_in(&self, app_id: &str, user_id: &str) -> bool {
        let mut users = self.users.lock();
        let first = users.add(app_id, user_id);
        if first {
            users.announce(app_id, user_id, true);
        }
        first
    }

    async fn user_signed_out(&self, app_id: &str, user_id: &str) -> bool {
        let mut users = self.users.lock();
        let last = users.remove(app_id, user_id);
        if last {
            users.announce(app_id, user_id, false);
        }
        last
    }

    fn user_online(&self, app_id: &str, user_id: &str) -> bool {
        self.users.lock().here(app_id, user_id)
    }

    fn watch(&self, app_id: &str, socket: SocketRef, watchlist: &[String]) {
        self.users
            .lock()
            .watch(app_id, socket, watchlist, |_| false);
    }

    fn unwatch(&self, app_id: &str, socket_id: &SocketId) {
        self.users.lock().unwatch(app_id, socket_id);
    }

    fn subscription_count_changed(&self, app_id: &str, channel: &str) {
        self.subscription_changes
            .lock()
            .insert((app_id.to_owned(), channel.to_owned()));
    }

    fn take_subscription_count_changes(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.subscription_changes.lock())
            .into_iter()
            .collect()
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
