//! The subscriber counts behind `subscription_count`, for the whole fleet. The server marks a
//! channel of an app with the setting on each time a connection joins or leaves it here; each
//! node shares the counts that changed at most once per share interval (50 ms, beside the
//! connection counts), a node that joins gets them in the snapshot, and a node that leaves takes
//! its counts with it. Every change, here or heard, marks the channel for the server, which
//! sends this node's subscribers the fleet's count (and, from one node, the webhook).

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use super::HorizontalAdapter;
use crate::wire::v1;
use crate::{Adapter, SubscriptionCount};

/// A node's subscribers per (app, channel).
type Counts = HashMap<(String, String), u64>;

/// The fleet's side of the counts.
#[derive(Default)]
pub(super) struct FleetSubscriptions {
    /// Channels whose count here changed since this node last shared.
    to_share: Mutex<HashSet<(String, String)>>,
    /// The counts this node last shared, non-zero ones only, for the snapshot of a new node.
    shared: Mutex<Counts>,
    /// The other nodes' counts, by node, as last heard; non-zero ones only.
    peers: Mutex<HashMap<String, Counts>>,
}

impl FleetSubscriptions {
    /// Marks a channel's count here as changed, to share.
    pub(super) fn changed_here(&self, app_id: &str, channel: &str) {
        self.to_share
            .lock()
            .insert((app_id.to_owned(), channel.to_owned()));
    }
}

impl HorizontalAdapter {
    /// This node's subscribers on `channel`.
    fn subscribers_here(&self, app_id: &str, channel: &str) -> u64 {
        self.local
            .local()
            .get_app(app_id)
            .map_or(0, |app| app.channel_counts(channel).subscription_count)
    }

    /// The channel's subscribers here plus the other nodes' last reported ones; this node
    /// speaks for the fleet when it has subscribers and no node with a smaller id has.
    pub(super) fn fleet_subscription_count(
        &self,
        app_id: &str,
        channel: &str,
    ) -> SubscriptionCount {
        let here = self.subscribers_here(app_id, channel);
        let me = self.transport.node_id();
        let key = (app_id.to_owned(), channel.to_owned());
        let peers = self.subscriptions.peers.lock();
        let mut count = here;
        let mut first = true;
        for (node, channels) in peers.iter() {
            if let Some(n) = channels.get(&key) {
                count += n;
                if node.as_str() < me {
                    first = false;
                }
            }
        }
        SubscriptionCount {
            count,
            speaks: here > 0 && first,
        }
    }

    /// The counts this node last shared, for a node that joins.
    pub(super) fn subscriptions_snapshot(&self) -> Vec<v1::ChannelSubscriptions> {
        self.subscriptions
            .shared
            .lock()
            .iter()
            .map(|((app_id, channel), n)| v1::ChannelSubscriptions {
                app_id: app_id.clone(),
                channel: channel.clone(),
                subscriptions: *n,
            })
            .collect()
    }

    /// Shares the counts that changed here since the last share.
    pub(super) async fn share_subscription_counts(&self) {
        let changed = std::mem::take(&mut *self.subscriptions.to_share.lock());
        if changed.is_empty() {
            return;
        }
        let channels: Vec<v1::ChannelSubscriptions> = {
            let mut shared = self.subscriptions.shared.lock();
            changed
                .into_iter()
                .map(|(app_id, channel)| {
                    let n = self.subscribers_here(&app_id, &channel);
                    let key = (app_id, channel);
                    if n == 0 {
                        shared.remove(&key);
                    } else {
                        shared.insert(key.clone(), n);
                    }
                    v1::ChannelSubscriptions {
                        app_id: key.0,
                        channel: key.1,
                        subscriptions: n,
                    }
                })
                .collect()
        };
        let body = v1::envelope::Body::SubscriptionCounts(v1::SubscriptionCounts { channels });
        if let Err(e) = self.tell_others("", body).await {
            tracing::debug!(error = %e, "could not share the subscription counts");
        }
    }

    /// Takes in another node's counts (every one of its counts when `full`, a snapshot) and
    /// marks their channels for the server.
    pub(super) fn take_subscription_counts(
        &self,
        from: &str,
        channels: Vec<v1::ChannelSubscriptions>,
        full: bool,
    ) {
        let mut marked = Vec::with_capacity(channels.len());
        {
            let mut peers = self.subscriptions.peers.lock();
            let peer = peers.entry(from.to_owned()).or_default();
            if full {
                marked.extend(peer.drain().map(|(key, _)| key));
            }
            for c in channels {
                let key = (c.app_id, c.channel);
                if c.subscriptions == 0 {
                    peer.remove(&key);
                } else {
                    peer.insert(key.clone(), c.subscriptions);
                }
                marked.push(key);
            }
            if peer.is_empty() {
                peers.remove(from);
            }
        }
        for (app_id, channel) in marked {
            self.local.subscription_count_changed(&app_id, &channel);
        }
    }

    /// Drops the counts of `node`, which left, and marks its channels for the server.
    pub(super) fn forget_subscription_counts(&self, node: &str) {
        let gone = self.subscriptions.peers.lock().remove(node);
        for (app_id, channel) in gone.into_iter().flat_map(HashMap::into_keys) {
            self.local.subscription_count_changed(&app_id, &channel);
        }
    }
}
