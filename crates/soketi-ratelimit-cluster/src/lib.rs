//! A [`RateLimiter`] whose budgets are one for the whole fleet of a `HorizontalAdapter`, over
//! any of its transports (cluster, Redis, NATS), with no network round trip per check. The
//! crate's name says cluster for the `cluster` driver of `rateLimiter.driver`, not for the
//! transport: it sees the fleet only through the narrow [`Fleet`] trait of adapter-core, and its
//! messages travel as adapter [`Extension`] messages.
//!
//! Every node keeps a copy of each budget as a [`SlidingWindow`] of the last second. A node
//! decides alone, from its copy; when it admits points it tells the others, which count the
//! same points in their copies. So the fleet admits one budget per second in all, not one per
//! node. The master sends its windows to a node that joins; a node that leaves takes nothing
//! with it, since the others already counted what it admitted.
//!
//! The bound is not exact: two nodes that admit at the same instant, before either hears the
//! other, may together pass the budget by what arrives within one message's travel time (well
//! under a millisecond on a LAN). Refused requests are not broadcast.

mod proto;

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use prost::Message as _;
use soketi_adapter_core::{
    AdapterError, Budget, Decision, Extension, Fleet, RateLimiter, SlidingWindow,
};

/// The extension kind of this limiter's messages.
const KIND: &str = "ratelimit";

fn budget_code(budget: Budget) -> u32 {
    match budget {
        Budget::BackendEvents => 0,
        Budget::ReadRequests => 1,
    }
}

fn budget_of(code: u32) -> Option<Budget> {
    match code {
        0 => Some(Budget::BackendEvents),
        1 => Some(Budget::ReadRequests),
        _ => None,
    }
}

type Key = (String, Budget);

/// Budgets shared by the fleet of a horizontal adapter.
pub struct ClusterRateLimiter {
    /// Weak: the fleet holds the limiter as an extension, and must not be kept alive by it.
    fleet: Weak<dyn Fleet>,
    buckets: Mutex<HashMap<Key, SlidingWindow>>,
}

impl ClusterRateLimiter {
    /// A limiter that talks to the other nodes through `fleet` (a `HorizontalAdapter`).
    pub fn new(fleet: Arc<dyn Fleet>) -> Arc<Self> {
        let limiter = Arc::new(Self {
            fleet: Arc::downgrade(&fleet),
            buckets: Mutex::default(),
        });
        fleet.register_extension(KIND, limiter.clone());
        limiter
    }

    fn with_bucket<T>(
        &self,
        key: Key,
        per_second: u64,
        f: impl FnOnce(&mut SlidingWindow) -> T,
    ) -> T {
        let mut buckets = self.buckets.lock();
        let bucket = buckets
            .entry(key)
            .or_insert_with(|| SlidingWindow::new(per_second));
        if bucket.per_second() != per_second {
            // The app's limit changed: a fresh window at the new rate.
            *bucket = SlidingWindow::new(per_second);
        }
        f(bucket)
    }
}

#[async_trait]
impl RateLimiter for ClusterRateLimiter {
    async fn consume(
        &self,
        app_id: &str,
        budget: Budget,
        points: u64,
        per_second: u64,
    ) -> Result<Decision, AdapterError> {
        let decision =
            self.with_bucket((app_id.to_owned(), budget), per_second, |b| b.take(points));
        if decision.allowed
            && points > 0
            && let Some(fleet) = self.fleet.upgrade()
        {
            let message = proto::Message {
                body: Some(proto::message::Body::Consume(proto::Consume {
                    app_id: app_id.to_owned(),
                    budget: budget_code(budget),
                    points,
                    per_second,
                })),
            };
            // Queued for the others, not awaited on the network: no round trip per check.
            if let Err(e) = fleet
                .send_extension(KIND, Bytes::from(message.encode_to_vec()), None)
                .await
            {
                tracing::warn!(error = %e, "could not share a rate limit consumption");
            }
        }
        Ok(decision)
    }
}

impl Extension for ClusterRateLimiter {
    fn on_message(&self, from: &str, payload: &[u8]) {
        let Ok(message) = proto::Message::decode(payload) else {
            tracing::warn!(from, "dropping a rate limit message that does not decode");
            return;
        };
        match message.body {
            Some(proto::message::Body::Consume(c)) => {
                if let Some(budget) = budget_of(c.budget) {
                    self.with_bucket((c.app_id, budget), c.per_second, |b| b.force(c.points));
                }
            }
            Some(proto::message::Body::Snapshot(snapshot)) => {
                for b in snapshot.buckets {
                    if let Some(budget) = budget_of(b.budget) {
                        let slots: Vec<(u32, u64)> =
                            b.slots.iter().map(|s| (s.age, s.points)).collect();
                        self.with_bucket((b.app_id, budget), b.per_second, |window| {
                            window.merge(&slots);
                        });
                    }
                }
            }
            None => {}
        }
    }

    fn on_node_joined(&self, _node: &str, is_master: bool) -> Option<Bytes> {
        if !is_master {
            return None;
        }
        let buckets = self
            .buckets
            .lock()
            .iter_mut()
            .map(|((app_id, budget), bucket)| proto::Bucket {
                app_id: app_id.clone(),
                budget: budget_code(*budget),
                per_second: bucket.per_second(),
                slots: bucket
                    .snapshot()
                    .into_iter()
                    .map(|(age, points)| proto::Slot { age, points })
                    .collect(),
            })
            .collect();
        let message = proto::Message {
            body: Some(proto::message::Body::Snapshot(proto::Snapshot { buckets })),
        };
        Some(Bytes::from(message.encode_to_vec()))
    }
}

#[cfg(test)]
mod tests;
