//! Connection quotas for the whole fleet. Each node shares its open connections per app
//! (`ConnectionCounts`), and admits a connection while its own count plus the others' last
//! known counts is under the app's quota.
//!
//! A node sends the apps whose count changed at most once per [`SHARE_INTERVAL`], and every
//! app with connections once per [`FULL_INTERVAL`], so that a lost message is corrected and a
//! node that stopped talking without leaving (a lost goodbye) drops out after
//! [`STALE_AFTER`]. A node that joins gets the counts in its snapshot; a node that leaves takes
//! its counts with it. Between two shares the nodes decide alone, so the fleet can admit more
//! than the quota by what the other nodes admit within one interval plus one message's travel:
//! the propagation window.

use std::collections::{BTreeMap, HashMap};
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use soketi_channels::ChannelsError;

use super::HorizontalAdapter;
use crate::wire::v1;
use crate::{Adapter, AdapterError};

/// How often a node shares the counts that changed: most of the propagation window.
pub(crate) const SHARE_INTERVAL: Duration = Duration::from_millis(50);

/// How often a node shares every count, changed or not.
const FULL_INTERVAL: Duration = Duration::from_secs(5);

/// How long the counts of a node that sent nothing stay counted: three full shares missed.
const STALE_AFTER: Duration = Duration::from_secs(15);

/// Another node's open connections per app, as last heard.
pub(super) struct PeerCounts {
    heard: Instant,
    apps: HashMap<String, u64>,
}

impl HorizontalAdapter {
    /// Counts a new connection of the app unless this node's connections plus the other
    /// nodes' last known ones already reach `max`.
    pub(super) fn open_fleet_connection(
        &self,
        app_id: &str,
        max: Option<u64>,
    ) -> Result<(), AdapterError> {
        let app = Adapter::local(self).app(app_id);
        let Some(max) = max else {
            app.add_connection(None)?;
            self.counts_changed.store(true, Ordering::Release);
            return Ok(());
        };
        let room = max.saturating_sub(self.other_nodes_connections(app_id));
        app.add_connection(Some(room))
            .map_err(|_| ChannelsError::ConnectionLimit { max })?;
        self.counts_changed.store(true, Ordering::Release);
        Ok(())
    }

    /// The app's connections on the other nodes, as this node last heard them.
    fn other_nodes_connections(&self, app_id: &str) -> u64 {
        let now = Instant::now();
        self.peer_counts
            .lock()
            .values()
            .filter(|peer| now.duration_since(peer.heard) < STALE_AFTER)
            .filter_map(|peer| peer.apps.get(app_id))
            .sum()
    }

    /// The other nodes' connections per app, by node, as this node last heard them.
    pub(super) fn peer_connection_counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let now = Instant::now();
        self.peer_counts
            .lock()
            .iter()
            .filter(|(_, peer)| now.duration_since(peer.heard) < STALE_AFTER)
            .map(|(node, peer)| {
                let apps = peer.apps.iter().map(|(a, n)| (a.clone(), *n)).collect();
                (node.clone(), apps)
            })
            .collect()
    }

    /// This node's connections per app, every app with at least one.
    pub(super) fn connections_snapshot(&self) -> Vec<v1::AppConnections> {
        let registry = Adapter::local(self);
        registry
            .app_ids()
            .into_iter()
            .filter_map(|app_id| {
                let connections = registry.get_app(&app_id)?.connection_count();
                (connections > 0).then_some(v1::AppConnections {
                    app_id,
                    connections,
                })
            })
            .collect()
    }

    /// Takes in another node's counts; a full list replaces what was known of it.
    pub(super) fn take_connection_counts(
        &self,
        from: &str,
        apps: Vec<v1::AppConnections>,
        full: bool,
    ) {
        let mut peers = self.peer_counts.lock();
        let peer = peers.entry(from.to_owned()).or_insert_with(|| PeerCounts {
            heard: Instant::now(),
            apps: HashMap::new(),
        });
        peer.heard = Instant::now();
        if full {
            peer.apps.clear();
        }
        for app in apps {
            if app.connections == 0 {
                peer.apps.remove(&app.app_id);
            } else {
                peer.apps.insert(app.app_id, app.connections);
            }
        }
    }

    /// Drops the counts of `node`, which left.
    pub(super) fn forget_connection_counts(&self, node: &str) {
        self.peer_counts.lock().remove(node);
    }

    /// Shares this node's counts with the others: those that changed since `sent`, or every
    /// one when `full`. Updates `sent`.
    async fn share_connection_counts(&self, sent: &mut HashMap<String, u64>, full: bool) {
        let now = self.connections_snapshot();
        let apps = if full {
            now.clone()
        } else {
            let mut changed: Vec<v1::AppConnections> = now
                .iter()
                .filter(|a| sent.get(&a.app_id) != Some(&a.connections))
                .cloned()
                .collect();
            // Apps that had connections and have none now.
            changed.extend(
                sent.keys()
                    .filter(|app_id| !now.iter().any(|a| &a.app_id == *app_id))
                    .map(|app_id| v1::AppConnections {
                        app_id: app_id.clone(),
                        connections: 0,
                    }),
            );
            if changed.is_empty() {
                return;
            }
            changed
        };
        *sent = now.into_iter().map(|a| (a.app_id, a.connections)).collect();
        let body = v1::envelope::Body::ConnectionCounts(v1::ConnectionCounts { apps, full });
        if let Err(e) = self.tell_others("", body).await {
            tracing::debug!(error = %e, "could not share the connection counts");
        }
    }
}

/// Shares the counts of `adapter`'s node while it lives and has not left the fleet.
pub(super) async fn share_counts(adapter: Weak<HorizontalAdapter>) {
    let mut ticks = tokio::time::interval(SHARE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = HashMap::new();
    let mut last_full = Instant::now();
    loop {
        ticks.tick().await;
        let Some(adapter) = adapter.upgrade() else {
            return;
        };
        if adapter.left.load(Ordering::Acquire) {
            return;
        }
        adapter.share_subscription_counts().await;
        let full = last_full.elapsed() >= FULL_INTERVAL;
        if full {
            last_full = Instant::now();
            adapter.counts_changed.store(false, Ordering::Release);
            adapter.share_connection_counts(&mut sent, true).await;
        } else if adapter.counts_changed.swap(false, Ordering::AcqRel) {
            adapter.share_connection_counts(&mut sent, false).await;
        }
    }
}
