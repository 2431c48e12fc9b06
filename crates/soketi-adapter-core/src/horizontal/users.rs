//! Who is online anywhere in the fleet, for watchlists and the user webhooks. A node shares a
//! user's first signed-in connection here and its last one gone as an occupancy change of the
//! user's key ([`user_key`]), so the other nodes know which nodes have the user, a node that
//! joins gets them in the snapshot, and a node that leaves takes them with it. Each node tells
//! its own watchers when the fleet's view of a user changes, under the users' lock.
//!
//! Nodes hear of each other's changes in the order the network brings them: a user who moves
//! from node B to node C can look gone for a moment (B's "left" before C's "here"). So a
//! watcher hears `offline` only once the user has stayed gone for [`OFFLINE_GRACE`]; a user
//! back within it was never offline for the watchers, and they hear nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::HorizontalAdapter;
use crate::users::{Online, user_key, user_of};
use crate::wire::v1;
use crate::{Adapter, Departure};
use soketi_channels::SocketRef;

/// How long a user gone from the fleet waits before its watchers hear `offline`.
pub(crate) const OFFLINE_GRACE: Duration = Duration::from_secs(1);

/// Numbers the waits of [`OFFLINE_GRACE`], so that a wait that was overtaken does nothing.
static OFFLINE_WAITS: AtomicU64 = AtomicU64::new(1);

impl HorizontalAdapter {
    /// Counts a signed-in connection; tells the others of the user's first one here. Returns
    /// whether it is the user's first here.
    pub(super) async fn fleet_user_signed_in(&self, app_id: &str, user_id: &str) -> bool {
        let key = user_key(user_id);
        let first_here = {
            let mut users = self.local.users().lock();
            let first_here = users.add(app_id, user_id);
            let came_online = first_here && !self.occupied_on_other_nodes(app_id, &key);
            if came_online {
                self.tell_online(&users, app_id, user_id);
            }
            first_here
        };
        if first_here {
            let _ = self.share_occupancy(app_id, &key, true).await;
        }
        first_here
    }

    /// Forgets a signed-in connection; tells the others of the user's last one here gone.
    /// Returns whether it was the user's last here.
    pub(super) async fn fleet_user_signed_out(&self, app_id: &str, user_id: &str) -> bool {
        let key = user_key(user_id);
        let last_here = {
            let mut users = self.local.users().lock();
            let last_here = users.remove(app_id, user_id);
            let went_offline = last_here && !self.occupied_on_other_nodes(app_id, &key);
            if went_offline {
                self.tell_offline_later(app_id, user_id);
            }
            last_here
        };
        if last_here {
            let _ = self.share_occupancy(app_id, &key, false).await;
        }
        last_here
    }

    /// Whether `user_id` is signed in here or, by the last reports, on another node.
    pub(super) fn fleet_user_online(&self, app_id: &str, user_id: &str) -> bool {
        self.local.users().lock().here(app_id, user_id)
            || self.occupied_on_other_nodes(app_id, &user_key(user_id))
    }

    /// Makes `socket` watch `watchlist`, with the fleet's state now.
    pub(super) fn fleet_watch(&self, app_id: &str, socket: SocketRef, watchlist: &[String]) {
        self.local
            .users()
            .lock()
            .watch(app_id, socket, watchlist, |u| {
                self.occupied_on_other_nodes(app_id, &user_key(u))
            });
    }

    /// Takes in another node's occupancy change, and when it is a user's that changes whether
    /// the fleet has the user, tells this node's watchers.
    pub(super) fn on_occupancy_change(&self, from: &str, app: &str, change: v1::OccupancyChange) {
        let Some(user) = user_of(&change.channel).map(str::to_owned) else {
            return self.take_occupancy_change(from, app, change);
        };
        let users = self.local.users().lock();
        let before = self.occupied_on_other_nodes(app, &change.channel);
        self.take_occupancy_change(from, app, change);
        let after = self.occupied_on_other_nodes(app, &user_key(&user));
        if before != after && !users.here(app, &user) {
            if after {
                self.tell_online(&users, app, &user);
            } else {
                self.tell_offline_later(app, &user);
            }
        }
    }

    /// Takes in the channels and users a node's snapshot reports, telling this node's
    /// watchers of the users that are new to its view of the fleet.
    pub(super) fn take_occupied_snapshot(&self, from: &str, occupied: Vec<v1::OccupiedChannel>) {
        let users = self.local.users().lock();
        let new: Vec<(String, String)> = occupied
            .iter()
            .filter_map(|c| Some((c.app_id.clone(), user_of(&c.channel)?.to_owned())))
            .filter(|(app, user)| {
                !users.here(app, user) && !self.occupied_on_other_nodes(app, &user_key(user))
            })
            .collect();
        self.take_occupied(from, occupied);
        for (app, user) in new {
            self.tell_online(&users, &app, &user);
        }
    }

    /// Of the users a node that left held alone, those not signed in here: offline for the
    /// fleet. This node's watchers hear it; the departures are for the webhooks.
    pub(super) fn offline_departures(&self, emptied: &[(String, String)]) -> Vec<Departure> {
        let users = self.local.users().lock();
        let mut departures = Vec::new();
        for (app, key) in emptied {
            let Some(user) = user_of(key) else {
                continue;
            };
            if !users.here(app, user) && !Adapter::occupied_elsewhere(self, app, key) {
                self.tell_offline_later(app, user);
                departures.push(Departure::UserOffline {
                    app_id: app.clone(),
                    user_id: user.to_owned(),
                });
            }
        }
        departures
    }

    /// Tells this node's watchers that `user_id` is online, unless they have not yet heard it
    /// went offline (it came back within the grace): then they hear nothing. Under the users'
    /// lock.
    fn tell_online(&self, users: &Online, app_id: &str, user_id: &str) {
        let waiting = self
            .offline_pending
            .lock()
            .remove(&(app_id.to_owned(), user_id.to_owned()));
        if waiting.is_none() {
            users.announce(app_id, user_id, true);
        }
    }

    /// Tells this node's watchers that `user_id` is offline once it has stayed gone from the
    /// fleet for [`OFFLINE_GRACE`]. Under the users' lock.
    fn tell_offline_later(&self, app_id: &str, user_id: &str) {
        let key = (app_id.to_owned(), user_id.to_owned());
        let wait = OFFLINE_WAITS.fetch_add(1, Ordering::Relaxed);
        self.offline_pending.lock().insert(key.clone(), wait);
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(OFFLINE_GRACE).await;
            let Some(adapter) = me.upgrade() else {
                return;
            };
            let users = adapter.local.users().lock();
            let mut pending = adapter.offline_pending.lock();
            if pending.get(&key) != Some(&wait) {
                return;
            }
            pending.remove(&key);
            drop(pending);
            let (app_id, user_id) = (&key.0, &key.1);
            if !users.here(app_id, user_id)
                && !adapter.occupied_on_other_nodes(app_id, &user_key(user_id))
            {
                users.announce(app_id, user_id, false);
            }
        });
    }
}
