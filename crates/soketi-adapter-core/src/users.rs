//! Who is online on this node, for watchlists and the user webhooks: the users with at least
//! one signed-in connection here, and the connections that watch users.
//!
//! A fleet learns which users the other nodes have through the occupancy reports, under a key
//! no channel name can take ([`user_key`]), so that the machinery that fires `channel_occupied`
//! and `channel_vacated` once for the fleet also fires `user_online` and `user_offline` once,
//! and a node that leaves takes its users with it. Every change of who is online, and the
//! watchlist frames about it, happen under one lock, so a watcher hears of a user once: in
//! its first `pusher_internal:watchlist_events` or after it.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use soketi_channels::SocketRef;
use soketi_protocol::{SocketId, message, ws};

/// What the occupancy keys of users start with; `#` is in no valid channel name.
const USER_KEY_PREFIX: &str = "#user:";

/// The occupancy key under which a fleet shares which nodes have `user_id` signed in.
pub fn user_key(user_id: &str) -> String {
    format!("{USER_KEY_PREFIX}{user_id}")
}

/// The user of an occupancy key made by [`user_key`], or `None` for a channel.
pub(crate) fn user_of(key: &str) -> Option<&str> {
    key.strip_prefix(USER_KEY_PREFIX)
}

/// This node's online users and watchers, behind the lock of their changes.
#[derive(Default)]
pub(crate) struct Users {
    inner: Mutex<Online>,
}

impl Users {
    /// Takes the lock under which who is online changes and watchers are told.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Online> {
        self.inner.lock()
    }
}

/// The state under [`Users`]'s lock.
#[derive(Default)]
pub(crate) struct Online {
    /// Signed-in connections here, by (app, user).
    here: HashMap<(String, String), usize>,
    /// The connections watching a user, by (app, user).
    watchers: HashMap<(String, String), HashMap<SocketId, SocketRef>>,
    /// The users each connection watches, by (app, socket).
    watching: HashMap<(String, SocketId), Vec<String>>,
}

impl Online {
    /// Counts a signed-in connection of `user_id`; returns whether it is the user's first here.
    pub(crate) fn add(&mut self, app_id: &str, user_id: &str) -> bool {
        let count = self
            .here
            .entry((app_id.to_owned(), user_id.to_owned()))
            .or_default();
        *count += 1;
        *count == 1
    }

    /// Forgets a signed-in connection of `user_id`; returns whether it was the user's last
    /// here.
    pub(crate) fn remove(&mut self, app_id: &str, user_id: &str) -> bool {
        let key = (app_id.to_owned(), user_id.to_owned());
        let Some(count) = self.here.get_mut(&key) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            self.here.remove(&key);
            return true;
        }
        false
    }

    /// Whether `user_id` has a signed-in connection here.
    pub(crate) fn here(&self, app_id: &str, user_id: &str) -> bool {
        self.here
            .contains_key(&(app_id.to_owned(), user_id.to_owned()))
    }

    /// Tells the connections watching `user_id` that it came online or went offline.
    pub(crate) fn announce(&self, app_id: &str, user_id: &str, online: bool) {
        let Some(watchers) = self.watchers.get(&(app_id.to_owned(), user_id.to_owned())) else {
            return;
        };
        let ids = [user_id.to_owned()];
        let name = if online { "online" } else { "offline" };
        let frame = frame(&[(name, &ids)]);
        for socket in watchers.values() {
            socket.send(frame.clone());
        }
    }

    /// Makes `socket` watch `watchlist` (replacing what it watched) and sends it the current
    /// state: the watched users online, here or on another node (`elsewhere` says), and those
    /// offline.
    pub(crate) fn watch(
        &mut self,
        app_id: &str,
        socket: SocketRef,
        watchlist: &[String],
        elsewhere: impl Fn(&str) -> bool,
    ) {
        self.unwatch(app_id, socket.socket_id());
        let mut users: Vec<String> = watchlist.to_vec();
        users.sort();
        users.dedup();
        if users.is_empty() {
            return;
        }
        let (on, off): (Vec<String>, Vec<String>) = users
            .iter()
            .cloned()
            .partition(|u| self.here(app_id, u) || elsewhere(u));
        for user in &users {
            self.watchers
                .entry((app_id.to_owned(), user.clone()))
                .or_default()
                .insert(socket.socket_id().clone(), socket.clone());
        }
        self.watching
            .insert((app_id.to_owned(), socket.socket_id().clone()), users);
        socket.send(frame(&[("online", &on), ("offline", &off)]));
    }

    /// Stops `socket_id` watching anyone.
    pub(crate) fn unwatch(&mut self, app_id: &str, socket_id: &SocketId) {
        let Some(users) = self
            .watching
            .remove(&(app_id.to_owned(), socket_id.clone()))
        else {
            return;
        };
        for user in users {
            let key = (app_id.to_owned(), user);
            if let Some(watchers) = self.watchers.get_mut(&key) {
                watchers.remove(socket_id);
                if watchers.is_empty() {
                    self.watchers.remove(&key);
                }
            }
        }
    }
}

fn frame(events: &[(&str, &[String])]) -> Bytes {
    ws::text(message::watchlist_events(events).as_bytes())
}
