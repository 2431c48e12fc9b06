//! Nodes joining and leaving the fleet. A node that joins receives this node's snapshot
//! (presence members, occupied channels, connection counts and subscription counts) and the extensions' greetings;
//! a node that leaves takes its members, its channels and its connections with it, and one survivor reports them for the webhooks.

use super::HorizontalAdapter;
use crate::wire::v1;

impl HorizontalAdapter {
    /// Sends `node`, which joined, this node's snapshot and the extensions' greetings.
    pub(super) async fn on_node_joined(&self, node: &str) {
        let channels = self.presence_snapshot();
        let occupied = self.occupied_snapshot();
        let connections = self.connections_snapshot();
        let subscriptions = self.subscriptions_snapshot();
        let snapshot = self.envelope(
            "",
            v1::envelope::Body::PresenceSnapshot(v1::PresenceSnapshot {
                channels,
                occupied,
                connections,
                subscriptions,
            }),
        );
        if let Err(e) = self.transport.send_to(node, snapshot).await {
            tracing::warn!(node, error = %e, "could not send the presence snapshot to a new node");
        }
        self.greet(node).await;
    }

    /// Takes in the snapshot of a node: its connection counts, the channels it holds, then its
    /// presence members.
    pub(super) async fn on_snapshot(&self, from: &str, snapshot: v1::PresenceSnapshot) {
        self.take_connection_counts(from, snapshot.connections, true);
        self.take_subscription_counts(from, snapshot.subscriptions, true);
        self.take_occupied_snapshot(from, snapshot.occupied);
        self.take_members(from, snapshot.channels).await;
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

    /// Forgets `node`, which left: its channels, its unanswered requests and its members; this
    /// node's subscribers hear of the users who were only there, and the node that speaks for
    /// the fleet reports the departures.
    pub(super) async fn on_node_left(&self, node: &str) {
        self.forget_connection_counts(node);
        self.forget_subscription_counts(node);
        let emptied = self.forget_occupancy(node);
        for pending in self.pending.iter() {
            pending.settle(node, None);
        }
        let mut departures = self.forget_members(node).await;
        departures.extend(self.offline_departures(&emptied));
        departures.extend(self.vacated_departures(emptied));
        let sink = self.departures.read().clone();
        if let Some(sink) = sink
            && !departures.is_empty()
            && self.speaks_for(node)
        {
            sink.departed(departures);
        }
        tracing::info!(node, "a node left the fleet");
    }
}
