//! Per-app rate limits: the [`RateLimiter`] trait and its in-process driver.
//!
//! Budgets are per second, as soketi's: an app may publish `max_backend_events_per_sec` points
//! per second through the HTTP API (one point per event and channel) and read
//! `max_read_req_per_sec` times per second, counted in a [`SlidingWindow`]: no second ever
//! holds more than the budget. Client events are limited per connection by the server itself,
//! with a [`LocalBucket`] (GCRA, from governor): a connection lives on one node, so that budget
//! never needs sharing.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter as Gcra};

use crate::AdapterError;
pub use crate::window::SlidingWindow;

/// Which of an app's budgets a request draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Budget {
    /// Events published through the HTTP API.
    BackendEvents,
    /// Read requests to the HTTP API.
    ReadRequests,
}

/// The answer of a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the points were taken.
    pub allowed: bool,
    /// The budget per second.
    pub limit: u64,
    /// Points left after this request.
    pub remaining: u64,
    /// When a refused request could pass.
    pub retry_after: Duration,
}

/// Keeps the per-app budgets. Held by the server as `Arc<dyn RateLimiter>`; drivers decide
/// where the budgets live (this process, the cluster, Redis).
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes `points` from `app_id`'s `budget` of `per_second`, if it has them.
    async fn consume(
        &self,
        app_id: &str,
        budget: Budget,
        points: u64,
        per_second: u64,
    ) -> Result<Decision, AdapterError>;
}

type Bucket = Gcra<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// A per-second budget in this process.
pub struct LocalBucket {
    per_second: u64,
    bucket: Bucket,
}

impl LocalBucket {
    /// A full bucket of `per_second` points that refills at that rate.
    pub fn new(per_second: u64) -> Self {
        let size = NonZeroU32::new(u32::try_from(per_second.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        Self {
            per_second,
            bucket: Gcra::direct(Quota::per_second(size)).with_middleware(),
        }
    }

    /// Takes `points` if the bucket has them.
    pub fn take(&self, points: u64) -> Decision {
        let refused = |retry_after| Decision {
            allowed: false,
            limit: self.per_second,
            remaining: 0,
            retry_after,
        };
        let Some(n) = NonZeroU32::new(u32::try_from(points).unwrap_or(u32::MAX)) else {
            return Decision {
                allowed: true,
                limit: self.per_second,
                remaining: self.per_second,
                retry_after: Duration::ZERO,
            };
        };
        match self.bucket.check_n(n) {
            Ok(Ok(snapshot)) => Decision {
                allowed: true,
                limit: self.per_second,
                remaining: u64::from(snapshot.remaining_burst_capacity()),
                retry_after: Duration::ZERO,
            },
            Ok(Err(not_until)) => refused(not_until.wait_time_from(DefaultClock::default().now())),
            // More points than the bucket can ever hold: never allowed.
            Err(_) => refused(Duration::from_secs(1)),
        }
    }
}

/// Budgets kept in this process: each node counts alone.
#[derive(Default)]
pub struct LocalRateLimiter {
    windows: DashMap<(String, Budget), SlidingWindow>,
}

impl LocalRateLimiter {
    /// An empty set of budgets.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn consume(
        &self,
        app_id: &str,
        budget: Budget,
        points: u64,
        per_second: u64,
    ) -> Result<Decision, AdapterError> {
        let mut window = self
            .windows
            .entry((app_id.to_owned(), budget))
            .or_insert_with(|| SlidingWindow::new(per_second));
        if window.per_second() != per_second {
            // The app's limit changed: a fresh window at the new rate.
            *window = SlidingWindow::new(per_second);
        }
        Ok(window.take(points))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_of_points_then_refusal() {
        let limiter = LocalRateLimiter::new();
        let take = |n| limiter.consume("a", Budget::BackendEvents, n, 3);
        let first = take(2).await.unwrap();
        assert_eq!((first.allowed, first.limit, first.remaining), (true, 3, 1));
        assert!(take(1).await.unwrap().allowed);
        let refused = take(1).await.unwrap();
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_secs(1));
        // Other apps and budgets are apart.
        assert!(
            limiter
                .consume("b", Budget::BackendEvents, 3, 3)
                .await
                .unwrap()
                .allowed
        );
        assert!(
            limiter
                .consume("a", Budget::ReadRequests, 3, 3)
                .await
                .unwrap()
                .allowed
        );
        // More than a second's worth at once is never allowed.
        assert!(
            !limiter
                .consume("c", Budget::BackendEvents, 4, 3)
                .await
                .unwrap()
                .allowed
        );
    }
}
