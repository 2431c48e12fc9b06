use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use soketi_adapter_core::{HorizontalAdapter, LocalAdapter, MemoryCache, MemoryHub};

use super::*;

/// How long a test may wait for a message to cross the in-memory hub.
const DEADLINE: Duration = Duration::from_secs(10);

/// The window is a second of wall clock (points leave it after 990 ms at the earliest, see
/// `SlidingWindow`): a run that took longer than this cannot be judged against one budget, so
/// it is run again rather than judged with a looser bound. 90 ms short of the earliest leave.
const JUDGE_WITHIN: Duration = Duration::from_millis(900);
const ATTEMPTS: usize = 3;

/// The limiter of a node, seen through the messages it has received.
struct Node {
    _adapter: Arc<HorizontalAdapter>,
    limiter: Arc<ClusterRateLimiter>,
    heard: Arc<Heard>,
}

/// Forwards the limiter's messages to it and counts them, so that a test can wait until a
/// consumption has reached a node instead of sleeping.
struct Heard {
    limiter: Arc<ClusterRateLimiter>,
    consumptions: AtomicU64,
    snapshots: AtomicU64,
}

impl Extension for Heard {
    fn on_message(&self, from: &str, payload: &[u8]) {
        let counter = match proto::Message::decode(payload).map(|m| m.body) {
            Ok(Some(proto::message::Body::Consume(_))) => Some(&self.consumptions),
            Ok(Some(proto::message::Body::Snapshot(_))) => Some(&self.snapshots),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        self.limiter.on_message(from, payload);
    }

    fn on_node_joined(&self, node: &str, is_master: bool) -> Option<Bytes> {
        self.limiter.on_node_joined(node, is_master)
    }
}

fn node(hub: &MemoryHub, id: &str) -> Node {
    let local = LocalAdapter::new(Arc::new(MemoryCache::new()), Duration::from_secs(60));
    let adapter = HorizontalAdapter::start(local, hub.join(id), Duration::from_millis(500));
    let limiter = ClusterRateLimiter::new(adapter.clone());
    let heard = Arc::new(Heard {
        limiter: limiter.clone(),
        consumptions: AtomicU64::new(0),
        snapshots: AtomicU64::new(0),
    });
    // In place of the limiter's own registration; nothing has been awaited since the adapter
    // started, so no message can have been dispatched before.
    adapter.register_extension(KIND, heard.clone());
    Node {
        _adapter: adapter,
        limiter,
        heard,
    }
}

/// Polls `done` until it holds, failing after `DEADLINE` with `what`.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(DEADLINE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {DEADLINE:?}"));
}

async fn take(limiter: &ClusterRateLimiter, points: u64) -> bool {
    limiter
        .consume("app", Budget::BackendEvents, points, 10)
        .await
        .unwrap()
        .allowed
}

/// 15 requests in turn over three nodes, each after the previous admission has reached every
/// node: the number the fleet admits, or how long the run took if that was too long to judge.
async fn fleet_admits() -> Result<u64, Duration> {
    let hub = MemoryHub::new();
    let nodes = [node(&hub, "a"), node(&hub, "b"), node(&hub, "c")];
    let mut admitted = [0u64; 3];
    let started = Instant::now();
    for round in 0..15 {
        let i = round % nodes.len();
        if take(&nodes[i].limiter, 1).await {
            admitted[i] += 1;
            // Every node has heard of every admission but its own.
            let total: u64 = admitted.iter().sum();
            wait_until(
                "every node hearing of every other node's admissions",
                || {
                    nodes
                        .iter()
                        .zip(admitted)
                        .all(|(n, own)| n.heard.consumptions.load(Ordering::SeqCst) == total - own)
                },
            )
            .await;
        }
    }
    let elapsed = started.elapsed();
    if elapsed >= JUDGE_WITHIN {
        return Err(elapsed);
    }
    Ok(admitted.iter().sum())
}

#[tokio::test]
async fn the_fleet_shares_one_budget() {
    for attempt in 1..=ATTEMPTS {
        match fleet_admits().await {
            Ok(total) => {
                assert_eq!(total, 10, "15 requests within a second: one budget of 10");
                return;
            }
            Err(elapsed) => eprintln!("attempt {attempt} took {elapsed:?}: too long to judge"),
        }
    }
    panic!("{ATTEMPTS} runs each took longer than {JUDGE_WITHIN:?}");
}

/// Spends a's budget, then lets b join: whether b's copy is as spent as the master's, or how
/// long that took if it was too long to judge.
async fn newcomer_is_spent() -> Result<bool, Duration> {
    let hub = MemoryHub::new();
    let a = node(&hub, "a");
    let spent_at = Instant::now();
    for _ in 0..10 {
        assert!(take(&a.limiter, 1).await, "a alone admits its budget");
    }
    let b = node(&hub, "b");
    wait_until("the master's snapshot reaching b", || {
        b.heard.snapshots.load(Ordering::SeqCst) == 1
    })
    .await;
    let refused = !take(&b.limiter, 5).await;
    let elapsed = spent_at.elapsed();
    if elapsed >= JUDGE_WITHIN {
        return Err(elapsed);
    }
    Ok(refused)
}

#[tokio::test]
async fn a_joining_node_gets_the_masters_buckets() {
    for attempt in 1..=ATTEMPTS {
        match newcomer_is_spent().await {
            Ok(refused) => {
                assert!(refused, "the newcomer's copy is as spent as the master's");
                return;
            }
            Err(elapsed) => eprintln!("attempt {attempt} took {elapsed:?}: too long to judge"),
        }
    }
    panic!("{ATTEMPTS} runs each took longer than {JUDGE_WITHIN:?}");
}
