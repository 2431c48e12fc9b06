//! Occupancy for the webhooks: which channels the other nodes hold, when they emptied them,
//! and the arbitration that lets one node of the fleet announce `channel_occupied` or
//! `channel_vacated`.

use std::time::{Duration, Instant};

use super::HorizontalAdapter;

/// Another node's report that a channel became empty there.
#[derive(Clone, Copy, Debug)]
pub(super) struct Vacate {
    /// When it emptied.
    at: Instant,
    /// When that node had reported it occupied, if this node heard it.
    occupied_since: Option<Instant>,
}
use crate::wire::v1;
use crate::{Adapter, AdapterError, Departure, OccupancyQuestion};

impl HorizontalAdapter {
    /// Records that `channel` became occupied or empty here and tells the other nodes; returns
    /// whether the whole fleet changed with it.
    pub(super) async fn share_occupancy(
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
        let changed = !self.occupied_on_other_nodes(app_id, channel);
        let body = v1::envelope::Body::OccupancyChange(v1::OccupancyChange {
            channel: channel.to_owned(),
            occupied,
        });
        if let Err(e) = self.tell_others(app_id, body).await {
            tracing::warn!(error = %e, channel, "could not tell the other nodes of an occupancy change");
        }
        Ok(changed)
    }

    /// Whether another node reported `channel` occupied and has not emptied it since.
    pub(super) fn occupied_on_other_nodes(&self, app_id: &str, channel: &str) -> bool {
        self.occupancy
            .lock()
            .contains_key(&(app_id.to_owned(), channel.to_owned()))
    }

    /// Takes in another node's report that a channel (or a user's key) became occupied or
    /// empty there.
    pub(super) fn take_occupancy_change(&self, from: &str, app: &str, change: v1::OccupancyChange) {
        let key = (app.to_owned(), change.channel);
        let now = Instant::now();
        let mut occupancy = self.occupancy.lock();
        if change.occupied {
            occupancy
                .entry(key)
                .or_default()
                .insert(from.to_owned(), now);
        } else {
            let mut occupied_since = None;
            if let Some(nodes) = occupancy.get_mut(&key) {
                occupied_since = nodes.remove(from);
                if nodes.is_empty() {
                    occupancy.remove(&key);
                }
            }
            let mut vacated = self.vacated.lock();
            // Reports older than a minute can no longer matter.
            vacated.retain(|_, nodes| {
                nodes.retain(|_, v| now.duration_since(v.at) < Duration::from_secs(60));
                !nodes.is_empty()
            });
            vacated.entry(key).or_default().insert(
                from.to_owned(),
                Vacate {
                    at: now,
                    occupied_since,
                },
            );
        }
    }

    /// Whether this node announces the change of `channel`'s occupancy it saw at `q.since`.
    pub(super) fn announces_occupancy(
        &self,
        app_id: &str,
        channel: &str,
        q: &OccupancyQuestion,
    ) -> bool {
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
        // Of nodes that changed it at the same moment, the smallest id speaks.
        let first = |n: &str, at: Instant| if near(at) { me < n } else { at > q.since };
        if q.occupied {
            // A node that emptied it just before, having announced it occupied (it took it
            // before this node, not at the same moment): a move within the vacated delay, which
            // cancels the vacated; nothing is announced.
            if vacated.is_some_and(|nodes| {
                nodes.iter().any(|(n, v)| {
                    q.since.saturating_duration_since(v.at) < q.vacated_delay
                        && v.occupied_since.is_none_or(|since| !first(n, since))
                })
            }) {
                return false;
            }
            // A node that took it before spoke; a node that took it later does not, even if
            // its report arrived before this node decided.
            occupancy
                .get(&key)
                .is_none_or(|nodes| nodes.iter().all(|(n, at)| first(n, *at)))
        } else if occupancy.contains_key(&key) {
            false
        } else {
            // A node that emptied it later speaks.
            vacated.is_none_or(|nodes| {
                nodes.iter().all(|(n, v)| {
                    if near(v.at) {
                        me < n.as_str()
                    } else {
                        v.at < q.since
                    }
                })
            })
        }
    }

    /// The channels this node reported occupied, for the snapshot a node that joins receives.
    pub(super) fn occupied_snapshot(&self) -> Vec<v1::OccupiedChannel> {
        self.occupied_here
            .lock()
            .iter()
            .map(|(app_id, channel)| v1::OccupiedChannel {
                app_id: app_id.clone(),
                channel: channel.clone(),
            })
            .collect()
    }

    /// Takes in the channels a node's snapshot reports occupied.
    pub(super) fn take_occupied(&self, from: &str, occupied: Vec<v1::OccupiedChannel>) {
        let mut occupancy = self.occupancy.lock();
        // Occupied before this node knew: as good as long ago.
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        for c in occupied {
            occupancy
                .entry((c.app_id, c.channel))
                .or_default()
                .insert(from.to_owned(), long_ago);
        }
    }

    /// Drops the reports of `node`, which left; returns the channels that only it held.
    pub(super) fn forget_occupancy(&self, node: &str) -> Vec<(String, String)> {
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
        emptied
    }

    /// Of the channels a node that left held alone, those empty here too: vacated.
    pub(super) fn vacated_departures(&self, emptied: Vec<(String, String)>) -> Vec<Departure> {
        let mut departures = Vec::new();
        for (app, channel) in emptied {
            if crate::users::user_of(&channel).is_some() {
                continue;
            }
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
        departures
    }
}
