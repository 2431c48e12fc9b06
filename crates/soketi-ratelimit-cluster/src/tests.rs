use std::time::Duration;

use soketi_adapter_core::{LocalAdapter, MemoryCache, MemoryHub};
use soketi_channels::Registry;

use super::*;

fn node(hub: &MemoryHub, id: &str) -> (Arc<HorizontalAdapter>, Arc<ClusterRateLimiter>) {
    let local = LocalAdapter::new(
        Arc::new(Registry::new()),
        Arc::new(MemoryCache::new()),
        Duration::from_secs(60),
    );
    let adapter = HorizontalAdapter::start(local, hub.join(id), Duration::from_millis(500));
    let limiter = ClusterRateLimiter::new(&adapter);
    (adapter, limiter)
}

async fn admitted(limiter: &ClusterRateLimiter, n: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..n {
        if limiter
            .consume("app", Budget::BackendEvents, 1, 10)
            .await
            .unwrap()
            .allowed
        {
            admitted += 1;
        }
        // Give the others' consumption time to arrive, as requests spread over a second do.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    admitted
}

#[tokio::test]
async fn the_fleet_shares_one_budget() {
    let hub = MemoryHub::new();
    let (_a, la) = node(&hub, "a");
    let (_b, lb) = node(&hub, "b");
    let (_c, lc) = node(&hub, "c");
    let mut total = 0;
    for _ in 0..5 {
        total += admitted(&la, 1).await + admitted(&lb, 1).await + admitted(&lc, 1).await;
    }
    // 15 requests within a few milliseconds: the fleet admits its one budget of 10.
    assert_eq!(total, 10);
}

#[tokio::test]
async fn a_joining_node_gets_the_masters_buckets() {
    let hub = MemoryHub::new();
    let (_a, la) = node(&hub, "a");
    assert_eq!(admitted(&la, 10).await, 10);
    let (_b, lb) = node(&hub, "b");
    // The snapshot reaches b before long; then b has no budget left either.
    for _ in 0..100 {
        if lb
            .buckets
            .lock()
            .contains_key(&("app".to_owned(), Budget::BackendEvents))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !lb.consume("app", Budget::BackendEvents, 5, 10)
            .await
            .unwrap()
            .allowed,
        "the newcomer's copy is as spent as the master's"
    );
}
