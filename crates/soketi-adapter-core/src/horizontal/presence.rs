//! The presence of the fleet: this node's members merged with the replica of the others', the
//! changes this node tells the others, and the `member_added` / `member_removed` it sends its
//! own subscribers when the fleet's members change as it sees them.
//!
//! Every change of this node's view of a channel's members, and the frames about it, happen
//! under `LocalAdapter::presence_lock`, as do joins and leaves: so a socket that joins
//! meanwhile gets a user either in its `subscription_succeeded` or after it, never both and
//! never neither.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use soketi_channels::{ChannelsError, SocketRef};
use soketi_protocol::SocketId;
use soketi_protocol::message::{self, PresenceMember};

use super::HorizontalAdapter;
use crate::local::PresenceJoin;
use crate::wire::v1;
use crate::{Adapter, AdapterError, ChannelLeft, Departure, PresenceJoined};

impl HorizontalAdapter {
    /// Joins `socket` on this node, with the replica's members in its list, and tells the other
    /// nodes when the user is new here.
    pub(super) async fn join_fleet_presence(
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
        // The channel's limit counts the fleet's members: a user new to the fleet is refused
        // when this node's members plus the other nodes' others reach it; a user already on
        // another node is no new member. The replica changes only under the presence lock.
        let room = {
            let replica = self.replica.lock();
            if replica.has(app_id, channel, &user_id) {
                usize::MAX
            } else {
                let app = self.local.local().get_app(app_id);
                let elsewhere = replica.count_not(app_id, channel, |user| {
                    app.as_ref().is_some_and(|a| a.has_member(channel, user))
                });
                max_members.saturating_sub(elsewhere)
            }
        };
        let join = PresenceJoin {
            socket: socket.clone(),
            member,
            max_members: room,
        };
        let (joined, new_here, succeeded) = self
            .local
            .join_presence_locked(&held, app_id, channel, join, |user| {
                let replica = self.replica.lock();
                (
                    replica.members(app_id, channel),
                    replica.has(app_id, channel, user),
                )
            })
            .map_err(|e| match e {
                AdapterError::Channels(ChannelsError::PresenceFull { .. }) => {
                    AdapterError::Channels(ChannelsError::PresenceFull { max: max_members })
                }
                e => e,
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

    /// Removes a connection from `channel` on this node, and tells the other nodes when it was
    /// its user's last connection here.
    pub(super) async fn leave_fleet_channel(
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

    /// Takes in another node's presence change, and tells this node's subscribers when the
    /// user came to or left the whole fleet as this node sees it. Each node announces the
    /// changes of its own view to its own subscribers, under its presence lock, so a socket
    /// that joins meanwhile gets the user either in its `subscription_succeeded` or after it.
    pub(super) async fn on_presence_change(
        &self,
        from: &str,
        app: &str,
        change: v1::PresenceChange,
    ) {
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
            (true, false) => {
                self.note_left_fleet(app, channel, user);
                message::member_removed(channel, user)
            }
            _ => return,
        };
        self.local.deliver_now(app, channel, frame.as_bytes(), None);
    }

    /// Takes in the presence members of a node's snapshot. Users that nobody knew of are
    /// announced to this node's subscribers: after a partition heals, they would otherwise stay
    /// unseen.
    pub(super) async fn take_members(&self, from: &str, channels: Vec<v1::PresenceMembers>) {
        let _presence = self.local.presence_lock().await;
        let mut announce = Vec::new();
        {
            let mut replica = self.replica.lock();
            for channel in channels {
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

    /// This node's presence members, for the snapshot a node that joins receives.
    pub(super) fn presence_snapshot(&self) -> Vec<v1::PresenceMembers> {
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
        channels
    }

    /// Drops the members of `node`, which left, and tells this node's subscribers about the
    /// users who were only there. Returns those users, for the webhooks.
    pub(super) async fn forget_members(&self, node: &str) -> Vec<Departure> {
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
        departures
    }

    /// The members of a presence channel in the fleet: this node's, then the replica's users
    /// that are not here.
    pub(super) fn merged_members(&self, app_id: &str, channel: &str) -> Vec<PresenceMember> {
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

    /// Records that `user` left the fleet, as this node sees it, through another node.
    fn note_left_fleet(&self, app: &str, channel: &str, user: &str) {
        let now = Instant::now();
        let mut left = self.left_fleet.lock();
        // Departures older than a minute can no longer matter.
        left.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        left.insert((app.to_owned(), channel.to_owned(), user.to_owned()), now);
    }

    /// Whether `user` left the fleet through another node less than `within` ago.
    pub(super) fn left_fleet_within(
        &self,
        app: &str,
        channel: &str,
        user: &str,
        within: Duration,
    ) -> bool {
        self.left_fleet
            .lock()
            .get(&(app.to_owned(), channel.to_owned(), user.to_owned()))
            .is_some_and(|at| at.elapsed() < within)
    }

    fn is_local_member(&self, app: &str, channel: &str, user: &str) -> bool {
        self.local
            .local()
            .get_app(app)
            .is_some_and(|a| a.has_member(channel, user))
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
