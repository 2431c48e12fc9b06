//! The cost of one rate-limit check on each driver: `cargo bench -p soketi-ratelimit-cluster`.
//!
//! Prints nanoseconds per check for the local driver, the cluster driver (in a fleet of three
//! nodes inside this process, so that each admission is also sent to two peers), and the Redis
//! driver against a redis-server started on a free port when one is installed. Checks that
//! admit and checks that refuse are timed apart, since only admissions are shared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use soketi_adapter_core::{
    Budget, HorizontalAdapter, LocalAdapter, LocalRateLimiter, MemoryCache, MemoryHub, RateLimiter,
};
use soketi_adapter_redis::RedisRateLimiter;
use soketi_ratelimit_cluster::ClusterRateLimiter;

const CHECKS: u64 = 200_000;

async fn time(label: &str, limiter: &dyn RateLimiter, per_second: u64, checks: u64) {
    let started = Instant::now();
    let mut admitted = 0u64;
    for i in 0..checks {
        let app = if i % 2 == 0 { "a" } else { "b" };
        if limiter
            .consume(app, Budget::BackendEvents, 1, per_second)
            .await
            .map(|d| d.allowed)
            .unwrap_or(false)
        {
            admitted += 1;
        }
    }
    let per_check = started.elapsed().as_nanos() as f64 / checks as f64;
    eprintln!("{label:<44} {per_check:>9.0} ns/check ({admitted} of {checks} admitted)");
}

fn fleet() -> (Vec<Arc<HorizontalAdapter>>, Arc<ClusterRateLimiter>) {
    let hub = MemoryHub::new();
    let adapters: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|id| {
            let local = LocalAdapter::new(Arc::new(MemoryCache::new()), Duration::from_secs(60));
            HorizontalAdapter::start(local, hub.join(id), Duration::from_millis(500))
        })
        .collect();
    let limiters: Vec<_> = adapters
        .iter()
        .map(|adapter| ClusterRateLimiter::new(adapter.clone()))
        .collect();
    (adapters, limiters[0].clone())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        eprintln!("rate-limit check cost, {CHECKS} checks each");
        let local = LocalRateLimiter::new();
        time("local, every check admitted", &local, u64::MAX / 2, CHECKS).await;
        time(
            "local, every check refused",
            &LocalRateLimiter::new(),
            0,
            CHECKS,
        )
        .await;
        let (_fleet, cluster) = fleet();
        time(
            "cluster (3 nodes), every check admitted",
            &*cluster,
            u64::MAX / 2,
            CHECKS,
        )
        .await;
        let (_fleet, cluster) = fleet();
        time(
            "cluster (3 nodes), every check refused",
            &*cluster,
            0,
            CHECKS,
        )
        .await;
        match redis_server() {
            Some((mut child, port)) => {
                let url = format!("redis://127.0.0.1:{port}/0");
                let redis = RedisRateLimiter::new(&url, "bench:").expect("a Redis URL");
                time(
                    "redis (one script call), admitted",
                    &redis,
                    u64::MAX / 2,
                    CHECKS / 20,
                )
                .await;
                let _ = child.kill();
            }
            None => eprintln!("redis: skipped, redis-server is not installed"),
        }
    });
}

/// A redis-server on a free port, once it answers.
fn redis_server() -> Option<(std::process::Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
